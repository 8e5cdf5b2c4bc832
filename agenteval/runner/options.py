"""What a run is asked to do (``RunOptions``), as the commands give it and as its run row
keeps it for ``--resume`` (``StoredOptions``, a ladder's own part typed in ``LadderConfig``), and
the task as a run runs it (command-line budgets, the pass threshold, the network it grants).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NotRequired, TypedDict, cast

from agenteval.config import ChatTemplateName
from agenteval.paths import DEFAULT_DB, REPORTS_DIR
from agenteval.task.folder import Task


class Budgets(TypedDict, total=False):
    """Command-line budgets that replace task.toml's [agent] values."""

    max_steps: int
    max_total_tokens: int
    timeout_sec: float


def budgets_from_flags(max_steps: int | None, max_tokens: int | None, timeout_sec: float | None) -> Budgets:
    """The budgets the command line gave (--max-steps, --max-tokens, --agent-timeout)."""
    budgets: Budgets = {}
    if max_steps is not None:
        budgets["max_steps"] = max_steps
    if max_tokens is not None:
        budgets["max_total_tokens"] = max_tokens
    if timeout_sec is not None:
        budgets["timeout_sec"] = timeout_sec
    return budgets


class LadderConfig(TypedDict):
    """A ladder run's own options as its run row keeps them (``RunOptions.ladder``): written by
    ``agenteval.ladder.run.LadderOptions``, read back by ``agenteval ladder --resume``. The runner
    stores them with the run and reads only whether they are there (which command resumes it)."""

    source: str  # the source GGUF, resolved
    quants: list[str]
    task_paths: list[str]
    samples: int | None
    variants: list[str]
    kv_caches: list[str]
    engine: str | None  # llama-server or llamacpp (the ladder's engine, chosen before the run row is saved)
    context: int
    temperature: float
    server_args: list[str]
    chat_template: ChatTemplateName | None
    imatrix: str | None
    allow_requantize: bool
    kl_text: str | None
    kl_tokens: int
    threads: int | None
    budgets: Budgets
    source_sha256: NotRequired[str | None]  # the source as the ladder began (absent in early ladders)


class StoredOptions(TypedDict):
    """RunOptions as recorded in runs.config, what --resume reads back."""

    task_paths: list[str]
    models: list[str]
    samples: int | None
    concurrency: int
    variants: list[str]
    config: str | None
    budgets: Budgets
    out: str
    executor: str
    ray_address: str | None
    allow_internet: bool
    pass_threshold: float | None
    ladder: LadderConfig | None


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for. ``None`` means not given: the default, or on --resume the resumed run's value."""

    task_paths: list[str]
    models: list[str]
    samples: int | None = None
    concurrency: int | None = None  # trials at once (default 1)
    variants: list[str] = field(default_factory=list)
    db: Path = DEFAULT_DB
    out: Path = REPORTS_DIR
    resume: str | None = None
    config: Path | None = None
    retry_errors: bool = False
    budgets: Budgets = field(default_factory=Budgets)
    executor: str | None = None  # 'local' (threads here, the default) or 'ray' (tasks on a Ray cluster)
    ray_address: str | None = None  # with executor='ray': HOST:PORT, ray://..., 'auto' or 'local'
    allow_internet: bool = False  # network for the tasks that allow it (Harbor's allow_internet); none otherwise
    pass_threshold: float | None = None  # reward protocol: passing reward, in place of the tasks' own (1)
    ladder: LadderConfig | None = None  # a ladder run's own options, what `agenteval ladder --resume` reads

    @property
    def jobs(self) -> int:
        return self.concurrency or 1

    @property
    def executor_name(self) -> str:
        return self.executor or "local"

    def to_config(self) -> StoredOptions:
        return {"task_paths": self.task_paths, "models": self.models, "samples": self.samples,
                "concurrency": self.jobs, "variants": self.variants,
                "config": str(self.config) if self.config else None, "budgets": self.budgets,
                "out": str(self.out), "executor": self.executor_name, "ray_address": self.ray_address,
                "allow_internet": self.allow_internet, "pass_threshold": self.pass_threshold, "ladder": self.ladder}

    def resumed(self, stored: Mapping[str, Any]) -> "RunOptions":
        """The options of the run being resumed, with every flag given now winning over its stored value."""
        cfg = cast(StoredOptions, {**self.to_config(), **stored})
        return dataclasses.replace(
            self, task_paths=cfg["task_paths"], models=cfg["models"], samples=cfg["samples"],
            variants=cfg["variants"], budgets=cfg["budgets"] or {},
            concurrency=self.concurrency if self.concurrency is not None else cfg["concurrency"],
            config=self.config or (Path(cfg["config"]) if cfg["config"] else None),
            executor=self.executor if self.executor is not None else cfg["executor"],
            ray_address=self.ray_address or cfg["ray_address"],
            allow_internet=self.allow_internet or bool(cfg["allow_internet"]),
            pass_threshold=self.pass_threshold if self.pass_threshold is not None else cfg["pass_threshold"],
            ladder=self.ladder or cfg["ladder"])

    def resume_command(self, run_id: str) -> str:
        """The command line that finishes run ``run_id`` (a ladder's own, for a ladder run)."""
        return f"agenteval {'ladder' if self.ladder else 'run'} --resume {run_id}"


def with_budgets(task: Task, budgets: Budgets) -> Task:
    """The task with command-line budgets in place of task.toml's [agent] values."""
    if not budgets:
        return task
    agent = task.spec.agent.model_copy(update=dict(budgets))
    return dataclasses.replace(task, spec=task.spec.model_copy(update={"agent": agent}))


def with_run_settings(task: Task, opts: RunOptions) -> Task:
    """The task as this run runs it: budgets, the pass threshold, and network only where the task allows
    it and the run grants it (--allow-internet)."""
    task = with_budgets(task, opts.budgets)
    asked = task.spec.sandbox.internet
    sandbox = task.spec.sandbox.model_copy(update={"internet": asked and opts.allow_internet})
    verifier = task.spec.verifier
    if opts.pass_threshold is not None:
        verifier = verifier.model_copy(update={"pass_threshold": opts.pass_threshold})
    return dataclasses.replace(task, spec=task.spec.model_copy(update={"sandbox": sandbox, "verifier": verifier}),
                               internet_withheld=asked and not opts.allow_internet)
