"""agenteval's import graph, read from the source with ``ast``, stays one way.

Every import counts as an arrow: at the top of a module, inside a function (the lazy imports
that keep ``--help`` light) and in an ``if TYPE_CHECKING:`` block; relative imports are
resolved. ``from agenteval.x import y`` points at the module ``agenteval.x.y`` where there is
one, else at ``agenteval.x``. A package's ``__init__`` is a module of its own; importing
``agenteval.a.b`` is not counted as importing ``agenteval.a``.

The layers, lowest first; a module may import its own group and any lower layer, never a
higher layer nor a peer group of its own layer:

1. foundation: the package root (``__version__``), errors, records, settings, paths, processes,
   plugins, logs
2. config (agenteval.toml) | gguf (GGUF files: read by the model clients' server probe and by
   the servers, so below both) | store (migrations, store)
3. task
4. sandbox | models (the model contract and its HTTP clients)
5. serving (servers agenteval starts; it may import models, models never import it) | verify
6. agent (the graph, tools, prompts, the solver contract, oracle, nop)
7. runner (trials, runs, the model registry that joins models, serving and agent)
8. export | report (read the store)
9. console (what the commands share)
10. ladder (its command line included)
11. cli

Besides: no circle between two modules, no ``from x import _private`` across modules, no module
over 500 lines, a docstring atop every module, and nothing under agenteval/models/ that runs
processes (subprocess, signal) or reaches the sandbox or the servers.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "agenteval"
MAX_LINES = 500

# rank -> {group: module prefixes}; a prefix names a module and every module under it
LAYERS: list[dict[str, tuple[str, ...]]] = [
    {"foundation": ("agenteval", "agenteval.errors", "agenteval.records", "agenteval.settings", "agenteval.paths",
                    "agenteval.processes", "agenteval.plugins", "agenteval.logs")},
    {"config": ("agenteval.config",), "gguf": ("agenteval.gguf",),
     "store": ("agenteval.migrations", "agenteval.store")},
    {"task": ("agenteval.task",)},
    {"sandbox": ("agenteval.sandbox",), "models": ("agenteval.models",)},
    {"serving": ("agenteval.serving",), "verify": ("agenteval.verify",)},
    {"agent": ("agenteval.agent",)},
    {"runner": ("agenteval.runner",)},
    {"export": ("agenteval.export",), "report": ("agenteval.report",)},
    {"console": ("agenteval.console",)},
    {"ladder": ("agenteval.ladder",)},
    {"cli": ("agenteval.cli", "agenteval.__main__")},
]
# groups whose prefix is the package root itself match that module only
EXACT = {"agenteval"}
MODELS_MAY_NOT_IMPORT = ("subprocess", "signal", "agenteval.sandbox", "agenteval.serving")
_DUNDER = re.compile(r"^__\w+__$")


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: list[tuple[str, int]] = field(default_factory=list)  # (imported module, line)
    private: list[tuple[str, str, int]] = field(default_factory=list)  # (from module, _name, line)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def load_modules() -> dict[str, Module]:
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        modules[module_name(path)] = Module(module_name(path), path, ast.parse(path.read_text(), str(path)))
    for module in modules.values():
        _collect_imports(module, modules)
    return modules


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.name.split(".")
    if module.path.name != "__init__.py":
        base = base[:-1]  # a module's level 1 is its package
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _collect_imports(module: Module, modules: dict[str, Module]) -> None:
    """Every import anywhere in the module: ast.walk enters functions and TYPE_CHECKING blocks."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            module.imports += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            for alias in node.names:
                target = f"{source}.{alias.name}"
                module.imports.append((target if target in modules else source, node.lineno))
                if (alias.name.startswith("_") and not _DUNDER.match(alias.name)
                        and source.split(".")[0] == PACKAGE and source != module.name):
                    module.private.append((source, alias.name, node.lineno))


def layer_of(name: str) -> tuple[int, str] | None:
    """(rank, group) of a module: the longest prefix that names it."""
    best: tuple[int, int, str] | None = None
    for rank, groups in enumerate(LAYERS):
        for group, prefixes in groups.items():
            for prefix in prefixes:
                hit = name == prefix if prefix in EXACT else name == prefix or name.startswith(prefix + ".")
                if hit and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), rank, group)
    return (best[1], best[2]) if best else None


def internal_edges(modules: dict[str, Module]) -> dict[str, set[str]]:
    return {m.name: {target for target, _ in m.imports if target in modules and target != m.name}
            for m in modules.values()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each group of modules that reach each other (Tarjan's components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_circle(graph, set(c)) for c in components]


def _circle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return sorted(component)


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    found = load_modules()
    assert len(found) > 50 and "agenteval.cli" in found, sorted(found)
    return found


def test_every_module_has_a_layer(modules: dict[str, Module]) -> None:
    missing = [name for name in modules if layer_of(name) is None]
    assert missing == [], f"modules in no layer (add them to LAYERS): {missing}"


def test_no_import_circles(modules: dict[str, Module]) -> None:
    graph = internal_edges(modules)
    assert sum(len(targets) for targets in graph.values()) > 100  # the graph was read
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]  # the check can fail
    found = cycles(graph)
    assert found == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_imports_run_down_the_layers(modules: dict[str, Module]) -> None:
    wrong = []
    checked = 0
    for module in modules.values():
        own = layer_of(module.name)
        for target, line in module.imports:
            theirs = layer_of(target) if target in modules else None
            if own is None or theirs is None or target == module.name:
                continue
            checked += 1
            if theirs[0] > own[0] or (theirs[0] == own[0] and theirs[1] != own[1]):
                wrong.append(f"{module.name} ({own[1]}, layer {own[0] + 1}) imports {target} "
                             f"({theirs[1]}, layer {theirs[0] + 1}) at {module.path.relative_to(ROOT)}:{line}")
    assert checked > 100
    assert wrong == [], "imports against the layers:\n" + "\n".join(wrong)


def test_no_module_imports_another_modules_private_names(modules: dict[str, Module]) -> None:
    found = [f"{m.path.relative_to(ROOT)}:{line}: from {source} import {name}"
             for m in modules.values() for source, name, line in m.private]
    assert found == [], "private names imported across modules:\n" + "\n".join(found)


def test_modules_stay_small(modules: dict[str, Module]) -> None:
    sizes = {m.name: len(m.path.read_text().splitlines()) for m in modules.values()}
    assert max(sizes.values()) > 100
    big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert big == {}, f"modules over {MAX_LINES} lines: {big}"


def test_every_module_says_its_job_at_the_top(modules: dict[str, Module]) -> None:
    bare = [name for name, m in modules.items() if not (ast.get_docstring(m.tree) or "").strip()]
    assert bare == [], f"modules without a docstring: {bare}"


def test_models_hold_no_processes_sandbox_or_servers(modules: dict[str, Module]) -> None:
    mine = [m for name, m in modules.items() if name == "agenteval.models" or name.startswith("agenteval.models.")]
    assert len(mine) > 5
    found = [f"{m.path.relative_to(ROOT)}:{line}: imports {target}" for m in mine for target, line in m.imports
             if any(target == p or target.startswith(p + ".") for p in MODELS_MAY_NOT_IMPORT)]
    assert found == [], "agenteval/models/ reaches what is not its job:\n" + "\n".join(found)
