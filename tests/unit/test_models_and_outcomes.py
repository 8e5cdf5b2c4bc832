"""Model names, the provider registry, and how outcomes become failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenteval.errors import ModelSpecError
from agenteval.models import AgentOutcome, ModelSpec, create_model, providers
from agenteval.records import Check, FailureMode, Verdict
from agenteval.runner.trial import classify
from agenteval.verify import VerifyOutcome


@pytest.mark.parametrize("text,provider,name,url", [
    ("oracle", "oracle", "", None),
    ("ollama:qwq:32b", "ollama", "qwq:32b", None),
    ("openai:r1@http://127.0.0.1:8080/v1", "openai", "r1", "http://127.0.0.1:8080/v1"),
])
def test_parse(text: str, provider: str, name: str, url: str | None) -> None:
    spec = ModelSpec.parse(text)
    assert (spec.provider, spec.name, spec.base_url) == (provider, name, url)
    assert spec.label == text


def test_bad_and_unknown_models() -> None:
    with pytest.raises(ModelSpecError, match="bad model"):
        ModelSpec.parse("Not A Model!")
    with pytest.raises(ModelSpecError, match=r"unknown model provider 'gpt5'.*known: .*nop.*oracle"):
        create_model("gpt5:x")


def test_builtins_registered() -> None:
    assert {"oracle", "nop"} <= set(providers())
    assert create_model("nop").spec.label == "nop"


def _verify(passed: bool | None) -> VerifyOutcome:
    if passed is None:
        return VerifyOutcome(verdict=None, error="no verdict")
    return VerifyOutcome(verdict=Verdict.from_checks([Check(name="c", passed=passed)]))


def test_classify() -> None:
    done, limit = AgentOutcome("done"), AgentOutcome("limit")
    assert classify(done, _verify(True), None) is None
    assert classify(limit, _verify(True), None) is None  # the work is what counts
    assert classify(limit, _verify(False), None) is FailureMode.agent_limit
    assert classify(done, _verify(False), None) is FailureMode.verify_failed
    assert classify(done, _verify(None), None) is FailureMode.verify_error
    assert classify(AgentOutcome("model_error"), _verify(False), None) is FailureMode.model_error
    assert classify(None, None, FailureMode.sandbox_error) is FailureMode.sandbox_error


def test_verdict_needs_checks() -> None:
    assert not Verdict.from_checks([]).passed
    v = Verdict.from_checks([Check(name="a", passed=True, weight=3), Check(name="b", passed=False)])
    assert not v.passed and v.score == 0.75


def test_ollama_v1_endpoint_gets_a_warning() -> None:
    lines: list[str] = []
    create_model("openai:qwq@http://127.0.0.1:11434/v1").preflight(lines.append)
    assert lines and "silently truncates" in lines[0] and "ollama:qwq" in lines[0]
    lines.clear()
    create_model("openai:r1@http://127.0.0.1:8080/v1").preflight(lines.append)
    assert lines == []


def test_aliases_from_config(tmp_path: Path) -> None:
    from agenteval.config import load_config
    from agenteval.errors import BadInputError

    cfg_file = tmp_path / "agenteval.toml"
    cfg_file.write_text('[run]\nsamples = 4\n[models.r1]\nbase_url = "http://127.0.0.1:8080/v1"\nname = "deepseek-r1"\n')
    cfg = load_config(cfg_file)
    assert cfg.run.samples == 4 and {"r1", "tiny", "tiny-q4"} <= set(cfg.models)
    model = create_model("r1", cfg)
    assert model.spec.label == "r1" and model.client.base_url == "http://127.0.0.1:8080/v1"
    cfg_file.write_text('[models.x]\nengin = "transformers"\n')
    with pytest.raises(BadInputError, match=r"unknown key 'models.x.engin'; did you mean 'engine'"):
        load_config(cfg_file)
    cfg_file.write_text('[models.x]\nengine = "llamacpp"\n')
    with pytest.raises(BadInputError, match="needs 'path'"):
        load_config(cfg_file)
    with pytest.raises(BadInputError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


def test_missing_engine_model_file_is_bad_input(tmp_path: Path) -> None:
    from agenteval.config import ModelConfig, ProjectConfig
    from agenteval.errors import BadInputError
    from agenteval.models.served import build_served

    cfg = ModelConfig(engine="command", command="true", path=str(tmp_path / "nope.gguf"))
    model = build_served("m", cfg, ProjectConfig(models={"m": cfg}))
    model.preflight(lambda m: None)  # command engines check nothing of their own
    cfg = ModelConfig(engine="llamacpp", path=str(tmp_path / "nope.gguf"))
    model = build_served("m", cfg, ProjectConfig(models={"m": cfg}))
    with pytest.raises(BadInputError, match="does not exist|pip install"):
        model.preflight(lambda m: None)
