"""A lint over the test suite: ``assert all(...)`` and ``assert not any(...)`` hold for an empty
collection, so each one needs the collection shown non-empty in the same function.

An assertion over a generator ``... for x in ITER`` passes when ITER is empty, which is how a
test stops testing without anyone seeing it. The lint accepts the assertion when the same
function (earlier, or in the same ``assert``) shows ITER non-empty, ITER compared as source text
(``ast.unparse``) of the first generator's iterable:

- ``assert ITER`` or ``ITER and all(...)``: ITER is truthy;
- ``assert len(ITER) ...``, unless the comparison allows zero (``== 0``, ``< N``, ``<= N``);
  ``len(...)`` of a comprehension over ITER counts the same;
- ``[x] = ITER``, ``a, b = ITER``: unpacking fixes its length;
- ``assert ITER == [...]`` (or ``sorted(ITER)``, ``list(ITER)``, ``set(ITER)``, ``tuple(ITER)``)
  against a non-empty literal;
- ``# nonempty: REASON`` on a line of the assert, where the lint cannot see why.

A dict's ``.items()``, ``.keys()`` and ``.values()`` count as the dict. An iterable that no input
can empty needs nothing: a non-empty literal (``(a, b)``), ``range(N)`` with a constant N > 0,
``text.split(SEP)`` with a constant separator. A generator's ``if`` filter can empty a non-empty
ITER, so a filtered one is always flagged: name what the filter keeps (``by_model["oracle"]``)
and show that non-empty, or say why in a ``# nonempty:`` comment.

Where an empty collection is a pass by design (no tool called, no newer type), say so in a form
that cannot be mistaken for a check that ran: ``assert [t for t in calls if not t.name] == []``
beside an assertion that can fail (how many calls the server sent).
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Iterator

TESTS = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"fixtures"}
WRAPPERS = {"sorted", "list", "set", "tuple", "frozenset"}
MARK = "# nonempty:"

Scope = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda


def _iterable_of(call: ast.Call) -> tuple[ast.expr | None, bool]:
    """The iterable an ``all``/``any`` call ranges over (its first generator's, or the argument
    itself), and whether an ``if`` of the generator filters it."""
    if len(call.args) != 1:
        return None, False
    arg = call.args[0]
    if isinstance(arg, (ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp)):
        return arg.generators[0].iter, any(g.ifs for g in arg.generators)
    return arg, False


def _names_of(iterable: ast.expr) -> set[str]:
    """ITER as source text; a dict's ``.items()``, ``.keys()``, ``.values()`` are as long as the dict."""
    names = {ast.unparse(iterable)}
    if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute) and not iterable.args and \
            iterable.func.attr in ("items", "keys", "values"):
        names.add(ast.unparse(iterable.func.value))
    return names


def _never_empty(node: ast.expr) -> bool:
    """Empty by no input: a literal with elements, ``range(N)`` with a constant N > 0, a split on a
    constant separator."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and not any(isinstance(e, ast.Starred) for e in node.elts)
    if isinstance(node, ast.Dict):
        return bool(node.keys) and None not in node.keys
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return bool(node.value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        stop = node.args[0] if len(node.args) == 1 else None
        return isinstance(stop, ast.Constant) and isinstance(stop.value, int) and stop.value > 0
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("split", "rsplit"):
        sep = node.args[0] if node.args else None  # with a separator, even "" splits into [""]
        return isinstance(sep, ast.Constant) and isinstance(sep.value, (str, bytes)) and bool(sep.value)
    return False


def _offenders_in(test: ast.expr) -> Iterator[tuple[ast.Call, ast.expr, bool]]:
    """``all(...)`` and ``not any(...)`` calls anywhere in an assert's expression, with their ITER
    and whether a filter may empty it."""
    for node in ast.walk(test):
        call: ast.Call | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "all":
            call = node
        elif (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and isinstance(node.operand, ast.Call)
              and isinstance(node.operand.func, ast.Name) and node.operand.func.id == "any"):
            call = node.operand
        if call is None:
            continue
        iterable, filtered = _iterable_of(call)
        if iterable is not None and (filtered or not _never_empty(iterable)):
            yield call, iterable, filtered


def _subjects(node: ast.expr) -> Iterator[str]:
    """What ``node`` is about: itself, what a wrapper call wraps, and what a comprehension ranges over."""
    yield ast.unparse(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in WRAPPERS and node.args:
        yield from _subjects(node.args[0])
    if isinstance(node, (ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp)):
        yield ast.unparse(node.generators[0].iter)


def _len_of(node: ast.expr) -> ast.expr | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" and len(node.args) == 1:
        return node.args[0]
    return None


def _int(node: ast.expr) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


MIRROR: dict[type[ast.cmpop], type[ast.cmpop]] = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE}


def _excludes_zero(op: ast.cmpop, bound: ast.expr) -> bool:
    """Whether ``len(X) OP bound`` fails for an empty X; a bound that is no constant counts, as the
    test states what it expects (``len(rows) == expected``)."""
    n = _int(bound)
    if isinstance(op, (ast.Eq, ast.GtE)):
        return n is None or n > 0
    if isinstance(op, ast.Gt):
        return n is None or n >= 0
    if isinstance(op, ast.NotEq):
        return n == 0
    return False


def _proven_by_compare(node: ast.Compare) -> Iterator[str]:
    operands = [node.left, *node.comparators]
    for i, op in enumerate(node.ops):
        left, right = operands[i], operands[i + 1]
        for side, other, mirrored in ((left, right, op), (right, left, MIRROR.get(type(op), type(op))())):
            measured = _len_of(side)
            if measured is not None:
                if _excludes_zero(mirrored, other):
                    yield from _subjects(measured)
            elif isinstance(op, ast.Eq) and _never_empty(other):
                yield from _subjects(side)


def _proven(test: ast.expr) -> Iterator[str]:
    """The ITERs an assert's expression (or one operand of its top-level ``and``) shows non-empty."""
    parts = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
    for part in parts:
        if isinstance(part, ast.Compare):
            yield from _proven_by_compare(part)
        elif not (isinstance(part, ast.UnaryOp) and isinstance(part.op, ast.Not)):
            yield from _subjects(part)
            measured = _len_of(part)
            if measured is not None:
                yield from _subjects(measured)


def _unpacked(stmt: ast.Assign) -> Iterator[str]:
    for target in stmt.targets:
        if isinstance(target, (ast.Tuple, ast.List)) and target.elts and \
                not all(isinstance(e, ast.Starred) for e in target.elts):
            yield ast.unparse(stmt.value)


def _own_nodes(scope: Scope) -> Iterator[ast.AST]:
    """The nodes of one function (or the module), not of the functions defined inside it."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _marked(stmt: ast.Assert, lines: list[str]) -> bool:
    end = stmt.end_lineno or stmt.lineno
    for text in lines[stmt.lineno - 1:end]:
        if MARK in text and text.split(MARK, 1)[1].strip():
            return True
    return False


def lint(source: str, filename: str = "<test>") -> list[str]:
    """``filename:line: ...`` for each ``all``/``not any`` assertion over an ITER not shown non-empty."""
    tree = ast.parse(source, filename)
    lines = source.splitlines()
    found: list[str] = []
    scopes: list[Scope] = [tree, *(n for n in ast.walk(tree)
                                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]
    for scope in scopes:
        nodes = sorted(_own_nodes(scope), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))
        shown: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Assign):
                shown.update(_unpacked(node))
            if not isinstance(node, ast.Assert):
                continue
            here = set(_proven(node.test))
            for call, iterable, filtered in _offenders_in(node.test):
                if _marked(node, lines) or (not filtered and _names_of(iterable) & (shown | here)):
                    continue
                kind = "all" if isinstance(call.func, ast.Name) and call.func.id == "all" else "not any"
                text = ast.unparse(iterable)
                why = (f"its filter may leave nothing of {text}; name the filtered collection" if filtered else
                       f"{text} may be empty; assert it is non-empty first")
                found.append(f"{filename}:{node.lineno}: assert {kind}(... in {text}) holds vacuously: {why}")
            shown |= here
    return sorted(found, key=lambda f: int(f.split(":")[1]))


def _suite_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(TESTS).parts))


def test_every_all_and_not_any_assertion_ranges_over_a_collection_shown_non_empty() -> None:
    files = _suite_files()
    assert len(files) > 40 and Path(__file__) in files  # the lint sees the whole suite, itself included
    found = [f for path in files for f in lint(path.read_text(), str(path.relative_to(TESTS.parent)))]
    assert found == [], "\n".join(found)


def _flags(code: str) -> list[str]:
    return lint(textwrap.dedent(code))


def test_the_lint_catches_a_vacuous_assertion() -> None:
    caught = _flags("""
        def test_a(records, other, rows, kept):
            assert all(r.passed for r in records)
            assert records  # too late: shown after the assertion
            assert ok and not any(r.passed for r in other)
            assert len(rows) == 0 or all(n == 1 for n in rows)
            assert len(kept) >= 0 and all(k for k in kept)
            assert all(r.passed for r in records if r.model == "oracle")  # records is shown, the filtered part not
            assert all(line for line in text.split())  # "".split() is []
    """)
    assert [int(f.split(":")[1]) for f in caught] == [3, 5, 6, 7, 8, 9], caught
    assert "in records) holds vacuously: records may be empty" in caught[0] and "in other)" in caught[1]
    assert "its filter may leave nothing of records" in caught[4]


def test_the_lint_accepts_each_way_of_showing_the_collection_non_empty() -> None:
    accepted = {
        "assert": "assert records\nassert all(r.passed for r in records)",
        "and": "assert records and all(r.passed for r in records)",
        "len": "assert len(records) == 2\nassert not any(r.failed for r in records)",
        "len at least": "assert len(records) >= 1 and all(r.passed for r in records)",
        "len unknown": "assert len(records) == expected and all(r.passed for r in records)",
        "len of a set": "assert len({r.model for r in records}) == 2\nassert all(r.passed for r in records)",
        "unpack one": "[record] = records\nassert all(r.passed for r in records)",
        "unpack two": "a, b = records\nassert all(r.passed for r in records)",
        "literal": "assert records == ['a', 'b']\nassert all(r for r in records)",
        "sorted literal": "assert sorted(records) == ['a']\nassert all(r for r in records)",
        "comment": "assert all(r.passed for r in records)  # nonempty: the fixture makes three",
        "never empty": "assert all(d.ok for d in (a, b)) and not any(guard(i) for i in range(300))",
        "split": "assert not any(line.startswith('~') for line in text.split('\\n'))",
        "dict view": "assert len(before) == 2\nassert all(after[k] == v for k, v in before.items())",
        "filter, marked": "assert all(r.ok for r in rs if r.x)  # nonempty: the fixture makes an x",
        "nested": "assert len(ms) == 3\nassert all(s for m in ms for s in m.statements)",
    }
    for name, body in accepted.items():
        code = "def test_a():\n" + textwrap.indent(body, "    ") + "\n"
        assert lint(code) == [], name
    # the proof belongs to one function: another function's assertion shows nothing here
    assert len(_flags("""
        def test_a(records):
            assert records
        def test_b(records):
            assert all(r.passed for r in records)
    """)) == 1
