"""The ladder's plumbing without a model: rung labels, the config it writes for the runner,
server arguments per engine, options that survive --resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenteval.config import load_config
from agenteval.errors import BadInputError
from agenteval.ladder.quantize import RungFile
from agenteval.ladder.run import (
    LadderOptions, Rung, check_kv_caches, server_args, write_config,
)


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
    assert server_args("llama-server", 3, None) == ["-t", "3"]
    assert server_args("llama-server", 3, "q8_0") == ["-t", "3", "--cache-type-k", "q8_0", "--cache-type-v", "q8_0",
                                                      "--flash-attn", "on"]
    assert server_args("llama-server", 1, "f16")[-4:] == ["--cache-type-k", "f16", "--cache-type-v", "f16"]
    assert server_args("llamacpp", 2, "q4_0") == ["--n_threads", "2", "--type_k", "2", "--type_v", "2",
                                                  "--flash_attn", "true"]


def test_the_written_config_loads_as_one_alias_per_rung(tmp_path: Path) -> None:
    rungs = [Rung(rung_file("F16", reference=True), None), Rung(rung_file("Q4_K_M"), None),
             Rung(rung_file("Q4_K_M"), "q8_0")]
    opts = LadderOptions(source=Path("/models/m-f16.gguf"), quants=["Q4_K_M"], task_paths=["tasks/folder"],
                         context=4096, chat_template="chatml")
    path = write_config(tmp_path / "run" / "ladder.toml", rungs, opts, "llama-server", 2)
    config = load_config(path)
    for rung in rungs:
        cfg = config.models[rung.label]
        assert cfg.engine == "llama-server" and cfg.path == str(rung.file.path) and cfg.context == 4096
        assert cfg.chat_template == "chatml" and cfg.args[:2] == ["-t", "2"]
        assert cfg.sampling == {"temperature": 0.0, "seed": 0}  # the same sampling and seed on every rung
    assert "--cache-type-k" in config.models["Q4_K_M@kv=q8_0"].args


def test_options_survive_the_round_trip_through_the_run_record(tmp_path: Path) -> None:
    opts = LadderOptions(source=tmp_path / "m.gguf", quants=["Q8_0", "Q2_K"], task_paths=["tasks/folder"],
                         samples=3, variants=["folder/one-file"], kv_caches=["f16", "q8_0"], engine="llamacpp",
                         context=2048, imatrix=tmp_path / "imatrix.dat", allow_requantize=True,
                         kl_text=tmp_path / "t.txt", threads=1, budgets={"max_steps": 4})
    fresh = LadderOptions(source=Path(), quants=[], task_paths=[], db=tmp_path / "db.duckdb", resume="r1")
    back = fresh.resumed(opts.to_config())
    assert back.to_config() == opts.to_config()
    assert back.db == tmp_path / "db.duckdb" and back.resume == "r1"  # where this invocation works stays its own
