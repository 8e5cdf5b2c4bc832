"""A loaded task folder (``Task``) and what both of its loaders share: the folder's content
hash and the instruction's rendering. agenteval's own format is read in ``native``, Harbor's in
``harbor``; ``loader`` tells them apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

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


def hash_tree(root: Path) -> str:
    """Content hash of a folder, so records say exactly which task version ran."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not task_file(rel) or not p.is_file():
            continue
        h.update(str(rel).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]
