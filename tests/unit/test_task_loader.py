"""task.toml and instruction.md: every mistake is one clear error naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenteval.errors import TaskError
from agenteval.task import load_task, parse_size


def make_task(root: Path, toml: str, instruction: str | None = "Do {{ thing }}.\n") -> Path:
    (root / "tests").mkdir(parents=True, exist_ok=True)
    (root / "task.toml").write_text(toml)
    if instruction is not None:
        (root / "instruction.md").write_text(instruction)
    return root


def test_loads_variants_with_shared_params(tmp_path: Path) -> None:
    root = make_task(tmp_path / "demo", """
description = "d"
params = { thing = "shared", n = 1 }
[[variants]]
id = "one"
[[variants]]
id = "two"
params = { thing = "own" }
""")
    task = load_task(root)
    assert task.name == "demo"
    assert [v.id for v in task.variants()] == ["one", "two"]
    assert [task.render_instruction(v) for v in task.variants()] == ["Do shared.\n", "Do own.\n"]
    assert task.variants(["two"])[0].params == {"thing": "own", "n": 1}


def test_no_variants_means_one_default(tmp_path: Path) -> None:
    task = load_task(make_task(tmp_path / "t", "", "plain\n"))
    assert [v.id for v in task.variants()] == ["default"]


def test_typo_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    root = make_task(tmp_path / "t", '[sandbox]\nimagee = "python"\n')
    with pytest.raises(TaskError) as e:
        load_task(root)
    msg = str(e.value)
    assert str(root / "task.toml") in msg and "sandbox.imagee" in msg and "did you mean 'image'" in msg
    assert "\n" not in msg


def test_top_level_typo_lists_allowed_keys(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"unknown key 'zzz'.*allowed: .*variants"):
        load_task(make_task(tmp_path / "t", "zzz = 1\n"))


def test_wrong_type_and_bad_size(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"key 'samples'"):
        load_task(make_task(tmp_path / "a", 'samples = "many"\n'))
    with pytest.raises(TaskError, match=r"key 'sandbox.memory'.*not a size"):
        load_task(make_task(tmp_path / "b", '[sandbox]\nmemory = "lots"\n'))


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="not valid TOML"):
        load_task(make_task(tmp_path / "t", "name = \n"))


def test_missing_instruction(tmp_path: Path) -> None:
    root = make_task(tmp_path / "t", "", instruction=None)
    with pytest.raises(TaskError, match=r"instruction\.md: missing"):
        load_task(root)


def test_missing_folder_and_toml(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="no such task folder"):
        load_task(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskError, match=r"task\.toml: missing"):
        load_task(tmp_path / "empty")


def test_undefined_template_variable_fails_at_load(tmp_path: Path) -> None:
    root = make_task(tmp_path / "t", '[[variants]]\nid = "a"\nparams = { other = 1 }\n')
    with pytest.raises(TaskError, match=r"instruction\.md.*'thing' is undefined"):
        load_task(root)


def test_duplicate_and_bad_variant_ids(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="duplicate variant ids: a"):
        load_task(make_task(tmp_path / "a", '[[variants]]\nid = "a"\n[[variants]]\nid = "a"\n', "x\n"))
    with pytest.raises(TaskError, match="variant id"):
        load_task(make_task(tmp_path / "b", '[[variants]]\nid = "a b"\n', "x\n"))


def test_unknown_variant_filter(tmp_path: Path) -> None:
    task = load_task(make_task(tmp_path / "t", '[[variants]]\nid = "a"\n', "x\n"))
    with pytest.raises(TaskError, match="no variant 'b'"):
        task.variants(["b"])


def test_content_hash_changes_with_content(tmp_path: Path) -> None:
    root = make_task(tmp_path / "t", "", "x\n")
    before = load_task(root).content_hash
    (root / "tests" / "verify.py").write_text("print(1)\n")
    assert load_task(root).content_hash != before


def test_parse_size() -> None:
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size("1g") == 1024**3
    assert parse_size("64k") == 65536
    assert parse_size(10) == 10
    with pytest.raises(ValueError):
        parse_size("big")


def test_repo_tasks_load() -> None:
    repo = Path(__file__).resolve().parents[2]
    tasks = sorted(p.parent for p in (repo / "tasks").glob("*/task.toml"))
    assert tasks, "the repository ships tasks"
    for t in tasks:
        assert load_task(t).variants()


def test_variant_environment_folder(tmp_path: Path) -> None:
    root = make_task(tmp_path / "t", '[[variants]]\nid = "a"\nenvironment = "envs/a"\n', "x\n")
    with pytest.raises(TaskError, match="environment 'envs/a' is not a folder inside the task"):
        load_task(root)
    (root / "envs" / "a").mkdir(parents=True)
    (root / "environment").mkdir()
    task = load_task(root)
    assert task.environment_dirs(task.variants()[0]) == [root / "environment", root / "envs" / "a"]
    (root / "task.toml").write_text('[[variants]]\nid = "a"\nenvironment = "../"\n')
    with pytest.raises(TaskError, match="not a folder inside the task"):
        load_task(root)


def test_command_line_budgets_replace_task_toml(tmp_path: Path) -> None:
    from agenteval.runner.options import with_budgets

    task = load_task(make_task(tmp_path / "t", "[agent]\nmax_steps = 9\ntimeout_sec = 60\n", "x\n"))
    changed = with_budgets(task, {"max_steps": 2, "max_total_tokens": 500})
    assert (changed.spec.agent.max_steps, changed.spec.agent.max_total_tokens, changed.spec.agent.timeout_sec) == (
        2, 500, 60)
    assert task.spec.agent.max_steps == 9 and with_budgets(task, {}) is task


def test_a_variant_can_be_named_for_one_task_only() -> None:
    repo = Path(__file__).resolve().parents[2]
    folder, flappy = load_task(repo / "tasks" / "folder"), load_task(repo / "tasks" / "flappy")
    pick = ["folder/one-file", "flappy/classic"]
    assert [v.id for v in folder.variants(pick)] == ["one-file"]
    assert [v.id for v in flappy.variants(pick)] == ["classic"]
    assert len(folder.variants(["flappy/classic"])) == len(folder.variants()) > 1  # not named: all of them
    with pytest.raises(TaskError, match="no variant 'nope'"):
        folder.variants(["folder/nope"])
