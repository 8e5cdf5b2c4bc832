"""The files a verification keeps beside a trial: flat, safe names, and none lost to another."""

from __future__ import annotations

from pathlib import Path

from agenteval.verify.outcome import save_artifacts


def test_names_that_flatten_to_one_keep_every_file(tmp_path: Path) -> None:
    files = {"a/b.txt": b"one", "a-b.txt": b"two", "a b.txt": b"three", "logs/run": b"four", "logs-run": b"five"}
    saved = save_artifacts(files, tmp_path / "t1", "t1")
    assert {a.name: (tmp_path / "t1" / a.name).read_bytes() for a in saved} == {
        "a-b.txt": b"three", "a-b-2.txt": b"two", "a-b-3.txt": b"one", "logs-run": b"five", "logs-run-2": b"four"}
    assert sorted(p.name for p in (tmp_path / "t1").iterdir()) == sorted(a.name for a in saved)
    assert [a.path for a in saved if a.name == "a-b-2.txt"] == ["t1/a-b-2.txt"]


def test_hostile_names_stay_inside_the_folder(tmp_path: Path) -> None:
    saved = save_artifacts({"../../etc/passwd": b"x", "..": b"y", "/abs/shot.png": b"z"}, tmp_path / "t", "")
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == sorted(a.name for a in saved)
    assert len(saved) == 3 and [a.name for a in saved if "/" in a.name or a.name.startswith(".")] == []
    assert [a.media_type for a in saved if a.name.endswith(".png")] == ["image/png"]
