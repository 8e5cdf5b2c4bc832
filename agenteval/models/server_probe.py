"""What an OpenAI-compatible server is, asked once: which server and version, the model
file and its quantization, the chat template it applies, whether it honours native tools,
and which tokenizer endpoint it offers (to count what it streams without usage).

- llama.cpp's ``llama-server``: ``GET /props`` (``build_info``, ``model_path``,
  ``model_ftype``, ``chat_template``, ``chat_template_caps.supports_tool_calls``,
  ``default_generation_settings.n_ctx``), ``GET /v1/models`` (``owned_by: llamacpp``,
  ``meta``), ``POST /tokenize {"content"}``, ``POST /apply-template {"messages"}``.
- llama-cpp-python: ``GET /openapi.json`` (title "llama.cpp Python API", version),
  ``GET /v1/models`` (the model alias, by default the GGUF path), ``POST /extras/tokenize
  {"input"}``. It drops ``tools`` and, for a GGUF without a chat template, applies
  ``llama-2``.
- anything else: ``POST /tokenize`` (vLLM, SGLang) if it answers.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agenteval.models.chat import Message, as_count, as_list, as_object, as_text

if TYPE_CHECKING:
    import httpx

ServerKind = Literal["llama-server", "llama-cpp-python", "other"]
TokenizeRoute = Literal["/tokenize", "/extras/tokenize"]
# llama-server's template for a model without one (common/chat.cpp CHATML_TEMPLATE_SRC).
LLAMA_SERVER_CHATML = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\n' -}}\n"
    "{%- endif -%}")


@dataclass
class ServerFacts:
    """What one probe found; ``reachable`` is False when the server did not answer (not cached)."""

    kind: ServerKind = "other"
    reachable: bool = False
    version: str | None = None
    model_id: str | None = None
    model_path: str | None = None
    tokenize: TokenizeRoute | None = None
    props: dict[str, object] = field(default_factory=dict)
    model_meta: dict[str, object] = field(default_factory=dict)

    @property
    def supports_tools(self) -> bool | None:
        """llama-server's template capability; llama-cpp-python drops tools; None: nothing tells."""
        if self.kind == "llama-cpp-python":
            return False
        caps = as_object(self.props.get("chat_template_caps"))
        value = caps.get("supports_tool_calls")
        return value if isinstance(value, bool) else None

    def info(self) -> dict[str, object]:
        """The fingerprint's part: server, version, model file, quantization, template, context."""
        if not self.reachable:
            return {}
        info: dict[str, object] = {"server": self.kind if self.kind != "other" else None,
                                   "server_version": self.version, "served_model": self.model_id,
                                   "tokenizer_endpoint": self.tokenize}
        path = Path(self.model_path) if self.model_path else None
        local = _gguf(path)
        if local is not None and path is not None:
            info.update(local)
            info["model_path"] = str(path)
        quant = info.get("quantization") or self._named_quantization()
        if quant:
            info["quantization"] = quant
        ctx = as_count(as_object(self.props.get("default_generation_settings")).get("n_ctx")) \
            or as_count(self.model_meta.get("n_ctx"))
        if ctx:
            info["context"] = ctx
        for key in ("n_params", "size"):
            if as_count(self.model_meta.get(key)):
                info[f"model_{key}"] = self.model_meta[key]
        info.update(self._template(local))
        if self.supports_tools is not None:
            info["supports_tool_calls"] = self.supports_tools
        return {k: v for k, v in info.items() if v is not None}

    def _named_quantization(self) -> str | None:
        from agenteval.gguf.info import quant_from_file_name, server_ftype_name

        ftype = as_text(self.props.get("model_ftype")) or as_text(self.model_meta.get("ftype"))
        if ftype:
            return server_ftype_name(ftype)
        return quant_from_file_name(self.model_path or self.model_id or "")

    def _template(self, local: dict[str, object] | None) -> dict[str, object]:
        """The chat template's hash, and whether the server fell back to its default one."""
        if self.kind == "llama-server":
            text = as_text(self.props.get("chat_template"))
            if not text:
                return {}
            fallback = text == LLAMA_SERVER_CHATML and (local is None or "chat_template_sha256" not in local)
            return {"chat_template_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
                    "chat_template": "chatml (llama-server's default: the model has none)" if fallback else "server",
                    "chat_template_fallback": fallback}
        if self.kind == "llama-cpp-python" and local is not None and "chat_template_sha256" not in local:
            # unless the server was started with --chat_format, which it does not report
            return {"chat_template": "llama-2 (llama-cpp-python's fallback: the model has none)",
                    "chat_template_fallback": True}
        if self.kind == "llama-cpp-python" and local is not None:
            return {"chat_template": "gguf", "chat_template_fallback": False}
        return {}

    def fallback_warning(self, label: str) -> str | None:
        """The log line for a server that applies a default chat template, or None."""
        info = self._template(_gguf(Path(self.model_path)) if self.model_path else None)
        if not info.get("chat_template_fallback"):
            return None
        return (f"warning: {label}: the model file has no chat template, so the server applies "
                f"{str(info['chat_template']).split(' ')[0]}; answers may be poor. Give the server a template "
                f"(llama-server --chat-template, llama-cpp-python --chat_format, or chat_template in agenteval.toml)")


def _gguf(path: Path | None) -> dict[str, object] | None:
    if path is None or path.suffix != ".gguf" or not path.is_file():
        return None
    try:
        from agenteval.gguf.info import gguf_info

        return gguf_info(path)
    except (ImportError, OSError, ValueError):
        return None


class ServerProbe:
    """Probes a server once (again only while it did not answer) and counts tokens with
    the endpoint it offers."""

    def __init__(self, base_url: str, model: str, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")
        self.model = model
        self.headers = headers or {}
        self._facts: ServerFacts | None = None
        self._lock = threading.Lock()

    def facts(self) -> ServerFacts:
        with self._lock:
            if self._facts is None or not self._facts.reachable:
                self._facts = self._probe()
            return self._facts

    def _probe(self) -> ServerFacts:
        import httpx

        facts = ServerFacts()
        try:
            with httpx.Client(timeout=5, headers=self.headers) as client:
                models = client.get(f"{self.base_url}/models")
                facts.reachable = True
                data = [as_object(m) for m in as_list(as_object(_json(models)).get("data"))]
                mine = next((m for m in data if m.get("id") == self.model), data[0] if data else {})
                facts.model_id = as_text(mine.get("id")) or None
                facts.model_meta = as_object(mine.get("meta"))
                props = client.get(f"{self.root}/props")
                body = as_object(_json(props)) if props.status_code == 200 else {}
                if "build_info" in body or as_text(mine.get("owned_by")) == "llamacpp":
                    facts.kind, facts.props = "llama-server", body
                    facts.version = as_text(body.get("build_info")) or None
                    facts.model_path = as_text(body.get("model_path")) or None
                else:
                    api = client.get(f"{self.root}/openapi.json")
                    meta = as_object(as_object(_json(api)).get("info")) if api.status_code == 200 else {}
                    if "llama.cpp Python" in as_text(meta.get("title")):
                        facts.kind, facts.version = "llama-cpp-python", as_text(meta.get("version")) or None
                        facts.model_path = facts.model_id
                facts.tokenize = self._find_tokenizer(client, facts.kind)
        except httpx.HTTPError:
            pass
        return facts

    def _find_tokenizer(self, client: "httpx.Client", kind: ServerKind) -> TokenizeRoute | None:
        import httpx

        routes: list[TokenizeRoute] = ["/extras/tokenize"] if kind == "llama-cpp-python" else ["/tokenize"]
        if kind == "other":
            routes.append("/extras/tokenize")
        for route in routes:
            try:
                if _tokens(client.post(self.root + route, json=self._tokenize_body("probe"))) is not None:
                    return route
            except httpx.HTTPError:
                continue
        return None

    def _tokenize_body(self, text: str) -> dict[str, object]:
        # one body every known route reads: llama-server "content", llama-cpp-python "input", vLLM "prompt"
        return {"content": text, "input": text, "prompt": text, "model": self.model, "add_special": False,
                "add_special_tokens": False}

    def count(self, text: str) -> int | None:
        """Tokens in ``text`` by the server's own tokenizer; None when it offers none."""
        import httpx

        route = self.facts().tokenize
        if route is None:
            return None
        if not text:
            return 0
        try:
            with httpx.Client(timeout=10, headers=self.headers) as client:
                return _tokens(client.post(self.root + route, json=self._tokenize_body(text)))
        except httpx.HTTPError:
            return None

    def count_prompt(self, messages: list[Message]) -> int | None:
        """The prompt's tokens: rendered by llama-server's template where it offers it, else the
        messages' text (an estimate either way)."""
        import httpx

        facts = self.facts()
        text = "\n".join(f"{m.get('role')}: {m.get('content') or ''}" for m in messages)
        if facts.kind == "llama-server":
            try:
                with httpx.Client(timeout=10, headers=self.headers) as client:
                    rendered = as_text(as_object(_json(client.post(f"{self.root}/apply-template",
                                                                   json={"messages": messages}))).get("prompt"))
                text = rendered or text
            except httpx.HTTPError:
                pass
        return self.count(text)


def _json(response: "httpx.Response") -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _tokens(response: "httpx.Response") -> int | None:
    if response.status_code != 200:
        return None
    body = as_object(_json(response))
    tokens = body.get("tokens")
    if isinstance(tokens, list):
        return len(tokens)
    return as_count(body.get("count"))
