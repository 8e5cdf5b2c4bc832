"""Model servers agenteval starts and stops itself, so one command compares
several models on one GPU: pick a free loopback port, start, wait for health,
(warm up), run that model's trials, stop, next model.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agenteval.config import ModelConfig
from agenteval.errors import AgentEvalError, BadInputError


_PERF = re.compile(r"llama_perf_context_print:\s+(?P<what>prompt eval|eval|total) time =\s+(?P<ms>[\d.]+) ms /\s+"
                   r"(?P<n>\d+) (?:tokens|runs)")


_PREFIX = re.compile(r"Llama\.generate: (?P<hit>\d+) prefix-match hit, remaining (?P<rest>\d+) prompt tokens")


def parse_llama_perf(text: str) -> dict[str, float]:
    """The last llama.cpp perf report in a server log: prompt_n/prompt_ms, eval runs/eval_ms,
    and llama-cpp-python's prompt-cache line (cached + evaluated prompt tokens)."""
    timings: dict[str, float] = {}
    for m in _PREFIX.finditer(text):
        timings["prompt_cached_n"] = int(m["hit"])
        timings["prompt_total_n"] = int(m["hit"]) + int(m["rest"])
    for m in _PERF.finditer(text):
        key = {"prompt eval": "prompt", "eval": "eval", "total": "total"}[m["what"]]
        timings[f"{key}_n"] = int(m["n"])
        timings[f"{key}_ms"] = float(m["ms"])
    if timings.get("eval_ms"):
        timings["eval_tokens_per_s"] = timings["eval_n"] / (timings["eval_ms"] / 1000)
    if timings.get("total_ms", 0) > timings.get("prompt_ms", 0) and timings.get("eval_n"):
        # the generation loop as llama.cpp timed it, sampling included (eval time counts decode only)
        timings["generation_tokens_per_s"] = timings["eval_n"] / ((timings["total_ms"] - timings["prompt_ms"]) / 1000)
    return timings


class ServerStartError(AgentEvalError):
    """A started server died or never answered; the message carries its log's last lines."""


def _die_with_parent() -> None:
    """In the child: SIGTERM when the runner dies, even by kill -9 (Linux), so no server outlives it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ManagedServer:
    """One server process in its own process group. Use as a context manager."""

    def __init__(self, alias: str, cfg: ModelConfig, model_path: Path | None, log_dir: Path | None = None) -> None:
        self.alias = alias
        self.cfg = cfg
        self.model_path = model_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.load_s: float | None = None
        log_dir = log_dir or Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"agenteval-server-{alias}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def argv(self) -> list[str]:
        cfg, model = self.cfg, str(self.model_path or "")
        if cfg.engine == "transformers":
            return [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve",
                    "--host", "127.0.0.1", "--port", str(self.port), *cfg.args, model]
        if cfg.engine == "llamacpp":
            return [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1",
                    "--port", str(self.port), "--n_ctx", str(cfg.context), "--model_alias", self.served_name(),
                    *cfg.args]
        if cfg.engine == "command" and cfg.command:
            return shlex.split(cfg.command.format(port=self.port, model=model, context=cfg.context)) + cfg.args
        raise BadInputError(f"model {self.alias!r}: no engine to start")

    def served_name(self) -> str:
        """The model name requests must carry."""
        if self.cfg.name:
            return self.cfg.name
        if self.cfg.engine == "transformers":
            return str(self.model_path)
        return self.alias

    def start(self) -> str:
        self.check_installed()
        self.port = free_port()
        argv = self.argv()
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
               "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "PYTHONUNBUFFERED": "1"}
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_healthy()
        self.load_s = round(time.monotonic() - t0, 3)
        return self.base_url

    def check_installed(self) -> None:
        import importlib.util

        need = {"transformers": ("transformers", "agenteval[serve]"), "llamacpp": ("llama_cpp", "agenteval[llamacpp]")}
        if self.cfg.engine in need:
            module, extra = need[self.cfg.engine]
            if importlib.util.find_spec(module) is None:
                raise BadInputError(f"model {self.alias!r} uses engine {self.cfg.engine!r}: pip install '{extra}'")
        if self.cfg.engine in ("transformers", "llamacpp") and not (self.model_path and self.model_path.exists()):
            raise BadInputError(f"model {self.alias!r}: {self.model_path} does not exist"
                                + (" (make one with: agenteval models create-test-model DIR)"
                                   if self.cfg.engine == "transformers" else ""))

    def _wait_healthy(self) -> None:
        import httpx

        url = f"http://127.0.0.1:{self.port}{self.cfg.health_path}"
        deadline = time.monotonic() + self.cfg.startup_timeout_sec
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerStartError(f"model {self.alias!r}: the server exited with code {self.proc.returncode} "
                                       f"while starting: {self.log_tail()}")
            try:
                if httpx.get(url, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ServerStartError(f"model {self.alias!r}: the server did not answer {url} within "
                               f"{self.cfg.startup_timeout_sec:g} s: {self.log_tail()}")

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def perf_since(self, offset: int, wait_s: float = 1.0) -> dict[str, float]:
        """llama.cpp's own timings of the request that ended after ``offset`` in the log
        (llama-cpp-python prints them, it does not send them)."""
        deadline = time.monotonic() + wait_s
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                found = parse_llama_perf(f.read().decode("utf-8", errors="replace"))
            if "eval_n" in found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) + f" (log: {self.log_path})"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> "ManagedServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
