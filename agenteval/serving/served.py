"""A chat model as the runner drives it: a provider's client, the alias's
settings applied around every call (requests in flight, the context), and the
server agenteval starts for it when its alias names an engine (``ServedModel``).
``agenteval.runner.model_registry`` builds one for every chat model a run names."""

from __future__ import annotations

import os
import platform
import subprocess
import threading
from typing import Callable

from agenteval.config import ModelConfig
from agenteval.logs import Log
from agenteval.models.base import WARM_UP, ChatModel, ModelSpec, TokenCounter, ToolSupport
from agenteval.models.chat import ChatResponse, Message, ToolSchema
from agenteval.records import ToolProtocol
from agenteval.serving.servers import ManagedServer
from agenteval.serving.testmodel import is_random_test_model


class ServedModel(ChatModel):
    """Delegates chat to its client; its lifecycle is its server's (none for a server the
    user runs) and a timed warm-up."""

    def __init__(self, spec: ModelSpec, client: ChatModel | None, cfg: ModelConfig | None = None,
                 server: ManagedServer | None = None, make_client: Callable[[str], ChatModel] | None = None,
                 token_counter: TokenCounter | None = None) -> None:
        if client is None and (server is None or make_client is None):
            raise ValueError("a ServedModel needs a client, or a server and make_client")
        self.spec = spec
        self._client = client
        self.cfg = cfg
        self.server = server
        self.make_client = make_client
        self.token_counter = token_counter  # the model's tokenizer, to fit answers into the context
        self.tool_protocol = (ToolProtocol(cfg.tools) if cfg is not None else
                              client.tool_protocol if client is not None else ToolProtocol.auto)
        self.warm_up_s: float | None = None
        self.info: dict[str, object] = {}
        self._slots = threading.BoundedSemaphore(cfg.max_in_flight if cfg else 1)

    @property
    def client(self) -> ChatModel:
        if self._client is None:
            raise RuntimeError(f"{self.spec.label}: its server has not been started")
        return self._client

    @property
    def random_weights(self) -> bool:
        return bool(self.server and self.server.model_path and is_random_test_model(self.server.model_path))

    def preflight(self, log: Log) -> None:
        """Before any container starts: the client's checks, then the engine's (installed, model
        file there; the random-weight test model is built here on first use)."""
        if self._client is not None:
            self._client.preflight(log)
        if self.server is not None:
            self.server.preflight(log)

    def start(self, log: Log) -> None:
        if self.server is None or self.make_client is None:
            return
        log(f"starting {self.spec.label} ({self.server.cfg.engine} engine)")
        base_url = self.server.start()
        self._client = self.make_client(base_url)
        log(f"{self.spec.label} answers at {base_url} after {self.server.load_s:.1f} s")

    def health(self) -> None:
        if self.server is not None:
            self.server.health()
        self.client.health()

    def warm_up(self) -> None:
        warm = self.client.chat(WARM_UP, max_tokens=8, timeout_s=120)
        self.warm_up_s = warm.call.e2e_s
        self.info = self._describe()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def tool_support(self) -> ToolSupport:
        return self.client.tool_support() if self._client is not None else ToolSupport.unknown

    def chat(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
             max_tokens: int | None = None, timeout_s: float | None = None) -> ChatResponse:
        with self._slots:  # the per-model limit on requests in flight
            mark = self.server.call_mark() if self.server else 0
            resp = self.client.chat(messages, tools=tools, max_tokens=self._fit(messages, max_tokens),
                                    timeout_s=timeout_s)
            if self.server is not None:
                self.server.complete_call(resp, mark)
        return resp

    def _fit(self, messages: list[Message], max_tokens: int | None) -> int | None:
        """Keep prompt + completion inside the context the server applies, where both are known:
        past it, servers fail mid-stream (llama.cpp) or truncate silently."""
        counter = self.token_counter
        if self.cfg is None or counter is None or max_tokens is None:
            return max_tokens
        prompt = int(sum(counter(str(m.get("content") or "")) + 8 for m in messages)) + 16
        return max(16, min(max_tokens, self.cfg.context - prompt))

    def fingerprint_info(self) -> dict[str, object]:
        return self.info or self._describe()

    def _describe(self) -> dict[str, object]:
        info: dict[str, object] = dict(self._client.fingerprint_info()) if self._client else {}
        cfg = self.cfg
        if cfg is not None:
            info.update({"context": cfg.context, "sampling": cfg.sampling, "engine": cfg.engine,
                         "tools": cfg.tools})
            if cfg.provenance:
                info["provenance"] = cfg.provenance
            if cfg.engine and cfg.args:
                info["server_args"] = cfg.args  # threads, K/V cache type: what makes rungs comparable
        if self.server is not None:
            info["load_s"] = self.server.load_s
            info.update(self.server.describe())
        info["sample_seeds"] = True  # sample i of a trial is sent seed + i (agenteval.models.sampling)
        info["warm_up_s"] = self.warm_up_s
        info["random_weights"] = self.random_weights
        info["host_cpu"] = _cpu_name()
        gpu = _gpu_name()
        if gpu:
            info["host_gpu"] = gpu
        return info


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
