"""What a test session may leave on the machine: nothing but the shared caches.

``snapshot()`` reads the things a test could leave behind: agenteval's containers
and volumes, images no tag keeps, processes the session started (model servers, Ray,
browsers: anything carrying the session's mark in its environment), files under
``~/.ray``, agenteval's folders in the temp folder and in ``~/.cache/agenteval``
beyond its download and build caches.
``left_behind(before, after)`` names what is new. The session fixture in conftest.py
fails the run on it, so a leak is found by the test run that makes it. Like the tests' own
``leftovers`` checks, it takes the suite to be alone on the Docker engine, as in CI.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ~/.cache/agenteval entries that are download and build caches: kept across sessions, shared with
# users' runs. (The ladder's rung cache is not one: the session points it at a temp folder.)
SHARED_CACHES = {"models", "llama-server", "wheels"}
# Every process the session starts inherits this variable (tests copy os.environ into their
# children's): a process that still carries it at the end was left behind by the suite.
SESSION_MARK = "AGENTEVAL_TEST_SESSION"
TEMP_PREFIXES = ("agenteval-", "aeray-", "ray")


@dataclass(frozen=True)
class MachineState:
    items: dict[str, frozenset[str]] = field(default_factory=dict)


def _processes() -> set[str]:
    """Live processes (not zombies) other than this one that carry this session's mark."""
    mark = os.environ.get(SESSION_MARK)
    if not mark:
        return set()
    needle = f"{SESSION_MARK}={mark}".encode()
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            if needle not in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                continue
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if state != "Z":
            found.add(f"{pid} {cmd.decode(errors='replace').strip()[:160]}")
    return found


def _files(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*")} | {"."}


def _docker(client: Any) -> dict[str, set[str]]:
    if client is None:
        return {}
    label = {"label": "agenteval.managed"}
    containers = {c["Id"][:12] + " " + c["Names"][0] for c in client.api.containers(all=True, filters=label)}
    volumes = {v["Name"] for v in (client.api.volumes(filters=label) or {}).get("Volumes") or []}
    # Images no tag keeps (a failed build's layers, a nonce image whose tag was removed) pile up; tagged
    # images are the content-addressed sandbox and task image caches.
    dangling = {i["Id"] for i in client.api.images(filters={"dangling": True})}
    return {"containers": containers, "volumes": volumes, "untagged images": dangling}


def snapshot(client: Any = None) -> MachineState:
    home = Path.home()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "agenteval"
    temp = Path(tempfile.gettempdir())
    items: dict[str, set[str]] = {
        "processes the suite started": _processes(),
        "files under ~/.ray": _files(home / ".ray"),
        "agenteval folders in the temp folder": {p.name for p in temp.iterdir() if p.name.startswith(TEMP_PREFIXES)},
        "entries of ~/.cache/agenteval": {p.name for p in cache.iterdir()} - SHARED_CACHES if cache.is_dir() else set(),
        **_docker(client),
    }
    return MachineState({k: frozenset(v) for k, v in items.items()})


def left_behind(before: MachineState, after: MachineState) -> dict[str, list[str]]:
    """What ``after`` holds that ``before`` did not, by kind (kinds with nothing new left out)."""
    new = {kind: sorted(after.items[kind] - before.items.get(kind, frozenset())) for kind in after.items}
    return {kind: items for kind, items in new.items() if items}
