"""Which install line of the README serves which code, and what that code imports.

The README installs agenteval five ways: ``pip install .`` (the core), ``.[llamacpp]``,
``.[serve]``, ``.[ray]`` and ``.[test]``. The rule: what the core's modules import, the
core declares; what an extra's code imports, that extra declares. Imports are read from
the source (``ast``), so an import is checked the day it is written. Every module of
agenteval imports with the core alone (heavy packages are imported inside the functions
that use them); what belongs to an extra is named below, one (module, package) at a time,
each with its reason. Every third-party import not named here is the core's.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

# README install line -> the extra it adds (None: the core alone)
LINES: dict[str, str | None] = {".": None, ".[llamacpp]": "llamacpp", ".[serve]": "serve", ".[ray]": "ray",
                                ".[test]": "test"}

# (agenteval module, top-level package it imports) -> (the extra that declares it, why)
EXTRA_IMPORTS: dict[tuple[str, str], tuple[str, str]] = {
    ("agenteval.serving.engines.llamacpp", "llama_cpp"):
        ("llamacpp", "the llamacpp engine: llama-cpp-python's server and its log hook"),
    ("agenteval.gguf.write", "llama_cpp"):
        ("llamacpp", "quantize(): create-test-model --gguf quantizes with llama.cpp's binding"),
    ("agenteval.ladder.divergence_numpy", "llama_cpp"):
        ("llamacpp", "the ladder's divergence without llama-perplexity: llama-cpp-python evaluates"),
    ("agenteval.ladder.divergence_numpy", "numpy"):
        ("llamacpp", "the ladder's divergence without llama-perplexity: numpy scores the logits"),
    ("agenteval.gguf.write", "gguf"): ("serve", "write_gguf(): create-test-model --gguf writes the f16 GGUF"),
    ("agenteval.gguf.write", "numpy"): ("serve", "write_gguf(): the test model's tensors"),
    ("agenteval.gguf.write", "safetensors"): ("serve", "write_gguf(): reads the test model's weights"),
    ("agenteval.serving.engines.transformers", "transformers"):
        ("serve", "the transformers engine: its tokenizer counts tokens"),
    ("agenteval.serving.testmodel", "torch"): ("serve", "create-test-model: random weights"),
    ("agenteval.serving.testmodel", "transformers"): ("serve", "create-test-model: the Llama model and tokenizer"),
    ("agenteval.serving.testmodel", "tokenizers"): ("serve", "create-test-model: trains the BPE vocabulary"),
    ("agenteval.runner.ray_executor", "ray"): ("ray", "run --executor ray"),
}

# What agenteval (or the README's test command) starts as a program in a child python (-m / -c),
# which no import statement shows: module to import -> (the extra that declares it, the file that
# starts it, the text in that file that starts it)
EXTRA_PROGRAMS: dict[str, tuple[str, str, str]] = {
    "mypy": ("test", "README.md", "python3 -m mypy agenteval"),
    "llama_cpp.server.__main__": ("llamacpp", "agenteval/serving/engines/llamacpp.py", '"-m", "llama_cpp.server"'),
    "llama_cpp": ("llamacpp", "agenteval/ladder/quantize.py", "import llama_cpp"),  # its quantizing script
    "transformers.cli.transformers": ("serve", "agenteval/serving/engines/transformers.py",
                                      "from transformers.cli.transformers import main"),
    "transformers.cli.serving.server": ("serve", "agenteval/serving/engines/transformers.py", '"serve"'),
}

# (test module, package) the test suite imports for a line other than [test]: the test asks the
# requirement gate for it (tests/conftest.requires / missing) before it imports it.
TEST_IMPORTS_OF_OTHER_LINES: dict[tuple[str, str], tuple[str, str]] = {
    ("tests.integration.test_ladder_divergence_llama", "llama_cpp"):
        ("llamacpp", "compares llama-perplexity with llama-cpp-python"),
}

# What the core must not pull in: `agenteval --help` stays light, and a core install stays small.
NOT_IN_CORE = ("torch", "transformers", "llama_cpp", "ray", "gguf")

# Packages whose distribution is not named as they are imported.
DISTRIBUTIONS = {"pydantic_core": "pydantic-core", "llama_cpp": "llama-cpp-python", "markdown_it": "markdown-it-py"}
# Code that never runs in the host's python: the verifier harness runs inside the sandbox.
NOT_HOST_CODE = ("agenteval.verify.harness",)
FIRST_PARTY = {"agenteval", "tests"}


def distribution(package: str) -> str:
    return normalize(DISTRIBUTIONS.get(package, package))


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path, package: str = "agenteval") -> list[str]:
    """Every module of ``package`` (a folder under ``root``) that runs in the host's python."""
    found = [module_name(root, p) for p in sorted((root / package).rglob("*.py"))]
    return [m for m in found if not m.startswith(NOT_HOST_CODE)]


def third_party_imports(root: Path, folder: str, skip: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """module -> the top-level third-party packages it imports (at the top or inside functions;
    ``pytest.importorskip("x")`` counts; ``if TYPE_CHECKING:`` blocks do not)."""
    result: dict[str, set[str]] = {}
    for path in sorted((root / folder).rglob("*.py")):
        if any(part in skip for part in path.relative_to(root).parts):
            continue
        found: set[str] = set()
        _collect(ast.parse(path.read_text(), str(path)), found)
        found = {name for name in found if name not in sys.stdlib_module_names and name not in FIRST_PARTY}
        if found:
            result[module_name(root, path)] = found
    return result


def _collect(node: ast.AST, found: set[str]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for orelse in child.orelse:
                _collect(orelse, found)
            continue
        if isinstance(child, ast.Import):
            found.update(alias.name.split(".")[0] for alias in child.names)
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            found.add(child.module.split(".")[0])
        elif (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
              and child.func.attr == "importorskip" and child.args and isinstance(child.args[0], ast.Constant)
              and isinstance(child.args[0].value, str)):
            found.add(child.args[0].value.split(".")[0])
        _collect(child, found)


def declared(root: Path) -> dict[str | None, set[str]]:
    """pyproject's requirements by line (None: the core), as normalized distribution names."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    lines: dict[str | None, list[str]] = {None: project["dependencies"], **project["optional-dependencies"]}
    return {extra: {requirement_name(req) for req in reqs} for extra, reqs in lines.items()}


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return normalize(match[0])


def line_imports(root: Path, extra: str | None) -> list[str]:
    """What a venv of the line must import: every host module of agenteval (each line holds the
    core), and the packages that the line's own code imports or starts."""
    own: set[str] = {module for module, (owner, _, _) in EXTRA_PROGRAMS.items() if owner == extra}
    if extra == "test":
        own |= {package for module, packages in suite_imports(root).items() for package in packages
                if (module, package) not in TEST_IMPORTS_OF_OTHER_LINES}
    elif extra is not None:
        own |= {package for (_, package), (owner, _) in EXTRA_IMPORTS.items() if owner == extra}
    return modules(root) + sorted(own)


def suite_imports(root: Path) -> dict[str, set[str]]:
    """The test suite's own imports (task fixtures run inside sandboxes, not here)."""
    return third_party_imports(root, "tests", skip=("fixtures",))
