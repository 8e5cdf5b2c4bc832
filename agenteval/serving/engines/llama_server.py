"""``engine = "llama-server"``: llama.cpp's own OpenAI-compatible server on a GGUF file.

The binary is ``$AGENTEVAL_LLAMA_SERVER`` (the binary, or the folder holding it), else
``llama-server`` on PATH, else the build ``.ci/llama-server.sh`` keeps under
``~/.cache/agenteval/llama-server/`` (``$AGENTEVAL_CACHE``, ``$XDG_CACHE_HOME``
move it). It runs with ``--jinja`` (tool calls need it), one slot per request in flight,
and the model's context per slot; its log goes to the server's log file, never to the
console. Health is ``/health`` (503 while the model loads). It streams usage and its own
``timings`` (prompt_n, prompt_ms, cache_n, predicted_n, predicted_per_second) with the
last chunk, which the OpenAI client records as ``server_timings``; ``/props`` tells
the template, its tool support and the build (the client's ``ServerProbe``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from agenteval.errors import BadInputError
from agenteval.paths import cache_dir
from agenteval.serving.servers import ManagedServer

ENV_BINARY = "AGENTEVAL_LLAMA_SERVER"


def build_cache_dir() -> Path:
    """Where .ci/llama-server.sh keeps its builds (one folder per version and build flags)."""
    return cache_dir() / "llama-server"


def find_binary() -> Path | None:
    return find_llama_tool("llama-server", ENV_BINARY)


def find_llama_tool(name: str, env: str) -> Path | None:
    """One of llama.cpp's programs: ``$env`` (the binary or its folder; returned even if broken,
    so the user hears about it), else ``name`` on PATH, else beside the llama-server agenteval
    uses, else the newest build in ``.ci/llama-server.sh``'s cache."""
    explicit = os.environ.get(env)
    if explicit:
        path = Path(explicit)
        return path / name if path.is_dir() else path
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    server = find_binary() if name != "llama-server" else None
    beside = [server.parent / name] if server else []
    builds = sorted(build_cache_dir().glob(f"*/{name}"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((b for b in [*beside, *builds] if b.is_file() and os.access(b, os.X_OK)), None)


class LlamaServer(ManagedServer):
    needs_model_file = True

    def binary(self) -> Path:
        found = find_binary()
        if found is None or not os.access(found, os.X_OK):
            where = f"{found} is not an executable file" if found else "none found"
            raise BadInputError(f"model {self.alias!r} uses engine 'llama-server': {where}. Build it with "
                                f"'bash .ci/llama-server.sh' (cached), install llama.cpp, or set "
                                f"{ENV_BINARY} to the binary or its folder")
        return found

    def check_installed(self) -> None:
        self.binary()
        super().check_installed()

    def argv(self) -> list[str]:
        slots = self.cfg.max_in_flight
        template = ["--chat-template", self.cfg.chat_template] if self.cfg.chat_template else []
        return [str(self.binary()), "--model", str(self.model_path or ""), "--host", "127.0.0.1",
                "--port", str(self.port), "--ctx-size", str(self.cfg.context * slots), "--parallel", str(slots),
                "--alias", self.served_name(), "--jinja", "--no-webui", "--log-colors", "off", *template,
                *self.cfg.args]

    def _health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def default_template(self) -> str:
        return "chatml (llama-server's default)"

    def version(self) -> str | None:
        try:
            out = subprocess.run([str(self.binary()), "--version"], capture_output=True, text=True, timeout=30,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired, BadInputError):
            return None
        lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("version:")]
        return lines[0].removeprefix("version:").strip() if lines else None

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {"server": "llama-server"}
        version = self.version()
        if version:
            info["server_version"] = version
        return {**info, **self.gguf_description()}
