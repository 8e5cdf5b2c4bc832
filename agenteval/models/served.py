"""A served chat model as the runner sees it: a client, and the server
agenteval starts for it when its alias names an engine."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from agenteval.config import ModelConfig, ProjectConfig
from agenteval.models.base import ModelSpec
from agenteval.models.chat import ChatResponse, ModelCallError
from agenteval.models.servers import ManagedServer
from agenteval.models.testmodel import is_random_test_model
from agenteval.task import Task

WARM_UP = [{"role": "user", "content": "Reply with OK."}]


class ServedModel:
    """Delegates chat to its client; ``serving()`` brackets the model's trials."""

    def __init__(self, spec: ModelSpec, client: Any, cfg: ModelConfig | None = None,
                 server: ManagedServer | None = None, make_client: Callable[[str], Any] | None = None) -> None:
        self.spec = spec
        self.client = client
        self.cfg = cfg
        self.server = server
        self.make_client = make_client
        self.warm_up_s: float | None = None
        self.info: dict[str, Any] = {}
        self._slots = threading.BoundedSemaphore(cfg.max_in_flight if cfg else 1)

    @property
    def random_weights(self) -> bool:
        return bool(self.server and self.server.model_path and is_random_test_model(self.server.model_path))

    def check_task(self, task: Task) -> None:
        return None

    def preflight(self, log: Callable[[str], None] = print) -> None:
        """Before any container starts: the engine is installed and the model file exists
        (the random-weight test model is built here on first use)."""
        base_url = str(getattr(self.client, "base_url", "") or "")
        if self.spec.provider == "openai" and ":11434" in base_url:
            log(f"warning: {self.spec.label} uses Ollama's /v1 endpoint, which silently truncates prompts at "
                f"Ollama's default context; use ollama:{self.spec.name} (native API, num_ctx set) instead")
        if self.server is None:
            return
        cfg, path = self.server.cfg, self.server.model_path
        if cfg.test_model and path is not None and not path.exists():
            from agenteval.models.testmodel import create_test_model

            directory = path if cfg.test_model == "hf" else path.parent
            log(f"building the random-weight test model in {directory} (once)")
            create_test_model(directory, gguf=None if cfg.test_model == "hf" else cfg.test_model)
        self.server.check_installed()

    @contextmanager
    def serving(self, log: Callable[[str], None] = print) -> Iterator["ServedModel"]:
        """Start the server (if agenteval manages it), warm up, yield, stop."""
        try:
            if self.server is not None:
                log(f"starting {self.spec.label} ({self.server.cfg.engine} engine)")
                base_url = self.server.start()
                assert self.make_client is not None
                self.client = self.make_client(base_url)
                log(f"{self.spec.label} answers at {base_url} after {self.server.load_s:.1f} s")
            warm = self.client.chat(WARM_UP, max_tokens=8, timeout_s=120)
            self.warm_up_s = warm.call.e2e_s
            self.info = self._describe()
            yield self
        finally:
            if self.server is not None:
                self.server.stop()

    def chat(self, messages: list[dict[str, Any]], *, max_tokens: int | None = None, **kw: Any) -> ChatResponse:
        perf_log = self.server is not None and self.server.cfg.engine == "llamacpp"
        with self._slots:  # the per-model limit on requests in flight
            offset = self.server.log_size() if perf_log and self.server else 0
            resp: ChatResponse = self.client.chat(messages, max_tokens=self._fit(messages, max_tokens), **kw)
            if perf_log and self.server and not resp.call.server_timings:
                self._use_server_perf(resp, self.server.perf_since(offset))
        return resp

    @staticmethod
    def _use_server_perf(resp: ChatResponse, perf: dict[str, float]) -> None:
        """llama.cpp's own counts replace tokenizer estimates. Each sent token but the last was
        evaluated in a one-token run; a one-token prompt remainder (the rest came from the prompt
        cache) is such a run too, and llama.cpp then prints the prompt as 1 token; the token
        sampled after the last run is sent only when the answer stopped at max_tokens (at
        end-of-text it is not sent)."""
        if "eval_n" not in perf:
            return
        call = resp.call
        call.server_timings = perf
        cached_prompt = int(perf.get("prompt_n", 0)) <= 1
        call.prompt_tokens = int(perf.get("prompt_total_n") or perf.get("prompt_n") or 0) or call.prompt_tokens
        call.completion_tokens = (int(perf["eval_n"]) - (1 if cached_prompt else 0)
                                  + (1 if resp.finish_reason == "length" else 0))
        call.tokens_estimated = False
        if call.decode_s:
            call.decode_tokens_per_s = call.completion_tokens / call.decode_s

    def _fit(self, messages: list[dict[str, Any]], max_tokens: int | None) -> int | None:
        """Keep prompt + completion inside the context the server applies, where both are known:
        past it, servers fail mid-stream (llama.cpp) or truncate silently."""
        counter = getattr(self.client, "token_counter", None)
        if self.cfg is None or counter is None or max_tokens is None:
            return max_tokens
        prompt = int(sum(counter(str(m.get("content") or "")) + 8 for m in messages)) + 16
        return max(16, min(max_tokens, self.cfg.context - prompt))

    def fingerprint_info(self) -> dict[str, Any]:
        return self.info or self._describe()

    def _describe(self) -> dict[str, Any]:
        info: dict[str, Any] = dict(self.client.fingerprint_info()) if self.client else {}
        cfg = self.cfg
        if cfg is not None:
            info.update({"context": cfg.context, "sampling": cfg.sampling, "engine": cfg.engine,
                         "tools": cfg.tools})
        if self.server is not None:
            info["load_s"] = self.server.load_s
            info.update(_engine_info(self.server))
        info["warm_up_s"] = self.warm_up_s
        info["random_weights"] = self.random_weights
        info["host_cpu"] = _cpu_name()
        gpu = _gpu_name()
        if gpu:
            info["host_gpu"] = gpu
        return info


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _engine_info(server: ManagedServer) -> dict[str, Any]:
    info: dict[str, Any] = {}
    path = server.model_path
    if server.cfg.engine == "transformers":
        info.update(server="transformers serve", server_version=_package_version("transformers"))
        if path and path.is_dir():
            cfg = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
            info["quantization"] = str(cfg.get("quantization_config", {}).get("quant_method") or
                                       cfg.get("torch_dtype") or cfg.get("dtype") or "unquantized")
            weights = sorted(path.glob("*.safetensors"))
            info["file_bytes"] = sum(w.stat().st_size for w in weights)
            info["file_sha256"] = _sha256(weights)
            template = path / "chat_template.jinja"
            if template.is_file():
                info["chat_template_sha256"] = hashlib.sha256(template.read_bytes()).hexdigest()[:16]
    elif server.cfg.engine == "llamacpp":
        info.update(server="llama-cpp-python", server_version=_package_version("llama_cpp_python"))
        if path and path.is_file():
            from agenteval.models.gguf import gguf_info

            info.update(gguf_info(path))
            info["file_bytes"] = path.stat().st_size
            info["file_sha256"] = _sha256([path])
    else:
        info["server"] = "command"
    return info


def _sha256(files: list[Path]) -> str | None:
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip().replace("\n", "; ") or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def build_served(alias: str, cfg: ModelConfig, project: ProjectConfig) -> ServedModel:
    """A model from an agenteval.toml alias."""
    from agenteval.models.ollama import OllamaClient
    from agenteval.models.openai import OpenAICompatClient

    spec = ModelSpec(cfg.provider, cfg.name or alias, cfg.base_url)
    label_spec = ModelSpec(cfg.provider, cfg.name or alias, cfg.base_url, alias=alias)
    api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None

    model_path = project.resolve(cfg.path, alias) if cfg.path else None
    counter = _token_counter(cfg, model_path)

    def make(base_url: str, name: str) -> Any:
        s = ModelSpec(cfg.provider, name, base_url)
        if cfg.provider == "ollama":
            return OllamaClient(s, num_ctx=cfg.context, think=cfg.think, keep_alive=cfg.keep_alive,
                                sampling=cfg.sampling, token_counter=counter)
        return OpenAICompatClient(s, base_url, api_key=api_key, sampling=cfg.sampling, token_counter=counter)

    if cfg.engine:
        server = ManagedServer(alias, cfg, model_path)
        return ServedModel(label_spec, None, cfg, server, make_client=lambda url: make(url, server.served_name()))
    return ServedModel(label_spec, make(cfg.base_url or "", spec.name), cfg)


def _token_counter(cfg: ModelConfig, path: Path | None) -> Callable[[str], int] | None:
    """The model's own tokenizer for a local model (a transformers folder or a GGUF file), used
    only where the server sends no usage; such figures are marked estimated."""
    if path is None or cfg.engine not in ("transformers", "llamacpp"):
        return None
    cache: dict[str, Any] = {}

    def count(text: str) -> int:
        if "encode" not in cache:
            if cfg.engine == "transformers":
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(path))
                cache["encode"] = lambda t: tok.encode(t, add_special_tokens=False)
            else:
                import llama_cpp

                vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
                cache["encode"] = lambda t: vocab.tokenize(t.encode("utf-8"), add_bos=False, special=False)
        return len(cache["encode"](text))

    return count


__all__ = ["ServedModel", "build_served", "ModelCallError"]
