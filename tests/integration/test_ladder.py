"""``agenteval ladder`` end to end: real llama.cpp quantizing, real servers, real Docker, a
real DuckDB file, the ladder page in headless Chromium.

The random-weight test model at F16 makes the rungs; SmolLM2 135M Instruct (a Q4_1 file
from PyPI) shows that a requantized ladder completes and says so. Without the llama.cpp
build, the downloads, Docker or the browser the requirement gate (tests/conftest.py) skips
them with the reason, or fails them in CI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from agenteval.store import Store
from tests.conftest import missing, requires

REPO = Path(__file__).resolve().parents[2]
SHORT = REPO / "tests" / "fixtures" / "tasks" / "short"
KL_TEXT = REPO / "README.md"  # a fixed text far longer than the 2,000 scored tokens needed


@pytest.fixture(scope="module")
def llama_cpp_tools() -> None:
    from agenteval.ladder.divergence import find_perplexity_tool
    from agenteval.ladder.quantize import find_quantizer
    from agenteval.serving.engines.llama_server import find_binary

    if not (find_binary() and find_quantizer() and find_perplexity_tool()):
        missing("llama-server", "llama-server, llama-quantize and llama-perplexity are not built")


@pytest.fixture(scope="module")
def tiny_f16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    requires("serve")
    requires("llamacpp")
    from agenteval.gguf.write import write_gguf
    from agenteval.serving.testmodel import create_test_model

    directory = tmp_path_factory.mktemp("tiny-ladder")
    create_test_model(directory)
    return write_gguf(directory, directory / "model-f16.gguf")


def ladder_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "agenteval", "ladder", *args]


def env_for(workdir: Path) -> dict[str, str]:
    return {**os.environ, "AGENTEVAL_LADDER_CACHE": str(workdir / "ladder-cache"),
            "AGENTEVAL_SANDBOXES": str(REPO / "sandboxes"), "COLUMNS": "200"}


def run_cli(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ladder_argv(*args), cwd=workdir, env=env_for(workdir), capture_output=True, text=True,
                          timeout=timeout)


def tiny_args(source: Path, workdir: Path) -> list[str]:
    return [str(source), str(SHORT), "--quants", "Q8_0,Q4_K_M,Q2_K", "--samples", "2", "--kl-text", str(KL_TEXT),
            "--engine", "llama-server", "--context", "2048", "--db", str(workdir / "db.duckdb"),
            "--out", str(workdir / "reports")]


def run_ids(workdir: Path) -> list[str]:
    with Store(workdir / "db.duckdb", read_only=True) as store:
        return [r.run_id for r in store.run_summaries()]


@pytest.mark.docker
def test_a_ladder_of_the_random_model_resumes_after_kill_9_and_reuses_its_rungs(
        workdir: Path, tiny_f16: Path, llama_cpp_tools: None, python_image: str, docker_client: Any) -> None:
    # Killed with SIGKILL once the second rung is being served: the reference's trials are committed.
    proc = subprocess.Popen(ladder_argv(*tiny_args(tiny_f16, workdir)), cwd=workdir, env=env_for(workdir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=False)
    seen: list[str] = []
    deadline = time.monotonic() + 600
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("starting Q8_0") or time.monotonic() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert any(line.startswith("starting Q8_0") for line in seen), "".join(seen[-20:])
    # what a kill -9 may leave, as the README says: the log of the server the killed process had started
    for left in Path(tempfile.gettempdir()).glob(f"agenteval-server-*-{proc.pid}-*.log"):
        left.unlink()
    [run_id] = run_ids(workdir)
    with Store(workdir / "db.duckdb", read_only=True) as store:
        before = store.committed_keys(run_id)
        assert store.run(run_id).status == "abandoned"  # recorded running; its process is gone
        assert len(store.rungs(run_id)) == 4  # reference + 3 rungs, divergences measured before any trial
    assert {k.split("/")[2] for k in before} == {"F16"}

    resumed = run_cli(workdir, "--resume", run_id, "--db", str(workdir / "db.duckdb"), "--out",
                      str(workdir / "reports"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with Store(workdir / "db.duckdb", read_only=True) as store:
        trials = store.trials(run_id)
        rungs = {r.model: r for r in store.rungs(run_id)}
        servings = store.servings(run_id)
        assert store.run(run_id).status == "completed"
    assert len(trials) == 8 and len({t.key for t in trials}) == 8  # 4 rungs x 2 samples, none twice
    assert before <= {t.key for t in trials}
    assert all(t.fingerprint.model_info.get("random_weights") is True for t in trials)
    assert {t.fingerprint.model_info.get("quantization") for t in trials} == {"F16", "Q8_0", "Q4_K_M", "Q2_K"}

    f16, q8, q4, q2 = (rungs[n] for n in ("F16", "Q8_0", "Q4_K_M", "Q2_K"))
    assert f16.reference and f16.kl_mean == 0.0 and f16.provenance == "reference (F16)"
    assert all(r.provenance == "quantized from F16" and not r.requantized for r in (q8, q4, q2))
    assert f16.file_bytes > q8.file_bytes > q4.file_bytes > q2.file_bytes  # sizes fall with bits
    assert f16.bits_per_weight > q8.bits_per_weight > q4.bits_per_weight > q2.bits_per_weight
    assert q8.kl_mean is not None and q4.kl_mean is not None and q2.kl_mean is not None
    assert 0 < q8.kl_mean < q4.kl_mean < q2.kl_mean, (q8.kl_mean, q4.kl_mean, q2.kl_mean)  # KL rises as bits fall
    assert q8.top1_agreement is not None and q2.top1_agreement is not None
    assert q8.top1_agreement > q2.top1_agreement
    assert all((r.kl_tokens or 0) >= 2000 for r in (q8, q4, q2))
    assert all(r.quantize_s is not None and r.quantize_s > 0 for r in (q8, q4, q2))  # made by this ladder
    assert {s.model for s in servings} == {"F16", "Q8_0", "Q4_K_M", "Q2_K"}
    assert all(s.load_s and s.load_s > 0 and s.peak_rss_bytes and s.peak_rss_bytes > 1 << 20 for s in servings)

    page = workdir / "reports" / run_id / "ladder.html"
    html = page.read_text()
    for name in ("Q8_0", "Q4_K_M", "Q2_K"):
        assert f"<th>{name}</th>" in html or f">{name}<" in html, name
    assert "reference (F16)" in html and html.count("quantized from F16") >= 3
    assert "requantized" not in html

    # A second ladder on the same source takes every rung from the cache: nothing is quantized again.
    mtimes = {r.model: Path(r.path).stat().st_mtime_ns for r in rungs.values()}
    again = run_cli(workdir, *tiny_args(tiny_f16, workdir), "--max-steps", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    second = next(r for r in run_ids(workdir) if r != run_id)
    with Store(workdir / "db.duckdb", read_only=True) as store:
        cached = {r.model: r for r in store.rungs(second)}
    assert all(cached[m].quantize_s is None for m in ("Q8_0", "Q4_K_M", "Q2_K"))
    assert {m: Path(r.path).stat().st_mtime_ns for m, r in cached.items()} == mtimes
    assert cached["Q4_K_M"].file_sha256 == q4.file_sha256


@pytest.mark.docker
def test_a_kv_cache_axis_on_llama_cpp_python(workdir: Path, tiny_f16: Path, llama_cpp_tools: None,
                                              python_image: str, docker_client: Any) -> None:
    done = run_cli(workdir, str(tiny_f16), str(SHORT), "--quants", "Q4_K_M", "--kv-cache", "f16,q8_0", "--engine",
                   "llamacpp", "--samples", "1", "--kl-text", str(KL_TEXT), "--context", "2048", "--db",
                   str(workdir / "db.duckdb"), "--out", str(workdir / "reports"))
    assert done.returncode == 0, done.stdout + done.stderr
    [run_id] = run_ids(workdir)
    with Store(workdir / "db.duckdb", read_only=True) as store:
        rungs = {r.model: r for r in store.rungs(run_id)}
        trials = {t.model: t for t in store.trials(run_id)}
    assert set(rungs) == set(trials) == {"F16", "F16@kv=q8_0", "Q4_K_M", "Q4_K_M@kv=q8_0"}
    assert rungs["F16"].reference and not rungs["F16@kv=q8_0"].reference
    assert rungs["F16@kv=q8_0"].provenance == "reference (F16), K/V cache q8_0"
    assert rungs["F16@kv=q8_0"].kl_mean is not None and rungs["F16@kv=q8_0"].kl_mean > 0  # the cache's own loss
    for label, trial in trials.items():
        info = trial.fingerprint.model_info
        assert info["engine"] == "llamacpp" and info["server"] == "llama-cpp-python"
        assert info["sampling"] == {"temperature": 0.0, "seed": 0} and info["context"] == 2048
        args = info["server_args"]
        kv = "8" if label.endswith("@kv=q8_0") else "1"  # ggml's q8_0 and f16
        assert args[0::2][:4] == ["--n_threads", "--n_threads_batch", "--type_k", "--type_v"], args
        assert args[5] == args[7] == kv and ("--flash_attn" in args) == (kv == "8"), args
        assert info["provenance"] == rungs[label].provenance and info["sample_seeds"] is True
    assert len({tuple(t.fingerprint.model_info["server_args"][1:4:2]) for t in trials.values()}) == 1  # same threads

    # `agenteval report` renders the ladder page of any ladder run, into the folder given
    site = workdir / "site"
    report = subprocess.run([sys.executable, "-m", "agenteval", "report", "--run", run_id, "--db",
                             str(workdir / "db.duckdb"), "--out", str(site)], cwd=workdir, capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    html = (site / "ladder.html").read_text()
    assert "Q4_K_M@kv=q8_0" in html and 'href="ladder.html"' in (site / "index.html").read_text()


@pytest.mark.docker
def test_the_ladder_page_renders_in_chromium(workdir: Path, tiny_f16: Path, llama_cpp_tools: None,
                                             python_image: str, docker_client: Any) -> None:
    from tests.browser import browser_missing, console_errors, headless_chromium

    reason = browser_missing()
    if reason:
        missing("browser", reason)
    done = run_cli(workdir, str(tiny_f16), str(SHORT), "--quants", "Q4_K_M", "--samples", "1", "--kl-text",
                   str(KL_TEXT), "--context", "2048", "--db", str(workdir / "db.duckdb"), "--out",
                   str(workdir / "reports"))
    assert done.returncode == 0, done.stdout + done.stderr
    [run_id] = run_ids(workdir)
    page = workdir / "reports" / run_id / "ladder.html"
    with headless_chromium() as driver:
        driver.get(page.as_uri())
        assert "Q4_K_M" in driver.page_source
        charts = driver.find_elements("css selector", "svg")
        assert charts and all(c.size["width"] > 100 and c.size["height"] > 50 for c in charts)
        assert console_errors(driver) == []


@pytest.mark.docker
def test_a_requantized_smollm2_ladder_is_refused_then_labelled(workdir: Path, llama_cpp_tools: None,
                                                                python_image: str, docker_client: Any) -> None:
    from agenteval.config import model_cache_dir
    from agenteval.serving.downloads import DOWNLOADS

    smol = Path(os.environ.get("AGENTEVAL_REAL_MODELS") or model_cache_dir()) / DOWNLOADS["smollm2"].file
    if not smol.is_file():
        missing("real-models", f"{smol} is missing (bash .ci/real-models.sh)")
    args = [str(smol), str(REPO / "tasks" / "folder"), "--variant", "folder/one-file", "--quants", "Q4_0,Q2_K",
            "--samples", "1", "--max-steps", "3", "--agent-timeout", "60", "--db", str(workdir / "db.duckdb"),
            "--out", str(workdir / "reports")]
    refused = run_cli(workdir, *args)
    assert refused.returncode == 2
    assert "Q4_1" in refused.stderr and "--allow-requantize" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr  # one clear line
    assert not (workdir / "db.duckdb").exists() or run_ids(workdir) == []  # nothing started

    done = run_cli(workdir, *args, "--allow-requantize")
    assert done.returncode == 0, done.stdout + done.stderr
    [run_id] = run_ids(workdir)
    with Store(workdir / "db.duckdb", read_only=True) as store:
        rungs = {r.model: r for r in store.rungs(run_id)}
        trials = store.trials(run_id)
    assert rungs["Q4_1"].reference and rungs["Q4_1"].provenance == "reference (Q4_1)"
    for name in ("Q4_0", "Q2_K"):
        assert rungs[name].requantized and rungs[name].provenance == "requantized from Q4_1"
        assert rungs[name].kl_mean is not None and rungs[name].kl_mean > 0
    assert len(trials) == 3 and all(t.model_calls for t in trials)
    site = workdir / "reports" / run_id
    html = (site / "ladder.html").read_text()
    for name in ("Q4_0", "Q2_K"):  # every row and point of a requantized rung says so
        rows = [ln for ln in html.splitlines() if f">{name}" in ln]
        assert rows and all("requantized from Q4_1" in ln for ln in rows), name
    index = (site / "index.html").read_text()
    assert index.count("requantized from Q4_1") >= 2  # the leaderboard names them so too
    console = [ln for ln in done.stdout.splitlines() if ln.lstrip("│ ").startswith(("Q4_0", "Q2_K"))]
    assert console and all("requantized from Q4_1" in ln for ln in console), done.stdout
    assert json.loads(json.dumps(rungs["Q2_K"].model_dump(mode="json")))["source_quant"] == "Q4_1"
