"""Checking a hand-written or saved solution: the folder is the workspace, the
task's hidden verifier judges it in the same sandbox a trial would use.
"""

from __future__ import annotations

from pathlib import Path

from agenteval.errors import BadInputError
from agenteval.logs import Log
from agenteval.sandbox.base import AGENT_UID, WORKSPACE, check_copyable
from agenteval.task.folder import Task
from agenteval.task.loader import load_task
from agenteval.task.spec import VariantSpec
from agenteval.verify import VerifyOutcome, verify_trial


def pick_variant(task: Task, variant_id: str | None) -> VariantSpec:
    variants = task.variants([variant_id] if variant_id else None)
    if len(variants) > 1:
        raise BadInputError(f"{task.path} has {len(variants)} variants: choose one with --variant "
                            f"({', '.join(v.id for v in variants)})")
    return variants[0]


def verify_solution(task_path: str | Path, solution: str | Path, variant_id: str | None = None,
                    artifacts_dir: Path | None = None, log: Log = print,
                    pass_threshold: float | None = None, allow_internet: bool = False) -> VerifyOutcome:
    """Run ``task``'s verifier on the files in ``solution``, copied into /workspace (also a Harbor
    task's workdir, as the agent's) byte for byte: every file, dotfile and cache folder, with its
    mode; a folder that cannot be copied so is refused."""
    from agenteval.runner.options import RunOptions, with_run_settings
    from agenteval.sandbox.docker import DockerSandbox
    from agenteval.sandbox.engine import connect
    from agenteval.sandbox.images import ensure_task_image

    task = with_run_settings(load_task(task_path), RunOptions(
        task_paths=[], models=[], pass_threshold=pass_threshold, allow_internet=allow_internet))
    src = Path(solution)
    if not src.is_dir():
        raise BadInputError(f"{src}: no such folder (--solution takes the folder that becomes /workspace)")
    variant = pick_variant(task, variant_id)
    check_copyable(src)
    client = connect()
    image = ensure_task_image(client, task.path, task.spec.sandbox, log)
    with DockerSandbox.for_spec(client, image, task.spec.sandbox, {"agenteval.run": "verify"}) as sandbox:
        for env_dir in task.environment_dirs(variant):
            sandbox.write_tree(WORKSPACE, env_dir, uid=AGENT_UID)
        sandbox.write_tree(WORKSPACE, src, uid=AGENT_UID, every_file=True)
        return verify_trial(sandbox, task, variant, artifacts_dir, str(artifacts_dir or ""))
