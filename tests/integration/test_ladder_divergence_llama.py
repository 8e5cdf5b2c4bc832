"""Divergence on real llama.cpp, no Docker: the tiny random-weight model (F16 reference, rungs
quantized here by llama.cpp) measured by llama-perplexity and by llama-cpp-python, and real
SmolLM2 Q4_1 against a Q4_0 requantization of it over two seed tasks' instructions.

They need llama-perplexity (``bash .ci/llama-server.sh``, or $AGENTEVAL_LLAMA_PERPLEXITY)
and llama-cpp-python; without them the requirement gate
(tests/conftest.py) skips with the reason, or fails in CI."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from agenteval.errors import BadInputError
from agenteval.ladder import divergence as dv
from agenteval.ladder.divergence import (
    MIN_TOKENS,
    Divergence,
    DivergenceMeter,
    DivergenceText,
    divergence_text,
)
from agenteval.task import load_task
from tests.conftest import missing

REPO = Path(__file__).resolve().parents[2]
RUNGS = ("Q8_0", "Q4_K_M", "Q4_0")


@pytest.fixture(scope="session")
def perplexity_tool() -> Path:
    found = dv.find_perplexity_tool()
    if found is None or not os.access(found, os.X_OK):
        missing("llama-server", "no llama-perplexity binary (run: bash .ci/llama-server.sh, or set AGENTEVAL_LLAMA_PERPLEXITY "
                 "to it or its folder)")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The random-weight model as F16 and as each rung, quantized by llama.cpp."""
    if importlib.util.find_spec("llama_cpp") is None:
        missing("llamacpp", "llama_cpp is not installed")
    from agenteval.gguf.write import quantize
    from agenteval.serving.testmodel import create_test_model

    folder = tmp_path_factory.mktemp("tiny")
    try:
        create_test_model(folder, gguf="F16")
    except BadInputError as e:
        missing("serve", str(e))
    files = {"F16": folder / "model-f16.gguf"}
    for quant in RUNGS:
        files[quant] = quantize(files["F16"], folder / f"rung-{quant}.gguf", quant)
    return files


@pytest.fixture(scope="session")
def seed_text() -> DivergenceText:
    return divergence_text([load_task(REPO / "tasks" / name) for name in ("flappy", "folder", "translate")])


@pytest.fixture(scope="module")
def tool_meter(perplexity_tool: Path, tiny: dict[str, Path], seed_text: DivergenceText,
               tmp_path_factory: pytest.TempPathFactory) -> DivergenceMeter:
    return DivergenceMeter(tiny["F16"], seed_text, tmp_path_factory.mktemp("kld-tool"), log=lambda m: None)


@pytest.fixture(scope="module")
def tool_rungs(tool_meter: DivergenceMeter, tiny: dict[str, Path]) -> dict[str, Divergence]:
    return {quant: tool_meter.measure(tiny[quant]) for quant in ("F16", *RUNGS)}


@pytest.fixture(scope="module")
def python_meter(tiny: dict[str, Path], seed_text: DivergenceText,
                 tmp_path_factory: pytest.TempPathFactory) -> DivergenceMeter:
    with pytest.MonkeyPatch.context() as mp:  # the meter picks its method when made: as if no binary existed
        mp.setattr(dv, "find_perplexity_tool", lambda: None)
        return DivergenceMeter(tiny["F16"], seed_text, tmp_path_factory.mktemp("kld-python"), log=lambda m: None)


def test_reference_against_itself_is_zero(tool_rungs: dict[str, Divergence]) -> None:
    same = tool_rungs["F16"]
    assert same.method == "llama-perplexity" and same.tokens >= MIN_TOKENS
    assert abs(same.mean_kl) < 1e-5 and same.max_kl is not None and same.max_kl < 1e-4
    # not exactly 1.0: the reference file keeps log-probs as 16-bit codes, and on this random
    # model's nearly flat distributions a few top-2 logits fall on one code (first index wins)
    assert same.top1_agreement >= 0.999
    assert same.perplexity == pytest.approx(same.reference_perplexity, rel=1e-5)


def test_kl_rises_and_agreement_falls_as_bits_fall(tool_rungs: dict[str, Divergence]) -> None:
    q8, q4km, q4 = (tool_rungs[q] for q in RUNGS)
    assert all(d.tokens == q8.tokens >= MIN_TOKENS for d in (q4km, q4))
    assert 0 < q8.mean_kl < q4km.mean_kl < q4.mean_kl
    assert 1.0 > q8.top1_agreement > q4km.top1_agreement > q4.top1_agreement
    for d in (q8, q4km, q4):
        assert d.median_kl is not None and d.p99_kl is not None and d.max_kl is not None
        assert d.median_kl <= d.p99_kl <= d.max_kl and d.perplexity and d.reference_perplexity


def test_quantized_kv_cache_shows_its_own_loss(tool_meter: DivergenceMeter, tool_rungs: dict[str, Divergence],
                                              tiny: dict[str, Path]) -> None:
    kv = tool_meter.measure(tiny["F16"], kv_cache="q4_0")
    assert kv.mean_kl > 1e-5 and kv.top1_agreement < 0.99
    assert kv.mean_kl > 10 * max(tool_rungs["F16"].mean_kl, 1e-7)


def test_both_methods_agree(tool_rungs: dict[str, Divergence], python_meter: DivergenceMeter,
                            tiny: dict[str, Path]) -> None:
    """Same positions, same definitions: here both run the same llama.cpp kernels, and agree
    to the tool's printed precision (6 decimals of KL, 3 of a percent). The bounds leave room
    for builds whose kernels round differently."""
    for quant in ("Q8_0", "Q4_0"):
        tool, python = tool_rungs[quant], python_meter.measure(tiny[quant])
        assert python.method == "llama-cpp-python" and python.tokens == tool.tokens
        assert python.mean_kl == pytest.approx(tool.mean_kl, rel=0.05, abs=2e-6)
        assert abs(python.top1_agreement - tool.top1_agreement) < 0.01
        assert python.perplexity == pytest.approx(tool.perplexity, rel=1e-3)
        assert python.reference_perplexity == pytest.approx(tool.reference_perplexity, rel=1e-3)


def test_python_method_against_itself_and_a_kv_cache(python_meter: DivergenceMeter, tiny: dict[str, Path]) -> None:
    same = python_meter.measure(tiny["F16"])
    assert abs(same.mean_kl) < 1e-5 and same.top1_agreement >= 0.999
    assert python_meter.measure(tiny["F16"], kv_cache="q4_0").mean_kl > 1e-5


def test_resumed_meter_reuses_the_reference_logits(tool_meter: DivergenceMeter, tool_rungs: dict[str, Divergence],
                                                   tiny: dict[str, Path], seed_text: DivergenceText) -> None:
    made = tool_meter.prepare()
    before = made.path.stat()
    said: list[str] = []
    resumed = DivergenceMeter(tiny["F16"], seed_text, tool_meter.work_dir, log=said.append)
    assert resumed.prepare() == made and any("reusing" in s for s in said)
    again = resumed.measure(tiny["Q4_0"])
    after = made.path.stat()
    assert (after.st_mtime_ns, after.st_ino, after.st_size) == (before.st_mtime_ns, before.st_ino, before.st_size)
    assert again == tool_rungs["Q4_0"]


def test_too_short_text_fails_before_any_pass(perplexity_tool: Path, tiny: dict[str, Path], tmp_path: Path) -> None:
    short = divergence_text([load_task(REPO / "tasks" / "flappy")])
    with pytest.raises(BadInputError, match=r"the divergence text has \d+ tokens; at least 4096 are needed"):
        DivergenceMeter(tiny["F16"], short, tmp_path, log=lambda m: None).prepare()
    assert not list(tmp_path.glob("*.log"))


def test_smollm2_q4_0_requantized(perplexity_tool: Path, tmp_path: Path) -> None:
    """Real weights: Q4_1 as the reference, Q4_0 requantized from it, over the folder and
    translate instructions (capped at MIN_TOKENS scored positions to keep it under a minute)."""
    from agenteval.config import model_cache_dir
    from agenteval.serving.downloads import DOWNLOADS

    spec = DOWNLOADS["smollm2"]
    source = Path(os.environ.get("AGENTEVAL_REAL_MODELS") or model_cache_dir()) / spec.file
    if not source.is_file() or source.stat().st_size != spec.size:
        missing("real-models", f"SmolLM2 is not at {source} (run: bash .ci/real-models.sh, and set AGENTEVAL_REAL_MODELS)")
    if importlib.util.find_spec("llama_cpp") is None:
        missing("llamacpp", "llama_cpp is not installed")
    import llama_cpp

    rung = tmp_path / "SmolLM2-135M-Instruct.Q4_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize = 2, True  # LLAMA_FTYPE_MOSTLY_Q4_0 from Q4_1
    assert llama_cpp.llama_model_quantize(str(source).encode(), str(rung).encode(), params) == 0
    text = divergence_text([load_task(REPO / "tasks" / name) for name in ("folder", "translate")])
    said: list[str] = []
    meter = DivergenceMeter(source, text, tmp_path / "kld", max_tokens=MIN_TOKENS, log=said.append)
    start = time.monotonic()
    meter.prepare()
    reference_s = time.monotonic() - start
    d = meter.measure(rung)
    print(f"\nSmolLM2 Q4_1 -> Q4_0: mean KL {d.mean_kl:.4f}, median {d.median_kl}, p99 {d.p99_kl}, max {d.max_kl}, "
          f"top-1 {d.top1_agreement:.2%}, PPL {d.reference_perplexity} -> {d.perplexity}, {d.tokens} positions; "
          f"reference pass {reference_s:.1f} s, rung pass {time.monotonic() - start - reference_s:.1f} s")
    assert d.tokens >= MIN_TOKENS and d.method == "llama-perplexity"
    assert 0.02 < d.mean_kl < 2.0 and 0.4 < d.top1_agreement < 0.97
    assert d.perplexity is not None and d.reference_perplexity is not None and d.perplexity > d.reference_perplexity
