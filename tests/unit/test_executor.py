"""Executor selection by name, and the Ray executor's errors that need no cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from agenteval.config import ModelConfig, ProjectConfig
from agenteval.errors import BadInputError, ClusterError
from agenteval.runner.executor import ExecutorRequest, LocalExecutor, create_executor
from agenteval.runner.model_registry import create_model
from agenteval.serving.served import ServedModel
from tests.conftest import requires


def _request(name: str, models: dict[str, Any] | None = None, address: str | None = None) -> ExecutorRequest:
    return ExecutorRequest(name=name, concurrency=2, address=address, tasks=(), images={}, models=models or {},
                           log=lambda m: None)


def test_local_is_built_by_name() -> None:
    executor = create_executor(_request("local"))
    assert isinstance(executor, LocalExecutor)
    executor.shutdown(cancel_pending=False)


def test_unknown_executor_names_the_known_ones() -> None:
    with pytest.raises(BadInputError, match="unknown executor 'dask' .*local.*ray"):
        create_executor(_request("dask"))


def test_ray_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BadInputError, match=r"pip install 'agenteval\[ray\]'"):
        create_executor(_request("ray"))


def test_ray_refuses_models_whose_server_agenteval_starts(tmp_path: Path) -> None:
    requires("ray")
    cfg = ModelConfig(engine="llamacpp", path=str(tmp_path / "tiny.gguf"))
    served = create_model("tiny", ProjectConfig(models={"tiny": cfg}))  # built, never started
    assert isinstance(served, ServedModel) and served.server is not None
    with pytest.raises(ClusterError, match="model tiny: agenteval starts its server .*openai:NAME@http"):
        create_executor(_request("ray", models={"tiny": served}))


def test_ray_bad_address_fails_fast() -> None:
    requires("ray")
    with pytest.raises(BadInputError, match="bad --ray-address 'nowhere'"):
        create_executor(_request("ray", address="nowhere"))
