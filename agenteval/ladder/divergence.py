"""How far a rung's next-token distributions drift from the reference rung's, over one fixed
text: mean/median/99th-percentile/max KL divergence and top-1 agreement. These show a
quantization's quality loss even where every rung fails every task.

The text is cut into chunks of ``context`` tokens (the first token of each replaced by BOS
when the model adds one), and in each chunk only the second half is scored: positions
``context//2 .. context-2``, each predicting the next token, so every scored prediction has
at least half a chunk of context. A text of N tokens thus scores
``(N // context) * (context - 1 - context//2)`` positions, about N/2: MIN_TOKENS needs
4,096 tokens of text at any power-of-two context from 128 to 2048.

Two methods give the same figures: llama.cpp's ``llama-perplexity`` (``--kl-divergence-base``
on the reference saves its log-probabilities, ``--kl-divergence`` on a rung compares), found
as ``find_perplexity_tool`` says, its output in a log in ``work_dir``; else llama-cpp-python
with numpy, which writes and reads the same reference file and scores the same positions
the same way.

The reference file (llama-perplexity's format, ``logits_file``) lives in ``work_dir`` with a
JSON sidecar naming what it was made from, and a later process (a resumed ladder) reuses it
when method, reference file (path, size, mtime), text, context and max_tokens match.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agenteval.errors import BadInputError
from agenteval.ladder.logits_file import (Divergence, Method, ReferenceLogits, logits_file_bytes, read_logits_header,
                                          scored_per_chunk)
from agenteval.ladder.rung_config import KV_TYPES
from agenteval.logs import Log

if TYPE_CHECKING:
    from agenteval.ladder.divergence_numpy import Tokens
    from agenteval.task.folder import Task

MIN_TOKENS = 2000
SMALLEST_CONTEXT = 128
TOOL = "llama-perplexity"
ENV_TOOL = "AGENTEVAL_LLAMA_PERPLEXITY"
KV_CACHE_TYPES = tuple(KV_TYPES)
SIDECAR_FORMAT = 1  # bump when the sidecar or the logits file changes meaning


@dataclass(frozen=True)
class DivergenceText:
    text: str
    sha256: str  # full hex of the UTF-8 text
    origin: str  # "instructions of 3 tasks, 11 variants" or "file notes.txt"


def text_of(text: str, origin: str) -> DivergenceText:
    return DivergenceText(text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), origin=origin)


def divergence_text(tasks: Sequence[Task], text_file: Path | None = None) -> DivergenceText:
    """The file's text, else every task's instruction as the agent sees it for each variant
    (tasks by name, variants in their declared order), each distinct text once."""
    if text_file is not None:
        try:
            return text_of(Path(text_file).read_text(encoding="utf-8"), f"file {text_file}")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInputError(f"--kl-text {text_file}: cannot read it as UTF-8 text ({e})") from None
    parts: dict[str, None] = {}  # insertion-ordered set
    variants = 0
    ordered = sorted(tasks, key=lambda t: t.name)
    for task in ordered:
        for variant in task.variants():
            variants += 1
            rendered = task.render_instruction(variant).strip("\n")
            if rendered.strip():
                parts.setdefault(rendered)
    if not parts:
        raise BadInputError("no text to measure divergence on: the tasks have no instructions; pass --kl-text FILE")
    origin = f"instructions of {_count(len(ordered), 'task')}, {_count(variants, 'variant')}"
    return text_of("\n\n".join(parts), origin)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def scored_positions(tokens: int, context: int) -> int:
    """Positions scored on a text of ``tokens`` tokens: whole chunks only, and in each the
    second half less its last token (nothing follows it). llama-perplexity refuses a text
    shorter than two chunks."""
    if context < 2 or tokens < 2 * context:
        return 0
    return (tokens // context) * scored_per_chunk(context)


def _contexts(preferred: int) -> list[int]:
    """The preferred context, then halvings down to SMALLEST_CONTEXT: a smaller context
    wastes less of the text's tail and needs only two chunks."""
    out = [preferred]
    while out[-1] // 2 >= SMALLEST_CONTEXT:
        out.append(out[-1] // 2)
    return out


def needed_tokens(preferred: int) -> int:
    """The fewest tokens of text that score MIN_TOKENS at some context choose_context tries."""
    def need(c: int) -> int:
        per_chunk = scored_per_chunk(c)
        return max(2 * c, -(-MIN_TOKENS // per_chunk) * c) if per_chunk > 0 else 2**62
    return min(need(c) for c in _contexts(preferred))


def choose_context(tokens: int, preferred: int = 512) -> int:
    """The largest context (preferred, then halvings) whose scored positions reach MIN_TOKENS."""
    for context in _contexts(preferred):
        if scored_positions(tokens, context) >= MIN_TOKENS:
            return context
    raise too_short(tokens, preferred)


def too_short(tokens: int, preferred: int, fewer: bool = False) -> BadInputError:
    return BadInputError(f"the divergence text has {'fewer than ' if fewer else ''}{tokens} tokens; at least "
                         f"{needed_tokens(preferred)} are needed to score {MIN_TOKENS}: pass --kl-text FILE "
                         "with more text")


def find_perplexity_tool() -> Path | None:
    """``$AGENTEVAL_LLAMA_PERPLEXITY``, PATH, beside llama-server, or its build cache."""
    from agenteval.serving.engines.llama_server import find_llama_tool

    return find_llama_tool(TOOL, ENV_TOOL)


# ---- llama-perplexity's output -------------------------------------------------------------

_NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf))"
_KL_FIGURES = {
    "mean_kl": r"Mean\s+KLD:\s*", "median_kl": r"Median\s+KLD:\s*", "p99_kl": r"99\.0%\s+KLD:\s*",
    "max_kl": r"Maximum KLD:\s*", "top1": r"Same top p:\s*", "perplexity": r"Mean PPL\(Q\)\s*:\s*",
    "reference_perplexity": r"Mean PPL\(base\)\s*:\s*",
}
_KL_CHUNKS = re.compile(r"computing over (\d+) chunks, n_ctx=(\d+)")
_BASE_CHUNKS = re.compile(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+)")
_TOO_SHORT = re.compile(r"tokenizes to only (\d+) tokens")
_OTHER_VOCAB = re.compile(r"inconsistent vocabulary \((\d+) vs (\d+)\)")


def _figure(pattern: str, log: str) -> float | None:
    found = re.findall(pattern + _NUM, log)
    return float(found[-1]) if found else None


def parse_kl_log(log: str) -> Divergence | None:
    """The figures of one ``llama-perplexity --kl-divergence`` run; None when it printed no
    final statistics (it failed, or scored under 100 positions)."""
    figures = {name: _figure(pattern, log) for name, pattern in _KL_FIGURES.items()}
    chunks = _KL_CHUNKS.findall(log)
    mean_kl, top1 = figures["mean_kl"], figures["top1"]
    if mean_kl is None or top1 is None or not chunks:
        return None
    n_chunk, n_ctx = (int(v) for v in chunks[-1])
    return Divergence(mean_kl=mean_kl, median_kl=figures["median_kl"], p99_kl=figures["p99_kl"],
                      max_kl=figures["max_kl"], top1_agreement=top1 / 100.0,
                      tokens=n_chunk * scored_per_chunk(n_ctx), perplexity=figures["perplexity"],
                      reference_perplexity=figures["reference_perplexity"], method="llama-perplexity")


def log_tail(log: str, lines: int = 3) -> str:
    """The last lines of a log, as one line for an error message."""
    kept = [ln.strip() for ln in log.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


# ---- the reference file ------------------------------------------------------------------

def reference_identity(reference: Path, text: DivergenceText, context: int, method: Method) -> dict[str, Any]:
    """What a reference file depends on; size and mtime stand in for hashing a multi-GB GGUF."""
    st = reference.stat()
    return {"format": SIDECAR_FORMAT, "method": method, "reference": str(reference.resolve()),
            "reference_bytes": st.st_size, "reference_mtime_ns": st.st_mtime_ns, "text_sha256": text.sha256,
            "context": context}


def load_sidecar(sidecar: Path, identity: dict[str, Any]) -> ReferenceLogits | None:
    """The reference file the sidecar describes, when it was made from ``identity`` and is
    whole; None otherwise (missing, another source, cut short by a kill)."""
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        path = sidecar.with_name(str(meta["file"]))
        if meta.get("identity") != identity or path.stat().st_size != int(meta["bytes"]):
            return None
        return ReferenceLogits(path=path, context=int(meta["context"]), chunks=int(meta["chunks"]),
                               vocab=int(meta["vocab"]), method=identity["method"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_sidecar(sidecar: Path, identity: dict[str, Any], ref: ReferenceLogits, seconds: float) -> None:
    meta = {"identity": identity, "file": ref.path.name, "bytes": ref.path.stat().st_size, "context": ref.context,
            "chunks": ref.chunks, "vocab": ref.vocab, "scored_tokens": ref.tokens, "seconds": round(seconds, 2)}
    tmp = sidecar.with_name(sidecar.name + ".partial")
    tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    tmp.replace(sidecar)


# ---- the meter ---------------------------------------------------------------------------

class DivergenceMeter:
    """Reference logits computed once (kept in work_dir), then one measure() per rung."""

    def __init__(self, reference: Path, text: DivergenceText, work_dir: Path, *, context: int = 512,
                 threads: int | None = None, max_tokens: int | None = None,
                 log: Log = print) -> None:
        """``max_tokens`` scores only the first chunks of a long text, enough for that many
        positions: the reference file and every rung's pass grow with the text."""
        if context < SMALLEST_CONTEXT:
            raise BadInputError(f"divergence context {context} is too small: use at least {SMALLEST_CONTEXT}")
        if not Path(reference).is_file():
            raise BadInputError(f"{reference}: no such reference model file")
        if max_tokens is not None and max_tokens < MIN_TOKENS:
            raise BadInputError(f"max_tokens {max_tokens} is under the {MIN_TOKENS} positions a divergence needs")
        self.reference, self.text, self.work_dir = Path(reference), text, Path(work_dir)
        self.context, self.max_tokens, self.log = context, max_tokens, log
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self.tool = find_perplexity_tool()
        if self.tool is not None and not os.access(self.tool, os.X_OK):
            raise BadInputError(f"{self.tool} is not an executable file: fix or unset {ENV_TOOL}")
        if self.tool is None and not divergence_numpy().has_llama_cpp():
            raise BadInputError(f"measuring divergence needs llama.cpp's {TOOL} (build it with 'bash "
                                f".ci/llama-server.sh' or set {ENV_TOOL}) or llama-cpp-python: pip install "
                                "'agenteval[llamacpp]'")
        self.method: Method = "llama-perplexity" if self.tool is not None else "llama-cpp-python"
        self._ref: ReferenceLogits | None = None
        self.reference_s = 0.0  # seconds this meter spent on the reference's logits (0: reused)
        # what the reference logits are made from; its hash names every file this meter writes,
        # so ladders of other texts or references never read each other's logs
        self._identity = {**reference_identity(self.reference, self.text, self.context, self.method),
                          "max_tokens": self.max_tokens}
        self._key = hashlib.sha256(json.dumps(self._identity, sort_keys=True).encode()).hexdigest()[:16]

    def prepare(self) -> ReferenceLogits:
        """The reference logits: reused from work_dir when a previous run left them whole,
        else computed now. measure() calls it; call it first to fail early on a short text."""
        if self._ref is None:
            self._ref = self._load_or_make()
        return self._ref

    def measure(self, rung: Path, *, kv_cache: str | None = None) -> Divergence:
        """The rung against the reference; ``kv_cache`` runs the rung with that K and V cache
        type (the reference always had f16), so a KV-cache setting shows its own loss."""
        if kv_cache is not None and kv_cache.lower() not in KV_CACHE_TYPES:
            raise BadInputError(f"unknown KV cache type {kv_cache!r} (known: {', '.join(KV_CACHE_TYPES)})")
        if not Path(rung).is_file():
            raise BadInputError(f"{rung}: no such rung model file")
        ref = self.prepare()
        kv = kv_cache.lower() if kv_cache else None
        start = time.monotonic()
        if self.tool is not None:
            result = self._measure_with_tool(self.tool, ref, Path(rung), kv)
        else:
            result = divergence_numpy().python_measure(ref, Path(rung), kv, self.threads)
            _write_figures(self._log_path(Path(rung), kv), result)
        self.log(f"divergence of {Path(rung).name}{f' (KV cache {kv})' if kv else ''}: mean KL "
                 f"{result.mean_kl:.6f}, top-1 agreement {result.top1_agreement:.2%} over {result.tokens} "
                 f"positions ({time.monotonic() - start:.1f} s, {self.method})")
        return result

    def _log_path(self, rung: Path, kv: str | None) -> Path:
        return self.work_dir / f"divergence-{self._key}-{rung.name}{f'-kv-{kv}' if kv else ''}.log"

    def _load_or_make(self) -> ReferenceLogits:
        """Under a lock, so a second ladder on the same reference waits and then reuses."""
        import fcntl

        self.work_dir.mkdir(parents=True, exist_ok=True)
        identity, key = self._identity, self._key
        with open(self.work_dir / f"reference-{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            sidecar = self.work_dir / f"reference-{key}.json"
            found = load_sidecar(sidecar, identity)
            if found is not None:
                self.log(f"divergence: reusing the reference logits in {found.path}")
                return found
            start = time.monotonic()
            ref = self._make(self.work_dir / f"reference-{key}.logits")
            seconds = time.monotonic() - start
            self.reference_s = round(seconds, 3)
            write_sidecar(sidecar, identity, ref, seconds)
        self.log(f"divergence: reference logits of {self.reference.name} over {self.text.origin}: {ref.chunks} "
                 f"chunks of {ref.context} tokens, {ref.tokens} positions scored, "
                 f"{ref.path.stat().st_size / 1e6:.0f} MB in {ref.path} ({seconds:.1f} s)")
        return ref

    def _make(self, target: Path) -> ReferenceLogits:
        """Written under a temporary name and renamed once whole: a kill leaves no file to reuse."""
        tmp = target.with_name(target.name + ".partial")
        tokens = _tokenize(self.reference, self.text.text)
        if tokens is not None:
            self._check_space(tokens, choose_context(len(tokens.ids), self.context))
        try:
            if self.tool is not None:
                context = self._make_with_tool(self.tool, tmp, len(tokens.ids) if tokens else None)
            else:
                assert tokens is not None
                context = choose_context(len(tokens.ids), self.context)
                chunks = min(len(tokens.ids) // context, self._chunk_cap(context))
                divergence_numpy().python_reference(self.reference, tokens, context, chunks, self.threads, tmp)
            got_context, vocab, chunks = read_logits_header(tmp)
            if got_context != context or tmp.stat().st_size != logits_file_bytes(chunks, context, vocab):
                raise BadInputError(f"{tmp}: the reference logits file is incomplete; see {self._ref_log()}")
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return ReferenceLogits(path=target, context=context, chunks=chunks, vocab=vocab, method=self.method)

    def _check_space(self, tokens: "Tokens", context: int) -> None:
        need = logits_file_bytes(min(len(tokens.ids) // context, self._chunk_cap(context)), context, tokens.vocab)
        free = shutil.disk_usage(self.work_dir).free
        if free < need + (64 << 20):
            raise BadInputError(f"the reference logits need {need / 1e9:.1f} GB in {self.work_dir} and "
                                f"{free / 1e9:.1f} GB are free: free space, or pass a shorter --kl-text FILE")

    def _chunk_cap(self, context: int) -> int:
        """The most chunks to score: all of the text, or enough for max_tokens positions."""
        return 2**31 - 1 if self.max_tokens is None else -(-self.max_tokens // scored_per_chunk(context))

    def _ref_log(self) -> Path:
        return self.work_dir / f"divergence-{self._key}-reference-{self.reference.name}.log"

    def _make_with_tool(self, tool: Path, tmp: Path, tokens: int | None) -> int:
        """Runs the reference pass and returns its context. Without a tokenizer in-process the
        text's length is unknown: a text under two chunks makes the tool say how many tokens it
        has (then the pass runs at a context that fits); one that scores too few positions is
        tried at the next smaller context."""
        contexts = [choose_context(tokens, self.context)] if tokens is not None else _contexts(self.context)
        fewer_than = 0
        for context in contexts:
            log = self._tool_reference_pass(tool, tmp, context)
            short = _TOO_SHORT.search(log)
            if short and tokens is None:
                return self._make_with_tool(tool, tmp, int(short[1]))
            made = _BASE_CHUNKS.search(log)
            if short or made is None:
                raise BadInputError(f"{TOOL} made no reference logits for {self.reference.name}: {log_tail(log)} "
                                    f"(log: {self._ref_log()})")
            if int(made[1]) * scored_per_chunk(context) >= MIN_TOKENS:
                return context
            fewer_than = (int(made[1]) + 1) * context
        raise too_short(fewer_than, self.context, fewer=True)

    def _tool_reference_pass(self, tool: Path, tmp: Path, context: int) -> str:
        text_path = self.work_dir / f"divergence-text-{self.text.sha256[:16]}.txt"
        if not text_path.is_file():
            text_path.write_text(self.text.text, encoding="utf-8")
        argv = [str(tool), "-m", str(self.reference), "-f", str(text_path), "-c", str(context), "-b", str(context),
                "-t", str(self.threads), "--no-warmup", "--kl-divergence-base", str(tmp),
                *(["--chunks", str(self._chunk_cap(context))] if self.max_tokens else [])]
        return _run_tool(argv, self._ref_log(), f"the reference {self.reference.name}")

    def _measure_with_tool(self, tool: Path, ref: ReferenceLogits, rung: Path, kv: str | None) -> Divergence:
        kv_args = ["-ctk", kv, "-ctv", kv, "-fa", "on"] if kv else []
        argv = [str(tool), "-m", str(rung), "-c", str(ref.context), "-b", str(ref.context), "-t", str(self.threads),
                "--no-warmup", "--kl-divergence-base", str(ref.path), "--kl-divergence", *kv_args]
        log_path = self._log_path(rung, kv)
        for attempt in range(3):
            log = _run_tool(argv, log_path, rung.name)
            other = _OTHER_VOCAB.search(log)
            if other:
                raise BadInputError(f"{rung.name} has a vocabulary of {other[2]} tokens and the reference "
                                    f"{self.reference.name} {other[1]}: a rung must be quantized from the reference")
            result = parse_kl_log(log)
            if result is not None and result.tokens == ref.tokens:
                return result
            # llama.cpp logs from a worker thread; on a busy machine a run that exits 0 has been
            # seen to lose its last lines (the statistics): the same run again prints them.
            self.log(f"divergence of {rung.name}: {TOOL} printed no statistics (attempt {attempt + 1} of 3)")
        raise BadInputError(f"{TOOL} gave no KL divergence for {rung.name}: {log_tail(log)} (log: {log_path})")


def _run_tool(argv: list[str], log_path: Path, what: str) -> str:
    """Runs llama-perplexity with its output in ``log_path`` (never the console); its text."""
    with open(log_path, "wb") as out:
        try:
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                check=False).returncode
        except OSError as e:
            raise BadInputError(f"cannot run {argv[0]}: {e}") from None
    log = log_path.read_text(encoding="utf-8", errors="replace")
    if rc != 0:
        raise BadInputError(f"{TOOL} failed on {what} (exit {rc}): {log_tail(log)} (log: {log_path})")
    return log


def _write_figures(path: Path, result: Divergence) -> None:
    path.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")


def divergence_numpy() -> Any:
    """The llama-cpp-python + numpy method, imported only where it is used."""
    from agenteval.ladder import divergence_numpy as module

    return module


def _tokenize(model: Path, text: str) -> "Tokens | None":
    """The text as llama-perplexity tokenizes it; None without llama-cpp-python."""
    result: Tokens | None = divergence_numpy().tokenize(model, text)
    return result
