"""Shared fixtures, and the requirement gate every skip goes through.

A test that needs a part this machine may lack (a Docker engine, a model server, the browser)
asks ``requires(part)``, or calls ``missing(part, reason)`` where it found the part missing
itself. Where ``AGENTEVAL_REQUIRE`` names the part (or is ``all``, as in CI), a missing part
fails the test; elsewhere it skips with the reason. Parts CI's kind of machine cannot have at
all (``CANNOT_HAVE_HERE``: a GPU) skip even then, and the session counts them. With
``AGENTEVAL_REQUIRE=all``, a skip from anywhere else (``pytest.skip``, ``importorskip``, a
``skipif`` mark) fails the session: a skipped check is never a pass.
"""

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


# What each part is and how to get it.
PARTS: dict[str, str] = {
    "docker": "a Docker engine (bash sandboxes/setup-engine.sh)",
    "llamacpp": "llama-cpp-python (pip install -e '.[llamacpp]' --find-links \"$(bash .ci/llamacpp-wheel.sh)\")",
    "serve": "torch, transformers and gguf (pip install -e '.[serve]')",
    "llama-server": "llama.cpp's llama-server, llama-quantize and llama-perplexity (bash .ci/llama-server.sh)",
    "real-models": "the SmolLM2 and Gemma 3 GGUFs (bash .ci/real-models.sh)",
    "browser": "a headless Chromium, its chromedriver and selenium (bash tests/setup-browser.sh)",
    "ray": "Ray (pip install -e '.[ray]')",
    "wheel-cache": "the llama-cpp-python wheel (bash .ci/llamacpp-wheel.sh)",
    "git": "a git checkout of the repository",
    "root": "root, to run code as other uids (the verifier's solution identity)",
    "gpu": "an NVIDIA GPU",
}
CANNOT_HAVE_HERE = frozenset({"gpu"})  # CI's machines have none: skipped and counted, even where all is required
GATE = "requires "  # how every skip reason of the gate begins: 'requires PART: why'
_MODULES = {"llamacpp": ("llama_cpp", "numpy"), "serve": ("torch", "transformers", "gguf"), "ray": ("ray",)}


def _wanted() -> set[str]:
    return {p.strip() for p in os.environ.get("AGENTEVAL_REQUIRE", "").split(",") if p.strip()}


def required(part: str) -> bool:
    """Whether a missing ``part`` fails (``AGENTEVAL_REQUIRE`` = all, or a comma list naming it)."""
    return part not in CANNOT_HAVE_HERE and bool({"all", part} & _wanted())


def missing(part: str, reason: str) -> NoReturn:
    """``part`` is not here (``reason`` says what was looked for): fail where it is required, else
    skip, naming the part, so a missing part is never a silent pass."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}: one of {', '.join(PARTS)}")
    if required(part):
        pytest.fail(f"AGENTEVAL_REQUIRE={os.environ.get('AGENTEVAL_REQUIRE')} but {part} is missing: {reason} "
                    f"(needs {PARTS[part]})")
    pytest.skip(f"{GATE}{part}: {reason} (needs {PARTS[part]})")


def requires(part: str) -> None:
    """Go on only where ``part`` is here: the Python packages of an extra, or Ray's command."""
    import importlib.util

    absent = [m for m in _MODULES.get(part, ()) if importlib.util.find_spec(m) is None]
    if part == "ray" and shutil.which("ray") is None:
        absent.append("the ray command")
    if absent:
        missing(part, f"{', '.join(absent)} not installed")
    if part not in _MODULES:
        raise ValueError(f"requires({part!r}) cannot check that part itself: call missing({part!r}, reason)")


def _skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With AGENTEVAL_REQUIRE=all: a skip the gate did not allow fails the session; the allowed
    ones (parts this machine cannot have) are counted in one line that .ci/run prints."""
    if "all" not in _wanted():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skips = [_skip_reason(r) for r in (reporter.stats.get("skipped", []) if reporter else [])]
    allowed = [s for s in skips if any(s.startswith(f"{GATE}{p}:") for p in CANNOT_HAVE_HERE)]
    by_part = {p: sum(s.startswith(f"{GATE}{p}:") for s in allowed) for p in sorted(CANNOT_HAVE_HERE)}
    if reporter:
        reporter.write_line(f"requirement gate: {len(allowed)} checks skipped for parts this machine cannot have: "
                            + ", ".join(f"{p} ({n})" for p, n in by_part.items()))
    others = [s for s in skips if s not in allowed]
    if others:
        if reporter:
            for s in others[:20]:
                reporter.write_line(f"requirement gate: a skip is not a pass here: {s}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
        missing("docker", str(e))


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
