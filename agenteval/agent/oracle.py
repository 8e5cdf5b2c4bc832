"""``oracle``: replays a task's reference solution through the same sandbox
calls a model's output takes (files written into /workspace, commands run as
the agent user), so a passing oracle proves the task and its verifier agree.

Contract of ``solution/``: files under ``solution/workspace/`` are written into
/workspace; ``solution/solve.sh``, if present, then runs with bash in
/workspace with ``AGENTEVAL_SOLUTION`` (the copied solution/ folder),
``AGENTEVAL_VARIANT_ID`` and ``AGENTEVAL_VARIANT`` (the variant's params as
JSON) in its environment. A Harbor task's solution/ goes to /solution, where its solve.sh expects it, and
solve.sh runs from the task's workdir.
"""

from __future__ import annotations

import json

from agenteval.agent.solver import AgentContext, AgentOutcome, AgentStatus, DirectSolver
from agenteval.errors import TaskError
from agenteval.models.base import ModelRequest, ModelSpec
from agenteval.sandbox.base import CONTROL, HARBOR_SOLUTION, VERIFIER_UID, WORKSPACE, files_from_dir
from agenteval.task.folder import Task

SOLUTION_DIR = f"{CONTROL}/solution"


class OracleSolver(DirectSolver):
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def check_task(self, task: Task) -> None:
        sol = task.solution_dir
        if not ((sol / "solve.sh").is_file() or (sol / "workspace").is_dir()):
            raise TaskError(f"{sol}: the oracle needs solution/solve.sh or solution/workspace/")

    def fingerprint_info(self) -> dict[str, object]:
        return {"kind": "reference solution"}

    def solve(self, ctx: AgentContext) -> AgentOutcome:
        sol = ctx.task.solution_dir
        workspace_files = files_from_dir(sol / "workspace") if (sol / "workspace").is_dir() else {}
        if workspace_files:
            ctx.sandbox.write_files(WORKSPACE, workspace_files)
        if not (sol / "solve.sh").is_file():
            return AgentOutcome(AgentStatus.done, f"wrote {len(workspace_files)} files")
        target = HARBOR_SOLUTION if ctx.task.spec.sandbox.layout == "harbor" else SOLUTION_DIR
        ctx.sandbox.write_files(target, files_from_dir(sol), uid=VERIFIER_UID, dir_mode=0o755)
        env = {"AGENTEVAL_SOLUTION": target, "AGENTEVAL_VARIANT_ID": ctx.variant.id,
               "AGENTEVAL_VARIANT": json.dumps(ctx.variant.params)}
        result = ctx.sandbox.exec(f"bash {target}/solve.sh", env=env, timeout_s=ctx.budget.timeout_sec)
        if result.timed_out:
            return AgentOutcome(AgentStatus.limit, f"solve.sh ran past the agent's {ctx.budget.timeout_sec:g} s budget")
        if result.exit_code != 0:
            why = "killed by the memory cap" if result.oom_killed else f"exited {result.exit_code}"
            return AgentOutcome(AgentStatus.done, f"solve.sh {why}")
        return AgentOutcome(AgentStatus.done, "solve.sh finished")


def create(request: ModelRequest) -> OracleSolver:
    return OracleSolver(request.spec)
