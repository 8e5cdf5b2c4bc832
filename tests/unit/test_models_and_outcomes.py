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


class _NotAModel:
    """What a broken provider builds."""


def _fake_provider(monkeypatch: pytest.MonkeyPatch, create: object) -> None:
    import sys
    import types

    from agenteval import plugins

    module = types.ModuleType("fake_provider")
    module.create = create  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_provider", module)
    known = {**plugins.registered(plugins.MODELS), "fake": "fake_provider:create"}
    monkeypatch.setattr(plugins, "registered", lambda group: known if group == plugins.MODELS else {})


def test_a_plugin_provider_can_be_aliased_and_given_a_managed_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from agenteval.config import ModelConfig, ProjectConfig
    from agenteval.models import ChatModel, ModelRequest, ToolProtocol
    from agenteval.models.chat import ChatResponse
    from agenteval.models.engines.command import CommandServer
    from agenteval.models.served import ServedModel
    from agenteval.records import ModelCall

    requests: list[ModelRequest] = []

    class Echo(ChatModel):
        def __init__(self, request: ModelRequest) -> None:
            self.spec = request.spec
            requests.append(request)

        def chat(self, messages: object, **kw: object) -> ChatResponse:  # type: ignore[override]
            return ChatResponse(str(self.spec.base_url), "", [], "stop", ModelCall(index=0, model="m"))

        def fingerprint_info(self) -> dict[str, object]:
            return {"echo": True}

    _fake_provider(monkeypatch, Echo)
    plain = create_model("fake:x@http://h/v1")
    assert isinstance(plain, ServedModel) and plain.chat([]).content == "http://h/v1"
    cfg = ModelConfig(provider="fake", engine="command", command="serve --port {port}", tools="text", name="served")
    model = create_model("mine", ProjectConfig(models={"mine": cfg}))
    assert isinstance(model, ServedModel) and isinstance(model.server, CommandServer)
    assert model.tool_protocol is ToolProtocol.text and model.spec.label == "mine"
    client = model.make_client("http://127.0.0.1:1234/v1") if model.make_client else None
    assert client is not None and client.chat([]).content == "http://127.0.0.1:1234/v1"
    assert requests[-1].settings is cfg and requests[-1].spec.name == "served"


def test_a_provider_that_builds_no_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_provider(monkeypatch, lambda request: _NotAModel())
    with pytest.raises(ModelSpecError, match="neither a ChatModel nor a DirectSolver"):
        create_model("fake:x")


def test_builtins_are_declared_once_in_pyproject() -> None:
    import tomllib

    from agenteval import plugins

    declared = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["entry-points"]
    for group in (plugins.MODELS, plugins.EXECUTORS):
        assert declared[group].items() <= plugins.registered(group).items()


@pytest.mark.parametrize("status,sent_tools,failure,kind", [
    (400, True, "tools_rejected", "infra"), (422, True, "tools_rejected", "infra"),
    (400, False, "prompt_rejected", "model"), (413, False, "prompt_rejected", "model"),
    (404, False, "server_error", "infra"), (500, True, "server_error", "infra"),
])
def test_http_statuses_are_classified_without_reading_the_message(status: int, sent_tools: bool, failure: str,
                                                                  kind: str) -> None:
    from agenteval.models.chat import http_failure

    assert (http_failure(status, sent_tools), http_failure(status, sent_tools).kind) == (failure, kind)


def test_stop_reasons_map_to_statuses_and_failure_modes() -> None:
    from agenteval.agent.state import Stop, StopReason
    from agenteval.models import AgentStatus

    expected = {StopReason.done: None, StopReason.step_limit: FailureMode.agent_limit,
                StopReason.token_limit: FailureMode.agent_limit, StopReason.time_limit: FailureMode.agent_limit,
                StopReason.answer_cut: FailureMode.agent_limit, StopReason.model_error: FailureMode.model_error,
                StopReason.infra_error: FailureMode.infra_error, StopReason.interrupted: FailureMode.infra_error,
                StopReason.repetition: FailureMode.agent_limit, StopReason.solver: None}
    assert set(expected) == set(StopReason)
    for reason, mode in expected.items():
        outcome = AgentOutcome(Stop(reason).status)
        assert classify(outcome, _verify(False), None) is (mode or FailureMode.verify_failed)
    assert AgentOutcome("limit").status is AgentStatus.limit
    with pytest.raises(ValueError):
        AgentOutcome("finished")  # type: ignore[arg-type]


def test_an_openai_alias_needs_a_url_or_an_engine() -> None:
    from agenteval.config import ModelConfig, ProjectConfig

    with pytest.raises(ModelSpecError, match="give 'base_url'.*or 'engine'"):
        create_model("r1", ProjectConfig(models={"r1": ModelConfig(name="deepseek-r1")}))
