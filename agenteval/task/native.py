"""agenteval's own task format, read strictly: every key of task.toml is declared in
``agenteval.task.spec.TaskSpec``, and everything that can be checked without Docker is
checked here, so a broken task fails before any trial starts.

The contract (a task is a folder)::

    tasks/<name>/
      task.toml        keys declared in agenteval.task.spec.TaskSpec
      instruction.md   the prompt; a Jinja2 template (undefined variables are errors)
      environment/     optional: copied into /workspace before the agent starts
      tests/           the verifier: copied in only after the agent is done
      solution/        reference solution for the `oracle` model (solve.sh and files)
      graph.py         optional: a custom agent graph factory
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agenteval.errors import TaskError
from agenteval.settings import describe_validation_error
from agenteval.task.folder import Task, hash_tree
from agenteval.task.spec import TaskSpec


def load_native_task(root: Path, raw: dict[str, Any]) -> Task:
    """An agenteval task folder (``raw``: its task.toml, read) as a ``Task``; raise TaskError naming
    file and key."""
    toml_path = root / "task.toml"
    raw.setdefault("name", root.resolve().name)
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as e:
        raise TaskError(f"{toml_path}: {describe_validation_error(e, TaskSpec)}") from None

    instruction_path = root / "instruction.md"
    if not instruction_path.is_file():
        raise TaskError(f"{instruction_path}: missing (the prompt the agent gets)")
    if not (root / "tests").is_dir():
        raise TaskError(f"{root / 'tests'}: missing (the hidden verifier)")
    task = Task(path=root, spec=spec, instruction_template=instruction_path.read_text(encoding="utf-8"),
                content_hash=hash_tree(root))
    for variant in task.variants():
        task.render_instruction(variant)
        if variant.environment:
            env_dir = (root / variant.environment).resolve()
            if not env_dir.is_dir() or not env_dir.is_relative_to(root.resolve()):
                raise TaskError(f"{toml_path}: variant {variant.id!r}: environment {variant.environment!r} "
                                "is not a folder inside the task")
    return task
