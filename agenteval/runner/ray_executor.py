"""``--executor ray``: each trial is a Ray task on a cluster node that has a Docker engine.

The driver (this process) plans, submits and alone writes DuckDB, exactly as
with the local executor; workers send back each ``TrialRecord`` and its
artifact bytes. Placement is by custom resources:

- ``docker``: every node with a Docker engine declares ``docker: N`` (N
  sandboxes at once there); each trial asks for 1 and no CPU, so N is the
  node's trial limit.
- ``model:<label>``: when some node declares it (``"model:ollama:qwq:32b": 2``),
  that model's trials run only on such nodes, at most that many at once
  there: how trials find a per-node model server at a loopback URL.

A worker or node that dies mid-trial is Ray's to retry (``MAX_RETRIES``); a
trial that still fails is recorded as infra_error. Each key is committed once
by the driver. The agenteval package travels with the job (runtime_env
py_modules), so nodes need its dependencies, Docker and the images, not this
exact checkout; task folders travel through the object store.
"""

from __future__ import annotations

import collections
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agenteval.errors import BadInputError, ClusterError
from agenteval.records import FailureMode, TrialRecord
from agenteval.runner.executor import ExecutorRequest
from agenteval.runner.ray_worker import RemoteResult, RemoteTrial, check_images, pack_task, remote_trial, sweep_run
from agenteval.runner.trial import TrialEnv, TrialInterrupted, TrialSpec, failed_record
from agenteval.serving.served import ServedModel

RESOURCE = "docker"
MAX_RETRIES = 3  # attempts after the first when the worker process or its node dies
CONNECT_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 120.0  # first contact starts a worker per node and ships the package
SETTLE_TIMEOUT_S = 30.0  # after Ctrl-C: how long cancelled trials get to close their sandboxes
SWEEP_TIMEOUT_S = 15.0
START_HINT = "ray start --head --resources='{\"docker\": 4}' (and ray start --address=HEAD:6379 on other nodes)"


def create(request: ExecutorRequest) -> "RayExecutor":
    try:
        import ray  # noqa: F401
    except ImportError:
        raise BadInputError("--executor ray needs Ray: pip install 'agenteval[ray]'") from None
    for label, model in request.models.items():
        server = model.server if isinstance(model, ServedModel) else None
        if server is not None:
            raise ClusterError(
                f"model {label}: agenteval starts its server ({server.cfg.engine} engine), which the Ray "
                f"executor does not do on worker nodes; start the server yourself (on every node, or one "
                f"shared) and name it by URL: --model openai:NAME@http://HOST:PORT/v1")
    return RayExecutor(request)


@dataclass
class _Pending:
    spec: TrialSpec
    env: TrialEnv
    future: "Future[TrialRecord]"


class RayExecutor:
    """At most ``concurrency`` trials in flight across the cluster; a dispatcher
    thread submits, waits on Ray and resolves each trial's future."""

    def __init__(self, request: ExecutorRequest) -> None:
        import ray

        self._limit = max(1, request.concurrency)
        self._images = dict(request.images)
        self._config = request.config
        self._connection = connect(request.address, self._limit)
        try:
            resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
            if resources.get(RESOURCE, 0) < 1:
                raise ClusterError(f"no node of the Ray cluster declares a {RESOURCE!r} resource: start each node "
                                   f"that has a Docker engine with --resources='{{\"docker\": N}}' "
                                   f"(N sandboxes at once), e.g. {START_HINT}")
            self._model_resources = {label: f"model:{label}" for label in request.models
                                     if f"model:{label}" in resources}
            probe(sorted(set(self._images.values())), request.log)
            self._packs = {t.name: ray.put(pack_task(t)) for t in request.tasks}
        except BaseException:
            self._connection.close()
            raise
        self._cv = threading.Condition()
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._inflight: dict[Any, _Pending] = {}
        self._run_ids: set[str] = set()
        self._closing = self._cancelling = self._closed = False
        self._thread = threading.Thread(target=self._loop, name="ray-dispatch", daemon=True)
        self._thread.start()

    def submit(self, spec: TrialSpec, env: TrialEnv) -> "Future[TrialRecord]":
        future: Future[TrialRecord] = Future()
        with self._cv:
            if self._closing:
                raise RuntimeError("submit after shutdown")
            self._run_ids.add(env.run_id)
            self._waiting.append(_Pending(spec, env, future))
            self._cv.notify_all()
        return future

    def shutdown(self, cancel_pending: bool) -> None:
        import ray

        if self._closed:
            return
        self._closed = True
        with self._cv:
            self._closing = True
            if cancel_pending:
                self._cancelling = True
                while self._waiting:
                    self._waiting.popleft().future.cancel()
            inflight = list(self._inflight)
            self._cv.notify_all()
        for ref in inflight if cancel_pending else []:
            ray.cancel(ref, force=False)  # KeyboardInterrupt in the worker: its sandbox closes
        self._thread.join(SETTLE_TIMEOUT_S)
        with self._cv:
            stuck = list(self._inflight.items())
            self._inflight.clear()
        for ref, item in stuck:
            ray.cancel(ref, force=True)
            if not item.future.done():
                item.future.set_exception(TrialInterrupted(item.spec.key))
        for run_id in sorted(self._run_ids):
            sweep(run_id)
        self._connection.close()

    # -- the dispatcher thread ------------------------------------------------

    def _loop(self) -> None:
        import ray

        while True:
            with self._cv:
                self._fill()
                if not self._inflight:
                    if self._closing and not self._waiting:
                        return
                    self._cv.wait(0.2)
                    continue
                refs = list(self._inflight)
            ready, _ = ray.wait(refs, num_returns=1, timeout=0.2)
            if ready:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                with self._cv:
                    item = self._inflight.pop(ref, None)
                if item is not None:
                    self._settle(item, ref)

    def _fill(self) -> None:
        while self._waiting and len(self._inflight) < self._limit and not self._cancelling:
            item = self._waiting.popleft()
            if item.future.set_running_or_notify_cancel():
                self._inflight[self._start(item)] = item

    def _start(self, item: _Pending) -> Any:
        import ray

        spec, env = item.spec, item.env
        resources = {RESOURCE: 1.0}
        if spec.model.label in self._model_resources:
            resources[self._model_resources[spec.model.label]] = 1.0
        trial = RemoteTrial(spec=spec, run_id=env.run_id, image=self._images[spec.task.name],
                            fingerprint=env.fingerprints[(spec.model.label, spec.task.name)], config=self._config)
        task = ray.remote(remote_trial).options(num_cpus=0, resources=resources, max_retries=MAX_RETRIES,
                                                retry_exceptions=False, name=f"agenteval {spec.key}")
        return task.remote(trial, self._packs[spec.task.name])

    def _settle(self, item: _Pending, ref: Any) -> None:
        """Resolve one trial's future: its record (artifacts written here, in the driver),
        infra_error when Ray gave up on it, TrialInterrupted when it was cancelled."""
        import ray
        from ray.exceptions import TaskCancelledError

        spec, env = item.spec, item.env
        try:
            result: RemoteResult = ray.get(ref)
        except TaskCancelledError:
            item.future.set_exception(TrialInterrupted(spec.key))
            return
        except Exception as e:  # noqa: BLE001 - worker or node died past the retries, or a bug on the worker
            if self._cancelling:
                item.future.set_exception(TrialInterrupted(spec.key))
                return
            why = (str(e).strip().splitlines() or [""])[0][:300]
            item.future.set_result(failed_record(
                spec, env, FailureMode.infra_error,
                f"Ray gave up on the trial after {MAX_RETRIES} retries or a worker error: {type(e).__name__}: {why}"))
            return
        record = result.record.model_copy(update={"task_path": str(spec.task.path)})
        if result.artifacts and env.artifacts_root is not None:
            folder = env.artifacts_root / record.trial_id
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in result.artifacts.items():
                (folder / Path(name).name).write_bytes(data)
        item.future.set_result(record)


@dataclass
class Connection:
    """This process's tie to a cluster. A private cluster (``--ray-address local``) lives in a
    folder of its own, with a token held in this process's environment only: closing it stops
    the cluster and removes the folder, and nothing is left in ~/.ray or /tmp/ray to change how
    a later ``ray start`` or ``ray.init()`` on this machine authenticates."""

    owns: bool  # this call connected: close() disconnects
    private_dir: Path | None = None
    saved_env: dict[str, str | None] = field(default_factory=dict)

    def close(self) -> None:
        import ray

        if self.owns:
            ray.shutdown()
            self.owns = False
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.saved_env.clear()
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)
            self.private_dir = None


def _private_cluster_env() -> dict[str, str]:
    """The token of a private cluster, in this process's environment: Ray 2.59+ turns token
    authentication on for a new local cluster and, with no token given, writes one to
    ~/.ray/auth_token, which every later ``ray start`` on the machine then picks up. A user's own
    RAY_AUTH_* settings win. (Ray itself sets RAY_AUTH_MODE here; close() restores it.)"""
    if any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        return {}
    return {"RAY_AUTH_TOKEN": secrets.token_hex(32)}


def connect(address: str | None, concurrency: int) -> Connection:
    """Join the cluster at ``address`` ('auto' by default: RAY_ADDRESS, else the cluster
    `ray start` runs on this machine; 'local' starts a private one with ``docker:
    concurrency``)."""
    import ray

    import agenteval

    if ray.is_initialized():
        return Connection(owns=False)
    addr = address or os.environ.get("RAY_ADDRESS") or "auto"
    if addr not in ("auto", "local"):
        _check_reachable(addr)
    kw: dict[str, Any] = {}
    conn = Connection(owns=False)
    runtime_env: dict[str, Any] = {"py_modules": [str(Path(agenteval.__file__).parent)]}
    if addr == "local":
        conn.private_dir = Path(tempfile.mkdtemp(prefix="agenteval-ray-"))  # short: Ray's socket paths must fit
        token_env = _private_cluster_env()
        for key in [*token_env, "RAY_AUTH_MODE"] if token_env else []:
            conn.saved_env[key] = os.environ.get(key)
        os.environ.update(token_env)
        runtime_env["env_vars"] = {"AGENTEVAL_RAY_CACHE": str(conn.private_dir / "cache")}
        kw = {"resources": {RESOURCE: concurrency}, "include_dashboard": False, "_temp_dir": str(conn.private_dir)}
    try:
        ray.init(address=addr, runtime_env=runtime_env, logging_level=logging.WARNING, log_to_driver=False, **kw)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        conn.close()
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ClusterError(f"no Ray cluster answers at {addr!r} ({why}); start one with {START_HINT}, "
                           f"then pass --ray-address HOST:6379, or --ray-address local for one on this machine") \
            from None
    except BaseException:
        conn.close()
        raise
    conn.owns = True
    return conn


def _check_reachable(addr: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at host:port."""
    hostport = addr.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        raise BadInputError(f"bad --ray-address {addr!r}: write HOST:PORT (e.g. 10.0.0.1:6379), ray://HOST:10001, "
                            f"auto or local")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ClusterError(f"no Ray cluster answers at {addr!r} ({e.strerror or e}); start one with {START_HINT}") \
            from None


def _docker_nodes() -> list[dict[str, Any]]:
    import ray

    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [n for n in nodes if n.get("Alive") and n.get("Resources", {}).get(RESOURCE, 0) > 0]


def _on(node: dict[str, Any]) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)


def probe(images: list[str], log: Any) -> None:
    """Before any trial: every Docker node answers and holds the sandbox images."""
    import ray
    from ray.exceptions import GetTimeoutError

    nodes = _docker_nodes()
    check = ray.remote(check_images)
    refs = [check.options(num_cpus=0, max_retries=0, scheduling_strategy=_on(n)).remote(images) for n in nodes]
    try:
        answers = ray.get(refs, timeout=PROBE_TIMEOUT_S)
    except GetTimeoutError:
        raise ClusterError(f"Ray nodes did not answer a pre-flight check within {PROBE_TIMEOUT_S:.0f} s") from None
    except Exception as e:  # noqa: BLE001 - e.g. a node lacks agenteval's dependencies
        why = (str(e).strip().splitlines() or [""])[0][:300]
        raise ClusterError(f"a Ray node failed the pre-flight check ({type(e).__name__}: {why}); every node needs "
                           f"pip install 'agenteval[ray]'") from None
    problems = []
    for node, answer in zip(nodes, answers):
        where = f"node {node['NodeManagerAddress']} ({answer['host']})"
        if answer["error"]:
            problems.append(f"{where}: {answer['error']}")
        elif answer["missing"]:
            problems.append(f"{where} lacks {', '.join(answer['missing'])}: run `agenteval sandbox build` there")
    if problems:
        raise ClusterError("; ".join(problems))
    slots = sum(n["Resources"][RESOURCE] for n in nodes)
    log(f"ray: {len(nodes)} node(s) with Docker, {slots:g} sandbox slot(s)")


def sweep(run_id: str) -> None:
    """Remove what dead workers left of ``run_id`` on every live Docker node (best effort)."""
    import ray

    remote_sweep = ray.remote(sweep_run)
    refs = [remote_sweep.options(num_cpus=0, max_retries=0, scheduling_strategy=_on(n)).remote(run_id)
            for n in _docker_nodes()]
    try:
        ray.get(refs, timeout=SWEEP_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - `agenteval sandbox prune` on the node is the fallback
        pass
