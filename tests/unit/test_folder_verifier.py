"""tasks/folder without Docker: its spec, its instructions, its oracle and its hidden verifier.

The oracle tree (solution/solve.sh) must pass every check of tests/verify.py for
every variant; each way a tree can be wrong must fail exactly the checks about
the damaged path, with messages that name it; hostile trees (symlinks out,
FIFOs, huge files, undecodable names, floods) must be reported, never crash or
hang the verifier.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from tests.conftest import missing

REPO = Path(__file__).resolve().parents[2]
TASK = REPO / "tasks" / "folder"
HARNESS = REPO / "agenteval" / "verify" / "harness"
VERIFY = TASK / "tests" / "verify.py"
SOLUTION = TASK / "solution"

SPEC: dict[str, Any] = tomllib.loads((TASK / "task.toml").read_text(encoding="utf-8"))
VARIANTS: dict[str, dict[str, Any]] = {v["id"]: {**SPEC.get("params", {}), **v.get("params", {})}
                                       for v in SPEC["variants"]}
IDS = list(VARIANTS)

# Check names the verifier promises (see its docstring).
ROOT_CHECK = "workspace is a readable directory"
NO_EXTRAS = "no extra entries"
SUMMARY = "tree matches the spec"
NOBODY = 65534


# -- spec helpers ---------------------------------------------------------------
def entries(vid: str) -> list[dict[str, Any]]:
    return list(VARIANTS[vid]["entries"])


def files(vid: str) -> list[dict[str, Any]]:
    return [e for e in entries(vid) if e["type"] == "file"]


def dirs(vid: str) -> list[str]:
    return [e["path"] for e in entries(vid) if e["type"] == "dir"]


def empty_dirs(vid: str) -> list[str]:
    paths = [e["path"] for e in entries(vid)]
    return [d for d in dirs(vid) if not any(p.startswith(d + "/") for p in paths)]


def exec_files(vid: str) -> list[str]:
    return [f["path"] for f in files(vid) if f["mode"] == "0755"]


def plain_files(vid: str) -> list[str]:
    return [f["path"] for f in files(vid) if f["mode"] == "0644"]


def content_of(vid: str, path: str) -> bytes:
    return next(f["content"] for f in files(vid) if f["path"] == path).encode("utf-8")


def file_checks(path: str) -> set[str]:
    return {f"file {path}", f"content {path}", f"mode {path}"}


def expected_check_names(vid: str) -> set[str]:
    names = {ROOT_CHECK, NO_EXTRAS, SUMMARY}
    for e in entries(vid):
        names |= {f"dir {e['path']}/"} if e["type"] == "dir" else file_checks(e["path"])
    return names


# -- running the solution and the verifier --------------------------------------
def build_oracle(ws: Path, vid: str, umask: int = 0o022) -> Path:
    """Run solution/solve.sh the way the oracle does: bash, cwd = workspace, AGENTEVAL_* set."""
    ws.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AGENTEVAL_SOLUTION": str(SOLUTION), "AGENTEVAL_VARIANT_ID": vid,
           "AGENTEVAL_VARIANT": json.dumps(VARIANTS[vid]), "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(["bash", "-c", f'umask {umask:03o} && exec bash "$0"', str(SOLUTION / "solve.sh")],
                   cwd=ws, env=env, check=True, timeout=60)
    return ws


def run_verifier(ws: Path, vid: str, *, python: str = sys.executable,
                 user: int | None = None) -> dict[str, dict[str, Any]]:
    """verify.py by hand (no AGENTEVAL_VERDICT, so it prints its checks); checks by name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEVAL_")}
    env.update(AGENTEVAL_WORKSPACE=str(ws), AGENTEVAL_VARIANT_ID=vid, AGENTEVAL_VARIANT=json.dumps(VARIANTS[vid]),
               PYTHONPATH=str(HARNESS), PYTHONDONTWRITEBYTECODE="1", LANG="C.UTF-8")
    proc = subprocess.run([python, str(VERIFY)], cwd=VERIFY.parent, env=env, capture_output=True,
                          timeout=60, user=user)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    checks = json.loads(proc.stdout)["checks"]
    names = [c["name"] for c in checks]
    assert len(names) == len(set(names)), f"duplicate check names: {names}"
    assert "verifier ran to the end" not in names, checks[-1]["message"]
    for c in checks:  # a verdict must survive any encoding: no lone surrogates from odd names
        (c["name"] + c["message"]).encode("utf-8")
    return {c["name"]: c for c in checks}


def failing(checks: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, c in checks.items() if not c["passed"]}


def assert_fails_exactly(checks: dict[str, dict[str, Any]], names: set[str], path: str, *words: str) -> None:
    """Exactly ``names`` (and the summary) fail, each naming ``path``; ``words`` appear among their messages."""
    assert failing(checks) == names | {SUMMARY}, {n: checks[n]["message"] for n in failing(checks)}
    for name in names:
        assert path in checks[name]["message"], checks[name]
    text = " | ".join(checks[n]["message"] for n in names)
    for word in words:
        assert word in text, text


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


# -- the spec itself -------------------------------------------------------------
@pytest.mark.parametrize("vid", IDS)
def test_spec_is_explicit_and_exact(vid: str) -> None:
    """Every entry is listed in tree order and every content is plain text the prompt can show exactly."""
    seen: set[str] = set()
    for e in entries(vid):
        path = e["path"]
        assert set(e) <= {"path", "type", "content", "mode"}, e
        assert e["type"] in ("dir", "file"), e
        assert path == path.strip() and not path.startswith("/") and not path.endswith("/"), path
        assert unicodedata.is_normalized("NFC", path), f"{path!r} is not NFC"
        assert path not in seen, f"{path!r} listed twice"
        parent = os.path.dirname(path)
        assert not parent or parent in seen, f"{path!r} comes before its parent directory {parent!r}"
        assert "~~~~~" not in path and "`" not in path, path
        seen.add(path)
        if e["type"] == "file":
            text = e["content"]
            assert e["mode"] in ("0644", "0755"), e
            assert text.endswith("\n") and not text.endswith("\n\n"), f"{path}: must end with exactly one newline"
            assert "\r" not in text and "\t" not in text and "\ufeff" not in text, path
            assert all(line == line.rstrip() for line in text.split("\n")), f"{path}: trailing whitespace"
            assert not any(line.startswith("~~~~~") for line in text.split("\n")), f"{path}: would close the fence"
        else:
            assert set(e) == {"path", "type"}, e


def test_variants_cover_the_brief() -> None:
    """Simple to realistic: executables, empty dirs, dotfiles, odd names, fences and braces in content."""
    assert len(IDS) >= 6
    all_files = [f for vid in IDS for f in files(vid)]
    all_paths = [e["path"] for vid in IDS for e in entries(vid)]
    assert any(exec_files(vid) and plain_files(vid) for vid in IDS)
    assert any(empty_dirs(vid) for vid in IDS)
    assert any(os.path.basename(p).startswith(".") for p in all_paths)
    assert any(" " in p for p in all_paths) and any(not p.isascii() for p in all_paths)
    assert any("```" in f["content"] for f in all_files) and any("{{" in f["content"] for f in all_files)
    assert len(entries(IDS[0])) == 2


# -- the instruction --------------------------------------------------------------
@pytest.mark.parametrize("vid", IDS)
def test_instruction_renders_every_entry(vid: str) -> None:
    """Rendered by the framework (task.toml validated too) and by plain jinja2, alike and complete."""
    from agenteval.task import load_task

    task = load_task(TASK)
    variant = next(v for v in task.variants() if v.id == vid)
    text = task.render_instruction(variant)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    params = VARIANTS[vid]
    context = {"name": SPEC["name"], "description": SPEC["description"]}
    direct = env.from_string((TASK / "instruction.md").read_text(encoding="utf-8")).render(
        **params, params=params, variant=vid, task=context)
    assert direct == text
    assert "/workspace" in text and "{{ e." not in text and "{%" not in text
    assert f"exactly these {len(entries(vid))} entries" in text
    for e in entries(vid):
        if e["type"] == "dir":
            suffix = ", must be **empty**" if e["path"] in empty_dirs(vid) else ""
            assert f"- `{e['path']}/`: directory{suffix}\n" in text, e["path"]
        else:
            executable = " (**executable**)" if e["mode"] == "0755" else ""
            assert f"- `{e['path']}`: file, mode {e['mode']}{executable}\n" in text, e["path"]
            assert f"### `{e['path']}` (mode {e['mode']})\n\n~~~~~\n{e['content']}~~~~~\n" in text, e["path"]


# -- the oracle ----------------------------------------------------------------------
@pytest.mark.parametrize("vid", IDS)
def test_oracle_passes_every_check(ws: Path, vid: str) -> None:
    checks = run_verifier(build_oracle(ws, vid), vid)
    assert set(checks) == expected_check_names(vid)
    assert not failing(checks), {n: checks[n]["message"] for n in failing(checks)}
    assert list(checks)[-1] == SUMMARY


@pytest.mark.parametrize("vid", IDS)
def test_oracle_sets_modes_whatever_the_umask(ws: Path, vid: str) -> None:
    build_oracle(ws, vid, umask=0o077)
    found = {p.relative_to(ws).as_posix(): stat.S_IMODE(p.lstat().st_mode) for p in ws.rglob("*")}
    want = {e["path"]: 0o755 if e["type"] == "dir" else int(e["mode"], 8) for e in entries(vid)}
    assert found == want


# -- one thing wrong at a time ------------------------------------------------------
@pytest.mark.parametrize("vid", IDS)
def test_empty_workspace_fails_naming_every_entry(ws: Path, vid: str) -> None:
    ws.mkdir()
    checks = run_verifier(ws, vid)
    assert failing(checks) == expected_check_names(vid) - {ROOT_CHECK, NO_EXTRAS}
    for e in entries(vid):
        name = f"dir {e['path']}/" if e["type"] == "dir" else f"file {e['path']}"
        assert e["path"] in checks[name]["message"] and "missing" in checks[name]["message"]
    assert f"of {len(entries(vid))} expected entries: {len(entries(vid))} missing" in checks[SUMMARY]["message"]


@pytest.mark.parametrize("vid", IDS)
def test_missing_file(ws: Path, vid: str) -> None:
    path = files(vid)[-1]["path"]
    (build_oracle(ws, vid) / path).unlink()
    assert_fails_exactly(run_verifier(ws, vid), file_checks(path), path, "is missing")


@pytest.mark.parametrize("vid", IDS)
def test_missing_directory_with_its_contents(ws: Path, vid: str) -> None:
    top = next(d for d in dirs(vid) if "/" not in d)
    shutil.rmtree(build_oracle(ws, vid) / top)
    checks = run_verifier(ws, vid)
    under = [e for e in entries(vid) if e["path"] == top or e["path"].startswith(top + "/")]
    names = {n for e in under for n in ({f"dir {e['path']}/"} if e["type"] == "dir" else file_checks(e["path"]))}
    assert failing(checks) == names | {SUMMARY}
    for e in under:
        if e["path"] != top:
            name = f"dir {e['path']}/" if e["type"] == "dir" else f"file {e['path']}"
            assert "because its parent" in checks[name]["message"], checks[name]


@pytest.mark.parametrize("vid", IDS)
@pytest.mark.parametrize("where", ["root", "deepest"])
def test_extra_file(ws: Path, vid: str, where: str) -> None:
    parent = "" if where == "root" else max(dirs(vid), key=lambda d: d.count("/"))
    path = f"{parent}/notes.bak" if parent else "notes.bak"
    (build_oracle(ws, vid) / path).write_text("left over\n")
    assert_fails_exactly(run_verifier(ws, vid), {f"extra {path}", NO_EXTRAS}, path,
                         f"unexpected file '{path}' (10 bytes)")


@pytest.mark.parametrize("vid", IDS)
def test_extra_empty_directory(ws: Path, vid: str) -> None:
    (build_oracle(ws, vid) / "stray").mkdir()
    assert_fails_exactly(run_verifier(ws, vid), {"extra stray", NO_EXTRAS}, "stray",
                         "unexpected directory 'stray/' (empty)")


@pytest.mark.parametrize("vid", [v for v in IDS if empty_dirs(v)])
def test_placeholder_in_an_empty_directory(ws: Path, vid: str) -> None:
    path = f"{empty_dirs(vid)[0]}/.gitkeep"
    (build_oracle(ws, vid) / path).touch()
    assert_fails_exactly(run_verifier(ws, vid), {f"extra {path}", NO_EXTRAS}, path, "must stay empty")


@pytest.mark.parametrize("vid", IDS)
def test_changed_byte(ws: Path, vid: str) -> None:
    path = files(vid)[0]["path"]
    data = bytearray(content_of(vid, path))
    at = len(data) // 2
    while data[at] in b"\n ":  # a visible character, so the line excerpt shows the change
        at += 1
    data[at] = ord("#") if data[at] != ord("#") else ord("%")
    (build_oracle(ws, vid) / path).write_bytes(bytes(data))
    line = data[:at].count(b"\n") + 1
    assert_fails_exactly(run_verifier(ws, vid), {f"content {path}"}, path,
                         f"first difference at byte {at} (line {line})")


@pytest.mark.parametrize("vid", IDS)
def test_missing_final_newline(ws: Path, vid: str) -> None:
    path = files(vid)[0]["path"]
    (build_oracle(ws, vid) / path).write_bytes(content_of(vid, path)[:-1])
    assert_fails_exactly(run_verifier(ws, vid), {f"content {path}"}, path, "the final newline is missing")


@pytest.mark.parametrize("vid", IDS)
def test_extra_final_newline(ws: Path, vid: str) -> None:
    path = files(vid)[-1]["path"]
    (build_oracle(ws, vid) / path).write_bytes(content_of(vid, path) + b"\n")
    assert_fails_exactly(run_verifier(ws, vid), {f"content {path}"}, path, "1 extra newline after the last line")


@pytest.mark.parametrize("vid", IDS)
def test_windows_line_endings(ws: Path, vid: str) -> None:
    path = files(vid)[0]["path"]
    (build_oracle(ws, vid) / path).write_bytes(content_of(vid, path).replace(b"\n", b"\r\n"))
    assert_fails_exactly(run_verifier(ws, vid), {f"content {path}"}, path, "Windows line endings")


@pytest.mark.parametrize("vid", [v for v in IDS if exec_files(v)])
def test_exec_bit_removed(ws: Path, vid: str) -> None:
    path = exec_files(vid)[0]
    (build_oracle(ws, vid) / path).chmod(0o644)
    assert_fails_exactly(run_verifier(ws, vid), {f"mode {path}"}, path,
                         "has mode 0644 (rw-r--r--), expected 0755 (rwxr-xr-x): it is not executable")


@pytest.mark.parametrize("vid", IDS)
def test_exec_bit_added(ws: Path, vid: str) -> None:
    path = plain_files(vid)[0]
    (build_oracle(ws, vid) / path).chmod(0o755)
    assert_fails_exactly(run_verifier(ws, vid), {f"mode {path}"}, path,
                         "has mode 0755 (rwxr-xr-x), expected 0644 (rw-r--r--): it must not be executable")


@pytest.mark.parametrize("vid", IDS)
def test_file_replaced_by_directory(ws: Path, vid: str) -> None:
    path = files(vid)[-1]["path"]
    target = build_oracle(ws, vid) / path
    target.unlink()
    target.mkdir()
    assert_fails_exactly(run_verifier(ws, vid), file_checks(path), path,
                         "is a directory; expected a regular file", "not a regular file")


@pytest.mark.parametrize("vid", IDS)
def test_file_replaced_by_symlink_to_same_content(ws: Path, tmp_path: Path, vid: str) -> None:
    path = files(vid)[0]["path"]
    outside = tmp_path / "outside.txt"
    outside.write_bytes(content_of(vid, path))
    target = build_oracle(ws, vid) / path
    target.unlink()
    target.symlink_to(outside)
    assert_fails_exactly(run_verifier(ws, vid), file_checks(path), path,
                         f"is a symbolic link -> '{outside}'; expected a regular file")


@pytest.mark.parametrize("vid", IDS)
def test_directory_replaced_by_symlink_is_not_followed(ws: Path, tmp_path: Path, vid: str) -> None:
    """A symlinked directory holding the right files is still wrong, and nothing under it is read."""
    top = next(d for d in dirs(vid) if "/" not in d)
    elsewhere = build_oracle(tmp_path / "elsewhere", vid)
    shutil.rmtree(build_oracle(ws, vid) / top)
    (ws / top).symlink_to(elsewhere / top, target_is_directory=True)
    checks = run_verifier(ws, vid)
    assert not checks[f"dir {top}/"]["passed"]
    assert "is a symbolic link" in checks[f"dir {top}/"]["message"]
    for e in entries(vid):
        if e["path"].startswith(top + "/"):
            name = f"dir {e['path']}/" if e["type"] == "dir" else f"content {e['path']}"
            assert not checks[name]["passed"]
    assert checks[NO_EXTRAS]["passed"]


# -- hostile trees ----------------------------------------------------------------------
def test_misspelled_names_get_a_hint(ws: Path) -> None:
    build_oracle(ws, "unicode-names")
    nfc = "données/café.txt"
    nfd = "données/" + unicodedata.normalize("NFD", "café.txt")
    os.rename(ws / nfc, ws / nfd)
    os.rename(ws / "docs", ws / "Docs")
    checks = run_verifier(ws, "unicode-names")
    assert "differs only in Unicode normalization" in checks[f"file {nfc}"]["message"]
    assert "differs only in Unicode normalization" in checks[f"extra {nfd}"]["message"]
    assert "differs only in letter case" in checks["extra Docs"]["message"]
    assert "because its parent 'docs/' is missing" in checks["file docs/Überblick und Plan.md"]["message"]


def test_fifo_special_names_and_links_out(ws: Path) -> None:
    """No hang on a FIFO, undecodable names escaped, a link to / reported and not followed."""
    vid = "one-file"
    build_oracle(ws, vid)
    os.unlink(ws / "notes/todo.txt")
    os.mkfifo(ws / "notes/todo.txt")
    with open(os.path.join(os.fsencode(ws), b"caf\xe9\n.txt"), "wb") as f:
        f.write(b"\x00\xff binary")
    (ws / "root").symlink_to("/")
    checks = run_verifier(ws, vid)
    assert "is a named pipe (FIFO)" in checks["file notes/todo.txt"]["message"]
    assert "unexpected file 'caf\\xe9\\n.txt' (9 bytes)" in checks["extra caf\\xe9\\n.txt"]["message"]
    assert "unexpected symbolic link 'root' -> '/'" in checks["extra root"]["message"]
    # the link is one check of its own: nothing under / was listed through it
    assert [name for name in checks if name.startswith("extra root") or "etc" in name] == ["extra root"]


def test_huge_and_binary_content_is_read_only_in_part(ws: Path) -> None:
    vid = "nested"
    build_oracle(ws, vid)
    with open(ws / "site/index.html", "wb") as f:
        f.truncate(4 * 1024**3)  # sparse: 4 GiB on paper, nothing on disk
    (ws / "site/css/style.css").write_bytes(bytes(range(256)) * 4)
    checks = run_verifier(ws, vid)
    assert f"found {4 * 1024**3}" in checks["content site/index.html"]["message"]
    assert "found 1024; first difference at byte 0 (line 1)" in checks["content site/css/style.css"]["message"]
    assert failing(checks) == {"content site/index.html", "content site/css/style.css", SUMMARY}


def test_a_flood_of_extras_is_capped(ws: Path) -> None:
    vid = "one-file"
    build_oracle(ws, vid)
    for i in range(150):
        (ws / f"junk{i:03d}").touch()
    (ws / "deep").mkdir()
    for i in range(30):
        (ws / "deep" / f"f{i}").touch()
    checks = run_verifier(ws, vid)
    extras = [n for n in checks if n.startswith("extra ") and n != "extra (more)"]
    assert len(extras) == 100
    assert "51 more unexpected entries" in checks["extra (more)"]["message"]
    assert "151 unexpected entries" in checks[NO_EXTRAS]["message"]
    assert "holding 30 entries" in checks["extra deep"]["message"]


# -- as another user, the way the sandbox runs the verifier ----------------------------------
def _other_user_python() -> str | None:
    """A python3 that uid 65534 can run, or None (not root, or none reachable)."""
    if os.geteuid() != 0:
        return None
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", sys.executable):
        try:
            subprocess.run([candidate, "-c", "pass"], user=NOBODY, check=True, timeout=30, capture_output=True)
            return candidate
        except (OSError, subprocess.SubprocessError):
            continue
    return None


OTHER_PYTHON = _other_user_python()


@pytest.fixture
def other_user() -> None:
    if OTHER_PYTHON is None:
        missing("root", "no python3 runs as another uid here")


@pytest.fixture
def shared_ws() -> Iterator[Path]:
    """A workspace another uid can reach (pytest's tmp_path is private to its owner)."""
    top = Path(tempfile.mkdtemp(prefix="agenteval-folder-"))
    top.chmod(0o755)
    try:
        yield top / "workspace"
    finally:
        shutil.rmtree(top)


@pytest.mark.usefixtures("other_user")
@pytest.mark.parametrize("vid", IDS)
def test_other_user_verifies_the_oracle(shared_ws: Path, vid: str) -> None:
    assert OTHER_PYTHON is not None
    checks = run_verifier(build_oracle(shared_ws, vid), vid, python=OTHER_PYTHON, user=NOBODY)
    assert not failing(checks), {n: checks[n]["message"] for n in failing(checks)}


@pytest.mark.usefixtures("other_user")
def test_other_user_reports_what_it_cannot_read(shared_ws: Path) -> None:
    assert OTHER_PYTHON is not None
    vid = "python-project"
    build_oracle(shared_ws, vid)
    (shared_ws / "src/greet").chmod(0o700)
    (shared_ws / "README.md").chmod(0o600)
    checks = run_verifier(shared_ws, vid, python=OTHER_PYTHON, user=NOBODY)
    assert "another user cannot list or enter it (mode 0700)" in checks["dir src/greet/"]["message"]
    assert "because its parent 'src/greet/' cannot be read" in checks["file src/greet/cli.py"]["message"]
    assert "'README.md' cannot be read by another user" in checks["content README.md"]["message"]
    assert "has mode 0600 (rw-------), expected 0644" in checks["mode README.md"]["message"]
    assert checks[NO_EXTRAS]["passed"]
