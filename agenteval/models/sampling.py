"""Each sample its own seed: a trial's model calls are sent the configured seed plus the
trial's sample index, the same on every model. At temperature > 0 the samples of a variant
are then independent draws, and sample i of one model is paired with sample i of another by
the seed both were sent (what a quantization ladder's McNemar test pairs). At temperature 0
the seed changes nothing: greedy samples repeat one decode.

The index travels in a context variable set around the agent phase, so no client, plugin or
graph node needs a new parameter; LangGraph runs nodes in the caller's context.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

_SAMPLE: ContextVar[int] = ContextVar("agenteval_sample_index", default=0)


@contextmanager
def sample_index(index: int) -> Iterator[None]:
    """Model calls made inside are sent ``seed + index``."""
    token = _SAMPLE.set(index)
    try:
        yield
    finally:
        _SAMPLE.reset(token)


def for_this_sample(sampling: Mapping[str, object]) -> dict[str, object]:
    """The sampling parameters of one call: an integer seed moved on by the sample index."""
    out = dict(sampling)
    seed = out.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        out["seed"] = seed + _SAMPLE.get()
    return out
