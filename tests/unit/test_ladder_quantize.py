"""Ladder rungs without llama.cpp: quant names, the source policy, provenance, the cache layout,
and make_rung's cache, temp files, lock and errors around a fake llama-quantize (a script that
writes a tiny GGUF of the asked type), so none of it needs a model."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from agenteval.errors import BadInputError
from agenteval.gguf.info import LLAMA_FTYPES
from agenteval.ladder import quantize
from agenteval.ladder.quantize import (
    IMATRIX_REQUIRED,
    NOMINAL_BPW,
    RungFile,
    RungPlan,
    SourceModel,
    canonical_quant,
    find_quantizer,
    ladder_cache_dir,
    make_rung,
    plan_rungs,
    read_source,
    reference_rung,
    rung_path,
)

FTYPE = {name: ftype for ftype, name in LLAMA_FTYPES.items()}
FAKE_QUANTIZE = """#!{python}
# A stand-in for llama-quantize: records its argv, prints a version line, writes a tiny GGUF
# whose general.file_type is the asked type (FAKE_MODE=fail: exits 1; wrong: writes Q4_0).
import json, os, sys
import numpy as np
import gguf
args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
print("version: 9.9.9 (build 7, commit fake)")
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "fail":
    print("llama_model_quantize: failed to quantize: the disk is on fire")
    sys.exit(1)
pos, skip = [], False
for i, a in enumerate(args):
    if skip:
        skip = False
    elif a == "--imatrix":
        skip = True
    elif not a.startswith("--"):
        pos.append(a)
src, out, qtype = pos[:3]
w = gguf.GGUFWriter(out, "llama")
w.add_file_type({ftypes}["Q4_0" if mode == "wrong" else qtype])
w.add_tensor("blk.0.ffn_up.weight", np.zeros((4, 32), np.float16))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
"""


def write_gguf(path: Path, file_type: int | None = 1, tensors: dict[str, object] | None = None) -> Path:
    """A small GGUF: a file type (or none) and tensors (default: a 16x32 F16 matrix)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    if file_type is not None:
        w.add_file_type(file_type)
    for name, array in (tensors or {"blk.0.attn_q.weight": np.ones((16, 32), np.float16)}).items():
        w.add_tensor(name, array)  # type: ignore[arg-type]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def source(quant: str, tmp_path: Path | None = None) -> SourceModel:
    return SourceModel(path=(tmp_path or Path("/models")) / f"m-{quant}.gguf", quant=quant, params=1000,
                       file_bytes=2000, sha256="ab" * 32)


@pytest.fixture(autouse=True)
def ladder_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hash records and rungs land in the test's folder, never in ~/.cache."""
    cache = tmp_path / "ladder-cache"
    monkeypatch.setenv("AGENTEVAL_LADDER_CACHE", str(cache))
    return cache


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake llama-quantize in $AGENTEVAL_LLAMA_QUANTIZE; returns the file its calls go to."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "llama-quantize"
    script.write_text(FAKE_QUANTIZE.format(python=sys.executable, ftypes=repr(FTYPE)))
    script.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    calls.touch()
    monkeypatch.setenv("AGENTEVAL_LLAMA_QUANTIZE", str(folder))
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    return calls


def calls_of(calls: Path) -> list[list[str]]:
    return [json.loads(line) for line in calls.read_text().splitlines()]


def f16_source(tmp_path: Path, file_type: int = 1) -> SourceModel:
    return read_source(write_gguf(tmp_path / "src.gguf", file_type))


# --- names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("given,canonical", [
    ("q4_k_m", "Q4_K_M"), (" Q8_0 ", "Q8_0"), ("Q4_K", "Q4_K_M"), ("q3_k", "Q3_K_M"), ("q5_k", "Q5_K_M"),
    ("iq4_xs", "IQ4_XS"), ("bf16", "BF16"), ("tq1_0", "TQ1_0"), ("Q2_K", "Q2_K"),
])
def test_names_are_canonical(given: str, canonical: str) -> None:
    assert canonical_quant(given) == canonical


@pytest.mark.parametrize("bad", ["Q9_0", "q4km", "", "COPY", "NVFP4"])
def test_unknown_name_is_one_line_listing_the_known(bad: str) -> None:
    with pytest.raises(BadInputError) as e:
        canonical_quant(bad)
    message = str(e.value)
    assert "\n" not in message and f"unknown quantization {bad!r}" in message
    assert "Q4_K_M" in message and "IQ2_XXS" in message and "F32" in message


def test_type_table_matches_llama_ftypes() -> None:
    # Every type llama-quantize makes has a file type; NVFP4 is a file type it cannot make.
    assert set(NOMINAL_BPW) <= set(LLAMA_FTYPES.values())
    assert set(LLAMA_FTYPES.values()) - set(NOMINAL_BPW) == {"NVFP4"}
    assert IMATRIX_REQUIRED <= set(NOMINAL_BPW)
    order = list(NOMINAL_BPW.values())
    assert order == sorted(order, reverse=True)


def test_duplicates_removed_in_order() -> None:
    plans = plan_rungs(source("F16"), ["Q4_K_M", "q8_0", "q4_k_m", "Q4_K", "Q8_0", "Q2_K"],
                       allow_requantize=False, imatrix=None)
    assert [p.quant for p in plans] == ["Q4_K_M", "Q8_0", "Q2_K"]


@pytest.mark.parametrize("quant", sorted(IMATRIX_REQUIRED))
def test_imatrix_types_need_one(quant: str, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=rf"{quant}.*only with an importance matrix.*--imatrix"):
        plan_rungs(source("F16"), ["Q4_K_M", quant.lower()], allow_requantize=False, imatrix=None)
    imatrix = tmp_path / "imatrix.dat"
    imatrix.write_bytes(b"x")
    plans = plan_rungs(source("F16"), [quant], allow_requantize=False, imatrix=imatrix)
    assert plans == [RungPlan(quant, requantized=False)]


def test_missing_imatrix_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no importance matrix file"):
        plan_rungs(source("F16"), ["Q4_K_M"], allow_requantize=False, imatrix=tmp_path / "none.dat")


# --- source policy -----------------------------------------------------------------------------

@pytest.mark.parametrize("src,quant,requantized", [
    ("F16", "Q8_0", False), ("F16", "Q2_K", False), ("F16", "BF16", True), ("F16", "F32", True),
    ("F32", "F16", False), ("F32", "BF16", False), ("BF16", "Q6_K", False), ("BF16", "F16", True),
    ("Q8_0", "Q6_K", False), ("Q8_0", "Q4_K_M", False), ("Q8_0", "IQ4_XS", False), ("Q8_0", "F16", True),
    ("Q4_1", "Q4_0", True), ("Q4_1", "Q2_K", True), ("Q4_1", "Q8_0", True), ("Q4_1", "F16", True),
    ("Q6_K", "Q4_K_M", True),
])
def test_source_policy(src: str, quant: str, requantized: bool) -> None:
    allowed = plan_rungs(source(src), [quant], allow_requantize=True, imatrix=None)
    assert allowed == [RungPlan(quant, requantized)]
    if requantized:
        with pytest.raises(BadInputError, match=rf"the source is {src}: .*{quant}.*--allow-requantize"):
            plan_rungs(source(src), [quant], allow_requantize=False, imatrix=None)
    else:
        assert plan_rungs(source(src), [quant], allow_requantize=False, imatrix=None) == allowed


def test_a_q4_1_source_names_every_requantized_rung_in_one_line() -> None:
    with pytest.raises(BadInputError) as e:
        plan_rungs(source("Q4_1"), ["Q4_K_M", "Q3_K_M", "Q2_K"], allow_requantize=False, imatrix=None)
    message = str(e.value)
    assert "\n" not in message
    assert "the source is Q4_1: Q4_K_M, Q3_K_M, Q2_K would be requantized" in message
    assert "'requantized from Q4_1'" in message
    plans = plan_rungs(source("Q4_1"), ["Q4_K_M", "Q3_K_M", "Q2_K"], allow_requantize=True, imatrix=None)
    assert [p.quant for p in plans] == ["Q4_K_M", "Q3_K_M", "Q2_K"] and all(p.requantized for p in plans)


@pytest.mark.parametrize("src", ["Q8_0", "F16", "Q4_1"])
def test_the_source_type_is_the_reference_rung(src: str) -> None:
    for allow in (False, True):
        with pytest.raises(BadInputError, match=f"the source is already {src}: it is the reference rung"):
            plan_rungs(source(src), ["Q2_K", src.lower()], allow_requantize=allow, imatrix=None)


# --- provenance, layout, discovery -------------------------------------------------------------

def rung(**changes: object) -> RungFile:
    base: dict[str, object] = {"quant": "Q4_K_M", "path": Path("/c/Q4_K_M.gguf"), "file_bytes": 1,
                               "sha256": "0" * 64, "params": 1, "bits_per_weight": 4.9, "source_quant": "F16",
                               "requantized": False, "reference": False, "imatrix_sha256": None,
                               "quantizer": "llama-quantize", "quantize_s": 1.0, "cached": False}
    base.update(changes)
    return RungFile(**base)  # type: ignore[arg-type]


def test_provenance() -> None:
    assert rung().provenance == "quantized from F16"
    assert rung(source_quant="Q4_1", requantized=True).provenance == "requantized from Q4_1"
    assert rung(quant="F16", reference=True, quantizer=None).provenance == "reference (F16)"
    assert rung(quant="Q4_1", source_quant="Q4_1", reference=True).provenance == "reference (Q4_1)"


def test_cache_path_layout(tmp_path: Path) -> None:
    sha = "0123456789abcdef" + "f" * 48
    assert rung_path(tmp_path, sha, "Q4_K_M", None) == tmp_path / "0123456789abcdef" / "Q4_K_M.gguf"
    assert (rung_path(tmp_path, sha, "IQ2_XS", "9" * 64)
            == tmp_path / "0123456789abcdef" / "IQ2_XS-imatrix-999999999999.gguf")


def test_ladder_cache_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ladder_cache_dir() == tmp_path / "ladder-cache"
    monkeypatch.delenv("AGENTEVAL_LADDER_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AGENTEVAL_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert ladder_cache_dir() == tmp_path / "home" / ".cache" / "agenteval" / "ladder"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ladder_cache_dir() == tmp_path / "xdg" / "agenteval" / "ladder"
    monkeypatch.setenv("AGENTEVAL_CACHE", str(tmp_path / "ae"))
    assert ladder_cache_dir() == tmp_path / "ae" / "ladder"


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_find_quantizer_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("AGENTEVAL_CACHE", str(tmp_path / "nocache"))
    monkeypatch.delenv("AGENTEVAL_LLAMA_QUANTIZE", raising=False)
    monkeypatch.delenv("AGENTEVAL_LLAMA_SERVER", raising=False)
    assert find_quantizer() is None
    built = executable(tmp_path / "nocache" / "llama-server" / "v1-abc" / "llama-quantize")
    assert find_quantizer() == built
    beside = executable(tmp_path / "srv" / "llama-quantize")
    monkeypatch.setenv("AGENTEVAL_LLAMA_SERVER", str(executable(tmp_path / "srv" / "llama-server")))
    assert find_quantizer() == beside
    on_path = executable(tmp_path / "path" / "llama-quantize")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_quantizer() == on_path
    monkeypatch.setenv("AGENTEVAL_LLAMA_QUANTIZE", str(tmp_path / "mine"))
    assert find_quantizer() == tmp_path / "mine"  # explicit, even when broken: make_rung says so
    (tmp_path / "dir").mkdir()
    monkeypatch.setenv("AGENTEVAL_LLAMA_QUANTIZE", str(tmp_path / "dir"))
    assert find_quantizer() == tmp_path / "dir" / "llama-quantize"


# --- reading sources ---------------------------------------------------------------------------

def test_read_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    path = write_gguf(tmp_path / "m.gguf", 1, {"a.weight": np.ones((16, 32), np.float16),
                                               "norm.weight": np.ones(32, np.float32)})
    src = read_source(path)
    assert (src.quant, src.params, src.file_bytes) == ("F16", 16 * 32 + 32, path.stat().st_size)
    assert src.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    ref = reference_rung(src)
    assert ref.reference and ref.cached is False and ref.quantizer is None and ref.quantize_s is None
    assert ref.bits_per_weight == pytest.approx((16 * 32 * 2 + 32 * 4) * 8 / (16 * 32 + 32))
    assert (ref.sha256, ref.file_bytes, ref.provenance) == (src.sha256, src.file_bytes, "reference (F16)")


def test_source_hash_is_kept_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_gguf(tmp_path / "m.gguf")
    first = read_source(path).sha256

    def no_hashing(p: Path) -> str:
        raise AssertionError("hashed again")

    monkeypatch.setattr(quantize, "_hash_file", no_hashing)
    assert read_source(path).sha256 == first
    monkeypatch.undo()
    monkeypatch.setenv("AGENTEVAL_LADDER_CACHE", str(tmp_path / "ladder-cache"))
    write_gguf(path, 7)
    os.utime(path, ns=(1, 1))
    changed = read_source(path)
    assert changed.quant == "Q8_0" and changed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != first


def test_quant_guessed_without_file_type(tmp_path: Path) -> None:
    import numpy as np

    path = write_gguf(tmp_path / "m.gguf", None, {"a.weight": np.ones((4, 32), np.float16),
                                                  "b.weight": np.ones((4, 32), np.float16),
                                                  "n.weight": np.ones(32, np.float32)})
    assert read_source(path).quant == "F16"


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no GGUF file at"):
        read_source(tmp_path / "absent.gguf")
    with pytest.raises(BadInputError, match="no GGUF file at"):
        read_source(tmp_path)
    (tmp_path / "text.gguf").write_text("not a model at all, just text\n" * 10)
    with pytest.raises(BadInputError, match="not a GGUF file"):
        read_source(tmp_path / "text.gguf")
    whole = write_gguf(tmp_path / "m.gguf").read_bytes()
    for cut in (40, len(whole) * 4 // 5):  # in the header; in the tensor data
        (tmp_path / "cut.gguf").write_bytes(whole[:cut])
        with pytest.raises(BadInputError, match="not a whole GGUF file"):
            read_source(tmp_path / "cut.gguf")


# --- make_rung around a fake llama-quantize ----------------------------------------------------

def test_make_rung_then_cached(tmp_path: Path, fake: Path) -> None:
    src = f16_source(tmp_path)
    [plan] = plan_rungs(src, ["Q4_K_M"], allow_requantize=False, imatrix=None)
    messages: list[str] = []
    made = make_rung(src, plan, cache_dir=tmp_path / "c", threads=3, log=messages.append)
    assert made.path == rung_path((tmp_path / "c").absolute(), src.sha256, "Q4_K_M", None)
    assert made.path.is_file() and not made.cached and made.quantize_s is not None
    assert made.quantizer == "llama-quantize (version: 9.9.9 (build 7, commit fake))"
    assert (made.params, made.bits_per_weight, made.provenance) == (128, 16.0, "quantized from F16")
    assert made.sha256 == hashlib.sha256(made.path.read_bytes()).hexdigest()
    assert "version: 9.9.9" in made.path.with_suffix(".log").read_text()
    sidecar = json.loads(made.path.with_suffix(".json").read_text())
    assert sidecar["source_sha256"] == src.sha256 and sidecar["quantize_s"] == made.quantize_s
    assert sidecar["mtime_ns"] == made.path.stat().st_mtime_ns and sidecar["file_bytes"] == made.file_bytes
    [argv] = calls_of(fake)
    assert argv == [str(src.path.absolute()), argv[1], "Q4_K_M", "3"]  # F16: no --allow-requantize
    assert Path(argv[1]).is_absolute() and Path(argv[1]).name.endswith(".tmp")
    assert not list(made.path.parent.glob(".*.tmp"))

    again = make_rung(src, plan, cache_dir=tmp_path / "c", log=messages.append)
    assert again.cached and again.quantize_s is None and len(calls_of(fake)) == 1
    assert (again.path, again.sha256, again.quantizer) == (made.path, made.sha256, made.quantizer)
    assert any("cached" in m for m in messages)


def test_changed_or_unrecorded_rung_is_made_again(tmp_path: Path, fake: Path) -> None:
    src = f16_source(tmp_path)
    [plan] = plan_rungs(src, ["Q6_K"], allow_requantize=False, imatrix=None)
    made = make_rung(src, plan, cache_dir=tmp_path / "c", log=lambda m: None)
    os.utime(made.path, ns=(1, 1))  # touched: the sidecar's mtime no longer matches
    assert not make_rung(src, plan, cache_dir=tmp_path / "c", log=lambda m: None).cached
    made.path.with_suffix(".json").unlink()  # killed between rename and sidecar
    assert not make_rung(src, plan, cache_dir=tmp_path / "c", log=lambda m: None).cached
    assert len(calls_of(fake)) == 3


def test_half_written_temp_is_never_a_rung(tmp_path: Path, fake: Path) -> None:
    src = f16_source(tmp_path)
    [plan] = plan_rungs(src, ["Q5_K_M"], allow_requantize=False, imatrix=None)
    final = rung_path((tmp_path / "c").absolute(), src.sha256, "Q5_K_M", None)
    final.parent.mkdir(parents=True)
    stale = final.parent / f".{final.name}.99999.tmp"
    stale.write_bytes(src.path.read_bytes()[:100])
    made = make_rung(src, plan, cache_dir=tmp_path / "c", log=lambda m: None)
    assert not made.cached and not stale.exists() and len(calls_of(fake)) == 1


def test_requantize_flag_and_imatrix_reach_llama_quantize(tmp_path: Path, fake: Path) -> None:
    src = f16_source(tmp_path, file_type=7)  # declared Q8_0
    imatrix = tmp_path / "imatrix.dat"
    imatrix.write_bytes(b"importance")
    plans = plan_rungs(src, ["Q4_K_M", "IQ2_XS"], allow_requantize=False, imatrix=imatrix)
    made = [make_rung(src, p, cache_dir=tmp_path / "c", imatrix=imatrix, log=lambda m: None) for p in plans]
    sha = hashlib.sha256(b"importance").hexdigest()
    assert [r.imatrix_sha256 for r in made] == [sha, sha]
    assert made[1].path.name == f"IQ2_XS-imatrix-{sha[:12]}.gguf"
    assert [r.provenance for r in made] == ["quantized from Q8_0"] * 2
    for argv in calls_of(fake):
        assert argv[:3] == ["--allow-requantize", "--imatrix", str(imatrix.absolute())]
    # Without the imatrix the same type is another rung, and refused.
    with pytest.raises(BadInputError, match="only with an importance matrix"):
        make_rung(src, plans[1], cache_dir=tmp_path / "c", log=lambda m: None)


def test_quantizer_failure_carries_the_log_tail(tmp_path: Path, fake: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    src = f16_source(tmp_path)
    [plan] = plan_rungs(src, ["Q3_K_M"], allow_requantize=False, imatrix=None)
    monkeypatch.setenv("FAKE_MODE", "fail")
    with pytest.raises(BadInputError, match=r"could not make Q3_K_M .*exit 1.*the disk is on fire.*log: ") as e:
        make_rung(src, plan, cache_dir=tmp_path / "c", log=lambda m: None)
    assert "\n" not in str(e.value)
    monkeypatch.setenv("FAKE_MODE", "wrong")
    with pytest.raises(BadInputError, match="wrote a Q4_0 file when asked for Q3_K_M"):
        make_rung(src, plan, cache_dir=tmp_path / "c", log=lambda m: None)
    folder = rung_path((tmp_path / "c").absolute(), src.sha256, "Q3_K_M", None).parent
    assert not list(folder.glob("*.gguf")) and not list(folder.glob(".*.tmp"))


def test_one_process_at_a_time_per_rung(tmp_path: Path, fake: Path) -> None:
    src = f16_source(tmp_path)
    [plan] = plan_rungs(src, ["Q8_0"], allow_requantize=False, imatrix=None)
    final = rung_path((tmp_path / "c").absolute(), src.sha256, "Q8_0", None)
    final.parent.mkdir(parents=True)
    messages: list[str] = []
    with open(final.with_suffix(".lock"), "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=make_rung, args=(src, plan),
                                  kwargs={"cache_dir": tmp_path / "c", "log": messages.append})
        worker.start()
        deadline = time.monotonic() + 10
        while not any("waiting" in m for m in messages) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert any("waiting" in m for m in messages) and worker.is_alive() and not calls_of(fake)
    worker.join(30)
    assert not worker.is_alive() and final.is_file() and len(calls_of(fake)) == 1


def test_plans_must_come_from_plan_rungs(tmp_path: Path, fake: Path) -> None:
    src = f16_source(tmp_path)
    with pytest.raises(BadInputError, match="does not fit source F16"):
        make_rung(src, RungPlan("Q4_K_M", requantized=True), cache_dir=tmp_path / "c")
    with pytest.raises(BadInputError, match="already F16"):
        make_rung(src, RungPlan("F16", requantized=True), cache_dir=tmp_path / "c")
    assert not calls_of(fake)


def test_missing_quantizers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    src = f16_source(tmp_path)
    [plan] = plan_rungs(src, ["Q4_K_M"], allow_requantize=False, imatrix=None)
    monkeypatch.setenv("AGENTEVAL_LLAMA_QUANTIZE", str(tmp_path / "nowhere" / "llama-quantize"))
    with pytest.raises(BadInputError, match="is not an executable llama-quantize: fix AGENTEVAL_LLAMA_QUANTIZE"):
        make_rung(src, plan, cache_dir=tmp_path / "c")
    monkeypatch.setattr(quantize, "find_quantizer", lambda: None)
    imatrix = tmp_path / "imatrix.dat"
    imatrix.write_bytes(b"x")
    with pytest.raises(BadInputError, match=r"--imatrix needs llama.cpp's llama-quantize.*\.ci/llama-server\.sh"):
        make_rung(src, plan, cache_dir=tmp_path / "c", imatrix=imatrix)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real_find_spec(name, *a))
    with pytest.raises(BadInputError, match=r"llama-server\.sh.*AGENTEVAL_LLAMA_QUANTIZE.*agenteval\[llamacpp\]"):
        make_rung(src, plan, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").rglob("*.gguf"))


def test_full_disk_is_refused_before_quantizing(tmp_path: Path, fake: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import collections
    import shutil

    src = f16_source(tmp_path)
    [plan] = plan_rungs(src, ["Q8_0"], allow_requantize=False, imatrix=None)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10, 10, 0))
    with pytest.raises(BadInputError, match="needs about .* GB free: free space or set AGENTEVAL_LADDER_CACHE"):
        make_rung(src, plan, cache_dir=tmp_path / "c", log=lambda m: None)
    assert not calls_of(fake)
