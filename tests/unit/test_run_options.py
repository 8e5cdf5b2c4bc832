"""RunOptions on --resume: the run's stored options, with every flag given now winning."""

from __future__ import annotations

from pathlib import Path

from agenteval.runner import RunOptions

STORED = RunOptions(task_paths=["tasks/folder"], models=["oracle", "nop"], samples=3, concurrency=4,
                    variants=["one-file"], budgets={"max_steps": 5}, executor="ray",
                    ray_address="127.0.0.1:6379", config=Path("agenteval.toml")).to_config()


def test_resume_takes_the_stored_run_when_no_flag_is_given() -> None:
    opts = RunOptions(task_paths=[], models=[], resume="r1").resumed(STORED)
    assert (opts.task_paths, opts.models, opts.samples, opts.variants) == (["tasks/folder"], ["oracle", "nop"], 3,
                                                                           ["one-file"])
    assert (opts.jobs, opts.executor_name, opts.ray_address) == (4, "ray", "127.0.0.1:6379")
    assert opts.budgets == {"max_steps": 5} and opts.config == Path("agenteval.toml") and opts.resume == "r1"


def test_explicit_flags_win_on_resume_even_when_they_equal_the_defaults() -> None:
    opts = RunOptions(task_paths=[], models=[], resume="r1", concurrency=1, executor="local").resumed(STORED)
    assert (opts.jobs, opts.executor_name) == (1, "local")
    opts = RunOptions(task_paths=[], models=[], resume="r1", concurrency=2, ray_address="auto").resumed(STORED)
    assert (opts.jobs, opts.executor_name, opts.ray_address) == (2, "ray", "auto")


def test_a_run_stored_before_a_key_existed_resumes_with_its_default() -> None:
    old = {k: v for k, v in STORED.items() if k not in ("executor", "ray_address", "budgets")}
    opts = RunOptions(task_paths=[], models=[], resume="r1").resumed(old)
    assert (opts.executor_name, opts.ray_address, opts.budgets) == ("local", None, {})


def test_defaults_are_one_job_on_the_local_executor() -> None:
    opts = RunOptions(task_paths=["t"], models=["oracle"])
    assert (opts.jobs, opts.executor_name) == (1, "local")
    assert opts.to_config()["concurrency"] == 1 and opts.to_config()["executor"] == "local"
