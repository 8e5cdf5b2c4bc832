"""Finding the Docker engine, with one clear message when there is none."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

from agenteval.errors import BadInputError, EngineUnavailableError

if TYPE_CHECKING:
    import docker

SETUP_HINT = "start Docker, or on Debian run `bash sandboxes/setup-engine.sh` as root"


@lru_cache(maxsize=1)
def connect() -> "docker.DockerClient":
    """A client for the engine DOCKER_HOST (or the default socket) names, checked with a ping."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - a core dependency
        raise BadInputError("the Docker SDK is missing: pip install docker") from None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException:
        raise EngineUnavailableError(f"no Docker engine answers at {where}: {SETUP_HINT}") from None
    return client


def server_version(client: "docker.DockerClient") -> str:
    try:
        return str(client.version().get("Version", "unknown"))
    except Exception:  # noqa: BLE001 - only a fingerprint field
        return "unknown"
