"""``engine = "llamacpp"``: llama-cpp-python's OpenAI-compatible server on a
GGUF file. It streams no usage and no timings, but prints llama.cpp's own
perf report to its log after each request; those figures replace tokenizer
estimates (``complete_call``)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from agenteval.models.base import TokenCounter
from agenteval.models.chat import CallStop, ChatResponse
from agenteval.serving.servers import ManagedServer, lazy_counter, package_version

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


def use_server_perf(resp: ChatResponse, perf: dict[str, float]) -> None:
    """llama.cpp's own counts replace tokenizer estimates. Each sent token but the last was
    evaluated in a one-token run; a one-token prompt remainder (the rest came from the prompt
    cache) is such a run too, and llama.cpp then prints the prompt as 1 token; the token
    sampled after the last run is sent only when the answer stopped at max_tokens (at
    end-of-text it is not sent)."""
    if "eval_n" not in perf:
        return
    call = resp.call
    call.server_timings = dict(perf)
    cached_prompt = int(perf.get("prompt_n", 0)) <= 1
    call.prompt_tokens = int(perf.get("prompt_total_n") or perf.get("prompt_n") or 0) or call.prompt_tokens
    call.completion_tokens = (int(perf["eval_n"]) - (1 if cached_prompt else 0)
                              + (1 if resp.finish_reason == "length" else 0))
    call.tokens_estimated = False
    if call.decode_s:
        call.decode_tokens_per_s = call.completion_tokens / call.decode_s


_log_callback: list[object] = []  # keeps the ctypes callback alive while llama.cpp holds it


def quiet_llama_logs() -> None:
    """Send llama.cpp's in-process log (e.g. the n_ctx warning of a vocab-only load) to Python
    logging at debug level instead of the user's console: llama-cpp-python's own callback
    misreads newer llama.cpp log levels and prints warnings despite verbose=False."""
    if _log_callback:
        return
    import ctypes
    import logging

    import llama_cpp

    logger = logging.getLogger("agenteval.llama_cpp")

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        logger.debug(text.decode("utf-8", errors="replace").rstrip())

    _log_callback.append(forward)
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))


def _vocabulary_counter(path: Path) -> TokenCounter:
    """Tokens by the GGUF's own vocabulary, loaded alone (no weights)."""
    import llama_cpp

    quiet_llama_logs()
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    return lambda t: len(vocab.tokenize(t.encode("utf-8"), add_bos=False, special=False))


class LlamaCppServer(ManagedServer):
    requires = ("llama_cpp", "agenteval[llamacpp]")
    needs_model_file = True

    def argv(self) -> list[str]:
        template = ["--chat_format", self.cfg.chat_template] if self.cfg.chat_template else []
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path or ""),
                "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.cfg.context),
                "--model_alias", self.served_name(), *template, *self.cfg.args]

    def default_template(self) -> str:
        return "llama-2 (llama-cpp-python's fallback)"

    def describe(self) -> dict[str, object]:
        return {"server": "llama-cpp-python", "server_version": package_version("llama_cpp_python"),
                **self.gguf_description()}

    def token_counter(self) -> TokenCounter | None:
        return lazy_counter(self.model_path, _vocabulary_counter)

    def call_mark(self) -> int:
        return self.log_size()

    def complete_call(self, resp: ChatResponse, mark: int) -> None:
        # a stream agenteval stopped (budget, loop guard) has no report of its own: its counts stay estimated
        if not resp.call.server_timings and resp.stop in (CallStop.complete, CallStop.length):
            use_server_perf(resp, self.perf_since(mark))

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
