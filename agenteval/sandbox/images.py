"""Sandbox images: ``sandboxes/<name>/Dockerfile``, built on demand and tagged by content.

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

if TYPE_CHECKING:
    import docker

IMAGE_PREFIX = "agenteval"
DEBIAN_MIRROR = os.environ.get("AGENTEVAL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", re.IGNORECASE | re.MULTILINE)
_DEBIAN = re.compile(r"^(?:docker\.io/)?(?:library/)?debian:([a-z]+)(?:-slim)?$")
_build_lock = threading.Lock()
_ready: dict[str, str] = {}

Log = Callable[[str], None]


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
    with _build_lock:
        if tag in _ready and not rebuild:
            return tag
        from docker.errors import ImageNotFound
        try:
            if rebuild:
                raise ImageNotFound("rebuild requested")
            client.images.get(tag)
        except ImageNotFound:
            build_image(client, name, sandboxes, tag, log)
        _ready[tag] = tag
    return tag


def build_image(client: "docker.DockerClient", name: str, sandboxes: Path, tag: str, log: Log) -> None:
    context = sandboxes / name
    for base in _FROM.findall((context / "Dockerfile").read_text()):
        _ensure_base(client, base, log)
    log(f"building sandbox image {tag} from {context}")
    lines: list[str] = []
    try:
        for chunk in client.api.build(path=str(context), tag=tag, rm=True, forcerm=True, decode=True,
                                      labels={"agenteval.sandbox": name}):
            if "error" in chunk:
                raise ImageBuildError(f"building {name} failed: {chunk['error'].strip()}\n" + "".join(lines[-15:]))
            if "stream" in chunk:
                lines.append(chunk["stream"])
    except ImageBuildError:
        raise
    except Exception as e:  # noqa: BLE001 - docker raises several types here
        raise ImageBuildError(f"building {name} failed: {e}") from e
    client.api.tag(tag, f"{IMAGE_PREFIX}/{name}", "latest")


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
