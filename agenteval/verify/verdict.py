"""agenteval's verdict protocol: tests arrive only after the agent is gone, and the
verdict is whatever the verifier wrote to a per-trial secret path (see
``harness/agenteval_verifier.py``); nothing the solution prints or writes
elsewhere is ever read as one.

Who is to blame when there is no verdict: before the verifier started any
solution code, a missing, malformed or tampered verdict is the verifier's own
failure (``verify_error``). Once solution code ran (the harness marks that in
a secret file first), a verifier that died, timed out or left a verdict that
is missing, not its own or beside files it did not write is the solution's
doing: the trial fails (``verify_failed``) on the check ``INTERFERENCE_CHECK``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from agenteval.records import Check, ExecRecord, Verdict
from agenteval.sandbox.base import (
    AGENT_UID, CONTROL, VERIFIER_UID, WORKSPACE, FileEntry, Sandbox, TreeEntry, files_from_dir,
)
from agenteval.task.folder import Task
from agenteval.task.spec import VariantSpec
from agenteval.verify.outcome import VerifyOutcome, save_artifacts

HARNESS = Path(__file__).parent / "harness" / "agenteval_verifier.py"
MAX_ARTIFACT_BYTES = 16 * 1024**2
OUT = f"{CONTROL}/out"
SECRET = f"{CONTROL}/run/secret.json"
OUT_MODE = 0o300          # the verifier may write into its out folder, nobody may list it
VERDICT_MODE = 0o600
INTERFERENCE_CHECK = "solution left the verifier alone"


def verifier_env(variant: VariantSpec) -> dict[str, str]:
    """What every verifier sees, also when run by hand (agenteval verify)."""
    return {
        "AGENTEVAL_WORKSPACE": WORKSPACE,
        "AGENTEVAL_VARIANT_ID": variant.id,
        "AGENTEVAL_VARIANT": json.dumps(variant.params),
        "PYTHONPATH": f"{CONTROL}/lib",
        "AGENTEVAL_SECRET": SECRET,
    }


@dataclass(frozen=True)
class _OutNames:
    """The secret names in the out folder of one verification."""

    verdict: str
    artifacts: str
    started: str

    def problems(self, entries: list[TreeEntry]) -> list[str]:
        """What in the out folder the verifier did not leave there as it must."""
        found: list[str] = []
        for e in entries:
            top = e.path.split("/", 1)[0]
            if e.path == "":
                if not e.is_dir or e.mode != OUT_MODE or e.uid != VERIFIER_UID:
                    found.append(f"the verdict folder changed (mode {e.mode:04o}, owner uid {e.uid})")
            elif e.uid != VERIFIER_UID:
                found.append(f"a file of uid {e.uid} appeared in the verdict folder")
            elif top not in (self.verdict, self.started, self.artifacts):
                found.append("a file the verifier did not write appeared in the verdict folder")
            elif e.path == self.verdict and (e.is_dir or e.mode != VERDICT_MODE):
                found.append(f"the verdict file was replaced (mode {e.mode:04o})")
        return sorted(set(found))


def verify_verdict(sandbox: Sandbox, task: Task, variant: VariantSpec, artifacts_dir: Path | None = None,
                   artifacts_rel: str = "") -> VerifyOutcome:
    """Stop the agent's processes, copy tests in, run them, read the verdict."""
    sandbox.kill_processes(AGENT_UID)
    # The out folder can be written but not listed: names there are secrets, handed
    # over in a file the harness deletes before any solution code runs.
    nonce = secrets.token_hex(16)
    names = _OutNames(f"verdict-{nonce}.json", f"artifacts-{nonce}", f"started-{nonce}")
    secret = {"verdict": f"{OUT}/{names.verdict}", "artifacts": f"{OUT}/{names.artifacts}",
              "started": f"{OUT}/{names.started}"}
    files = {f"tests/{k}": v for k, v in files_from_dir(task.tests_dir).items()}
    files["lib/agenteval_verifier.py"] = FileEntry(HARNESS.read_bytes())
    files[SECRET.removeprefix(CONTROL + "/")] = FileEntry(json.dumps(secret).encode(), 0o600)
    sandbox.write_files(CONTROL, files, uid=VERIFIER_UID, dir_mode=0o700)

    command = (f"mkdir -p -m 0700 {CONTROL}/home {CONTROL}/home/tmp && mkdir -m {OUT_MODE:o} {OUT} "
               f"&& cd {CONTROL}/tests && {task.spec.verifier.command}")
    result = sandbox.exec(command, uid=VERIFIER_UID, workdir=CONTROL, env=verifier_env(variant),
                          timeout_s=task.spec.verifier.timeout_sec, phase="verify")
    outcome = VerifyOutcome(verdict=None, exec_record=result)
    entries = sandbox.read_entries(OUT, max_bytes=MAX_ARTIFACT_BYTES + 4 * 1024**2) or []
    files_out = {e.path: e.content for e in entries if not e.is_dir}
    if artifacts_dir is not None:
        shots = {k.split("/", 1)[1]: v for k, v in files_out.items() if k.startswith(names.artifacts + "/")}
        outcome.artifacts = save_artifacts(shots, artifacts_dir, artifacts_rel)

    problems = names.problems(entries) if entries else ["the verdict folder is gone"]
    checks, why = _read_verdict(files_out.get(names.verdict), result)
    if checks is not None and not problems:
        outcome.verdict = Verdict.from_checks(checks)
        return outcome
    why = "; ".join(problems + ([why] if why else []))
    if names.started in files_out:
        outcome.verdict = Verdict.from_checks([Check(
            name=INTERFERENCE_CHECK, passed=False,
            message=f"after the verifier started the solution's code: {why}")])
    else:
        outcome.error = why
    return outcome


def _read_verdict(raw: bytes | None, result: ExecRecord) -> tuple[list[Check] | None, str | None]:
    """The verdict's checks, or None and why there are none."""
    if raw is None:
        how = "timed out" if result.timed_out else f"exited {result.exit_code}"
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return None, f"verifier wrote no verdict ({how})" + (": " + " | ".join(tail) if tail else "")
    try:
        checks = [Check.model_validate(c) for c in json.loads(raw)["checks"]]
    except (ValueError, KeyError, TypeError, ValidationError) as e:
        return None, f"verifier wrote a malformed verdict: {str(e).splitlines()[0][:200]}"
    if not checks:
        return None, "verifier wrote a verdict with no checks"
    return checks, None
