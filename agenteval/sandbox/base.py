"""The sandbox lifecycle every backend implements.

A sandbox is one isolated machine per trial with three people in it: the
agent (uid ``AGENT_UID``), who works in ``WORKSPACE``; the verifier (uid
``VERIFIER_UID``), who arrives only after the agent is gone and owns
``CONTROL``, where hidden tests and the verdict live; and the solution (uid
``SOLUTION_UID``), as which the verifier runs the code it judges, owning
nothing of the verifier's.

A Harbor task's sandbox (``SandboxLayout.harbor``) also has Harbor's folders:
the agent's workdir (the same folder as /workspace, seeded with the image's
files there), /logs/agent and /logs/artifacts (the agent may write),
/logs/verifier (only the group ``VERIFY_GID``, which no agent process holds,
may write), /tests and /solution (the verifier's, read-only to the others).
"""

from __future__ import annotations

import abc
import posixpath
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from agenteval.errors import BadInputError
from agenteval.records import ExecRecord
from agenteval.task.files import task_file
from agenteval.task.spec import WORKDIR, SandboxSpec, parse_size

AGENT_UID = 1000
VERIFIER_UID = 1001
SOLUTION_UID = 1002
IDLE_UID = 65534  # the container's own keep-alive process: neither user can signal it
WORKSPACE = WORKDIR
CONTROL = "/agenteval"
HARBOR_LOGS = "/logs"
VERIFIER_LOGS = "/logs/verifier"
HARBOR_TESTS = "/tests"
HARBOR_SOLUTION = "/solution"
VERIFY_GID = 1003  # the group Harbor's tests run with: alone it may write /logs/verifier


@dataclass(frozen=True)
class SandboxLimits:
    """Resource caps, in the units the engine takes."""

    memory_bytes: int = 1024**3
    cpus: float = 1.0
    pids: int = 256
    workspace_bytes: int = 256 * 1024**2
    control_bytes: int = 128 * 1024**2
    tmp_bytes: int = 64 * 1024**2
    exec_timeout_s: float = 120.0
    output_limit_bytes: int = 256 * 1024

    @classmethod
    def from_spec(cls, spec: SandboxSpec) -> "SandboxLimits":
        return cls(
            memory_bytes=parse_size(spec.memory),
            cpus=spec.cpus,
            pids=spec.pids,
            workspace_bytes=parse_size(spec.workspace_size),
            tmp_bytes=parse_size(spec.tmp_size),
            exec_timeout_s=spec.exec_timeout_sec,
            output_limit_bytes=parse_size(spec.output_limit),
        )


@dataclass(frozen=True)
class SandboxLayout:
    """Where the agent works, which well-known folders the sandbox has, whether it has a network."""

    workdir: str | None = WORKSPACE  # None: the image's WORKDIR (/workspace where it has none)
    harbor: bool = False
    internet: bool = False
    env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_spec(cls, spec: SandboxSpec) -> "SandboxLayout":
        return cls(workdir=spec.workdir, harbor=spec.layout == "harbor", internet=spec.internet,
                   env=tuple(sorted(spec.env.items())))


@dataclass(frozen=True)
class TreeEntry:
    """One member of a folder read back from a sandbox, with the metadata that proves who wrote it."""

    path: str            # relative to the folder read; "" is the folder (or file) itself
    is_dir: bool
    mode: int            # permission bits
    uid: int
    content: bytes = b""


@dataclass(frozen=True)
class FileEntry:
    """A file to write into the sandbox: content and permission bits."""

    content: bytes
    mode: int = 0o644


def safe_relpath(path: str) -> str:
    """Normalise a path given by a model or a task; refuse anything that climbs out."""
    norm = posixpath.normpath(path.replace("\\", "/")).lstrip("/")
    if norm in ("", ".") or norm == ".." or norm.startswith("../"):
        raise ValueError(f"path {path!r} leaves its folder")
    return norm


def check_copyable(src: Path) -> None:
    """Refuse, in one line, a folder that cannot arrive in a sandbox byte for byte: one holding a
    device, fifo or socket, or a file this process cannot read."""
    for p in sorted(src.rglob("*")):
        if p.is_symlink() or p.is_dir():
            continue
        if not p.is_file():
            raise BadInputError(f"{p}: not a regular file, folder or symlink; only those can be copied into a "
                                f"sandbox (remove it, or verify a copy without it)")
        try:
            with open(p, "rb"):
                pass
        except OSError as e:
            raise BadInputError(f"{p}: cannot be read ({e.strerror or e}), so it cannot be copied as it is") from None


def files_from_dir(src: Path) -> dict[str, FileEntry]:
    """Every regular file under ``src`` that belongs to a task (see ``task_file``), keeping the executable bit."""
    out: dict[str, FileEntry] = {}
    for p in sorted(src.rglob("*")):
        if p.is_file() and task_file(p.relative_to(src)):
            mode = 0o755 if p.stat().st_mode & 0o111 else 0o644
            out[p.relative_to(src).as_posix()] = FileEntry(p.read_bytes(), mode)
    return out


class Sandbox(abc.ABC):
    """One trial's isolated environment. Use as a context manager: close() always runs."""

    execs: list[ExecRecord]
    workdir: str = WORKSPACE  # where the agent's commands start; known once started

    @abc.abstractmethod
    def start(self) -> None:
        """Create the environment. Raises SandboxError (or EngineUnavailableError)."""

    @abc.abstractmethod
    def exec(self, command: str, *, uid: int = AGENT_UID, workdir: str | None = None,
             env: dict[str, str] | None = None, timeout_s: float | None = None,
             phase: str = "agent") -> ExecRecord:
        """Run ``sh -c command`` (in ``workdir``, by default the agent's); never raises for the command's own failure.

        The timeout is enforced inside (coreutils ``timeout``) and from the
        host; output beyond the limit is counted and dropped. Raises
        SandboxError only when the sandbox itself is broken.
        """

    @abc.abstractmethod
    def write_files(self, dest: str, files: dict[str, FileEntry], *, uid: int = AGENT_UID,
                    dir_mode: int = 0o755) -> None:
        """Write files (paths relative to ``dest``, parents created) owned by ``uid``."""

    @abc.abstractmethod
    def write_tree(self, dest: str, src: Path, *, uid: int = AGENT_UID, every_file: bool = False) -> None:
        """Copy a local folder as it is (directories, modes, symlinks) into ``dest``, owned by ``uid``:
        the files that belong to a task (``task_file``), or with ``every_file`` all of them, caches
        and dotfiles included (a solution folder is judged as it is; see ``check_copyable``)."""

    @abc.abstractmethod
    def read_file(self, path: str, max_bytes: int = 16 * 1024**2) -> bytes | None:
        """Content of a regular file, or None when it does not exist.

        Raises SandboxFileError when it is larger than ``max_bytes`` or not a regular file.
        """

    def read_tree(self, path: str, max_bytes: int = 32 * 1024**2) -> dict[str, bytes]:
        """Regular files under a folder (relative path -> content), at most ``max_bytes`` in all."""
        return {e.path: e.content for e in self.read_entries(path, max_bytes) or [] if not e.is_dir}

    @abc.abstractmethod
    def read_entries(self, path: str, max_bytes: int = 32 * 1024**2) -> list[TreeEntry] | None:
        """Folders and regular files at ``path`` with owner and mode, or None when it does not exist.

        Raises SandboxFileError when the files hold more than ``max_bytes``.
        """

    @abc.abstractmethod
    def kill_processes(self, uid: int) -> None:
        """SIGKILL every process of ``uid``, so nothing it left running can act any more."""

    @abc.abstractmethod
    def close(self) -> None:
        """Remove everything this sandbox created. Idempotent and safe from any thread."""

    def __enter__(self) -> "Sandbox":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
