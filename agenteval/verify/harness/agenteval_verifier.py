"""The verifier's side of the verdict contract; agenteval copies this file into
the sandbox (``/agenteval/lib``, on PYTHONPATH) next to a task's tests.

    from agenteval_verifier import Verdict

    with Verdict() as v:                      # the verdict is written on exit
        v.check("file a.txt exists", path.exists(), "expected /workspace/a.txt")

Why it cannot be faked by what it checks: on import, before any solution code
can run, this process makes itself non-dumpable (processes it starts cannot
read its memory or open its files through /proc), reads the secret verdict
path from a file only the verifier user can read and deletes that file (the
path is never in any process's environment or command line), and creates the
verdict file at once with O_EXCL in a folder nobody can list, keeping it open
to write at the end. Only that file is read as a verdict; stdout, exit codes
and any other file are never taken for one.

A verifier in another language follows the same contract: read and delete
``$AGENTEVAL_SECRET`` (JSON: ``verdict``, ``artifacts``), then write
``{"checks": [{"name", "passed", "message"}]}`` to the verdict path.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import traceback
from pathlib import Path
from typing import Any

_PR_SET_DUMPABLE = 4


def _harden() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to protect against here
        pass


def _take_secret() -> dict[str, str]:
    path = Path(os.environ.get("AGENTEVAL_SECRET", "/agenteval/run/secret.json"))
    try:
        data = json.loads(path.read_text())
        path.unlink()
    except (OSError, ValueError):
        return {}  # run by hand: the verdict is printed, not written
    return data if isinstance(data, dict) else {}


_harden()
_SECRET = _take_secret()
_VERDICT_FD = os.open(_SECRET["verdict"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) if _SECRET.get("verdict") else None
WORKSPACE = Path(os.environ.get("AGENTEVAL_WORKSPACE", "/workspace"))
ARTIFACTS = Path(_SECRET.get("artifacts") or "/tmp/agenteval-artifacts")
VARIANT_ID = os.environ.get("AGENTEVAL_VARIANT_ID", "default")
VARIANT: dict[str, Any] = json.loads(os.environ.get("AGENTEVAL_VARIANT", "{}") or "{}")


class Verdict:
    """Collects checks and writes them as the trial's verdict, exactly once."""

    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []
        self.workspace = WORKSPACE
        self.variant = VARIANT
        self.variant_id = VARIANT_ID
        self._written = False

    def check(self, name: str, passed: bool, message: str = "", weight: float = 1.0) -> bool:
        """Record one check; returns ``passed`` so callers can skip dependent checks."""
        self.checks.append({"name": str(name), "passed": bool(passed), "message": str(message)[:4000],
                            "weight": float(weight)})
        return bool(passed)

    def artifact(self, name: str, data: bytes) -> None:
        """Save a file (a screenshot, a log) that the report shows beside the verdict."""
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100] or "artifact"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / safe).write_bytes(data)

    def run(self, argv: list[str], *, timeout: float, cwd: str | Path | None = None,
            env: dict[str, str] | None = None, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run solution code: its own session, a clean environment, a hard timeout."""
        base = {k: v for k, v in os.environ.items() if k not in ("AGENTEVAL_SECRET",)}
        proc = subprocess.Popen(argv, cwd=cwd, env={**base, **(env or {})}, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, err = proc.communicate()
            raise
        finally:
            try:
                os.killpg(proc.pid, 9)
            except OSError:
                pass
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def write(self) -> None:
        if self._written:
            return
        self._written = True
        if _VERDICT_FD is None:
            print(json.dumps({"checks": self.checks}, indent=2))  # run by hand: show, don't write
            return
        with os.fdopen(_VERDICT_FD, "w") as f:
            json.dump({"checks": self.checks}, f)

    def __enter__(self) -> "Verdict":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc is not None and not isinstance(exc, SystemExit):
            self.check("verifier ran to the end", False,
                       "the verifier crashed: " + "".join(traceback.format_exception_only(exc_type, exc)).strip())
        self.write()
        return exc is not None and not isinstance(exc, (SystemExit, KeyboardInterrupt))
