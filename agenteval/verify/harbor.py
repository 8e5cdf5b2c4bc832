"""Harbor's reward protocol: tests/test.sh, run after the agent is gone, writes a reward file.

How a trial is judged, in order:

1. Every agent process is killed (a sandbox_error where one cannot be).
2. /logs/verifier must be empty (else verify_error). Nobody could write it so far: it belongs to root and the group
   ``VERIFY_GID``, which no agent process holds, so a reward written early never even exists.
3. tests/ is copied to /tests (the verifier's, read-only to the tests).
4. The command (``bash /tests/test.sh``) runs from the workdir under the verifier's timeout, as the
   agent's uid (it owns the workdir the tests inspect and often write) with ``VERIFY_GID`` added,
   a fresh HOME and TMPDIR (user site-packages allowed there), and the task's [verifier] env.
   Every process it left is killed after.
5. agenteval reads /logs/verifier itself, from the host: ``read_rewards`` below.

Pass rule: reward.json wins when present (Harbor's verifier does the same), keeping its numeric
values and adding reward.txt's as ``reward`` when it has none; otherwise reward.txt is ``{"reward": x}``.
The value named ``reward`` decides (a file with a single value: that value) and passes at
>= ``pass_threshold`` (1 unless --pass-threshold says otherwise). Several values and none named
``reward`` fail the trial. Once test.sh ran the agent's work, every way of ending without a
passing reward (no file, a malformed one, a timeout) is a failing verdict (verify_failed) whose
message carries the last lines the tests printed.
"""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path

from agenteval.errors import SandboxFileError
from agenteval.records import Check, ExecRecord, Verdict
from agenteval.sandbox.base import (
    AGENT_UID, HARBOR_LOGS, HARBOR_TESTS, VERIFIER_LOGS, VERIFIER_UID, VERIFY_GID, Sandbox, files_from_dir,
)
from agenteval.task.folder import Task
from agenteval.task.spec import VariantSpec
from agenteval.verify.outcome import VerifyOutcome, save_artifacts

REWARD_CHECK = "reward"
MAX_LOG_BYTES = 16 * 1024**2


def verify_reward(sandbox: Sandbox, task: Task, variant: VariantSpec, artifacts_dir: Path | None = None,
                  artifacts_rel: str = "") -> VerifyOutcome:
    sandbox.kill_processes(AGENT_UID)
    early = [e.path for e in sandbox.read_entries(VERIFIER_LOGS) or [] if e.path]
    if early:
        return VerifyOutcome(verdict=None, error=f"{VERIFIER_LOGS} held {', '.join(sorted(early)[:5])} before "
                                                 "the tests ran; nothing is read from it")
    sandbox.write_files(HARBOR_TESTS, files_from_dir(task.tests_dir), uid=VERIFIER_UID)
    spec = task.spec.verifier
    home = f"/tmp/agenteval-verify-{secrets.token_hex(16)}"  # a name no agent process could have taken
    script = f'mkdir -m 0700 "$HOME" && cd "$AGENTEVAL_WORKDIR" && exec {spec.command}'
    # The HOME is fresh, so what `pip install --user` puts there may be imported (empty: not set).
    env = {**spec.env, "HOME": home, "TMPDIR": home, "PYTHONNOUSERSITE": "", "AGENTEVAL_WORKDIR": sandbox.workdir,
           "AGENTEVAL_TESTS": script}
    # The verifier (it holds CAP_SETUID/SETGID) starts the tests as the agent's uid plus VERIFY_GID.
    command = (f"exec setpriv --reuid={AGENT_UID} --regid={AGENT_UID} --groups={VERIFY_GID} --inh-caps=-all "
               '--ambient-caps=-all -- sh -c "$AGENTEVAL_TESTS"')
    result = sandbox.exec(command, uid=VERIFIER_UID, workdir="/", env=env, timeout_s=spec.timeout_sec,
                          phase="verify")
    sandbox.kill_processes(AGENT_UID)
    logs = _read_logs(sandbox)
    outcome = VerifyOutcome(verdict=None, exec_record=result)
    if artifacts_dir is not None:
        try:
            artifacts = sandbox.read_tree(f"{HARBOR_LOGS}/artifacts", MAX_LOG_BYTES)
        except SandboxFileError:
            artifacts = {}  # over the cap: not kept
        kept = {f"artifacts-{k}": v for k, v in artifacts.items()} | {f"verifier-{k}": v for k, v in logs.items()}
        outcome.artifacts = save_artifacts(kept, artifacts_dir, artifacts_rel)
    outcome.verdict = judge(logs, result, spec.pass_threshold, task.internet_withheld)
    return outcome


def _read_logs(sandbox: Sandbox) -> dict[str, bytes]:
    """/logs/verifier's regular files; where they are too many bytes, the reward files alone."""
    try:
        return {e.path: e.content for e in sandbox.read_entries(VERIFIER_LOGS, MAX_LOG_BYTES) or []
                if e.path and not e.is_dir}
    except SandboxFileError:
        logs: dict[str, bytes] = {}
        for name in ("reward.txt", "reward.json"):
            try:
                data = sandbox.read_file(f"{VERIFIER_LOGS}/{name}", 1024**2)
            except SandboxFileError:
                continue
            if data is not None:
                logs[name] = data
        return logs


def judge(logs: dict[str, bytes], result: ExecRecord, threshold: float, internet_withheld: bool = False) -> Verdict:
    """The verdict on what the tests left in /logs/verifier (file name -> content)."""
    rewards, source, problem = read_rewards(logs)
    value = deciding_reward(rewards)
    if result.timed_out:
        problem = f"the tests ran past the verifier's timeout ({result.duration_s:g} s)"
    elif rewards is not None and value is None:
        problem = f"{source} has {len(rewards)} values and none named reward"
    passed = problem is None and value is not None and value >= threshold
    if problem is None and value is not None:
        message = f"reward {value:g} from {source} (passes at >= {threshold:g})"
    else:
        message = f"{problem} (the tests exited {result.exit_code})"
    if rewards and len(rewards) > 1:
        message += "; rewards: " + ", ".join(f"{k}={v:g}" for k, v in sorted(rewards.items()))
    ctrf = _ctrf_summary(logs.get("ctrf.json"))
    if ctrf:
        message += f"; {ctrf}"
    if not passed:
        if internet_withheld:
            message += "; the task allows the internet, this run gave it none (--allow-internet grants it)"
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        message += ("; the tests said: " + " | ".join(line[:200] for line in tail)) if tail else ""
    score = min(1.0, max(0.0, value)) if value is not None and problem is None else 0.0
    return Verdict(checks=[Check(name=REWARD_CHECK, passed=passed, message=message[:4000])], passed=passed,
                   score=score, rewards=rewards)


def deciding_reward(rewards: dict[str, float] | None) -> float | None:
    """The value named reward; a file with a single value: that value; else none."""
    if not rewards:
        return None
    if "reward" in rewards:
        return rewards["reward"]
    return next(iter(rewards.values())) if len(rewards) == 1 else None


def read_rewards(logs: dict[str, bytes]) -> tuple[dict[str, float] | None, str, str | None]:
    """(rewards, the file they came from, why there are none) from /logs/verifier's files."""
    text = _parse_text(logs["reward.txt"]) if "reward.txt" in logs else None
    if "reward.json" in logs:
        try:
            parsed = json.loads(logs["reward.json"])
        except ValueError as e:
            return None, "reward.json", f"reward.json is not JSON ({str(e)[:100]})"
        if not isinstance(parsed, dict):
            return None, "reward.json", "reward.json is not an object"
        rewards = {str(k): float(v) for k, v in parsed.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if "reward" not in rewards and isinstance(text, float):
            rewards["reward"] = text
        return (rewards, "reward.json", None) if rewards else (None, "reward.json", "reward.json holds no number")
    if isinstance(text, float):
        return {"reward": text}, "reward.txt", None
    if text is not None:
        return None, "reward.txt", text
    return None, "", f"the tests wrote no reward ({VERIFIER_LOGS}/reward.txt or reward.json)"


def _parse_text(raw: bytes) -> float | str:
    """reward.txt's number, or why it is none."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        value = float(text)
    except ValueError:
        return f"reward.txt is not a number: {text[:60]!r}" if text else "reward.txt is empty"
    return value if math.isfinite(value) else f"reward.txt is not a finite number: {text[:60]!r}"


def _ctrf_summary(raw: bytes | None) -> str | None:
    """'5 passed, 1 failed of 6' from a CTRF report (pytest-json-ctrf), when there is one."""
    try:
        summary = json.loads(raw or b"null")["results"]["summary"]
        return f"{int(summary['passed'])} passed, {int(summary['failed'])} failed of {int(summary['tests'])} (ctrf.json)"
    except (ValueError, KeyError, TypeError):
        return None
