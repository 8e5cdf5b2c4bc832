"""Harbor task folders read into TaskSpec (no Docker): recognition, the key mapping, the one
warning for unused keys, refusals, and the reward protocol's pass rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agenteval.errors import TaskError
from agenteval.records import ExecRecord
from agenteval.runner.options import RunOptions, with_run_settings
from agenteval.runner.run import warn_ignored_keys
from agenteval.sandbox.base import SandboxLayout
from agenteval.task import expand_task_paths, load_task
from agenteval.verify.harbor import judge, read_rewards
from tests.conftest import FIXTURES

SUITE = FIXTURES / "harbor" / "suite"


def harbor_task(root: Path, toml: str, dockerfile: str | None = "FROM debian:bookworm-slim\nWORKDIR /app\n",
                instruction: str = "Do it.\n") -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test.sh").write_text("#!/bin/bash\necho 1 > /logs/verifier/reward.txt\n")
    (root / "task.toml").write_text(toml)
    (root / "instruction.md").write_text(instruction)
    if dockerfile is not None:
        (root / "environment").mkdir()
        (root / "environment" / "Dockerfile").write_text(dockerfile)
    return root


def test_the_fixture_suite_maps_onto_taskspec() -> None:
    task = load_task(SUITE / "sum-csv")
    box, verifier = task.spec.sandbox, task.spec.verifier
    assert task.name == "sum-csv" and task.spec.instruction == "plain"
    assert (box.build, box.image, box.layout, box.workdir) == ("environment", None, "harbor", None)
    assert (box.memory, box.cpus, box.workspace_size, box.internet) == ("512m", 1.0, "64m", False)
    assert (verifier.protocol, verifier.command, verifier.timeout_sec) == ("reward", "bash /tests/test.sh", 60.0)
    assert task.spec.agent.timeout_sec == 120.0 and set(task.spec.tags) == {"shell", "csv"}
    assert task.environment_dirs(task.variants()[0]) == []  # the build context is never copied into /workspace
    median = load_task(SUITE / "fix-median")
    assert median.spec.description.startswith("Fix a median") and median.ignored_keys == ()  # gpus = 0 says nothing
    assert load_task(SUITE / "word-count").spec.sandbox.internet  # Harbor's default: allow_internet = true


def test_instruction_is_used_as_written(tmp_path: Path) -> None:
    text = "Print {{ name }} and {% raw %} literally.\n"
    task = load_task(harbor_task(tmp_path / "t", 'version = "1.0"\n', instruction=text))
    assert task.render_instruction(task.variants()[0]) == text


def test_every_harbor_key_maps_or_is_named_once(tmp_path: Path) -> None:
    toml = '''schema_version = "1.1"
source = "somewhere"
artifacts = ["/app/out.txt"]
surprise = 1
[task]
name = "org/x"
authors = [{ name = "A" }]
[agent]
timeout_sec = 30
user = "root"
[verifier]
timeout_sec = 40
env = { TOKEN = "${AGENTEVAL_TEST_TOKEN}", MODE = "${AGENTEVAL_UNSET_VAR:-fast}" }
[solution]
env = { A = "1" }
[environment]
docker_image = "ubuntu"
memory = "4G"
storage = "512M"
cpus = 2
gpus = 1
mcp_servers = [{ name = "m", url = "http://m" }]
workdir = "/srv/work"
network_mode = "allowlist"
'''
    import os

    os.environ["AGENTEVAL_TEST_TOKEN"] = "t0k"
    try:
        task = load_task(harbor_task(tmp_path / "t", toml, dockerfile=None))
    finally:
        del os.environ["AGENTEVAL_TEST_TOKEN"]
    box = task.spec.sandbox
    assert (box.image, box.build, box.memory, box.workspace_size, box.cpus) == ("ubuntu:latest", None, "4096m", "512m", 2.0)
    assert box.workdir == "/srv/work" and task.spec.agent.timeout_sec == 30 and task.spec.verifier.timeout_sec == 40
    assert task.spec.verifier.env == {"TOKEN": "t0k", "MODE": "fast"}
    assert task.ignored_keys == ("agent.user", "artifacts", "environment.gpus", "environment.mcp_servers",
                                 "environment.network_mode", "solution.env", "surprise")
    lines: list[str] = []
    warn_ignored_keys([task, task], lines.append)
    assert len(lines) == 1 and "environment.gpus (2 tasks)" in lines[0] and lines[0].count("surprise") == 1


@pytest.mark.parametrize("toml, dockerfile, message", [
    ('version = "1.0"\n', None, "names no [environment] docker_image"),
    ('version = "1.0"\n[environment]\ncpus = "many"\n', "FROM x\n", "environment.cpus"),
    ('version = "1.0"\n[environment]\nworkdir = "/tmp/x"\n', "FROM x\n", "key 'workdir'"),
    ('version = "1.0"\n[environment]\nmemory = "lots"\n', "FROM x\n", "not a size"),
    ('version = "1.0"\n[verifier]\nenv = { K = "${AGENTEVAL_NEVER_SET_VAR}" }\n', "FROM x\n", "AGENTEVAL_NEVER_SET_VAR"),
])
def test_problems_name_the_file_and_key(tmp_path: Path, toml: str, dockerfile: str | None, message: str) -> None:
    root = harbor_task(tmp_path / "t", toml, dockerfile)
    with pytest.raises(TaskError, match="task.toml") as e:
        load_task(root)
    assert message in str(e.value)


def test_compose_environments_are_refused_and_test_sh_is_required(tmp_path: Path) -> None:
    root = harbor_task(tmp_path / "c", 'version = "1.0"\n')
    (root / "environment" / "docker-compose.yaml").write_text("services: {}\n")
    with pytest.raises(TaskError, match="docker-compose environments are not supported"):
        load_task(root)
    root = harbor_task(tmp_path / "n", 'version = "1.0"\n')
    (root / "tests" / "test.sh").unlink()
    with pytest.raises(TaskError, match=r"tests/test.sh: missing"):
        load_task(root)


def test_agenteval_task_toml_stays_strict(tmp_path: Path) -> None:
    root = tmp_path / "own"
    shutil.copytree(FIXTURES / "tasks" / "short", root)
    text = (root / "task.toml").read_text()
    (root / "task.toml").write_text(text + "\n[environmen]\ncpus = 1\n")
    with pytest.raises(TaskError, match="unknown key 'environmen'"):
        load_task(root)


def test_a_folder_of_task_folders_stands_for_them(tmp_path: Path) -> None:
    assert expand_task_paths([str(SUITE)]) == [str(SUITE / n) for n in ("fix-median", "sum-csv", "word-count")]
    assert expand_task_paths([str(SUITE / "sum-csv")]) == [str(SUITE / "sum-csv")]
    assert expand_task_paths([str(tmp_path / "nothing")]) == [str(tmp_path / "nothing")]


def test_the_network_is_granted_only_by_the_run() -> None:
    task = load_task(SUITE / "word-count")
    denied = with_run_settings(task, RunOptions(task_paths=[], models=[]))
    granted = with_run_settings(task, RunOptions(task_paths=[], models=[], allow_internet=True, pass_threshold=0.5))
    assert not SandboxLayout.from_spec(denied.spec.sandbox).internet and denied.internet_withheld
    assert SandboxLayout.from_spec(granted.spec.sandbox).internet and not granted.internet_withheld
    assert granted.spec.verifier.pass_threshold == 0.5 and denied.spec.verifier.pass_threshold == 1.0
    closed = with_run_settings(load_task(SUITE / "sum-csv"), RunOptions(task_paths=[], models=[], allow_internet=True))
    assert not closed.spec.sandbox.internet  # allow_internet = false wins over the flag


def _exec(out: str = "", exit_code: int = 0, timed_out: bool = False) -> ExecRecord:
    return ExecRecord(phase="verify", user="1001", command="bash /tests/test.sh", exit_code=exit_code,
                      duration_s=1.0, timed_out=timed_out, stdout=out)


def test_reward_files_are_read_as_harbor_reads_them() -> None:
    assert read_rewards({"reward.txt": b" 0.75\n"}) == ({"reward": 0.75}, "reward.txt", None)
    assert read_rewards({"reward.json": b'{"reward": 1, "acc": 0.5, "ok": true, "s": "x"}'})[0] == \
        {"reward": 1.0, "acc": 0.5}
    assert read_rewards({"reward.json": b'{"acc": 0.5}', "reward.txt": b"1"})[0] == {"acc": 0.5, "reward": 1.0}
    for files, why in [({}, "wrote no reward"), ({"reward.txt": b""}, "empty"), ({"reward.txt": b"yes"}, "not a number"),
                       ({"reward.json": b"[1]"}, "not an object"), ({"reward.json": b"{"}, "not JSON"),
                       ({"reward.txt": b"nan"}, "not a finite number")]:
        rewards, _, problem = read_rewards(files)
        assert rewards is None and problem and why in problem


@pytest.mark.parametrize("files, threshold, passed, score", [
    ({"reward.txt": b"1"}, 1.0, True, 1.0),
    ({"reward.txt": b"0.99"}, 1.0, False, 0.99),
    ({"reward.txt": b"0.5"}, 0.5, True, 0.5),
    ({"reward.txt": b"7"}, 1.0, True, 1.0),
    ({"reward.json": b'{"accuracy": 1.0}'}, 1.0, True, 1.0),  # a single value decides
    ({"reward.json": b'{"accuracy": 1.0, "speed": 2.0}'}, 1.0, False, 0.0),  # several, none named reward
    ({"reward.json": b'{"reward": 0.0, "accuracy": 1.0}'}, 1.0, False, 0.0),  # the one named reward decides
    ({}, 1.0, False, 0.0),
])
def test_the_pass_rule(files: dict[str, bytes], threshold: float, passed: bool, score: float) -> None:
    verdict = judge(files, _exec("pytest says hi"), threshold)
    assert verdict.passed is passed and verdict.score == pytest.approx(score)
    assert [c.name for c in verdict.checks] == ["reward"] and verdict.checks[0].passed is passed
    assert ("pytest says hi" in verdict.checks[0].message) is not passed


def test_a_timeout_fails_even_with_a_reward_and_the_withheld_network_is_said() -> None:
    verdict = judge({"reward.txt": b"1"}, _exec(timed_out=True, exit_code=124), 1.0, internet_withheld=True)
    assert not verdict.passed and verdict.rewards == {"reward": 1.0}
    assert "timeout" in verdict.checks[0].message and "--allow-internet" in verdict.checks[0].message
    ctrf = b'{"results": {"summary": {"tests": 3, "passed": 2, "failed": 1}}}'
    assert "2 passed, 1 failed of 3" in judge({"reward.txt": b"0", "ctrf.json": ctrf}, _exec(), 1.0).checks[0].message


def test_tasks_list_takes_a_folder_of_harbor_tasks_and_warns_once(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from agenteval import cli

    monkeypatch.setattr(cli.console, "width", 200)
    for name in ("a", "b"):
        harbor_task(tmp_path / "suite" / name, 'version = "1.0"\n[environment]\ngpus = 1\n')
    result = CliRunner().invoke(cli.app, ["tasks", "list", str(tmp_path / "suite"), str(SUITE)])
    assert result.exit_code == 0, result.output
    for name in ("a", "b", "fix-median", "sum-csv", "word-count"):
        assert f" {name} " in result.output
    assert result.output.count("environment.gpus (2 tasks)") == 1
