"""Model names, the provider registry, and how outcomes become failure modes."""

from __future__ import annotations

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
