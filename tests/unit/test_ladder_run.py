"""The ladder's plumbing without a model: rung labels, the config it writes for the runner,
server arguments per engine, options that survive --resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenteval.config import load_config
from agenteval.errors import BadInputError
from agenteval.ladder.quantize import RungFile
from agenteval.ladder.run import LadderOptions, Rung
from agenteval.ladder.rung_config import ServedRung, check_kv_caches, server_args, toml_string, write_config


def rung_file(quant: str, reference: bool = False, requantized: bool = False) -> RungFile:
    return RungFile(quant=quant, path=Path(f"/cache/{quant}.gguf"), file_bytes=100, sha256="ab" * 32, params=50,
                    bits_per_weight=4.5, source_quant="F16", requantized=requantized, reference=reference,
                    imatrix_sha256=None, quantizer=None, quantize_s=None, cached=True)


def test_labels_name_the_quant_and_a_kv_cache_other_than_the_default() -> None:
    assert Rung(rung_file("Q4_K_M"), None).label == "Q4_K_M"
    assert Rung(rung_file("Q4_K_M"), "f16").label == "Q4_K_M"
    assert Rung(rung_file("Q4_K_M"), "q8_0").label == "Q4_K_M@kv=q8_0"
    assert Rung(rung_file("F16", reference=True), None).is_reference
    assert not Rung(rung_file("F16", reference=True), "q4_0").is_reference  # the KV cache's loss is its own rung
    assert not Rung(rung_file("Q8_0"), None).is_reference


def test_kv_cache_names_are_checked_and_deduplicated() -> None:
    assert check_kv_caches(["F16", "q8_0", "q8_0"]) == ["f16", "q8_0"]
    with pytest.raises(BadInputError, match="unknown K/V cache type"):
        check_kv_caches(["q3_k"])


def test_every_rung_gets_the_same_threads_and_its_own_kv_cache() -> None:
    assert server_args("llama-server", 3, None) == ["-t", "3", "-tb", "3"]
    assert server_args("llama-server", 3, "q8_0") == ["-t", "3", "-tb", "3", "--cache-type-k", "q8_0",
                                                      "--cache-type-v", "q8_0", "--flash-attn", "on"]
    assert server_args("llama-server", 1, "f16") == ["-t", "1", "-tb", "1", "--cache-type-k", "f16",
                                                     "--cache-type-v", "f16"]  # a float V cache needs no flash attention
    assert server_args("llamacpp", 2, "q4_0") == ["--n_threads", "2", "--n_threads_batch", "2", "--type_k", "2",
                                                  "--type_v", "2", "--flash_attn", "true"]


def test_the_written_config_loads_as_one_alias_per_rung(tmp_path: Path) -> None:
    rungs = [Rung(rung_file("F16", reference=True), None), Rung(rung_file("Q4_K_M", requantized=True), None),
             Rung(rung_file("Q4_K_M", requantized=True), "q8_0")]
    path = write_config(tmp_path / "run" / "ladder.toml", [r.served() for r in rungs], engine="llama-server",
                        threads=2, context=4096, temperature=0.0, chat_template="chatml", source_name="m-f16.gguf")
    config = load_config(path)
    for rung in rungs:
        cfg = config.models[rung.label]
        assert cfg.engine == "llama-server" and cfg.path == str(rung.file.path) and cfg.context == 4096
        assert cfg.chat_template == "chatml" and cfg.args[:4] == ["-t", "2", "-tb", "2"]
        assert cfg.sampling == {"temperature": 0.0, "seed": 0}  # the same sampling and seed on every rung
        assert cfg.provenance == rung.provenance
    assert "--cache-type-k" in config.models["Q4_K_M@kv=q8_0"].args
    assert config.models["Q4_K_M@kv=q8_0"].provenance == "requantized from F16, K/V cache q8_0"
    assert config.models["F16"].provenance == "reference (F16)"


@pytest.mark.parametrize("name", ['m "quoted" \\ back.gguf', "modèle-😀.gguf", "tab\there.gguf", "a\x7fb.gguf",
                                  "[models.evil]\npath = 'x'.gguf"])
def test_any_file_name_survives_the_written_config(tmp_path: Path, name: str) -> None:
    """JSON's escapes are not TOML's (surrogate pairs): names are written as TOML strings."""
    served = ServedRung("Q4_K_M", tmp_path / name, None, "quantized from F16")
    config = load_config(write_config(tmp_path / "ladder.toml", [served], engine="llamacpp", threads=1, context=2048,
                                      temperature=0.7, chat_template=None, source_name=name,
                                      extra_args=("--n_gpu_layers", "99")))
    assert list(config.models).count("Q4_K_M") == 1 and config.models["Q4_K_M"].path == str(tmp_path / name)
    assert "evil" not in config.models
    assert config.models["Q4_K_M"].sampling == {"temperature": 0.7, "seed": 0}
    assert config.models["Q4_K_M"].args[-2:] == ["--n_gpu_layers", "99"]


def test_a_name_that_is_not_unicode_is_one_clear_error() -> None:
    with pytest.raises(BadInputError, match="not valid Unicode"):
        toml_string("bad-\udce9.gguf")  # a byte that was not UTF-8, as os.fsdecode gives it


def test_options_survive_the_round_trip_through_the_run_record(tmp_path: Path) -> None:
    opts = LadderOptions(source=tmp_path / "m.gguf", quants=["Q8_0", "Q2_K"], task_paths=["tasks/folder"],
                         samples=3, variants=["folder/one-file"], kv_caches=["f16", "q8_0"], engine="llamacpp",
                         context=2048, temperature=0.5, server_args=["-ngl", "99"], imatrix=tmp_path / "imatrix.dat", allow_requantize=True,
                         kl_text=tmp_path / "t.txt", threads=1, budgets={"max_steps": 4})
    fresh = LadderOptions(source=Path(), quants=[], task_paths=[], db=tmp_path / "db.duckdb", resume="r1")
    back = fresh.resumed(opts.to_config())
    assert back.to_config() == opts.to_config()
    assert back.db == tmp_path / "db.duckdb" and back.resume == "r1"  # where this invocation works stays its own


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_stopped_while_quantizing_keeps_the_run_resumable(stop: type[BaseException], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped before its trials, by Ctrl-C or by an error, a ladder is recorded as interrupted or
    failed (never running), with what --resume needs."""
    from agenteval.errors import InterruptedRunError, RunFailedError
    from agenteval.ladder import run as ladder_run
    from agenteval.ladder.quantize import SourceModel
    from agenteval.records import RunStatus
    from agenteval.store import Store

    source = SourceModel(path=tmp_path / "m-f16.gguf", quant="F16", params=50, file_bytes=100, sha256="ab" * 32)

    def stopped(*args: object, **kwargs: object) -> None:
        raise stop("injected while quantizing")

    monkeypatch.setattr(ladder_run, "read_source", lambda path: source)
    monkeypatch.setattr(ladder_run, "_check_can_run", lambda engine: None)
    monkeypatch.setattr(ladder_run, "_divergence_meter", lambda *args: None)
    monkeypatch.setattr(ladder_run, "make_rungs", stopped)
    opts = LadderOptions(source=source.path, quants=["Q4_K_M", "Q2_K"], kv_caches=["q8_0"],
                         task_paths=[str(Path(__file__).parents[1] / "fixtures" / "tasks" / "short")],
                         engine="llama-server", db=tmp_path / "db.duckdb", out=tmp_path / "reports")
    expected = InterruptedRunError if stop is KeyboardInterrupt else RunFailedError
    with pytest.raises(expected, match="agenteval ladder --resume") as caught:
        ladder_run.run_ladder(opts, log=lambda m: None)
    assert caught.value.exit_code == (130 if stop is KeyboardInterrupt else 1)
    with Store(tmp_path / "db.duckdb", read_only=True) as store:
        [summary] = store.run_summaries()
        run = store.run(summary.run_id)
    assert summary.run_id in str(caught.value)
    if stop is KeyboardInterrupt:
        assert run.status is RunStatus.interrupted
    else:
        assert run.status is RunStatus.failed and run.error == "RuntimeError: injected while quantizing"
        assert isinstance(caught.value, RunFailedError)
        assert "injected while quantizing" in Path(caught.value.traceback_path).read_text()
    assert run.models == ["F16", "F16@kv=q8_0", "Q4_K_M", "Q4_K_M@kv=q8_0", "Q2_K", "Q2_K@kv=q8_0"]
    stored = run.config["ladder"]
    assert stored["quants"] == ["Q4_K_M", "Q2_K"] and stored["engine"] == "llama-server"
    assert LadderOptions(source=Path(), quants=[], task_paths=[], resume=summary.run_id).resumed(stored).quants == \
        ["Q4_K_M", "Q2_K"]


def test_a_resumed_ladder_refuses_a_source_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source's sha256 is recorded when the ladder begins; a different file on --resume would
    mix two models' figures in one ladder."""
    from agenteval.errors import InterruptedRunError
    from agenteval.ladder import run as ladder_run
    from agenteval.ladder.quantize import SourceModel

    before = SourceModel(path=tmp_path / "m-f16.gguf", quant="F16", params=50, file_bytes=100, sha256="ab" * 32)
    after = SourceModel(path=before.path, quant="F16", params=50, file_bytes=100, sha256="cd" * 32)

    def stopped(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ladder_run, "_check_can_run", lambda engine: None)
    monkeypatch.setattr(ladder_run, "_divergence_meter", lambda *args: None)
    monkeypatch.setattr(ladder_run, "make_rungs", stopped)
    monkeypatch.setattr(ladder_run, "read_source", lambda path: before)
    opts = LadderOptions(source=before.path, quants=["Q4_K_M"], engine="llama-server", db=tmp_path / "db.duckdb",
                         task_paths=[str(Path(__file__).parents[1] / "fixtures" / "tasks" / "short")],
                         out=tmp_path / "reports")
    with pytest.raises(InterruptedRunError) as caught:
        ladder_run.run_ladder(opts, log=lambda m: None)
    run_id = str(caught.value).split("--resume ")[1]
    resume = LadderOptions(source=Path(), quants=[], task_paths=[], db=tmp_path / "db.duckdb",
                           out=tmp_path / "reports", resume=run_id)
    monkeypatch.setattr(ladder_run, "read_source", lambda path: after)
    with pytest.raises(BadInputError, match="changed since ladder"):
        ladder_run.run_ladder(resume, log=lambda m: None)
    monkeypatch.setattr(ladder_run, "read_source", lambda path: before)  # the same file resumes
    with pytest.raises(InterruptedRunError):
        ladder_run.run_ladder(resume, log=lambda m: None)
