"""One trial from start to record: sandbox up, agent, hidden verification, sandbox down.

``run_trial`` never raises for a trial's own failure: every outcome becomes a
``TrialRecord`` with a failure mode, so a run goes on past hostile output.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from agenteval.agent import run_agent
from agenteval.agent.solver import AgentContext, AgentModel, AgentOutcome, AgentStatus
from agenteval.errors import AgentEvalError, SandboxError
from agenteval.models.base import ModelSpec
from agenteval.models.sampling import sample_index
from agenteval.records import FailureMode, Fingerprint, TrialRecord, utcnow
from agenteval.sandbox.base import AGENT_UID, WORKSPACE, Sandbox
from agenteval.task import Task, VariantSpec
from agenteval.verify import VerifyOutcome, verify_trial


class TrialInterrupted(Exception):
    """The run was interrupted while this trial ran; it is not recorded."""


@dataclass(frozen=True)
class TrialSpec:
    """A cell of the matrix: model x task x variant x sample, with a stable key."""

    task: Task
    variant: VariantSpec
    sample: int
    model: ModelSpec

    @property
    def key(self) -> str:
        return f"{self.task.name}/{self.variant.id}/{self.model.label}/{self.sample}"


@dataclass
class TrialEnv:
    """What the runner shares with every trial it starts."""

    run_id: str
    make_sandbox: Callable[[Task, dict[str, str]], Sandbox]
    models: dict[str, AgentModel]
    fingerprints: dict[tuple[str, str], Fingerprint]
    artifacts_root: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


_AGENT_FAILURE = {AgentStatus.infra_error: FailureMode.infra_error, AgentStatus.model_error: FailureMode.model_error,
                  AgentStatus.limit: FailureMode.agent_limit}


def classify(agent: AgentOutcome | None, verify: VerifyOutcome | None, error: FailureMode | None) -> FailureMode | None:
    """The first failure that applies, or None when the verdict passed."""
    if verify is not None and verify.verdict is not None and verify.verdict.passed:
        return None
    if error is not None:
        return error
    if agent is not None and agent.status is not AgentStatus.done:
        return _AGENT_FAILURE[agent.status]
    if verify is None or verify.verdict is None:
        return FailureMode.verify_error
    return FailureMode.verify_failed


def failed_record(spec: TrialSpec, env: TrialEnv, mode: FailureMode, message: str) -> TrialRecord:
    """The record of a trial that could not run at all (its model never answered)."""
    now = utcnow()
    return TrialRecord(
        trial_id=uuid.uuid4().hex, run_id=env.run_id, key=spec.key, task=spec.task.name,
        task_path=str(spec.task.path), task_hash=spec.task.content_hash, variant=spec.variant.id,
        sample=spec.sample, model=spec.model.label, failure_mode=mode, error=message, started_at=now,
        finished_at=now, duration_s=0.0, fingerprint=env.fingerprints[(spec.model.label, spec.task.name)])


def run_trial(spec: TrialSpec, env: TrialEnv) -> TrialRecord:
    if env.cancel.is_set():
        raise TrialInterrupted(spec.key)
    trial_id = uuid.uuid4().hex
    started, t0 = utcnow(), time.monotonic()
    phases = {"setup_s": 0.0, "agent_s": 0.0, "verify_s": 0.0, "teardown_s": 0.0}
    agent: AgentOutcome | None = None
    verify: VerifyOutcome | None = None
    error: FailureMode | None = None
    message: str | None = None
    sandbox: Sandbox | None = None

    def mark(phase: str, since: float) -> float:
        now = time.monotonic()
        phases[phase] = round(now - since, 4)
        return now

    try:
        sandbox = env.make_sandbox(spec.task, {"agenteval.run": env.run_id, "agenteval.trial": trial_id})
        sandbox.start()
        for env_dir in spec.task.environment_dirs(spec.variant):
            sandbox.write_tree(WORKSPACE, env_dir, uid=AGENT_UID)
        t = mark("setup_s", t0)
        if env.cancel.is_set():
            raise SandboxError("run interrupted")
        ctx = AgentContext(task=spec.task, variant=spec.variant, sandbox=sandbox, budget=spec.task.spec.agent,
                           instruction=spec.task.render_instruction(spec.variant), cancel=env.cancel)
        try:
            with sample_index(spec.sample):  # sample i is sent seed + i, on every model alike
                agent = run_agent(env.models[spec.model.label], ctx)
        except SandboxError as e:
            error, message = FailureMode.sandbox_error, f"sandbox failed during the agent phase: {e}"
        t = mark("agent_s", t)
        artifacts_dir = env.artifacts_root / trial_id if env.artifacts_root else None
        verify = verify_trial(sandbox, spec.task, spec.variant, artifacts_dir, f"artifacts/{trial_id}")
        t = mark("verify_s", t)
    except SandboxError as e:
        error, message = FailureMode.sandbox_error, str(e)
    except AgentEvalError as e:
        error, message = FailureMode.infra_error, str(e)
    except Exception as e:  # noqa: BLE001 - a bug must cost one trial, not the run
        error = FailureMode.infra_error
        message = f"{type(e).__name__}: {e} | " + "".join(traceback.format_tb(e.__traceback__)[-2:]).replace("\n", " ")
    finally:
        t_down = time.monotonic()
        if sandbox is not None:
            sandbox.close()
        phases["teardown_s"] = round(time.monotonic() - t_down, 4)

    if env.cancel.is_set() and (error is not None or verify is None):
        raise TrialInterrupted(spec.key)
    mode = classify(agent, verify, error)
    if message is None and mode is not None:
        agent_failed = agent is not None and agent.status is not AgentStatus.done
        message = (agent.message if agent_failed and agent else None) or \
            (verify.error if verify and verify.error else None) or (agent.message if agent else None)
        if mode is FailureMode.verify_failed and verify and verify.verdict:
            failed = [c.name for c in verify.verdict.checks if not c.passed]
            message = f"{len(failed)} check(s) failed: " + "; ".join(failed[:5])
    verdict = verify.verdict if verify else None
    return TrialRecord(
        trial_id=trial_id, run_id=env.run_id, key=spec.key, task=spec.task.name, task_path=str(spec.task.path),
        task_hash=spec.task.content_hash, variant=spec.variant.id, sample=spec.sample, model=spec.model.label,
        passed=mode is None, score=verdict.score if verdict else 0.0, failure_mode=mode, error=message,
        started_at=started, finished_at=utcnow(), duration_s=round(time.monotonic() - t0, 4),
        setup_s=phases["setup_s"], agent_s=phases["agent_s"], verify_s=phases["verify_s"],
        teardown_s=phases["teardown_s"],
        agent_stop=agent.stop if agent else None, agent_steps=agent.steps if agent else None,
        tool_protocol=agent.tool_protocol if agent else None, actions_run=agent.actions_run if agent else None,
        verdict=verdict, execs=list(sandbox.execs) if sandbox else [],
        model_calls=agent.model_calls if agent else [], transcript=agent.transcript if agent else [],
        artifacts=verify.artifacts if verify else [],
        fingerprint=env.fingerprints[(spec.model.label, spec.task.name)],
    )
