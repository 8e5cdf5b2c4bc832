"""Reading a task folder into a ``Task``.

Two formats are read into one ``TaskSpec``: agenteval's own (below, strict)
and Harbor's (Terminal-Bench 2), recognised by its task.toml and mapped in
``agenteval.task.harbor``.

The contract (a task is a folder)::

    tasks/<name>/
      task.toml        keys declared in agenteval.task.spec.TaskSpec
      instruction.md   the prompt; a Jinja2 template (undefined variables are errors)
      environment/     optional: copied into /workspace before the agent starts
      tests/           the verifier: copied in only after the agent is done
      solution/        reference solution for the `oracle` model (solve.sh and files)
      graph.py         optional: a custom agent graph factory

Everything that can be checked without Docker is checked here, at load time,
so a broken task fails before any trial starts.
"""

from __future__ import annotations

import difflib
import hashlib
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel, ValidationError

from agenteval.errors import TaskError
from agenteval.task.files import task_file
from agenteval.task.spec import TaskSpec, VariantSpec

@dataclass(frozen=True)
class Task:
    """A loaded, validated task folder."""

    path: Path
    spec: TaskSpec
    instruction_template: str
    content_hash: str
    ignored_keys: tuple[str, ...] = ()  # keys of a Harbor task.toml that agenteval does not use
    internet_withheld: bool = False  # the task allows the network and this run did not grant it

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tests_dir(self) -> Path:
        return self.path / "tests"

    @property
    def solution_dir(self) -> Path:
        return self.path / "solution"

    @property
    def environment_dir(self) -> Path:
        return self.path / "environment"

    def variants(self, only: list[str] | None = None) -> list[VariantSpec]:
        """The variants to run: all, or those ``only`` names. ``TASK/ID`` names a variant of one task only
        (``--variant folder/one-file --variant flappy/classic``); a task no entry names runs all its variants."""
        variants = self.spec.effective_variants()
        mine = [v.split("/", 1)[1] for v in only or [] if v.split("/", 1)[0] == self.name and "/" in v]
        only = mine + [v for v in only or [] if "/" not in v]
        if not only:
            return variants
        known = {v.id for v in variants}
        unknown = [v for v in only if v not in known]
        if unknown:
            raise TaskError(f"{self.path}: no variant {unknown[0]!r} (variants: {', '.join(sorted(known))})")
        return [v for v in variants if v.id in only]

    def environment_dirs(self, variant: VariantSpec) -> list[Path]:
        """What is copied into /workspace before the agent starts, in order (never the image's build context)."""
        copy_env = self.environment_dir.is_dir() and self.spec.sandbox.build != self.environment_dir.name
        dirs = [self.environment_dir] if copy_env else []
        return dirs + ([self.path / variant.environment] if variant.environment else [])

    def render_instruction(self, variant: VariantSpec) -> str:
        if self.spec.instruction == "plain":
            return self.instruction_template
        return render_template(self.path / "instruction.md", self.instruction_template, self._context(variant))

    def _context(self, variant: VariantSpec) -> dict[str, Any]:
        return {**variant.params, "params": variant.params, "variant": variant.id,
                "task": {"name": self.spec.name, "description": self.spec.description}}


def render_template(path: Path, source: str, context: dict[str, Any]) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    try:
        return env.from_string(source).render(**context)
    except jinja2.TemplateError as e:
        line = f" line {e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) else ""
        raise TaskError(f"{path}{line}: {e.message or e}") from None


def load_task(path: str | Path) -> Task:
    """Load and validate one task folder; raise TaskError naming file and key."""
    root = Path(path)
    if not root.is_dir():
        raise TaskError(f"{root}: no such task folder")
    toml_path = root / "task.toml"
    if not toml_path.is_file():
        raise TaskError(f"{toml_path}: missing (every task folder needs a task.toml)")
    try:
        raw = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TaskError(f"{toml_path}: not valid TOML: {e}") from None
    from agenteval.task import harbor

    if harbor.is_harbor_toml(raw, root):
        return harbor.load_harbor_task(root, raw)
    raw.setdefault("name", root.resolve().name)
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as e:
        raise TaskError(f"{toml_path}: {describe_validation_error(e, TaskSpec)}") from None

    instruction_path = root / "instruction.md"
    if not instruction_path.is_file():
        raise TaskError(f"{instruction_path}: missing (the prompt the agent gets)")
    if not (root / "tests").is_dir():
        raise TaskError(f"{root / 'tests'}: missing (the hidden verifier)")
    task = Task(path=root, spec=spec, instruction_template=instruction_path.read_text(encoding="utf-8"),
                content_hash=hash_tree(root))
    for variant in task.variants():
        task.render_instruction(variant)
        if variant.environment:
            env_dir = (root / variant.environment).resolve()
            if not env_dir.is_dir() or not env_dir.is_relative_to(root.resolve()):
                raise TaskError(f"{toml_path}: variant {variant.id!r}: environment {variant.environment!r} "
                                "is not a folder inside the task")
    return task


def expand_task_paths(paths: list[str]) -> list[str]:
    """Task folders as given; a folder without task.toml but with task folders inside stands for those."""
    out: list[str] = []
    for p in paths:
        root = Path(p)
        inner = sorted(str(d.parent) for d in root.glob("*/task.toml")) if root.is_dir() else []
        out.extend(inner if inner and not (root / "task.toml").exists() else [p])
    return out


def describe_validation_error(error: ValidationError, model: type[BaseModel]) -> str:
    """First problem of a pydantic error as one line: the key and what is wrong with it."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        allowed = _allowed_keys(model, first["loc"][:-1])
        hint = difflib.get_close_matches(key, allowed, n=1)
        more = f"; did you mean {hint[0]!r}?" if hint else f" (allowed: {', '.join(sorted(allowed))})"
        return f"unknown key {loc!r}{more}"
    if first["type"] == "missing":
        return f"missing key {loc!r}"
    return f"key {loc!r}: {first['msg']}"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Keys allowed at ``loc``: walk models, list items and dict values down the path."""
    current: Any = model
    dict_key_pending = False
    for part in loc:
        if isinstance(part, int) or dict_key_pending:
            dict_key_pending = False
            continue
        field = current.model_fields.get(part) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            return []
        ann = field.annotation
        args = typing.get_args(ann)
        dict_key_pending = typing.get_origin(ann) is dict
        current = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(current.model_fields) if current else []


def hash_tree(root: Path) -> str:
    """Content hash of a folder, so records say exactly which task version ran."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not task_file(rel) or not p.is_file():
            continue
        h.update(str(rel).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]
