"""The divergence figures without llama.cpp's binary: llama-cpp-python evaluates the chunks
and numpy scores them, writing and reading llama-perplexity's own reference file format
(``logits_file``) and scoring the same positions the same way, so both methods agree
(``divergence`` picks one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agenteval.errors import BadInputError
from agenteval.ladder.logits_file import (HEADER, Divergence, ReferenceLogits, logits_header, read_logits_header,
                                          row_codes, scored_per_chunk)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

_ROWS = 64  # positions handled at once: float64 rows of a 256k vocabulary are 2 MB each


def has_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


@dataclass(frozen=True)
class Tokens:
    ids: list[int]
    vocab: int
    bos: int | None  # the token each chunk starts with, when the model adds one


def tokenize(model: Path, text: str) -> Tokens | None:
    """The text as llama-perplexity tokenizes it (BOS when the model adds one, specials as
    plain text, one trailing newline dropped as ``-f`` does); None without llama-cpp-python."""
    if not has_llama_cpp():
        return None
    import llama_cpp

    from agenteval.serving.engines.llamacpp import quiet_llama_logs

    quiet_llama_logs()
    try:
        vocab_only = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    except ValueError as e:
        raise BadInputError(f"{model}: llama.cpp cannot load it ({e})") from None
    prompt = text.removesuffix("\n")
    ids = vocab_only.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
    return Tokens(ids=list(ids), vocab=vocab_only.n_vocab(),
                   bos=vocab_only.token_bos() if llama_adds_bos(vocab_only) else None)


def _open_llama(model: Path, context: int, threads: int, kv: str | None) -> Any:
    import llama_cpp

    from agenteval.serving.engines.llamacpp import quiet_llama_logs

    quiet_llama_logs()
    cache_type = int(getattr(llama_cpp, f"GGML_TYPE_{kv.upper()}")) if kv else None  # None: llama.cpp's f16
    try:
        # flash attention as llama-perplexity's "auto" picks on CPU, and a quantized V cache needs it
        return llama_cpp.Llama(model_path=str(model), n_ctx=context, n_batch=context, n_ubatch=min(context, 512),
                               logits_all=True, n_threads=threads, n_threads_batch=threads, flash_attn=True,
                               type_k=cache_type, type_v=cache_type, verbose=False)
    except ValueError as e:
        raise BadInputError(f"{model}: llama.cpp cannot load it ({e})") from None


def _chunk_logits(llm: Any, chunk: list[int], bos: int | None) -> NDArray[np.float32]:
    """Logits at the scored positions of one chunk (rows predict chunk[first+1:])."""
    import numpy as np

    context = len(chunk)
    llm.reset()
    llm.eval([bos if bos is not None else chunk[0], *chunk[1:]])
    return np.array(llm.scores[context // 2:context - 1], dtype=np.float32)


def encode_log_probs(logits: NDArray[np.float32]) -> NDArray[np.uint16]:
    """Rows of logits as llama-perplexity stores them: f32 scale and min log-prob, then u16
    codes of the logits over the top 16 nats (what lies lower is cut to the minimum)."""
    import numpy as np

    rows, vocab = logits.shape
    top = logits.max(axis=1)
    low = np.maximum(logits.min(axis=1), top - 16)
    log_sum = np.log(np.exp(logits - top[:, None]).astype(np.float64).sum(axis=1)).astype(np.float32)
    scale = ((top - low) / 65535.0).astype(np.float32)
    out = np.zeros((rows, row_codes(vocab)), dtype=np.uint16)
    out[:, :4] = np.stack([scale, low - top - log_sum], axis=1).astype(np.float32).view(np.uint16)
    safe = np.where(scale > 0, scale, 1.0)[:, None]
    codes = np.where(logits > low[:, None], np.rint((logits - low[:, None]) / safe), 0)
    out[:, 4:4 + vocab] = np.where(scale[:, None] > 0, codes, 0).astype(np.uint16)
    return out


def decode_log_probs(rows: NDArray[np.uint16], vocab: int) -> NDArray[np.float64]:
    import numpy as np

    head = np.ascontiguousarray(rows[:, :4]).view(np.float32).astype(np.float64)
    return head[:, :1] * rows[:, 4:4 + vocab] + head[:, 1:2]


def python_reference(model: Path, tokens: Tokens, context: int, chunks: int, threads: int, out_path: Path) -> None:
    import numpy as np

    llm = _open_llama(model, context, threads, None)
    with open(out_path, "wb") as out:
        out.write(logits_header(context, tokens.vocab, chunks))
        out.write(np.asarray(tokens.ids[:chunks * context], dtype=np.int32).tobytes())
        for i in range(chunks):
            logits = _chunk_logits(llm, tokens.ids[i * context:(i + 1) * context], tokens.bos)
            out.writelines(encode_log_probs(logits[r:r + _ROWS]).tobytes() for r in range(0, len(logits), _ROWS))


@dataclass
class _Scores:
    kl: list[NDArray[np.float64]]
    nll: list[NDArray[np.float64]]
    nll_base: list[NDArray[np.float64]]
    same_top: list[NDArray[np.bool_]]


def score_rows(logits: NDArray[np.float32], base: NDArray[np.uint16], next_tokens: NDArray[np.int32],
               scores: _Scores) -> None:
    """KL(reference || rung), both NLLs and top-1 agreement of scored rows, as llama-perplexity
    counts them (reference log-probs under -16 left out of the KL sum)."""
    import numpy as np

    vocab = logits.shape[1]
    log_p = logits.astype(np.float64)
    log_p -= log_p.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    log_base = decode_log_probs(base, vocab)
    p_base = np.where(log_base > -16.0, np.exp(log_base), 0.0)
    rows = np.arange(len(next_tokens))
    scores.kl.append((p_base * (log_base - log_p)).sum(axis=1))
    scores.nll.append(-log_p[rows, next_tokens])
    scores.nll_base.append(-log_base[rows, next_tokens])
    scores.same_top.append(logits.argmax(axis=1) == log_base.argmax(axis=1))


def python_measure(ref: ReferenceLogits, rung: Path, kv: str | None, threads: int) -> Divergence:
    import numpy as np

    context, vocab, chunks = read_logits_header(ref.path)
    first, scored = context // 2, scored_per_chunk(context)
    row = row_codes(vocab)
    tokens = np.fromfile(ref.path, dtype=np.int32, count=chunks * context, offset=HEADER.size)
    base = np.memmap(ref.path, dtype=np.uint16, mode="r", offset=HEADER.size + tokens.nbytes,
                     shape=(chunks, scored, row))
    llm = _open_llama(rung, context, threads, kv)
    if llm.n_vocab() != vocab:
        raise BadInputError(f"{rung.name} has a vocabulary of {llm.n_vocab()} tokens and the reference {vocab}: "
                            "a rung must be quantized from the reference")
    bos_id = llm.token_bos() if llama_adds_bos(llm) else None
    scores = _Scores([], [], [], [])
    for i in range(chunks):
        chunk = tokens[i * context:(i + 1) * context]
        logits, nxt = _chunk_logits(llm, [int(t) for t in chunk], bos_id), chunk[first + 1:]
        for r in range(0, scored, _ROWS):
            score_rows(logits[r:r + _ROWS], np.asarray(base[i, r:r + _ROWS]), nxt[r:r + _ROWS], scores)
    kl = np.concatenate(scores.kl)
    return Divergence(mean_kl=float(kl.mean()), median_kl=float(np.median(kl)), p99_kl=float(np.percentile(kl, 99)),
                      max_kl=float(kl.max()), top1_agreement=float(np.concatenate(scores.same_top).mean()),
                      tokens=int(kl.size), perplexity=float(np.exp(np.concatenate(scores.nll).mean())),
                      reference_perplexity=float(np.exp(np.concatenate(scores.nll_base).mean())),
                      method="llama-cpp-python")


def llama_adds_bos(llm: Any) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model)))
