"""Ladder rungs made by real llama.cpp, no Docker: the tiny random test model written as an F16
GGUF, quantized to Q8_0, Q4_K_M and Q2_K by llama-quantize and by llama-cpp-python, cached,
requantized only when allowed, and never taken from a half-written file.

They need llama.cpp's llama-quantize (``bash .ci/llama-server.sh``, or
$AGENTEVAL_LLAMA_QUANTIZE) and llama-cpp-python (``pip install -e '.[llamacpp]'``); without them the requirement gate
(tests/conftest.py) skips with the reason, or fails in CI."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agenteval.errors import BadInputError
from agenteval.gguf.info import gguf_info
from agenteval.ladder import quantize
from agenteval.ladder.quantize import (
    ALIASES,
    IMATRIX_REQUIRED,
    NOMINAL_BPW,
    RungFile,
    SourceModel,
    find_quantizer,
    make_rung,
    plan_rungs,
    read_source,
    reference_rung,
    rung_path,
)
from tests.conftest import missing

REPO = Path(__file__).resolve().parents[2]
SLOW_FAKE = """#!/bin/sh
# writes part of a rung, says so, then hangs until killed
head -c 100000 "$1" > "$2"
touch "$FAKE_READY"
sleep 120
"""
CHILD = """
import sys
from pathlib import Path
from agenteval.ladder.quantize import make_rung, plan_rungs, read_source
source = read_source(Path(sys.argv[1]))
[plan] = plan_rungs(source, ["Q4_K_M"], allow_requantize=False, imatrix=None)
make_rung(source, plan, cache_dir=Path(sys.argv[2]), log=lambda m: None)
"""


def quiet(message: str) -> None:
    """make_rung's progress lines are not what these tests check."""


@pytest.fixture(autouse=True)
def ladder_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "ladder-cache"
    monkeypatch.setenv("AGENTEVAL_LADDER_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def f16_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Llama, written once per session as an F16 GGUF."""
    from agenteval.gguf.write import write_gguf
    from agenteval.serving.testmodel import create_test_model

    folder = tmp_path_factory.mktemp("tiny-model")
    try:
        create_test_model(folder)
        return write_gguf(folder, folder / "model-f16.gguf")
    except BadInputError as e:
        missing("serve", str(e))
        raise


@pytest.fixture
def quantizer_binary() -> Path:
    found = find_quantizer()
    if found is None or not os.access(found, os.X_OK):
        where = f"{found} is not an executable file" if found else "none found"
        missing("llama-server", f"no llama-quantize binary: {where} (run: bash .ci/llama-server.sh, or set "
                 f"AGENTEVAL_LLAMA_QUANTIZE to the binary or its folder)")
    assert found is not None
    return found


@pytest.fixture(params=["llama-quantize", "llama-cpp-python"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with llama.cpp's binary and with llama-cpp-python's binding."""
    if request.param == "llama-quantize":
        request.getfixturevalue("quantizer_binary")
    else:
        if importlib.util.find_spec("llama_cpp") is None:
            missing("llamacpp", "llama_cpp is not installed")
        monkeypatch.setattr(quantize, "find_quantizer", lambda: None)
    return str(request.param)


def make(source: SourceModel, quants: list[str], cache: Path, allow: bool = False) -> list[RungFile]:
    plans = plan_rungs(source, quants, allow_requantize=allow, imatrix=None)
    return [make_rung(source, p, cache_dir=cache, threads=2, log=quiet) for p in plans]


def test_rungs_shrink_with_bits_and_come_back_from_the_cache(
        backend: str, f16_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    source = read_source(f16_model)
    assert source.quant == "F16" and source.sha256 == hashlib.sha256(f16_model.read_bytes()).hexdigest()
    capfd.readouterr()
    rungs = make(source, ["q8_0", "Q4_K_M", "Q2_K"], tmp_path / "rungs")
    console = capfd.readouterr()
    assert "llama_model_quantize" not in console.out + console.err  # the quantizer's output goes to its log
    ref = reference_rung(source)
    assert [r.quant for r in rungs] == ["Q8_0", "Q4_K_M", "Q2_K"]  # zip below would stop at a short list
    for r, quant in zip(rungs, ["Q8_0", "Q4_K_M", "Q2_K"]):
        assert r.quant == quant and gguf_info(r.path)["quantization"] == quant
        assert "llama_model_quantize" in r.path.with_suffix(".log").read_text()
        assert r.sha256 == hashlib.sha256(r.path.read_bytes()).hexdigest()
        assert (r.params, r.source_quant, r.provenance) == (source.params, "F16", "quantized from F16")
        assert r.quantizer is not None and r.quantizer.startswith(backend)
        assert r.quantize_s is not None and r.quantize_s > 0 and not r.cached and not r.reference
    sizes = [ref.file_bytes] + [r.file_bytes for r in rungs]
    bits = [ref.bits_per_weight] + [r.bits_per_weight for r in rungs]
    assert sizes == sorted(set(sizes), reverse=True) and bits == sorted(set(bits), reverse=True)
    assert 15.9 < ref.bits_per_weight < 16.1 and 8.4 < rungs[0].bits_per_weight < 8.6

    mtimes = [r.path.stat().st_mtime_ns for r in rungs]

    def no_quantizer(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the quantizer ran again: {args}")

    monkeypatch.setattr(subprocess, "run", no_quantizer)
    again = make(source, ["Q8_0", "Q4_K_M", "Q2_K"], tmp_path / "rungs")
    assert len(again) == 3 and all(a.cached and a.quantize_s is None for a in again)
    assert [(a.path, a.sha256, a.quantizer) for a in again] == [(r.path, r.sha256, r.quantizer) for r in rungs]
    assert [a.path.stat().st_mtime_ns for a in again] == mtimes


def test_a_q8_0_source_quantizes_down_without_the_requantized_label(
        backend: str, f16_model: Path, tmp_path: Path) -> None:
    [q8] = make(read_source(f16_model), ["Q8_0"], tmp_path / "a")
    source = read_source(q8.path)
    assert source.quant == "Q8_0"
    [q4] = make(source, ["Q4_K_M"], tmp_path / "b")  # llama.cpp needs its allow-requantize flag here
    assert gguf_info(q4.path)["quantization"] == "Q4_K_M" and q4.provenance == "quantized from Q8_0"
    assert q4.bits_per_weight < reference_rung(source).bits_per_weight
    with pytest.raises(BadInputError, match="the source is Q8_0: F16 would be requantized"):
        make(source, ["F16"], tmp_path / "b")
    with pytest.raises(BadInputError, match="the source is already Q8_0: it is the reference rung"):
        make(source, ["Q8_0"], tmp_path / "b", allow=True)


def test_requantizing_a_q4_1_rung_is_refused_unless_allowed_then_labelled(
        backend: str, f16_model: Path, tmp_path: Path) -> None:
    [q41] = make(read_source(f16_model), ["Q4_1"], tmp_path / "a")
    source = read_source(q41.path)
    assert source.quant == "Q4_1"
    with pytest.raises(BadInputError, match=r"the source is Q4_1: Q3_K_M, Q2_K would be requantized.*"
                                            r"--allow-requantize"):
        make(source, ["Q3_K_M", "Q2_K"], tmp_path / "b")
    assert not (tmp_path / "b").exists()
    rungs = make(source, ["Q3_K_M", "Q2_K"], tmp_path / "b", allow=True)
    assert [r.provenance for r in rungs] == ["requantized from Q4_1"] * 2
    assert [gguf_info(r.path)["quantization"] for r in rungs] == ["Q3_K_M", "Q2_K"]
    assert all(r.requantized for r in rungs)


def test_a_killed_quantization_leaves_no_finished_rung(backend: str, f16_model: Path, tmp_path: Path) -> None:
    """kill -9 while the quantizer writes: only a temp file is left, and the next run
    makes the rung from scratch and clears it."""
    fake = tmp_path / "bin" / "llama-quantize"
    fake.parent.mkdir()
    fake.write_text(SLOW_FAKE)
    fake.chmod(0o755)
    cache = tmp_path / "rungs"
    ready = tmp_path / "ready"
    env = {**os.environ, "AGENTEVAL_LLAMA_QUANTIZE": str(fake), "FAKE_READY": str(ready)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(f16_model), str(cache)], cwd=REPO, env=env,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the fake quantizer never started"
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    source = read_source(f16_model)
    final = rung_path(cache.absolute(), source.sha256, "Q4_K_M", None)
    assert not final.exists() and len(list(final.parent.glob(f".{final.name}.*.tmp"))) == 1

    [made] = make(source, ["Q4_K_M"], cache)
    assert made.path == final and not made.cached and gguf_info(final)["quantization"] == "Q4_K_M"
    assert not list(final.parent.glob(".*.tmp"))


def test_the_type_tables_match_llama_quantize(quantizer_binary: Path, f16_model: Path) -> None:
    """Every name llama-quantize lists is known here, and exactly the types it refuses
    without an importance matrix (its --dry-run says so) are marked as needing one."""
    shown = subprocess.run([str(quantizer_binary), "--help"], capture_output=True, text=True, check=False)
    listed = set(re.findall(r"^\s+\d+\s+or\s+(\S+)\s+:", shown.stdout + shown.stderr, re.MULTILINE))
    assert listed == set(NOMINAL_BPW) | set(ALIASES)
    needing = set()
    for quant in NOMINAL_BPW:
        dry = subprocess.run([str(quantizer_binary), "--dry-run", str(f16_model), quant], capture_output=True,
                             text=True, check=False)
        assert dry.returncode == 0, dry.stderr[-500:]
        if "require an imatrix" in dry.stdout + dry.stderr:
            needing.add(quant)
    assert needing == IMATRIX_REQUIRED
