"""Hidden verification: tests arrive only after the agent is gone, and judge what it left.

Two protocols, chosen by the task's ``[verifier] protocol``: agenteval's verdict (``verdict``:
the verifier writes checks to a secret path) and Harbor's reward (``harbor``: tests/test.sh
writes a reward file). Both give a ``VerifyOutcome`` (``outcome``).
"""

from __future__ import annotations

from pathlib import Path

from agenteval.sandbox.base import Sandbox
from agenteval.task.folder import Task
from agenteval.task.spec import VariantSpec
from agenteval.verify.harbor import verify_reward
from agenteval.verify.outcome import VerifyOutcome
from agenteval.verify.verdict import HARNESS, INTERFERENCE_CHECK, verify_verdict

__all__ = ["HARNESS", "INTERFERENCE_CHECK", "VerifyOutcome", "verify_trial"]


def verify_trial(sandbox: Sandbox, task: Task, variant: VariantSpec, artifacts_dir: Path | None = None,
                 artifacts_rel: str = "") -> VerifyOutcome:
    """Stop the agent's processes, copy the tests in, run them, read the verdict (or, for the
    reward protocol, the reward)."""
    if task.spec.verifier.protocol == "reward":
        return verify_reward(sandbox, task, variant, artifacts_dir, artifacts_rel)
    return verify_verdict(sandbox, task, variant, artifacts_dir, artifacts_rel)
