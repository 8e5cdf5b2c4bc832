"""DockerSandbox: a hardened container per trial, driven through the Docker SDK.

Hardening (all on by default): no network, memory cap with swap equal to it,
pids cap, CPU quota, every capability dropped, no-new-privileges, non-root
users, read-only root with size-capped tmpfs-backed volumes for /workspace
and /agenteval, a tmpfs /tmp, an init process, ulimits, and exec timeouts
inside the container and from the host. Every container and volume carries
``agenteval.*`` labels so ``prune`` can find what a killed run left behind.
A task's workdir other than /workspace is the same volume mounted a second
time; a Harbor task's sandbox also gets the folders ``base`` describes.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from agenteval.errors import SandboxClosedError, SandboxError, SandboxFileError, SandboxStartError
from agenteval.records import ExecRecord
from agenteval.sandbox.base import (
    AGENT_UID, CONTROL, HARBOR_LOGS, HARBOR_SOLUTION, HARBOR_TESTS, IDLE_UID, SOLUTION_UID, VERIFIER_LOGS,
    VERIFIER_UID, VERIFY_GID, WORKSPACE, FileEntry, Sandbox, SandboxLayout, SandboxLimits, TreeEntry, safe_relpath,
)
from agenteval.sandbox.cleanup import LABEL, OWNER_LABEL, owner_label, prune, remove_sandbox
from agenteval.task.files import task_file
from agenteval.task.spec import SandboxSpec

if TYPE_CHECKING:
    import docker

HOST_GRACE_S = 5.0  # the host steps in this long after the in-container timeout should have fired
# What the verifier holds, and nobody else: starting solution code as its own uid, stopping it.
# They stay in the container's bounding set only for that; no-new-privileges keeps them out of
# reach of every other uid (agent and solution processes hold no capability).
VERIFIER_CAPS = ("SETUID", "SETGID", "KILL")

_HOMES = {AGENT_UID: "/tmp", VERIFIER_UID: f"{CONTROL}/home"}
_TMPDIRS = {VERIFIER_UID: f"{CONTROL}/home/tmp"}
_live: set["DockerSandbox"] = set()
_live_lock = threading.Lock()


def close_all_live() -> int:
    """Remove every sandbox this process still has open (Ctrl-C path). Returns how many."""
    with _live_lock:
        boxes = list(_live)
    for box in boxes:
        box.close()
    return len(boxes)


def _command_argv(command: str, uid: int, timeout: float) -> tuple[list[str], str]:
    """(argv, docker user) of ``sh -c command`` as ``uid`` under an in-container timeout.

    The verifier's command starts as root and drops to its uid through setpriv, keeping only
    ``VERIFIER_CAPS`` (as ambient capabilities): its wrappers (timeout, setpriv) then belong to
    root, so no solution process can stop, signal or trace them.
    """
    argv = ["timeout", "-k", "2", f"{timeout:g}"]
    if uid != VERIFIER_UID:
        return argv + ["sh", "-c", command], f"{uid}:{uid}"
    caps = ",".join(["-all"] + [f"+{c.lower()}" for c in VERIFIER_CAPS])
    return argv + ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", f"--inh-caps={caps}",
                   f"--ambient-caps={caps}", "--", "sh", "-c", command], "0:0"


def _base_env(uid: int) -> dict[str, str]:
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": _HOMES.get(uid, "/tmp"),
        "TMPDIR": _TMPDIRS.get(uid, "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
    }


class _Capture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]

    @property
    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


class DockerSandbox(Sandbox):
    """One container plus its tmpfs-backed volumes (two; six for a Harbor task), removed by ``close()``."""

    def __init__(self, client: "docker.DockerClient", image: str, limits: SandboxLimits | None = None,
                 labels: dict[str, str] | None = None, layout: SandboxLayout | None = None) -> None:
        self.client = client
        self.image = image
        self.limits = limits or SandboxLimits()
        self.layout = layout or SandboxLayout()
        self.workdir = WORKSPACE
        self.name = f"agenteval-{uuid.uuid4().hex[:12]}"
        self.labels = {LABEL: "1", OWNER_LABEL: owner_label(), **(labels or {})}
        self.execs: list[ExecRecord] = []
        self.container_id: str | None = None
        self._volumes: list[str] = []
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def for_spec(cls, client: "docker.DockerClient", image: str, spec: SandboxSpec,
                 labels: dict[str, str] | None = None) -> "DockerSandbox":
        """The sandbox a task's [sandbox] table describes, from an image already built."""
        return cls(client, image, SandboxLimits.from_spec(spec), labels, SandboxLayout.from_spec(spec))

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        from docker.errors import DockerException
        from docker.types import Mount, Ulimit

        with _live_lock:
            _live.add(self)
        lim, layout, api = self.limits, self.layout, self.client.api
        try:
            self.workdir = layout.workdir or _image_workdir(self.client, self.image)
            mounts = [Mount(path, self._volume(kind, size, uid, mode, gid), type="volume", no_copy=True)
                      for path, kind, size, uid, gid, mode in self._volume_plan()]
            host_config = api.create_host_config(
                init=True, network_mode="bridge" if layout.internet else "none", read_only=True, cap_drop=["ALL"],
                cap_add=list(VERIFIER_CAPS),
                security_opt=["no-new-privileges"], mem_limit=lim.memory_bytes, memswap_limit=lim.memory_bytes,
                pids_limit=lim.pids, nano_cpus=int(lim.cpus * 1e9),
                ulimits=[Ulimit(name="nofile", soft=1024, hard=1024), Ulimit(name="core", soft=0, hard=0)],
                tmpfs={"/tmp": f"size={lim.tmp_bytes},mode=1777,nosuid,nodev"}, mounts=mounts,
            )
            # The container runs as root so that a root exec (the verifier's, see _command_argv)
            # gets VERIFIER_CAPS; the keep-alive itself drops to IDLE_UID with no capability.
            keep_alive = ["setpriv", f"--reuid={IDLE_UID}", f"--regid={IDLE_UID}", "--clear-groups",
                          "--inh-caps=-all", "--ambient-caps=-all", "--", "sleep", "infinity"]
            created = api.create_container(
                self.image, keep_alive, name=self.name, user="0:0", environment=dict(layout.env), entrypoint=[],
                working_dir=WORKSPACE, hostname="sandbox", network_disabled=not layout.internet, labels=self.labels,
                host_config=host_config,
            )
            self.container_id = created["Id"]
            api.start(self.container_id)
            if layout.harbor:
                self._seed_harbor()
        except DockerException as e:
            self.close()
            raise SandboxStartError(f"could not start a sandbox from image {self.image!r}: {_short(e)}") from e
        if self._closed:  # closed by Ctrl-C while starting
            self.close()
            raise SandboxClosedError("sandbox was closed while it started")

    def _volume_plan(self) -> list[tuple[str, str, int, int, int, int]]:
        """(mount path, volume kind, size, owner uid, gid, mode): the workspace (also at the workdir) and
        the verifier's folder; a Harbor task's also /logs, /logs/verifier, /tests and /solution."""
        lim = self.limits
        plan = [(WORKSPACE, "ws", lim.workspace_bytes, AGENT_UID, AGENT_UID, 0o755),
                (CONTROL, "ctl", lim.control_bytes, VERIFIER_UID, VERIFIER_UID, 0o711)]
        if self.workdir != WORKSPACE:
            plan.append((self.workdir, "ws", lim.workspace_bytes, AGENT_UID, AGENT_UID, 0o755))
        if self.layout.harbor:
            plan += [(HARBOR_LOGS, "logs", lim.control_bytes, 0, 0, 0o755),
                     (VERIFIER_LOGS, "vlogs", lim.control_bytes, 0, VERIFY_GID, 0o770),
                     (HARBOR_TESTS, "tests", lim.control_bytes, VERIFIER_UID, VERIFIER_UID, 0o755),
                     (HARBOR_SOLUTION, "sol", lim.control_bytes, VERIFIER_UID, VERIFIER_UID, 0o755)]
        return plan

    def _volume(self, kind: str, size: int, uid: int, mode: int, gid: int) -> str:
        name = f"{self.name}-{kind}"
        if name in self._volumes:  # one volume, mounted twice (the workspace at the workdir)
            return name
        self.client.volumes.create(
            name, driver="local", labels=self.labels,
            driver_opts={"type": "tmpfs", "device": "tmpfs",
                         "o": f"size={size},uid={uid},gid={gid},mode={mode:o},nosuid,nodev"},
        )
        self._volumes.append(name)
        return name

    def _seed_harbor(self) -> None:
        """The image's files in the workdir, copied into it owned by the agent; /logs/agent and /logs/artifacts."""
        seed = _image_tree(self.client, self.image, self.workdir, self.labels, self.limits.workspace_bytes)
        if seed:
            self._put(self.workdir, seed, f"copy the image's {self.workdir}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.addfile(_tarinfo("agent", tarfile.DIRTYPE, 0o755, AGENT_UID, time.time()))
            tar.addfile(_tarinfo("artifacts", tarfile.DIRTYPE, 0o1777, 0, time.time()))
        self._put(HARBOR_LOGS, buf.getvalue(), f"create {HARBOR_LOGS}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            cid, self.container_id = self.container_id, None
            vols, self._volumes = self._volumes, []
        remove_sandbox(self.client, [cid] if cid else [], vols)
        with _live_lock:
            _live.discard(self)

    def _cid(self) -> str:
        if not self.container_id:
            raise SandboxClosedError("the sandbox is not running (closed or never started)")
        return self.container_id

    # -- commands ----------------------------------------------------------
    def exec(self, command: str, *, uid: int = AGENT_UID, workdir: str | None = None,
             env: dict[str, str] | None = None, timeout_s: float | None = None,
             phase: str = "agent") -> ExecRecord:
        from docker.errors import DockerException

        timeout = timeout_s or self.limits.exec_timeout_s
        argv, user = _command_argv(command, uid, timeout)
        out, err = _Capture(self.limits.output_limit_bytes), _Capture(self.limits.output_limit_bytes)
        api = self.client.api
        t0 = time.monotonic()
        try:
            exec_id = api.exec_create(self._cid(), argv, user=user, workdir=workdir or self.workdir,
                                      environment={**_base_env(uid), **(env or {})})["Id"]
            stream = api.exec_start(exec_id, stream=True, demux=True)
        except DockerException as e:
            raise SandboxError(f"exec failed in sandbox: {_short(e)}") from e

        failure: list[BaseException] = []

        def pump() -> None:
            try:
                for o, e in stream:
                    if o:
                        out.add(o)
                    if e:
                        err.add(e)
            except Exception as exc:  # noqa: BLE001 - reported below
                failure.append(exc)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        reader.join(timeout + HOST_GRACE_S)
        host_killed = reader.is_alive()
        if host_killed:
            # Something escaped the in-container timeout (a setsid'd child holding stdout).
            self.kill_processes(uid)
            reader.join(HOST_GRACE_S)
            if reader.is_alive():
                raise SandboxError(f"command did not stop after being killed: {command[:200]!r}")
        duration = time.monotonic() - t0
        if failure and self._closed:
            raise SandboxClosedError("sandbox was closed while a command ran")
        try:
            exit_code = None if host_killed else api.exec_inspect(exec_id).get("ExitCode")
        except DockerException as e:
            raise SandboxClosedError(f"sandbox went away during a command: {_short(e)}") from e
        timed_out = host_killed or (exit_code in (124, 137) and duration >= timeout * 0.98)
        oom = exit_code == 137 and not timed_out and self._oom_killed()
        record = ExecRecord(
            phase=phase, user=str(uid), command=command, exit_code=exit_code, duration_s=round(duration, 4),
            timed_out=timed_out, oom_killed=oom, stdout=out.text, stderr=err.text,
            stdout_bytes=out.total, stderr_bytes=err.total,
            truncated=out.total > len(out.kept) or err.total > len(err.kept),
        )
        self.execs.append(record)
        return record

    def _oom_killed(self) -> bool:
        """Whether the memory cap's OOM killer fired in this container."""
        try:
            state = self.client.api.inspect_container(self._cid())["State"]
            if state.get("OOMKilled"):
                return True
        except Exception:  # noqa: BLE001
            return False
        probe = self._raw_exec(["sh", "-c", "cat /sys/fs/cgroup/memory/memory.oom_control "
                                "/sys/fs/cgroup/memory.events 2>/dev/null"], IDLE_UID)
        for line in probe.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                return True
        return False

    def _raw_exec(self, argv: list[str], uid: int) -> str:
        """A short internal command whose output agenteval itself reads (not recorded)."""
        api = self.client.api
        exec_id = api.exec_create(self._cid(), argv, user=f"{uid}:{uid}")["Id"]
        return bytes(api.exec_start(exec_id)).decode("utf-8", errors="replace")

    def kill_processes(self, uid: int) -> None:
        if uid == IDLE_UID:
            raise ValueError("refusing to kill the sandbox's own keep-alive process")
        if not self._has_processes(uid):
            return
        # kill(-1) signals every process of the caller's uid but itself; repeat
        # until none is left, so a fork bomb cannot outrun one sweep.
        script = "i=0; while kill -9 -1 2>/dev/null && [ $i -lt 200 ]; do i=$((i+1)); done; exit 0"
        from docker.errors import DockerException
        for _ in range(10):
            try:
                self._raw_exec(["sh", "-c", script], uid)
                return
            except DockerException:
                time.sleep(0.2)  # pids cap full for a moment: try again
        raise SandboxError(f"could not stop the processes of uid {uid}")

    def _has_processes(self, uid: int) -> bool:
        """Whether a process of ``uid`` runs (a cheap `docker top`, no exec needed).

        Any doubt (an error, uids shifted by a user namespace) answers True, so the caller kills.
        """
        try:
            top = self.client.api.top(self._cid(), ps_args="-o uid")
        except Exception:  # noqa: BLE001
            return True
        uids = [row[0].strip() for row in top.get("Processes") or []]
        known = {"0", str(IDLE_UID), str(AGENT_UID), str(VERIFIER_UID), str(SOLUTION_UID)}
        return not uids or str(uid) in uids or not set(uids) <= known

    # -- files -------------------------------------------------------------
    def write_files(self, dest: str, files: dict[str, FileEntry], *, uid: int = AGENT_UID,
                    dir_mode: int = 0o755) -> None:
        root, prefix = self._split_mount(dest)
        buf = io.BytesIO()
        now = time.time()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            seen_dirs: set[str] = set()

            def add_parents(rel: str) -> None:
                parts = rel.split("/")
                for i in range(1, len(parts)):
                    d = "/".join(parts[:i])
                    if d not in seen_dirs:
                        seen_dirs.add(d)
                        tar.addfile(_tarinfo(d, tarfile.DIRTYPE, dir_mode, uid, now))

            if prefix:
                add_parents(prefix + "/x")
            for raw_path, entry in files.items():
                rel = "/".join(p for p in (prefix, safe_relpath(raw_path)) if p)
                add_parents(rel)
                info = _tarinfo(rel, tarfile.REGTYPE, entry.mode, uid, now)
                info.size = len(entry.content)
                tar.addfile(info, io.BytesIO(entry.content))
        self._put(root, buf.getvalue(), f"write files into {dest}")

    def write_tree(self, dest: str, src: Path, *, uid: int = AGENT_UID, every_file: bool = False) -> None:
        root, prefix = self._split_mount(dest)

        def own(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
                return None  # devices, fifos: never copied into a sandbox
            if not every_file and not task_file(PurePosixPath(info.name)):
                return None
            info.uid = info.gid = uid
            info.uname = info.gname = ""
            return info

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for child in sorted(src.iterdir()):
                tar.add(child, arcname="/".join(p for p in (prefix, child.name) if p), filter=own)
        self._put(root, buf.getvalue(), f"copy {src} into {dest}")

    def _split_mount(self, dest: str) -> tuple[str, str]:
        """(mount root, path below it): files can only go into the sandbox's writable mounts."""
        roots = [WORKSPACE, CONTROL, self.workdir] + ([HARBOR_TESTS, HARBOR_SOLUTION] if self.layout.harbor else [])
        for root in roots:
            if dest == root or dest.startswith(root + "/"):
                rest = dest[len(root):].strip("/")
                return root, safe_relpath(rest) if rest else ""
        raise SandboxFileError(f"can only write under {', '.join(roots)}, not {dest}")

    def _put(self, root: str, archive: bytes, what: str) -> None:
        from docker.errors import DockerException

        try:
            ok = self.client.api.put_archive(self._cid(), root, archive)
        except DockerException as e:
            raise SandboxError(f"could not {what}: {_short(e)}") from e
        if not ok:
            raise SandboxError(f"could not {what}")

    def read_file(self, path: str, max_bytes: int = 16 * 1024**2) -> bytes | None:
        entries = self.read_entries(path, max_bytes)
        if entries is None:
            return None
        if len(entries) != 1 or entries[0].path != "" or entries[0].is_dir:
            raise SandboxFileError(f"{path} is not a regular file")
        return entries[0].content

    def read_entries(self, path: str, max_bytes: int = 32 * 1024**2) -> list[TreeEntry] | None:
        from docker.errors import DockerException, NotFound

        try:
            stream, stat = self.client.api.get_archive(self._cid(), path)
        except NotFound:
            return None
        except DockerException as e:
            raise SandboxError(f"could not read {path}: {_short(e)}") from e
        buf = io.BytesIO()
        for chunk in stream:
            buf.write(chunk)
            if buf.tell() > max_bytes + 1024 * 1024:
                raise SandboxFileError(f"{path} is larger than {max_bytes} bytes")
        buf.seek(0)
        out: list[TreeEntry] = []
        total = 0
        base = stat["name"]
        with tarfile.open(fileobj=buf, mode="r") as tar:
            for member in tar:
                if not (member.isreg() or member.isdir()):
                    continue
                rel = member.name[len(base):].lstrip("/") if member.name.startswith(base) else member.name
                content = b""
                if member.isreg():
                    total += member.size
                    if total > max_bytes:
                        raise SandboxFileError(f"{path} holds more than {max_bytes} bytes")
                    f = tar.extractfile(member)
                    content = f.read() if f else b""
                out.append(TreeEntry(rel, member.isdir(), member.mode & 0o7777, member.uid, content))
        return out


def _image_workdir(client: "docker.DockerClient", image: str) -> str:
    """The image's WORKDIR, or /workspace where it has none (or only /)."""
    workdir = str(client.api.inspect_image(image).get("Config", {}).get("WorkingDir") or "").rstrip("/")
    return workdir if workdir.startswith("/") and workdir not in (CONTROL, "/tmp") else WORKSPACE


def _image_tree(client: "docker.DockerClient", image: str, path: str, labels: dict[str, str], limit: int) -> bytes:
    """What the image holds under ``path`` as a tar for put_archive into it: owned by the agent, no set-id
    bits, no devices; empty where the image has no such folder. Read from a container that never starts."""
    from docker.errors import NotFound

    api = client.api
    cid = api.create_container(image, ["true"], network_disabled=True, labels=labels)["Id"]
    try:
        try:
            stream, stat = api.get_archive(cid, path)
        except NotFound:
            return b""
        src = io.BytesIO()
        for chunk in stream:
            src.write(chunk)
            if src.tell() > limit:
                raise SandboxFileError(f"the image's {path} is larger than the workspace ({limit} bytes)")
    finally:
        remove_sandbox(client, [cid], [])
    src.seek(0)
    out = io.BytesIO()
    base = stat["name"]
    with tarfile.open(fileobj=src, mode="r") as tin, tarfile.open(fileobj=out, mode="w") as tout:
        for m in tin:
            rel = m.name[len(base):].lstrip("/") if m.name.startswith(base) else ""
            if not rel or not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
                continue
            if m.islnk():
                m.linkname = m.linkname[len(base):].lstrip("/") if m.linkname.startswith(base) else m.linkname
            m.name, m.uid, m.gid, m.uname, m.gname, m.mode = rel, AGENT_UID, AGENT_UID, "", "", m.mode & 0o777
            tout.addfile(m, tin.extractfile(m) if m.isreg() else None)
    return out.getvalue()


def _tarinfo(name: str, kind: bytes, mode: int, uid: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = info.gid = uid
    info.mtime = int(mtime)
    return info


def _short(e: BaseException) -> str:
    text = getattr(e, "explanation", None) or str(e)
    return str(text).strip().splitlines()[0][:300] if str(text).strip() else type(e).__name__


__all__ = ["DockerSandbox", "close_all_live", "prune", "owner_label"]
