"""agenteval.ladder.divergence without a model: llama-perplexity's real output (captured in
tests/fixtures/ladder), the chunk arithmetic, the text, the reference file's reuse, the numpy
scoring, and the meter's orchestration against a stand-in llama-perplexity script."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from agenteval.errors import BadInputError
from agenteval.ladder import divergence as dv
from agenteval.ladder import logits_file
from tests.conftest import requires
from agenteval.ladder import divergence_numpy as dn
from agenteval.ladder.divergence import (
    MIN_TOKENS,
    DivergenceMeter,
    choose_context,
    divergence_text,
    load_sidecar,
    needed_tokens,
    parse_kl_log,
    scored_positions,
    text_of,
)
from agenteval.task import load_task

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ladder"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# ---- llama-perplexity's output ----

def test_parses_kl_statistics_of_a_real_run() -> None:
    d = parse_kl_log(fixture("kl-tiny-q4_0.log"))
    assert d is not None
    assert (d.mean_kl, d.median_kl, d.p99_kl, d.max_kl) == (0.002324, 0.002259, 0.003577, 0.004289)
    assert d.top1_agreement == pytest.approx(0.62278)
    assert d.tokens == 26 * 255  # 26 chunks of 512, positions 256..510 scored in each
    assert (d.perplexity, d.reference_perplexity) == (4444.215048, 4461.454913)
    assert d.method == "llama-perplexity"


def test_parses_a_real_model_run_with_capped_chunks() -> None:
    d = parse_kl_log(fixture("kl-smollm2-q4_0.log"))
    assert d is not None
    assert (d.mean_kl, d.median_kl, d.p99_kl, d.max_kl) == (0.270927, 0.193013, 1.505677, 4.709576)
    assert d.top1_agreement == pytest.approx(0.74216) and d.tokens == 8 * 255
    assert d.perplexity == 13.594251 and d.reference_perplexity == 11.11917


@pytest.mark.parametrize("name", ["base-tiny.log", "base-too-short.log", "kl-kv-without-fa.log"])
def test_runs_without_kl_statistics_parse_to_none(name: str) -> None:
    assert parse_kl_log(fixture(name)) is None


def test_failure_tail_is_one_line_with_the_cause() -> None:
    tail = dv.log_tail(fixture("kl-kv-without-fa.log"))
    assert "\n" not in tail and "failed to create context" in tail
    assert dv.log_tail("") == "(no output)"


def test_reference_pass_lines() -> None:
    made = dv._BASE_CHUNKS.search(fixture("base-tiny.log"))
    assert made is not None and (made[1], made[2]) == ("26", "512")
    short = dv._TOO_SHORT.search(fixture("base-too-short.log"))
    assert short is not None and short[1] == "972"
    other = dv._OTHER_VOCAB.search(fixture("kl-other-vocab.log"))
    assert other is not None and (other[1], other[2]) == ("4096", "49152")


# ---- chunks ----

def test_scored_positions_count_second_halves_of_whole_chunks() -> None:
    assert scored_positions(4096, 512) == 8 * 255
    assert scored_positions(4095, 512) == 7 * 255
    assert scored_positions(1023, 512) == 0  # llama-perplexity wants two chunks at least
    assert scored_positions(1024, 128) == 8 * 63


def test_choose_context_prefers_the_largest_that_scores_enough() -> None:
    assert choose_context(4096) == 512
    assert choose_context(20_000, 1024) == 1024
    # 6,000 tokens are under two chunks of 4096: the next context that scores 2,000 is 2048
    assert choose_context(6000, 4096) == 2048
    assert needed_tokens(512) == 4096
    assert needed_tokens(300) == 4200  # 300 and 150: 14 chunks of 149 / 28 of 74 scored positions


def test_too_short_text_names_the_counts_and_the_flag() -> None:
    with pytest.raises(BadInputError) as e:
        choose_context(3000)
    assert str(e.value) == ("the divergence text has 3000 tokens; at least 4096 are needed to score 2000: "
                            "pass --kl-text FILE with more text")


# ---- the text ----

def make_task(root: Path, toml: str, instruction: str) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "task.toml").write_text(toml)
    (root / "instruction.md").write_text(instruction)
    return root


def test_text_is_every_variant_rendered_by_task_name_deduplicated(tmp_path: Path) -> None:
    zeta = load_task(make_task(tmp_path / "zeta", """
[[variants]]
id = "second"
params = { thing = "bees" }
[[variants]]
id = "first"
params = { thing = "ants" }
[[variants]]
id = "again"
params = { thing = "bees" }
""", "Count the {{ thing }}.\n"))
    alpha = load_task(make_task(tmp_path / "alpha", "", "Say hello.\n\n"))
    text = divergence_text([zeta, alpha])
    assert text.text == "Say hello.\n\nCount the bees.\n\nCount the ants."
    assert text.sha256 == hashlib.sha256(text.text.encode()).hexdigest()
    assert text.origin == "instructions of 2 tasks, 4 variants"


def test_text_of_the_seed_tasks_is_the_agents_instructions() -> None:
    repo = Path(__file__).resolve().parents[2]
    folder = load_task(repo / "tasks" / "folder")
    text = divergence_text([folder])
    first = folder.render_instruction(folder.variants()[0]).strip("\n")
    assert text.text.startswith(first) and text.origin.startswith("instructions of 1 task, ")


def test_text_file_wins_and_bad_input_is_one_line(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("ünïcode notes\n", encoding="utf-8")
    text = divergence_text([], notes)
    assert (text.text, text.origin) == ("ünïcode notes\n", f"file {notes}")
    with pytest.raises(BadInputError, match=r"--kl-text .*missing.txt: cannot read"):
        divergence_text([], tmp_path / "missing.txt")
    with pytest.raises(BadInputError, match=r"pass --kl-text FILE"):
        divergence_text([])


# ---- the reference file and its sidecar ----

def test_sidecar_reuse_needs_same_source_and_a_whole_file(tmp_path: Path) -> None:
    model = tmp_path / "ref.gguf"
    model.write_bytes(b"gguf")
    text = text_of("some text", "file t")
    identity = dv.reference_identity(model, text, 512, "llama-perplexity")
    logits = tmp_path / "reference-x.logits"
    logits.write_bytes(bytes(logits_file.logits_file_bytes(8, 512, 10)))
    ref = logits_file.ReferenceLogits(path=logits, context=512, chunks=8, vocab=10, method="llama-perplexity")
    sidecar = tmp_path / "reference-x.json"
    assert load_sidecar(sidecar, identity) is None  # never finished
    dv.write_sidecar(sidecar, identity, ref, 1.0)
    assert load_sidecar(sidecar, identity) == ref
    assert load_sidecar(sidecar, {**identity, "context": 256}) is None
    assert load_sidecar(sidecar, dv.reference_identity(model, text_of("other", "x"), 512, "llama-perplexity")) is None
    os.utime(model, ns=(1, 1))  # the reference file changed
    assert load_sidecar(sidecar, dv.reference_identity(model, text, 512, "llama-perplexity")) is None
    with open(logits, "r+b") as f:
        f.truncate(100)  # cut short
    assert load_sidecar(sidecar, identity) is None
    sidecar.write_text("{not json")
    assert load_sidecar(sidecar, identity) is None


def test_logits_file_size_is_two_bytes_per_vocab_entry_and_position() -> None:
    # header + tokens + (scale, min) and one u16 per vocabulary entry (rounded up to even) per position
    assert logits_file.logits_file_bytes(8, 512, 49152) == 20 + 8 * 512 * 4 + 8 * 255 * (49152 + 4) * 2
    assert logits_file.logits_file_bytes(1, 128, 5) == 20 + 128 * 4 + 63 * (6 + 4) * 2


# ---- numpy scoring (the llama-cpp-python method) ----

def test_encoded_log_probs_round_trip_within_the_top_16_nats() -> None:
    requires("llamacpp")
    import numpy as np
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(5, 33)) * 6).astype(np.float32)
    logits[0] = 0.0  # a flat row
    decoded = dn.decode_log_probs(dn.encode_log_probs(logits), 33)
    exact = logits - np.log(np.exp(logits.astype(np.float64)).sum(axis=1, keepdims=True))
    kept = exact > exact.max(axis=1, keepdims=True) - 16
    assert np.abs(decoded - exact)[kept].max() < 16 / 65535 + 1e-5
    assert (decoded[~kept] <= exact.max(axis=1, keepdims=True).repeat(33, axis=1)[~kept] - 16 + 1e-4).all()


def test_scores_match_a_direct_kl_and_top1() -> None:
    requires("llamacpp")
    import numpy as np
    rng = np.random.default_rng(1)
    base_logits = (rng.normal(size=(40, 50)) * 3).astype(np.float32)
    rung_logits = (base_logits + rng.normal(size=base_logits.shape) * 0.5).astype(np.float32)
    nxt = rng.integers(0, 50, size=40).astype(np.int32)
    base = dn.encode_log_probs(base_logits)

    same = dn._Scores([], [], [], [])
    dn.score_rows(base_logits, base, nxt, same)
    assert abs(same.kl[0]).max() < 1e-3 and same.same_top[0].all()

    drift = dn._Scores([], [], [], [])
    dn.score_rows(rung_logits, base, nxt, drift)

    def log_softmax(x: object) -> object:
        x = np.asarray(x, dtype=np.float64)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    lp, lq = log_softmax(base_logits), log_softmax(rung_logits)
    direct = (np.exp(lp) * (lp - lq)).sum(axis=1)
    assert np.allclose(drift.kl[0], direct, atol=2e-3)
    assert (drift.same_top[0] == (base_logits.argmax(1) == rung_logits.argmax(1))).all()
    assert np.allclose(drift.nll[0], -lq[np.arange(40), nxt]) and 0 < drift.same_top[0].mean() < 1


# ---- the meter against a stand-in llama-perplexity ----

FAKE_TOOL = r'''#!PYTHON
"""Acts as llama-perplexity: a "token" is a word; KL runs print a captured real output."""
import json, os, re, struct, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(json.dumps(args) + "\n")
opt = lambda name, default=None: args[args.index(name) + 1] if name in args else default
out = sys.stdout.buffer
if os.environ.get("FAKE_FAIL"):
    out.write(b"load_tensors: loading model\nllama_model_load: error loading model: tensor data is not within bounds\n")
    sys.exit(1)
c, base = int(opt("-c")), opt("--kl-divergence-base")
if "--kl-divergence" not in args:
    n = len(Path(opt("-f")).read_text(encoding="utf-8").split()) + 1
    with open(base, "wb") as f:
        f.write(struct.pack("<8sI", b"_logits_", c))
        if n < 2 * c:
            out.write(f"E perplexity: the data file you provided tokenizes to only {n} tokens\n".encode())
            sys.exit(0)  # as the real one: an error message, exit status 0
        chunks, vocab = min(n // c, int(opt("--chunks", "1000000"))), 7
        f.write(struct.pack("<ii", vocab, chunks))
        f.write(bytes(chunks * c * 4 + chunks * (c - 1 - c // 2) * (2 * ((vocab + 1) // 2) + 4) * 2))
    out.write(f"I perplexity: calculating perplexity over {chunks} chunks, n_ctx={c}, batch_size={c}\n".encode())
else:
    _, ctx, vocab, chunks = struct.unpack("<8sIii", Path(base).read_bytes()[:20])
    text = Path(os.environ["FAKE_KL_LOG"]).read_text(encoding="utf-8")
    text = re.sub(r"computing over \d+ chunks, n_ctx=\d+", f"computing over {chunks} chunks, n_ctx={ctx}", text)
    out.write(text.encode())
'''


@pytest.fixture
def fake_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tool = tmp_path / "bin" / "llama-perplexity"
    tool.parent.mkdir()
    tool.write_text(FAKE_TOOL.replace("PYTHON", sys.executable))
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("AGENTEVAL_LLAMA_PERPLEXITY", str(tool.parent))
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.setenv("FAKE_KL_LOG", str(FIXTURES / "kl-tiny-q4_0.log"))
    monkeypatch.setattr(dv, "_tokenize", lambda model, text: None)  # as without llama-cpp-python
    return calls


def calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n)) + "\n"


def test_meter_runs_the_tool_quietly_and_reuses_the_reference(fake_tool: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    ref, rung = tmp_path / "ref.gguf", tmp_path / "Q4_0.gguf"
    ref.write_bytes(b"r")
    rung.write_bytes(b"q")
    said: list[str] = []
    # 5,000 tokens are too few for two chunks of 4096: the tool says so, and 2048 is used
    meter = DivergenceMeter(ref, text_of(words(5000), "file w"), tmp_path / "work", context=4096, threads=3,
                            log=said.append)
    d = meter.measure(rung, kv_cache="Q4_0")
    assert (d.mean_kl, d.top1_agreement, d.tokens) == (0.002324, pytest.approx(0.62278), 2 * 1023)
    runs = calls(fake_tool)
    assert [r[r.index("-c") + 1] for r in runs] == ["4096", "2048", "2048"]
    kl_run = runs[-1]
    assert kl_run[kl_run.index("-m") + 1] == str(rung) and kl_run[kl_run.index("-t") + 1] == "3"
    assert ["-ctk", "q4_0", "-ctv", "q4_0", "-fa", "on"] == kl_run[-6:] and "--kl-divergence" in kl_run
    assert capsys.readouterr().out == ""  # the tool's output went to logs in work_dir
    work = tmp_path / "work"
    assert len(list(work.glob("divergence-*-Q4_0.gguf-kv-q4_0.log"))) == 1 and not list(work.glob("*.partial"))
    [logits] = work.glob("reference-*.logits")
    before = logits.stat()

    again = DivergenceMeter(ref, text_of(words(5000), "file w"), work, context=4096, log=said.append)
    assert again.prepare().path == logits and len(calls(fake_tool)) == 3  # no new reference pass
    assert (logits.stat().st_mtime_ns, logits.stat().st_ino) == (before.st_mtime_ns, before.st_ino)
    assert any("reusing" in s for s in said)


def test_meter_caps_chunks_at_max_tokens(fake_tool: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref.gguf"
    ref.write_bytes(b"r")
    meter = DivergenceMeter(ref, text_of(words(20_000), "file w"), tmp_path / "w", max_tokens=MIN_TOKENS, log=print)
    assert meter.prepare().chunks == 8 and meter.prepare().tokens == 2040
    assert calls(fake_tool)[0][-2:] == ["--chunks", "8"]


def test_meter_reports_a_short_text_and_a_failure_in_one_line(fake_tool: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ref = tmp_path / "ref.gguf"
    ref.write_bytes(b"r")
    with pytest.raises(BadInputError, match=r"has 601 tokens; at least 4096 are needed to score 2000"):
        DivergenceMeter(ref, text_of(words(600), "file w"), tmp_path / "a", log=print).prepare()
    # two chunks or more but too few positions at 512, 256 and 128: the tool never said the count
    with pytest.raises(BadInputError, match=r"has fewer than 3072 tokens; at least 4096 are needed"):
        DivergenceMeter(ref, text_of(words(3000), "file w"), tmp_path / "a", log=print).prepare()
    assert [r[r.index("-c") + 1] for r in calls(fake_tool)] == ["512", "512", "256", "128"]
    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(BadInputError) as e:
        DivergenceMeter(ref, text_of(words(9000), "file w"), tmp_path / "b", log=print).prepare()
    msg = str(e.value)
    assert "\n" not in msg and "exit 1" in msg and "tensor data is not within bounds" in msg
    assert str(tmp_path / "b" / "divergence-") in msg and "-reference-ref.gguf.log" in msg
    left = sorted(p.name for p in (tmp_path / "b").glob("reference-*"))
    assert [n.rsplit(".", 1)[1] for n in left] == ["lock"]  # nothing half-made is left to reuse


def test_a_killed_pass_leaves_nothing_reused(fake_tool: Path, tmp_path: Path) -> None:
    """A kill -9 mid-pass leaves a .partial file, or a whole file whose sidecar was never
    written: neither is reused, the next meter makes the reference again."""
    ref = tmp_path / "ref.gguf"
    ref.write_bytes(b"r")
    text = text_of(words(9000), "file w")
    made = DivergenceMeter(ref, text, tmp_path / "w", log=print).prepare()
    made.path.with_name(made.path.name + ".partial").write_bytes(b"_logits_ cut short")
    made.path.with_suffix(".json").unlink()
    again = DivergenceMeter(ref, text, tmp_path / "w", log=print).prepare()
    assert again == made and len(calls(fake_tool)) == 2
    assert not made.path.with_name(made.path.name + ".partial").exists() and made.path.with_suffix(".json").is_file()


def test_meter_refuses_a_rung_of_another_vocabulary(fake_tool: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ref, rung = tmp_path / "ref.gguf", tmp_path / "other.gguf"
    ref.write_bytes(b"r")
    rung.write_bytes(b"o")
    monkeypatch.setenv("FAKE_KL_LOG", str(FIXTURES / "kl-other-vocab.log"))
    meter = DivergenceMeter(ref, text_of(words(9000), "file w"), tmp_path / "w", log=print)
    with pytest.raises(BadInputError, match=r"vocabulary of 49152 tokens and the reference ref.gguf 4096"):
        meter.measure(rung)
    with pytest.raises(BadInputError, match=r"unknown KV cache type 'q3'"):
        meter.measure(rung, kv_cache="q3")


def test_tool_is_found_by_env_then_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTEVAL_LLAMA_PERPLEXITY", str(tmp_path))
    assert dv.find_perplexity_tool() == tmp_path / "llama-perplexity"
    monkeypatch.setenv("AGENTEVAL_LLAMA_PERPLEXITY", str(tmp_path / "custom-binary"))
    assert dv.find_perplexity_tool() == tmp_path / "custom-binary"
    monkeypatch.delenv("AGENTEVAL_LLAMA_PERPLEXITY")
    on_path = tmp_path / "bin" / "llama-perplexity"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert dv.find_perplexity_tool() == on_path


def test_default_threads_are_half_the_cpus(fake_tool: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref.gguf"
    ref.write_bytes(b"r")
    meter = DivergenceMeter(ref, text_of("x", "file x"), tmp_path / "w", log=print)
    assert meter.threads == max(1, (os.cpu_count() or 2) // 2) and meter.method == "llama-perplexity"
    with pytest.raises(BadInputError, match="too small"):
        DivergenceMeter(ref, text_of("x", "file x"), tmp_path / "w", context=64)
