"""Model servers agenteval starts and stops itself, so one command compares
several models on one GPU: pick a free loopback port, start, wait for health,
(warm up), run that model's trials, stop, next model.

``ManagedServer`` is the process lifecycle every engine shares; what differs
per engine (its command line, what it needs installed, what it can say about
the model, what it logs but does not send) lives in one module per engine
under ``agenteval.serving.engines``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Callable

from agenteval.config import ModelConfig
from agenteval.errors import BadInputError, ServerStartError
from agenteval.gguf.info import gguf_info, has_chat_template
from agenteval.logs import Log
from agenteval.models.base import TokenCounter
from agenteval.models.chat import ChatResponse


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


class ManagedServer(ABC):
    """One server process in its own process group. Use as a context manager."""

    requires: tuple[str, str] | None = None  # (module, pip extra) the engine needs installed
    needs_model_file = False  # whether ``path`` must exist before the server starts

    def __init__(self, alias: str, cfg: ModelConfig, model_path: Path | None, log_dir: Path | None = None) -> None:
        self.alias = alias
        self.cfg = cfg
        self.model_path = model_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.load_s: float | None = None
        self.peak_rss_bytes: int | None = None  # the process's VmHWM, read as it is stopped
        log_dir = log_dir or Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        # one file per server instance: concurrent runs of one alias never read each other's log
        self.log_path = log_dir / f"agenteval-server-{alias}-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @abstractmethod
    def argv(self) -> list[str]:
        """The server's command line for ``self.port``."""

    def served_name(self) -> str:
        """The model name requests must carry."""
        return self.cfg.name or self.alias

    def describe(self) -> dict[str, object]:
        """What the engine can tell about the model it serves, for the fingerprint."""
        return {}

    def token_counter(self) -> TokenCounter | None:
        """The model's own tokenizer, used only where the server sends no usage (figures marked estimated)."""
        return None

    def call_mark(self) -> int:
        """Where the server's log stands before a call (see ``complete_call``)."""
        return 0

    def complete_call(self, resp: ChatResponse, mark: int) -> None:
        """Add to ``resp.call`` what the server logged about the call after ``mark`` but did not send."""

    def preflight(self, log: Log) -> None:
        """Before any container starts: the engine is installed and the model file exists
        (the random-weight test model is built here on first use)."""
        cfg, path = self.cfg, self.model_path
        if cfg.test_model and path is not None and not path.exists():
            from agenteval.serving.testmodel import create_test_model

            directory = path if cfg.test_model == "hf" else path.parent
            log(f"building the random-weight test model in {directory} (once)")
            create_test_model(directory, gguf=None if cfg.test_model == "hf" else cfg.test_model)
        if cfg.download and path is not None and not path.exists():
            from agenteval.serving.downloads import fetch_model

            fetch_model(cfg.download, path, log)
        self.check_installed()
        warning = self.template_warning()
        if warning:
            log(warning)

    def template_warning(self) -> str | None:
        """A log line when the server will apply a default chat template (the GGUF has none and
        the alias names none); ``describe`` flags it as ``chat_template_fallback``."""
        info = self.template_info()
        if not info.get("chat_template_fallback"):
            return None
        return (f"warning: model {self.alias!r}: {self.model_path} has no chat template, so the server applies "
                f"{info['chat_template']}; answers may be poor. Set chat_template = \"chatml\" in agenteval.toml")

    def default_template(self) -> str:
        """What the engine applies to a model without a chat template."""
        return "its default template"

    def gguf_description(self) -> dict[str, object]:
        """``describe``'s part for a GGUF model file: what the file says about itself, its size and
        hash, and where the chat template comes from."""
        info: dict[str, object] = {}
        path = self.model_path
        if path and path.is_file():
            info.update(gguf_info(path))
            info["file_bytes"] = path.stat().st_size
            info["file_sha256"] = files_sha256([path])
        info.update(self.template_info())
        return info

    def template_info(self) -> dict[str, object]:
        """Where the chat template comes from, for the fingerprint (GGUF models only)."""
        path = self.model_path
        if self.cfg.chat_template:
            return {"chat_template": f"{self.cfg.chat_template} (agenteval.toml chat_template)",
                    "chat_template_fallback": False}
        if path is None or path.suffix != ".gguf" or not path.is_file():
            return {}
        try:
            has_template = has_chat_template(path)
        except (ImportError, OSError, ValueError):
            return {}
        if has_template:
            return {"chat_template": "gguf", "chat_template_fallback": False}
        return {"chat_template": self.default_template(), "chat_template_fallback": True}

    def check_installed(self) -> None:
        import importlib.util

        if self.requires is not None:
            module, extra = self.requires
            if importlib.util.find_spec(module) is None:
                raise BadInputError(f"model {self.alias!r} uses engine {self.cfg.engine!r}: pip install '{extra}'")
        if self.needs_model_file and not (self.model_path and self.model_path.exists()):
            raise BadInputError(f"model {self.alias!r}: {self.model_path} does not exist"
                                + self.missing_model_hint())

    def missing_model_hint(self) -> str:
        return ""

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

    def _health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.cfg.health_path}"

    def health(self) -> None:
        """Raise ServerStartError unless the process runs and answers its health path."""
        import httpx

        if self.proc is None or self.proc.poll() is not None:
            raise ServerStartError(f"model {self.alias!r}: the server is not running: {self.log_tail()}")
        try:
            status = httpx.get(self._health_url(), timeout=5).status_code
        except httpx.HTTPError as e:
            raise ServerStartError(f"model {self.alias!r}: the server does not answer ({e})") from None
        if status >= 500:
            raise ServerStartError(f"model {self.alias!r}: the server answers {status}: {self.log_tail()}")

    def _wait_healthy(self) -> None:
        import httpx

        url = self._health_url()
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

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) + f" (log: {self.log_path})"

    def stop(self) -> None:
        """Stop a server this object started. Its log is removed with it; the log of a server that
        ended by itself (a crash, a bad flag) is kept, and the error that reported it names the file."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        self.peak_rss_bytes = peak_rss_bytes(proc.pid)
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "ManagedServer":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def peak_rss_bytes(pid: int) -> int | None:
    """The most resident memory process ``pid`` has held (Linux's VmHWM, kept by the kernel, so
    one read at the end sees the peak); None where /proc does not say."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) >= 2 and parts[1].isdigit() else None
    return None


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def lazy_counter(path: Path | None, load: Callable[[Path], TokenCounter]) -> TokenCounter | None:
    """A token counter whose tokenizer ``load(path)`` builds on the first count (never for a run that
    needs none); None without a model path."""
    if path is None:
        return None
    loaded: list[TokenCounter] = []

    def count(text: str) -> int:
        if not loaded:
            loaded.append(load(path))
        return loaded[0](text)

    return count


def files_sha256(files: list[Path]) -> str | None:
    """The first 16 hex digits of the SHA-256 of the files' bytes, one after another."""
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]
