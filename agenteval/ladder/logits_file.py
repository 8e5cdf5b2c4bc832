"""What both divergence methods share (llama-perplexity's and llama-cpp-python's): the reference
logits file they write and read, which positions of a chunk they score, and the figures they give.

The file is llama-perplexity's format: ``"_logits_"``, u32 n_ctx, i32 n_vocab, i32 n_chunk,
i32 tokens[n_chunk*n_ctx], then per scored position f32 scale, f32 min log-prob and one u16
code per vocabulary entry (log-probs below max-16 are cut): about 2 bytes x vocabulary x scored
positions, so 1.2 GB for a 150k vocabulary over 4,000 positions.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agenteval.errors import BadInputError

Method = Literal["llama-perplexity", "llama-cpp-python"]
MAGIC = b"_logits_"
HEADER = struct.Struct("<8sIii")  # magic, n_ctx, n_vocab, n_chunk


@dataclass(frozen=True)
class Divergence:
    mean_kl: float
    median_kl: float | None
    p99_kl: float | None
    max_kl: float | None
    top1_agreement: float  # 0..1: share of scored positions where the rung's argmax token == the reference's
    tokens: int  # positions scored
    perplexity: float | None  # the rung's perplexity on the text
    reference_perplexity: float | None
    method: str  # "llama-perplexity" or "llama-cpp-python"


def scored_per_chunk(context: int) -> int:
    """Positions scored in one chunk: ``context//2 .. context-2``."""
    return context - 1 - context // 2


def row_codes(vocab: int) -> int:
    """u16 values of one scored position in the reference file: f32 scale and minimum, then
    one code per vocabulary entry, padded to an even count."""
    return 2 * ((vocab + 1) // 2) + 4


def logits_header(context: int, vocab: int, chunks: int) -> bytes:
    """The first bytes of a reference file; the chunks' tokens and scored rows follow."""
    return HEADER.pack(MAGIC, context, vocab, chunks)


@dataclass(frozen=True)
class ReferenceLogits:
    path: Path
    context: int
    chunks: int
    vocab: int
    method: Method

    @property
    def tokens(self) -> int:
        return self.chunks * scored_per_chunk(self.context)


def logits_file_bytes(chunks: int, context: int, vocab: int) -> int:
    return HEADER.size + chunks * context * 4 + chunks * scored_per_chunk(context) * row_codes(vocab) * 2


def read_logits_header(path: Path) -> tuple[int, int, int]:
    """(context, vocab, chunks) of a reference file; BadInputError when it is not one."""
    with open(path, "rb") as f:
        raw = f.read(HEADER.size)
    if len(raw) < HEADER.size or raw[:8] != MAGIC:
        raise BadInputError(f"{path}: not a reference logits file; delete it and run again")
    _, context, vocab, chunks = HEADER.unpack(raw)
    return context, vocab, chunks
