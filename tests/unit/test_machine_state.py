"""The leak guard of the test session (tests/machine_state.py) sees what a test leaves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.machine_state import SESSION_MARK, left_behind, snapshot


def test_a_process_started_by_the_session_is_seen_until_it_ends() -> None:
    assert os.environ.get(SESSION_MARK), "the session fixture marks the environment"
    before = snapshot()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        leaks = left_behind(before, snapshot())
        assert [p.split()[0] for p in leaks["processes the suite started"]] == [str(child.pid)]
    finally:
        child.kill()
        child.wait()
    assert "processes the suite started" not in left_behind(before, snapshot())


def test_a_process_without_the_mark_is_not_the_suites() -> None:
    before = snapshot()
    env = {k: v for k, v in os.environ.items() if k != SESSION_MARK}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        assert "processes the suite started" not in left_behind(before, snapshot())
    finally:
        child.kill()
        child.wait()


def test_temp_folders_ray_files_and_cache_entries_are_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache" / "agenteval" / "models").mkdir(parents=True)
    before = snapshot()
    made = Path(tempfile.mkdtemp(prefix="agenteval-guard-test-"))
    try:
        (tmp_path / "home" / ".ray").mkdir(parents=True)
        (tmp_path / "home" / ".ray" / "auth_token").write_text("x")
        (tmp_path / "cache" / "agenteval" / "server-logs").mkdir()
        (tmp_path / "cache" / "agenteval" / "models" / "m.gguf").write_text("")  # a shared cache: allowed
        leaks = left_behind(before, snapshot())
        assert leaks["agenteval folders in the temp folder"] == [made.name]
        assert leaks["files under ~/.ray"] == [".", "auth_token"]
        assert leaks["entries of ~/.cache/agenteval"] == ["server-logs"]
    finally:
        made.rmdir()
    shutil.rmtree(tmp_path / "home" / ".ray")
    (tmp_path / "cache" / "agenteval" / "server-logs").rmdir()
    assert left_behind(before, snapshot()) == {}
