"""Imports match declarations: what the core's modules import, the core declares; what an
extra's code imports, that extra declares (tests/install_lines.py says which code is whose).

Checked twice: from the source against pyproject.toml (seconds), and for real, a fresh venv
per README install line (``.``, ``.[llamacpp]``, ``.[serve]``, ``.[ray]``, ``.[test]``)
holding a copy of the repository installed as a user installs it, which imports what the line
serves and runs the CLI (the core also runs the oracle on tasks/folder). Select the venv
checks with ``-m install_lines``; they take minutes (pip's cache makes later ones faster).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import REPO, missing
from tests.install_lines import (EXTRA_IMPORTS, EXTRA_PROGRAMS, LINES, NOT_IN_CORE, TEST_IMPORTS_OF_OTHER_LINES,
                                 declared, distribution, line_imports, modules, suite_imports,
                                 third_party_imports)

WHEEL_SCRIPT = REPO / ".ci" / "llamacpp-wheel.sh"
_IMPORT_ALL = """
import importlib, json, sys
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as e:  # noqa: BLE001 - every failure is reported, by name
        failed[name] = f"{type(e).__name__}: {e}"
import agenteval
print(json.dumps({"failed": failed, "agenteval": agenteval.__file__}))
"""


# --- from the source -------------------------------------------------------------------------

def test_every_import_of_agenteval_is_declared_by_its_line() -> None:
    imports, lines = third_party_imports(REPO, "agenteval"), declared(REPO)
    assert imports and lines[None]
    undeclared = []
    for module, packages in sorted(imports.items()):
        for package in sorted(packages):
            extra = EXTRA_IMPORTS.get((module, package), (None, ""))[0]
            if distribution(package) not in lines[extra]:
                undeclared.append(f"{module} imports {package}: {'the core' if extra is None else extra!r} "
                                  f"does not declare {distribution(package)}")
    assert not undeclared, "\n".join(undeclared)


def test_every_import_of_the_test_suite_is_declared_by_its_line() -> None:
    imports, lines = suite_imports(REPO), declared(REPO)
    assert imports
    undeclared = []
    for module, packages in sorted(imports.items()):
        for package in sorted(packages):
            extra = TEST_IMPORTS_OF_OTHER_LINES.get((module, package), ("test", ""))[0]
            if distribution(package) not in lines[extra] | (lines[None] if extra == "test" else set()):
                undeclared.append(f"{module} imports {package}: {extra!r} does not declare {distribution(package)}")
    assert not undeclared, "\n".join(undeclared)


def test_the_table_of_extra_code_is_still_true() -> None:
    """No entry outlives the code it names, and each names a declared extra."""
    imports, suite, extras = third_party_imports(REPO, "agenteval"), suite_imports(REPO), declared(REPO)
    assert EXTRA_IMPORTS and EXTRA_PROGRAMS
    for (module, package), (extra, _) in EXTRA_IMPORTS.items():
        assert package in imports.get(module, set()), f"{module} no longer imports {package}"
        assert extra in extras and distribution(package) in extras[extra], (module, package, extra)
    for (module, package), (extra, _) in TEST_IMPORTS_OF_OTHER_LINES.items():
        assert package in suite.get(module, set()), f"{module} no longer imports {package}"
        assert extra in extras, (module, extra)
    for program, (extra, where, text) in EXTRA_PROGRAMS.items():
        assert text in (REPO / where).read_text(), f"{where} no longer starts {program} ({text!r})"
        assert extra in extras, (program, extra)
    assert set(LINES.values()) - {None} == set(extras) - {None}, "a README install line per extra"


def test_the_import_name_of_each_declared_package_is_its_distribution() -> None:
    """distribution() maps an import to the name pyproject declares; checked against what is installed."""
    from importlib.metadata import packages_distributions

    installed = {package: {d.lower().replace("_", "-") for d in dists}
                 for package, dists in packages_distributions().items()}
    imports = {p for ps in [*third_party_imports(REPO, "agenteval").values(), *suite_imports(REPO).values()]
               for p in ps}
    checked = [p for p in sorted(imports) if p in installed]
    assert "pydantic_core" in checked and "markupsafe" in checked
    wrong = [f"{p}: {distribution(p)} not in {sorted(installed[p])}" for p in checked
             if distribution(p) not in installed[p]]
    assert not wrong, wrong


# --- for real: a fresh venv per install line ----------------------------------------------------

@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout's files as they are now (tracked and new, not ignored), copied so that
    installing writes no build/ or egg-info into the checkout."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        missing("git", f"{REPO} is not a git checkout (the copy is made from git's list of files)")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    copy = tmp_path_factory.mktemp("install-lines") / "repo"
    for name in filter(None, listed):
        source, target = REPO / name, copy / name
        if not (source.is_symlink() or source.is_file()):  # deleted, not yet staged: listed and absent
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # a fixture's link stays a link (its target may be absent by design)
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    assert (copy / "pyproject.toml").is_file() and (copy / "agenteval" / "cli.py").is_file()
    return copy


def llamacpp_wheels(venv_python: Path) -> str:
    """The folder .ci/llamacpp-wheel.sh keeps the llama-cpp-python wheel in, when it holds one.
    The script runs with the venv's python3 first on PATH: the python3 it uninstalls a mismatching
    llama-cpp-python from is then the fresh venv's, which has none."""
    default_flags = re.search(r"FLAGS=\$\{CMAKE_ARGS:-(.*)\}\n", WHEEL_SCRIPT.read_text())
    pinned = re.search(r'"llama-cpp-python\[server\]==([0-9.]+)"', (REPO / "pyproject.toml").read_text())
    assert default_flags and pinned, "the wheel script's flags or pyproject's pin moved: update this reading"
    flags, version = os.environ.get("CMAKE_ARGS") or default_flags[1], pinned[1]
    key = hashlib.sha256(flags.encode()).hexdigest()[:12]  # as the script keys its folder
    cache = Path(os.environ.get("AGENTEVAL_WHEEL_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agenteval" / "wheels") / key
    if not list(cache.glob(f"llama_cpp_python-{version}-*.whl")):
        missing("wheel-cache", f"no llama-cpp-python {version} wheel in {cache} (about 5 minutes to build, once)")
    env = {**os.environ, "PATH": f"{venv_python.parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["bash", str(WHEEL_SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == cache, (out.stdout, cache)
    return out.stdout.strip()


def venv_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "VIRTUAL_ENV": str(venv), "COLUMNS": "200",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}


def sh(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def venv_dir(tmp_path: Path) -> Iterator[Path]:
    """Where the test makes its venv; removed after the test (an installed torch is GBs)."""
    yield tmp_path / "venv"
    shutil.rmtree(tmp_path / "venv", ignore_errors=True)


@pytest.mark.install_lines
@pytest.mark.parametrize("line", list(LINES))
def test_a_fresh_venv_of_each_install_line_serves_its_code(line: str, repo_copy: Path, venv_dir: Path,
                                                           tmp_path: Path, request: pytest.FixtureRequest) -> None:
    extra, venv, t0 = LINES[line], venv_dir, time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)  # no system site-packages
    python, env = venv / "bin" / "python", venv_env(venv)
    find_links = ["--find-links", llamacpp_wheels(python)] if extra == "llamacpp" else []
    target = f"{repo_copy}[{extra}]" if extra else str(repo_copy)
    # --no-compile: byte-compiling torch's or ray's files takes a minute and proves nothing pip would fail on
    installed = sh([str(python), "-m", "pip", "install", "-q", "--no-compile", target, *find_links], env, tmp_path)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-5000:]
    install_s = time.monotonic() - t0

    # every module the line serves imports, from the installed package (cwd: not the copy)
    wanted = line_imports(repo_copy, extra)
    assert len(wanted) >= len(modules(repo_copy)) > 40
    probe = sh([str(python), "-c", _IMPORT_ALL, *wanted], env, tmp_path, timeout=600)
    assert probe.returncode == 0, probe.stderr[-5000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, f"{line} cannot import: {json.dumps(report['failed'], indent=1)}"
    assert Path(report["agenteval"]).is_relative_to(venv), report["agenteval"]
    if extra is None:  # the core holds only what the core installs
        held = sh([str(python), "-c", "import importlib.util as u, sys; "
                   "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))", *NOT_IN_CORE], env, tmp_path)
        assert held.returncode == 0 and held.stdout.split() == [], held.stdout + held.stderr

    cli = str(venv / "bin" / "agenteval")
    helped = sh([cli, "--help"], env, repo_copy, timeout=120)
    assert helped.returncode == 0 and "run" in helped.stdout, helped.stdout + helped.stderr
    listed = sh([cli, "tasks", "list", "tasks"], env, repo_copy, timeout=120)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert all(name in listed.stdout for name in ("folder", "translate", "flappy")), listed.stdout
    if extra is None:
        _run_the_oracle(cli, env, repo_copy, tmp_path, request)
    if extra == "test":  # the suite collects, and the unit tests that write GGUF files pass
        _run_test_suite_parts(python, env, repo_copy, tmp_path)
    took = time.monotonic() - t0
    request.node.user_properties += [("venv_and_install_s", round(install_s, 1)), ("total_s", round(took, 1))]
    print(f"\ninstall line {line}: venv + pip install {install_s:.0f} s, with its checks {took:.0f} s")


def _run_the_oracle(cli: str, env: dict[str, str], repo_copy: Path, tmp_path: Path,
                    request: pytest.FixtureRequest) -> None:
    """The core alone runs a trial end to end: Docker sandbox, oracle, hidden verifier, DuckDB, report."""
    request.getfixturevalue("python_image")  # the engine answers and the sandbox image is built
    from agenteval.store import Store

    db, out = tmp_path / "db.duckdb", tmp_path / "reports"
    run_env = {**env, "AGENTEVAL_SANDBOXES": str(REPO / "sandboxes")}
    ran = sh([cli, "run", "tasks/folder", "--variant", "folder/one-file", "--model", "oracle", "--db", str(db),
              "--out", str(out)], run_env, repo_copy, timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-5000:]
    with Store(db, read_only=True) as store:
        trials: list[Any] = store.trials(store.latest_run_id())
    assert [(t.task, t.model, t.passed) for t in trials] == [("folder", "oracle", True)], \
        [(t.task, t.model, t.passed, t.failure_mode) for t in trials]
    assert list(out.glob("*/index.html")), "no report written"


def _run_test_suite_parts(python: Path, env: dict[str, str], repo_copy: Path, tmp_path: Path) -> None:
    """The [test] line alone collects the whole suite and runs the unit tests that write GGUF files;
    what they skip is only the gate's skip of a part another line installs."""
    # The nested session's leak check sees its own machine only: its own temp and cache folders, and
    # no Docker engine (unit tests need none), not what other sessions on this machine do meanwhile.
    (tmp_path / "tmp").mkdir()
    suite_env = {**{k: v for k, v in env.items() if k != "AGENTEVAL_REQUIRE"}, "TMPDIR": str(tmp_path / "tmp"),
                 "XDG_CACHE_HOME": str(tmp_path / "cache"), "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    collected = sh([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "tests"],
                   suite_env, repo_copy, timeout=300)
    assert collected.returncode == 0, collected.stdout[-5000:] + collected.stderr[-3000:]
    unit = ["tests/unit/test_gguf_header.py", "tests/unit/test_ladder_quantize.py",
            "tests/unit/test_models_and_outcomes.py"]
    ran = sh([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *unit], suite_env, repo_copy,
             timeout=600)
    assert ran.returncode == 0, ran.stdout[-5000:] + ran.stderr[-3000:]
    assert re.search(r"\b[1-9][0-9]* passed", ran.stdout), ran.stdout[-3000:]
    other_lines = tuple(f"requires {extra}:" for extra in LINES.values() if extra not in (None, "test"))
    assert other_lines
    assert [line for line in ran.stdout.splitlines()
            if line.startswith("SKIPPED") and not any(part in line for part in other_lines)] == []
