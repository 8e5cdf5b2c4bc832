"""What a verification yields, whichever its protocol: a verdict or the reason there is none
(``VerifyOutcome``), and the files it keeps beside the trial's record (``save_artifacts``).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import Path

from agenteval.records import Artifact, ExecRecord, Verdict

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class VerifyOutcome:
    """A verdict, or the reason there is none (a verify_error)."""

    verdict: Verdict | None
    error: str | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    exec_record: ExecRecord | None = None


def artifact_name(name: str) -> str:
    """The flat file name a kept file gets, as the report links it: a run of characters other than
    letters, digits, '.', '_' and '-' (a slash included) becomes '-', never leading or trailing."""
    return _UNSAFE.sub("-", name).strip("-.")[:120] or "file"


def save_artifacts(files: dict[str, bytes], dest: Path, rel: str) -> list[Artifact]:
    """Write ``files`` (name -> bytes) into ``dest`` under their ``artifact_name``; two names that
    flatten to one (``a/b.txt``, ``a-b.txt``) keep both files, the later as ``a-b-2.txt``. The
    records' paths are relative to the run's folder (``rel``)."""
    saved: list[Artifact] = []
    taken: set[str] = set()
    for name, data in sorted(files.items()):
        safe = _unique(artifact_name(name), taken)
        taken.add(safe)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / safe).write_bytes(data)
        saved.append(Artifact(name=safe, path=f"{rel}/{safe}" if rel else safe, size=len(data),
                              media_type=mimetypes.guess_type(safe)[0] or "application/octet-stream"))
    return saved


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``stem-N.suffix`` with the lowest N from 2 that is not ``taken``."""
    if name not in taken:
        return name
    stem, dot, suffix = name.rpartition(".") if "." in name.strip(".") else (name, "", "")
    n = 2
    while f"{stem}-{n}{dot}{suffix}" in taken:
        n += 1
    return f"{stem}-{n}{dot}{suffix}"
