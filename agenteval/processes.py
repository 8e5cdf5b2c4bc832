"""Which process owns something agenteval made, whether it still runs, and how this one
stops when told to.

A run row and each sandbox carry their owner as ``host:pid[:start]``; ``start`` is the
process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), so a pid the
kernel has since given to another process does not pass for the owner.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


def start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> str:
    """``host:pid:start`` of this process."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{start_ticks(pid) or ''}"


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs here (a zombie, killed and not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def owner_gone(owner: str) -> bool | None:
    """Whether the process ``owner`` (``host:pid[:start]``) has ended: None when it ran on another
    host (nothing here can tell) or the text is not an owner."""
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if not pid_alive(int(pid)):
        return True
    return bool(start) and start_ticks(int(pid)) != start


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM stops this process as Ctrl-C does (a KeyboardInterrupt, so what was recorded
    is kept and sandboxes are removed); the previous handler is back on the way out. Off the main
    thread, where no handler can be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler set outside Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)
