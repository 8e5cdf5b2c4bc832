"""Sandbox images: ``sandboxes/<name>/Dockerfile``, or a task's own build folder (a Harbor
task's environment/), built on demand and tagged by content.

Dockerfiles stay standard (``FROM debian:bookworm-slim``). Where the base
cannot be pulled (an air-gapped machine, a CI box with no registry) and it is
a Debian image, agenteval bootstraps it locally with debootstrap and
``docker import`` under the same tag.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from agenteval.errors import BadInputError, ImageBuildError
from agenteval.logs import Log
from agenteval.task.spec import SandboxSpec

if TYPE_CHECKING:
    import docker

IMAGE_PREFIX = "agenteval"
DEBIAN_MIRROR = os.environ.get("AGENTEVAL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", re.IGNORECASE | re.MULTILINE)
_RUNNING_IN = re.compile(r"Running in ([0-9a-f]{12,64})")
_STEP_DONE = re.compile(r"^ ---> ([0-9a-f]{12,64})\s*$", re.M)  # the image a finished step made
_DEBIAN = re.compile(r"^(?:docker\.io/)?(?:library/)?debian:([a-z]+)(?:-slim)?$")
_build_lock = threading.Lock()
_ready: dict[str, str] = {}
# What every sandbox runs inside the image: the keep-alive and the verifier drop privileges with setpriv,
# commands run under coreutils' timeout; Harbor's tests are bash scripts.
SANDBOX_TOOLS = ("setpriv", "timeout", "sh", "bash")


def find_sandboxes_dir(start: Path | None = None) -> Path:
    """AGENTEVAL_SANDBOXES, else the nearest ``sandboxes/`` above ``start`` (a task) or the cwd."""
    env = os.environ.get("AGENTEVAL_SANDBOXES")
    if env:
        return Path(env)
    for base in ([start.resolve()] if start else []) + [Path.cwd()]:
        for d in [base, *base.parents]:
            if (d / "sandboxes").is_dir():
                return d / "sandboxes"
    raise BadInputError("no sandboxes/ folder found above the task or the current folder "
                        "(set AGENTEVAL_SANDBOXES to the folder holding <name>/Dockerfile)")


def available(sandboxes: Path) -> list[str]:
    return sorted(p.parent.name for p in sandboxes.glob("*/Dockerfile"))


def context_hash(context: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(context.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(context).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def image_tag(name: str, sandboxes: Path) -> str:
    context = sandboxes / name
    if not (context / "Dockerfile").is_file():
        raise BadInputError(f"no sandbox image {name!r}: {context / 'Dockerfile'} does not exist "
                            f"(available: {', '.join(available(sandboxes)) or 'none'})")
    return f"{IMAGE_PREFIX}/{name}:{context_hash(context)}"


def ensure_image(client: "docker.DockerClient", name: str, sandboxes: Path, log: Log = print,
                 rebuild: bool = False) -> str:
    """The tag of a ready image for ``name`` (a sandboxes/ folder, or a tag containing ':')."""
    if ":" in name:
        _ensure_base(client, name, log)
        return name
    tag = image_tag(name, sandboxes)
    return _ensure(client, tag, rebuild, lambda: build_image(client, name, sandboxes, tag, log))


def _ensure(client: "docker.DockerClient", tag: str, rebuild: bool, build: Callable[[], None]) -> str:
    """``tag``, built by ``build`` unless the engine holds it already (looked up once per process)."""
    from docker.errors import ImageNotFound

    with _build_lock:
        if tag in _ready and not rebuild:
            return tag
        try:
            if rebuild:
                raise ImageNotFound("rebuild requested")
            client.images.get(tag)
        except ImageNotFound:
            build()
        _ready[tag] = tag
    return tag


def build_image(client: "docker.DockerClient", name: str, sandboxes: Path, tag: str, log: Log) -> None:
    build_context(client, sandboxes / name, tag, name, log)
    client.api.tag(tag, f"{IMAGE_PREFIX}/{name}", "latest")


def build_context(client: "docker.DockerClient", context: Path, tag: str, name: str, log: Log,
                  timeout_s: float | None = None) -> None:
    """Build ``context``/Dockerfile as ``tag``; the tag is set only by a build that finished within ``timeout_s``."""
    for base in _FROM.findall((context / "Dockerfile").read_text()):
        _ensure_base(client, base, log)
    log(f"building sandbox image {tag} from {context}")
    outcome: list[BaseException | str] = []
    running: list[str] = []  # the containers of the build's RUN steps, as the engine announces them
    steps: list[str] = []  # the images its finished steps made
    stop = threading.Event()

    def build() -> None:
        import docker

        lines: list[str] = []
        # Its own client (as connect() finds the engine): a build stalled past the timeout ends its
        # connection, and the engine then stops it.
        own = docker.from_env(timeout=int(timeout_s) + 5 if timeout_s else 3600)
        api = own.api
        try:
            for chunk in api.build(path=str(context), rm=True, forcerm=True, decode=True,
                                   labels={"agenteval.sandbox": name}):
                if stop.is_set():
                    return
                if "error" in chunk:
                    raise ImageBuildError(f"building {name} failed: {chunk['error'].strip()}\n" + "".join(lines[-15:]))
                lines.append(chunk.get("stream", ""))
                running.extend(_RUNNING_IN.findall(lines[-1]))
                steps.extend(_STEP_DONE.findall(lines[-1]))
                image_id = (chunk.get("aux") or {}).get("ID")
                if image_id:
                    outcome.append(str(image_id))
        except ImageBuildError as e:
            outcome.append(e)
        except Exception as e:  # noqa: BLE001 - docker raises several types here
            outcome.append(ImageBuildError(f"building {name} failed: {str(e).splitlines()[0][:300]}"))
        finally:
            own.close()

    worker = threading.Thread(target=build, daemon=True, name=f"build-{name}")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        stop.set()
        for cid in running[-1:]:  # the engine goes on building after the client leaves: end the step it runs
            try:
                client.api.remove_container(cid, force=True)
            except Exception:  # noqa: BLE001 - already finished
                pass
        worker.join(10)  # the engine answers the ended step; its last finished step is then known
        _remove_unfinished(client, steps)
        raise ImageBuildError(f"building {name} ran past its build_timeout_sec ({timeout_s:g} s)")
    errors = [o for o in outcome if isinstance(o, BaseException)]
    if errors:
        _remove_unfinished(client, steps)
        raise errors[0]
    if not outcome:
        raise ImageBuildError(f"building {name} finished without an image")
    repo, _, version = tag.rpartition(":")
    client.api.tag(str(outcome[-1]), repo, version)


def _remove_unfinished(client: "docker.DockerClient", steps: list[str]) -> None:
    """Remove the untagged images a build that did not finish made (its finished steps; the engine
    removes an untagged parent with its last child), so a failed build leaves no dangling image.
    A step image that is tagged (the base) or the parent of another image is left as it is."""
    from docker.errors import DockerException

    if not steps:
        return
    try:
        if not client.api.inspect_image(steps[-1]).get("RepoTags"):
            client.api.remove_image(steps[-1])
    except DockerException:  # already gone, or another image builds on it: the engine keeps it
        pass


def task_image_tag(task_path: Path, spec: SandboxSpec) -> str:
    """The tag of a task's image: its prebuilt one, its own build folder's, or a sandboxes/ folder's."""
    if spec.build:
        context = task_path / spec.build
        if not (context / "Dockerfile").is_file():
            raise BadInputError(f"{context / 'Dockerfile'} does not exist (sandbox.build names the folder holding it)")
        slug = re.sub(r"[^a-z0-9_.-]+", "-", task_path.resolve().name.lower()).strip("-.") or "task"
        return f"{IMAGE_PREFIX}/task-{slug}:{context_hash(context)}"
    assert spec.image, "SandboxSpec requires image or build"
    return spec.image if ":" in spec.image else image_tag(spec.image, find_sandboxes_dir(task_path))


def ensure_task_image(client: "docker.DockerClient", task_path: Path, spec: SandboxSpec, log: Log = print,
                      rebuild: bool = False) -> str:
    """The tag of a ready image for a task: its prebuilt image (``image`` with a tag) when it can be had,
    else its own build folder built (``build``), else a sandboxes/ folder. Harbor images are checked
    for the tools the sandbox runs inside them."""
    if not spec.build:
        assert spec.image, "SandboxSpec requires image or build"
        tag = ensure_image(client, spec.image, find_sandboxes_dir(task_path), log, rebuild)
    elif spec.image and ":" in spec.image and not rebuild:
        try:
            _ensure_base(client, spec.image, log)
            tag = spec.image
        except ImageBuildError as e:
            log(f"{e}; building {task_path / spec.build} instead")
            tag = _ensure_built(client, task_path, spec, log, rebuild)
    else:
        tag = _ensure_built(client, task_path, spec, log, rebuild)
    if spec.layout == "harbor":
        check_tools(client, tag)
    return tag


def _ensure_built(client: "docker.DockerClient", task_path: Path, spec: SandboxSpec, log: Log, rebuild: bool) -> str:
    tag = task_image_tag(task_path, spec)
    build = spec.build
    assert build
    return _ensure(client, tag, rebuild,
                   lambda: build_context(client, task_path / build, tag, task_path.name, log, spec.build_timeout_sec))


def check_tools(client: "docker.DockerClient", tag: str) -> None:
    """One clear line when the image lacks a program the sandbox runs inside it (checked once per image)."""
    key = f"tools:{tag}"
    if key in _ready:
        return
    script = "for t in " + " ".join(SANDBOX_TOOLS) + "; do command -v $t >/dev/null || echo $t; done"
    try:
        out = client.containers.run(tag, ["sh", "-c", script], entrypoint=[], network_disabled=True, remove=True,
                                    user="65534:65534")
    except Exception as e:  # noqa: BLE001 - no sh at all is the same answer
        raise ImageBuildError(f"image {tag} cannot run the sandbox (it needs {', '.join(SANDBOX_TOOLS)}): "
                              f"{str(e).splitlines()[0][:200]}") from None
    missing = bytes(out).decode().split()
    if missing:
        raise ImageBuildError(f"image {tag} lacks {', '.join(missing)}, which agenteval's sandbox runs inside it "
                              "(setpriv: util-linux, timeout: coreutils)")
    _ready[key] = tag


def _ensure_base(client: "docker.DockerClient", ref: str, log: Log) -> None:
    from docker.errors import DockerException, ImageNotFound

    if ref.lower() == "scratch":
        return
    try:
        client.images.get(ref)
        return
    except ImageNotFound:
        pass
    repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    try:
        log(f"pulling {ref}")
        client.images.pull(repo, tag=tag)
        return
    except DockerException as e:
        pull_error = str(e).splitlines()[0][:200]
    m = _DEBIAN.match(ref)
    if not m:
        raise ImageBuildError(f"base image {ref} is not here and cannot be pulled ({pull_error}); "
                              "only debian:<suite>[-slim] can be bootstrapped locally")
    log(f"{ref} cannot be pulled; bootstrapping it with debootstrap (about a minute)")
    bootstrap_debian(client, m.group(1), ref)


def bootstrap_debian(client: "docker.DockerClient", suite: str, ref: str) -> None:
    """debootstrap a minimal Debian ``suite`` and import it as ``ref``."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(f"cannot pull {ref} and debootstrap is not installed: "
                              "apt-get install debootstrap (or docker load the image)")
    if os.geteuid() != 0:
        raise ImageBuildError(f"cannot pull {ref}; bootstrapping it needs root (or docker load the image)")
    with tempfile.TemporaryDirectory(prefix="agenteval-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        proc = subprocess.run(["debootstrap", "--variant=minbase", suite, str(root), DEBIAN_MIRROR],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageBuildError(f"debootstrap {suite} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (root / junk).glob("*.deb" if "archives" in junk else "*_*"):
                p.unlink()
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        repo, _, tag = ref.rpartition(":")
        # A path, not a stream: docker-py streams file objects chunked, which the engine rejects.
        client.api.import_image(src=str(archive), repository=repo, tag=tag, changes=['CMD ["bash"]'])
