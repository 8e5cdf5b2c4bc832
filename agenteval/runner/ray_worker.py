"""The worker side of the Ray executor: one trial, rebuilt from a picklable
description, inside a Ray worker process on a node with a Docker engine.

The driver's ``TrialEnv`` cannot travel (a Docker client, live model clients,
closures), so a ``RemoteTrial`` carries names instead and the worker rebuilds
what it needs, once per worker process: the Docker client, each model client,
each task folder (unpacked from the bytes the driver put in Ray's object
store, cached by content hash). Nothing here imports ray.
"""

from __future__ import annotations

import dataclasses
import io
import os
import platform
import shutil
import socket
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from agenteval.agent.solver import AgentModel
from agenteval.config import ProjectConfig
from agenteval.errors import ClusterError
from agenteval.records import Fingerprint, TrialRecord
from agenteval.runner.trial import TrialEnv, TrialSpec, run_trial
from agenteval.sandbox.base import Sandbox
from agenteval.task import Task
from agenteval.task.files import task_file

_lock = threading.Lock()
_models: dict[tuple[str, str], AgentModel] = {}
_images: set[str] = set()


@dataclass(frozen=True)
class RemoteTrial:
    """Everything a worker needs for one trial, by value."""

    spec: TrialSpec  # the driver's Task (its path means nothing on the worker)
    run_id: str
    image: str
    fingerprint: Fingerprint  # the driver's; host and Docker fields are replaced here
    config: ProjectConfig | None = None  # for model aliases


@dataclass
class RemoteResult:
    record: TrialRecord
    artifacts: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes, for the driver to write
    node: str = ""


def pack_task(task: Task) -> bytes:
    """The task folder as a gzipped tar, the way workers receive it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(task.path, arcname=task.path.name,
                filter=lambda info: info if task_file(PurePosixPath(info.name)) else None)
    return buf.getvalue()


def cache_root() -> Path:
    return Path(os.environ.get("AGENTEVAL_RAY_CACHE") or Path(tempfile.gettempdir()) / "agenteval-ray")


def unpack_task(task: Task, packed: bytes) -> Task:
    """The task with its folder unpacked on this node (once per content hash)."""
    dest = cache_root() / "tasks" / task.content_hash
    folder = dest / task.path.name
    if not folder.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".unpack-"))
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")
        try:
            staging.rename(dest)  # atomic: another worker of this node may have won the race
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return dataclasses.replace(task, path=folder)


def _docker() -> Any:
    from agenteval.sandbox.engine import connect

    return connect()  # cached per process


def check_images(images: list[str]) -> dict[str, Any]:
    """What the driver's pre-flight asks each node: Docker answers, the images are there."""
    from docker.errors import ImageNotFound

    from agenteval.sandbox.engine import server_version

    out: dict[str, Any] = {"host": socket.gethostname(), "missing": [], "error": None}
    try:
        client = _docker()
    except Exception as e:  # noqa: BLE001 - reported back as the node's problem
        out["error"] = str(e)
        return out
    out["docker_version"] = server_version(client)
    for tag in images:
        try:
            client.images.get(tag)
        except ImageNotFound:
            out["missing"].append(tag)
    return out


def _model(label: str, config: ProjectConfig | None) -> AgentModel:
    """The model client for ``label`` in this worker process (built once). A label
    re-parses to its own spec; an alias is looked up in the config that came along."""
    from agenteval.runner.model_registry import create_model

    key = (label, config.model_dump_json() if config is not None else "")
    with _lock:
        if key not in _models:
            _models[key] = create_model(label, config)
        return _models[key]


def _fingerprint(trial: RemoteTrial) -> Fingerprint:
    from agenteval.sandbox.engine import server_version

    client = _docker()
    image_id = client.images.get(trial.image).id
    return trial.fingerprint.model_copy(update={
        "host": socket.gethostname(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "docker_version": server_version(client), "image_id": image_id})


def _make_sandbox(image: str) -> Any:
    from docker.errors import ImageNotFound

    from agenteval.sandbox.docker import DockerSandbox

    client = _docker()
    if image not in _images:
        try:
            client.images.get(image)
        except ImageNotFound:
            raise ClusterError(f"sandbox image {image} is missing on node {socket.gethostname()}: "
                               f"run `agenteval sandbox build` there") from None
        _images.add(image)

    def make(task: Task, labels: dict[str, str]) -> Sandbox:
        return DockerSandbox.for_spec(client, image, task.spec.sandbox, labels)

    return make


def _no_sandbox(task: Task, labels: dict[str, str]) -> Sandbox:
    raise ClusterError("no sandbox on this node")


def remote_trial(trial: RemoteTrial, packed_task: bytes) -> RemoteResult:
    """Run one trial here and hand back its record and artifact bytes. Never raises for
    the trial's own failure (``run_trial`` records it); a crash of this process is Ray's
    to retry."""
    spec = dataclasses.replace(trial.spec, task=unpack_task(trial.spec.task, packed_task))
    label, task_name = spec.model.label, spec.task.name
    with tempfile.TemporaryDirectory(prefix=artifacts_prefix(trial.run_id)) as tmp:
        try:
            make_sandbox = _make_sandbox(trial.image)
            fingerprint = _fingerprint(trial)
            models = {label: _model(label, trial.config)}
        except Exception as e:  # noqa: BLE001 - this node cannot run it: one infra_error record
            from agenteval.records import FailureMode
            from agenteval.runner.trial import failed_record

            env = TrialEnv(run_id=trial.run_id, make_sandbox=_no_sandbox, models={},
                           fingerprints={(label, task_name): trial.fingerprint})
            return RemoteResult(failed_record(spec, env, FailureMode.infra_error, f"{type(e).__name__}: {e}"),
                                node=socket.gethostname())
        env = TrialEnv(run_id=trial.run_id, make_sandbox=make_sandbox, models=models,
                       fingerprints={(label, task_name): fingerprint}, artifacts_root=Path(tmp))
        record = run_trial(spec, env)
        artifacts: dict[str, bytes] = {}
        folder = Path(tmp) / record.trial_id
        if folder.is_dir():
            artifacts = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    return RemoteResult(record, artifacts, node=socket.gethostname())


def artifacts_prefix(run_id: str) -> str:
    """The name a worker's artifacts folder for ``run_id`` starts with, in the node's temp folder."""
    return f"agenteval-artifacts-{run_id}-"


def sweep_run(run_id: str) -> int:
    """Remove what workers of ``run_id`` that died mid-trial left on this node: their sandboxes
    (containers, volumes) and their artifacts folders. Returns how many containers went."""
    from docker.errors import DockerException, NotFound

    for left in Path(tempfile.gettempdir()).glob(artifacts_prefix(run_id) + "*"):
        shutil.rmtree(left, ignore_errors=True)

    client = _docker()
    flt = {"label": f"agenteval.run={run_id}"}
    removed = 0
    for c in client.api.containers(all=True, filters=flt):
        try:
            client.api.remove_container(c["Id"], force=True, v=True)
            removed += 1
        except (NotFound, DockerException):
            pass
    for v in (client.api.volumes(filters=flt) or {}).get("Volumes") or []:
        try:
            client.api.remove_volume(v["Name"], force=True)
        except (NotFound, DockerException):
            pass
    return removed
