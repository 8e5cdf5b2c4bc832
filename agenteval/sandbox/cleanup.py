"""Finding and removing what sandboxes leave behind: containers and volumes carry
``agenteval.*`` labels, and the owner label says which process (host:pid) made them."""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

from agenteval.processes import pid_alive

if TYPE_CHECKING:
    import docker

LABEL = "agenteval.managed"
OWNER_LABEL = "agenteval.owner"


def owner_label() -> str:
    """host:pid of this process; prune leaves sandboxes of live owners alone."""
    return f"{socket.gethostname()}:{os.getpid()}"


def prune(client: "docker.DockerClient", *, everything: bool = False) -> tuple[int, int]:
    """Remove agenteval containers and volumes whose owner process is gone.

    ``everything`` also removes those of live runs on this host. Returns
    (containers removed, volumes removed).
    """
    host = socket.gethostname()

    def orphaned(labels: dict[str, str]) -> bool:
        if everything:
            return True
        owner_host, _, pid = labels.get(OWNER_LABEL, "").partition(":")
        if owner_host != host or not pid.isdigit():
            return owner_host == host or not owner_host
        return not pid_alive(int(pid))

    containers = [c["Id"] for c in client.api.containers(all=True, filters={"label": LABEL})
                  if orphaned(c.get("Labels") or {})]
    volumes = [v["Name"] for v in (client.api.volumes(filters={"label": LABEL}) or {}).get("Volumes") or []
               if orphaned(v.get("Labels") or {})]
    return remove_sandbox(client, containers, volumes, volume_tries=1)


def remove_sandbox(client: "docker.DockerClient", containers: list[str], volumes: list[str],
                   volume_tries: int = 50) -> tuple[int, int]:
    """Remove containers (with their processes), then volumes; (containers, volumes) removed.

    What cannot be removed now stays labelled, for ``prune`` to find. A volume is still busy
    for a moment while its container is torn down (slow under load): it is tried again.
    """
    from docker.errors import DockerException, NotFound

    removed_c = removed_v = 0
    for cid in containers:
        try:
            client.api.remove_container(cid, force=True, v=True)
            removed_c += 1
        except DockerException:
            pass  # gone already, or prune finds it by its label later
    for vol in volumes:
        for attempt in range(volume_tries):
            try:
                client.api.remove_volume(vol, force=True)
                removed_v += 1
                break
            except NotFound:
                break
            except DockerException:
                if attempt + 1 < volume_tries:
                    time.sleep(0.2)
    return removed_c, removed_v
