"""Shared fixtures. Integration tests need a real Docker engine: they skip with
the reason when none answers, unless AGENTEVAL_REQUIRE_DOCKER=1 (CI), where a
missing engine is a failure, never a silent pass."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def missing(reason: str, env: str = "AGENTEVAL_REQUIRE_SERVERS") -> NoReturn:
    """A part the test needs is not here: skip with the reason, or fail where ``env`` is 1 (CI),
    so a missing part is never a silent pass."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{env}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def leaves_nothing_behind() -> Iterator[None]:
    """The session ends with nothing of its own left on the machine (tests/machine_state.py): no
    container, volume, untagged image, process, ~/.ray file or temp folder the suite made."""
    from tests.machine_state import SESSION_MARK, left_behind, snapshot

    os.environ[SESSION_MARK] = uuid.uuid4().hex  # every child process inherits it
    client = _engine_or_none()
    before = snapshot(client)
    session_dir = Path(tempfile.mkdtemp(prefix="agenteval-tests-"))
    # Rungs of test models never land in the user's ladder cache (a test that wants its own sets its own).
    os.environ.setdefault("AGENTEVAL_LADDER_CACHE", str(session_dir / "ladder"))
    yield
    shutil.rmtree(session_dir, ignore_errors=True)
    deadline = time.monotonic() + 20  # servers and browsers told to stop may take a moment to go
    while (leaks := left_behind(before, snapshot(client))) and time.monotonic() < deadline:
        time.sleep(0.5)
    if leaks:
        pytest.fail("the test session left behind: " + "; ".join(f"{kind}: {', '.join(items)}"
                                                                  for kind, items in leaks.items()))


def _engine_or_none() -> Any:
    from agenteval.errors import EngineUnavailableError
    from agenteval.sandbox.engine import connect

    try:
        return connect()
    except EngineUnavailableError:
        return None


@pytest.fixture(scope="session")
def docker_client() -> Any:
    from agenteval.errors import EngineUnavailableError
    from agenteval.sandbox.engine import connect

    try:
        return connect()
    except EngineUnavailableError as e:
        if os.environ.get("AGENTEVAL_REQUIRE_DOCKER") == "1":
            pytest.fail(f"AGENTEVAL_REQUIRE_DOCKER=1 but {e}")
        pytest.skip(f"needs a Docker engine: {e}")


@pytest.fixture(scope="session")
def python_image(docker_client: Any) -> str:
    from agenteval.sandbox.images import ensure_image

    return ensure_image(docker_client, "python", REPO / "sandboxes", log=lambda m: None)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch cwd where reports/ and the DuckDB file land, sandboxes/ resolvable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENTEVAL_SANDBOXES", str(REPO / "sandboxes"))
    yield tmp_path


def leftovers(client: Any) -> tuple[list[str], list[str]]:
    """agenteval containers and volumes that still exist."""
    containers = [c["Names"][0] for c in client.api.containers(all=True, filters={"label": "agenteval.managed"})]
    volumes = [v["Name"] for v in (client.api.volumes(filters={"label": "agenteval.managed"}) or {}).get("Volumes") or []]
    return containers, volumes
