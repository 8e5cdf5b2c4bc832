"""Hidden verification: tests arrive only after the agent is gone.

The verdict is whatever the verifier wrote to a per-trial secret path (see
``harness/agenteval_verifier.py``); nothing the solution prints or writes
elsewhere is ever read as one.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from agenteval.records import Artifact, Check, ExecRecord, Verdict
from agenteval.sandbox.base import AGENT_UID, CONTROL, VERIFIER_UID, WORKSPACE, FileEntry, Sandbox, files_from_dir
from agenteval.task import Task, VariantSpec

HARNESS = Path(__file__).parent / "harness" / "agenteval_verifier.py"
MAX_ARTIFACT_BYTES = 16 * 1024**2
OUT = f"{CONTROL}/out"
SECRET = f"{CONTROL}/run/secret.json"


@dataclass
class VerifyOutcome:
    """A verdict, or the reason there is none (a verify_error)."""

    verdict: Verdict | None
    error: str | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    exec_record: ExecRecord | None = None


def verifier_env(variant: VariantSpec) -> dict[str, str]:
    """What every verifier sees, also when run by hand (agenteval verify)."""
    return {
        "AGENTEVAL_WORKSPACE": WORKSPACE,
        "AGENTEVAL_VARIANT_ID": variant.id,
        "AGENTEVAL_VARIANT": json.dumps(variant.params),
        "PYTHONPATH": f"{CONTROL}/lib",
        "AGENTEVAL_SECRET": SECRET,
    }


def verify_trial(sandbox: Sandbox, task: Task, variant: VariantSpec, artifacts_dir: Path | None = None,
                 artifacts_rel: str = "") -> VerifyOutcome:
    """Stop the agent's processes, copy tests in, run them, read the verdict."""
    sandbox.kill_processes(AGENT_UID)
    # The out folder can be written but not listed: names there are secrets, handed
    # over in a file the harness deletes before any solution code runs.
    nonce = secrets.token_hex(16)
    verdict_name, artifacts_name = f"verdict-{nonce}.json", f"artifacts-{nonce}"
    secret = {"verdict": f"{OUT}/{verdict_name}", "artifacts": f"{OUT}/{artifacts_name}"}
    files = {f"tests/{k}": v for k, v in files_from_dir(task.tests_dir).items()}
    files["lib/agenteval_verifier.py"] = FileEntry(HARNESS.read_bytes())
    files[SECRET.removeprefix(CONTROL + "/")] = FileEntry(json.dumps(secret).encode(), 0o600)
    sandbox.write_files(CONTROL, files, uid=VERIFIER_UID, dir_mode=0o700)

    command = (f"mkdir -p -m 0700 {CONTROL}/home && mkdir -m 0300 {OUT} "
               f"&& cd {CONTROL}/tests && {task.spec.verifier.command}")
    result = sandbox.exec(command, uid=VERIFIER_UID, workdir=CONTROL, env=verifier_env(variant),
                          timeout_s=task.spec.verifier.timeout_sec, phase="verify")
    outcome = VerifyOutcome(verdict=None, exec_record=result)
    out_files = sandbox.read_tree(OUT, max_bytes=MAX_ARTIFACT_BYTES + 4 * 1024**2)
    if artifacts_dir is not None:
        shots = {k.split("/", 1)[1]: v for k, v in out_files.items() if k.startswith(artifacts_name + "/")}
        outcome.artifacts = _save_artifacts(shots, artifacts_dir, artifacts_rel)

    raw = out_files.get(verdict_name)
    if raw is None:
        why = "timed out" if result.timed_out else f"exited {result.exit_code}"
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        outcome.error = f"verifier wrote no verdict ({why})" + (": " + " | ".join(tail) if tail else "")
        return outcome
    try:
        checks = [Check.model_validate(c) for c in json.loads(raw)["checks"]]
    except (ValueError, KeyError, TypeError, ValidationError) as e:
        outcome.error = f"verifier wrote a malformed verdict: {str(e).splitlines()[0][:200]}"
        return outcome
    if not checks:
        outcome.error = "verifier wrote a verdict with no checks"
        return outcome
    outcome.verdict = Verdict.from_checks(checks)
    return outcome


def _save_artifacts(files: dict[str, bytes], dest: Path, rel: str) -> list[Artifact]:
    saved: list[Artifact] = []
    for name, data in sorted(files.items()):
        safe = Path(name).name
        dest.mkdir(parents=True, exist_ok=True)
        (dest / safe).write_bytes(data)
        saved.append(Artifact(name=safe, path=f"{rel}/{safe}" if rel else safe, size=len(data),
                              media_type=mimetypes.guess_type(safe)[0] or "application/octet-stream"))
    return saved


