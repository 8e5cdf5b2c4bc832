"""The requirement gate (tests/conftest.py): every skip goes through it; with
AGENTEVAL_REQUIRE=all a missing part fails, a part this machine cannot have is skipped and
counted, and a skip from anywhere else fails the session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SAMPLE = '''
import pytest
from tests.conftest import missing

def test_docker_missing():
    missing("docker", "no engine answers")

def test_gpu_missing():
    missing("gpu", "no nvidia-smi")

def test_stray_skip():
    pytest.skip("skipped without the gate")

def test_passes():
    assert True
'''


def _pytest(tmp_path: Path, require: str | None, *select: str) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_sample.py"
    test.write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "AGENTEVAL_REQUIRE"}
    if require is not None:
        env["AGENTEVAL_REQUIRE"] = require
    args = [a for name in select for a in ("-k", name)]
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "-rs", "--rootdir", str(tmp_path), str(test), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_missing_part_skips_with_its_name_where_nothing_is_required(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, None)
    assert proc.returncode == 0, proc.stdout
    assert "requires docker: no engine answers (needs a Docker engine" in proc.stdout
    assert "3 skipped" in proc.stdout and "requirement gate:" not in proc.stdout


def test_everything_required_fails_a_missing_part_and_a_stray_skip(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "all")
    assert proc.returncode == 1, proc.stdout
    assert "AGENTEVAL_REQUIRE=all but docker is missing: no engine answers" in proc.stdout
    assert "requirement gate: 1 checks skipped for parts this machine cannot have: gpu (1)" in proc.stdout
    assert "requirement gate: a skip is not a pass here: skipped without the gate" in proc.stdout


def test_a_machine_without_a_gpu_still_passes_with_everything_required(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "all", "gpu or passes")
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 1 skipped" in proc.stdout and "gpu (1)" in proc.stdout


def test_a_list_requires_only_the_parts_it_names(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "browser,docker", "docker")
    assert proc.returncode == 1 and "AGENTEVAL_REQUIRE=browser,docker but docker is missing" in proc.stdout
    assert _pytest(tmp_path, "browser", "docker").returncode == 0


def test_an_unknown_part_is_a_mistake_not_a_skip() -> None:
    from tests.conftest import missing

    with pytest.raises(ValueError, match="unknown part 'gpus'"):
        missing("gpus", "typo")
