"""The verifier's side of the verdict contract; agenteval copies this file into
the sandbox (``/agenteval/lib``, on PYTHONPATH) next to a task's tests.

    from agenteval_verifier import Verdict

    with Verdict() as v:                      # the verdict is written on exit
        v.check("file a.txt exists", path.exists(), "expected /workspace/a.txt")
        proc = v.run(["python3", "main.py"], timeout=10, cwd=v.workspace)   # solution code

Three identities share the sandbox: the agent (uid 1000, gone before this
runs), the verifier (uid 1001, this process) and the solution (uid 1002): every
program of the solution's that a verifier runs goes through ``solution_argv``
(``Verdict.run`` does), so it runs as a uid that owns nothing of the verifier,
holds no capability, and can neither signal, trace nor write into any verifier
process or file. The verifier itself holds CAP_SETUID/SETGID/KILL (handed down
by the root wrapper that starts it) for that switch and to stop solution code.

Why the verdict cannot be faked by what it checks: on import, before any
solution code can run, this process makes itself non-dumpable, reads the
secret verdict path from a file only the verifier user can read and deletes
that file (the path is never in any process's environment or command line),
and creates the verdict file at once with O_EXCL in a folder nobody can list,
keeping it open to write at the end. Only that file is read as a verdict;
stdout, exit codes and any other file are never taken for one. Before the
first solution program starts, a second secret file marks that solution code
ran: from then on a verifier that dies or a verdict that is missing or
changed counts against the solution (verify_failed), not as a verify_error.

A verifier in another language follows the same contract: read and delete
``$AGENTEVAL_SECRET`` (JSON: ``verdict``, ``artifacts``, ``started``), create
the ``started`` file before running solution code, start that code with
``setpriv --reuid=1002 --regid=1002 --clear-groups --inh-caps=-all
--ambient-caps=-all --``, and write ``{"checks": [{"name", "passed",
"message"}]}`` to the verdict path.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

_PR_SET_DUMPABLE = 4
SOLUTION_UID = 1002
_CAP_SETUID = 7
SOLUTION_TMP = "/tmp"                  # solution scratch folders live here, never under /agenteval
OUTPUT_LIMIT = 1024 * 1024             # bytes kept of each stream of a Verdict.run


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


def _can_switch_uid() -> bool:
    """Whether this process may start programs as the solution uid (it holds CAP_SETUID)."""
    try:
        with open("/proc/self/status") as f:
            eff = next(line.split()[1] for line in f if line.startswith("CapEff:"))
        return bool(int(eff, 16) >> _CAP_SETUID & 1) and os.getuid() != SOLUTION_UID
    except (OSError, StopIteration, ValueError):
        return False


_harden()
_SECRET = _take_secret()
_VERDICT_FD = os.open(_SECRET["verdict"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) if _SECRET.get("verdict") else None
# Only a verifier agenteval started (it was handed a secret) switches uids: run by hand, even as
# root, solution code runs as the caller and nothing kills processes of another uid.
_SWITCH = bool(_SECRET) and _can_switch_uid()
WORKSPACE = Path(os.environ.get("AGENTEVAL_WORKSPACE", "/workspace"))
ARTIFACTS = Path(_SECRET.get("artifacts") or "/tmp/agenteval-artifacts")
VARIANT_ID = os.environ.get("AGENTEVAL_VARIANT_ID", "default")
VARIANT: dict[str, Any] = json.loads(os.environ.get("AGENTEVAL_VARIANT", "{}") or "{}")
_started = False


def _mark_started() -> None:
    """Say, once, that solution code is about to run (the host reads this file after the verifier)."""
    global _started
    if _started:
        return
    _started = True
    path = _SECRET.get("started")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)


def solution_argv(argv: list[str]) -> list[str]:
    """``argv`` as it must be started to run as the solution: uid 1002, no groups, no capabilities.

    Run by hand (no secret handed over, or no right to switch uid) the program runs as the caller.
    """
    _mark_started()
    if not _SWITCH:
        return [str(a) for a in argv]
    return ["setpriv", f"--reuid={SOLUTION_UID}", f"--regid={SOLUTION_UID}", "--clear-groups",
            "--inh-caps=-all", "--ambient-caps=-all", "--", *[str(a) for a in argv]]


def solution_env(home: str | Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for solution code: no secret, no verifier path, its own home."""
    keep = ("LANG", "AGENTEVAL_WORKSPACE", "AGENTEVAL_VARIANT_ID", "AGENTEVAL_VARIANT", "SDL_VIDEODRIVER",
            "SDL_AUDIODRIVER", "PYGAME_HIDE_SUPPORT_PROMPT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME=str(home), TMPDIR=str(home),
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
    return {**env, **(extra or {})}


def solution_dir(prefix: str = "solution-") -> Path:
    """A fresh folder outside /agenteval that solution code can read and write.

    Sticky and world-writable: the solution can add files but cannot remove or
    replace what the verifier put there. Remove it with shutil.rmtree when done.
    """
    base = SOLUTION_TMP if _SWITCH else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    path.chmod(0o1777 if _SWITCH else 0o700)
    return path


def kill_solution() -> int:
    """SIGKILL every process of the solution uid (daemons that left their group too); how many.

    Run by hand (no capability to signal another uid) it kills nothing and returns 0.
    """
    if not _SWITCH:
        return 0
    killed = 0
    for _ in range(50):  # a fork bomb refills the table between sweeps; the pids cap bounds it
        found = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid == SOLUTION_UID:
                    os.kill(int(entry), signal.SIGKILL)
                    found += 1
            except OSError:
                continue
        killed += found
        if not found:
            break
        time.sleep(0.02)
    return killed


def _read_capped(proc: subprocess.Popen[bytes], data: bytes | None, deadline: float,
                 limit: int) -> tuple[bytes, bytes, bool]:
    """stdout and stderr (the first ``limit`` bytes of each, the rest read and dropped) until EOF or deadline."""
    out, err = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    if proc.stdin is not None:
        try:
            if data:
                proc.stdin.write(data)
            proc.stdin.close()
        except OSError:
            pass
    timed_out = False
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf: bytearray = key.data
                if len(buf) < limit:
                    buf += chunk[:limit - len(buf)]
    finally:
        sel.close()
    return bytes(out), bytes(err), timed_out


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
            env: dict[str, str] | None = None, input: bytes | None = None,
            output_limit: int = OUTPUT_LIMIT) -> subprocess.CompletedProcess[bytes]:
        """Run solution code as the solution uid: its own session, a clean environment, capped
        output, a hard timeout (``subprocess.TimeoutExpired``); every process it left is killed after.

        ``cwd`` defaults to a fresh scratch folder (``solution_dir``), also its HOME and TMPDIR.
        """
        scratch = solution_dir("run-")
        proc = subprocess.Popen(solution_argv(argv), cwd=cwd or scratch, env=solution_env(scratch, env),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err, timed_out = _read_capped(proc, input, time.monotonic() + timeout, output_limit)
            if not timed_out:
                try:
                    proc.wait(max(0.1, timeout))
                except subprocess.TimeoutExpired:
                    timed_out = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            kill_solution()
            proc.wait()
            shutil.rmtree(scratch, ignore_errors=True)
        if timed_out:
            raise subprocess.TimeoutExpired(argv, timeout, out, err)
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
