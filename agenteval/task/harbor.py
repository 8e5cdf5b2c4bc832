"""Harbor task folders (Terminal-Bench 2.0 and the benchmarks adapted to Harbor), read as they are.

The contract (harbor-framework/harbor-docs, content/docs/tasks/index.mdx)::

    <task>/
      task.toml        version (or schema_version), [metadata], [task], [agent], [verifier], [environment], [solution]
      instruction.md   the prompt, plain Markdown: used as written, never rendered as a template
      environment/     Dockerfile and its build context (docker-compose.yaml is refused: one container per trial)
      solution/        solve.sh, the oracle: copied to /solution, run from the workdir
      tests/           test.sh: copied to /tests after the agent, run from the workdir; writes
                       /logs/verifier/reward.txt (a number) or reward.json (a dict of numbers)

A task.toml is Harbor's when it has ``version`` or ``schema_version`` (Harbor requires one; agenteval's
format has neither), or Harbor's sections with a tests/test.sh beside it. Its keys map onto ``TaskSpec``
here and nowhere else; keys agenteval does not use are kept in ``Task.ignored_keys`` for one warning.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agenteval.errors import TaskError
from agenteval.settings import describe_validation_error
from agenteval.task.folder import Task, hash_tree
from agenteval.task.spec import AgentSpec, SandboxSpec, TaskSpec, VerifierSpec

TEST_SCRIPT = "tests/test.sh"
COMPOSE_FILES = ("docker-compose.yaml", "docker-compose.yml", "compose.yaml", "compose.yml")
_HARBOR_ONLY = ("metadata", "task", "environment", "solution", "source", "artifacts")
# Keys agenteval reads; every other key with a value that is not empty (gpus = 0 is) is named in a warning.
USED_KEYS = frozenset({
    "version", "schema_version", "source", "metadata", "task.name", "task.description", "task.keywords",
    "task.authors", "agent.timeout_sec", "verifier.timeout_sec", "verifier.env", "environment.build_timeout_sec",
    "environment.docker_image", "environment.cpus", "environment.memory_mb", "environment.storage_mb",
    "environment.memory", "environment.storage", "environment.allow_internet", "environment.network_mode",
    "environment.workdir", "environment.env",
})
_SECTIONS = ("task", "agent", "verifier", "environment", "solution")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore")


class HarborPackage(_Section):
    """[task]: the package's registry entry."""

    name: str | None = None
    description: str = ""
    keywords: list[str] = Field(default_factory=list)


class HarborAgent(_Section):
    timeout_sec: float | None = Field(default=None, gt=0)


class HarborVerifier(_Section):
    timeout_sec: float = Field(default=600.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict)


class HarborEnvironment(_Section):
    build_timeout_sec: float = Field(default=600.0, gt=0)
    docker_image: str | None = None
    cpus: float = Field(default=1, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)
    storage_mb: int | None = Field(default=None, gt=0)
    memory: str | None = Field(default=None, description="Deprecated in Harbor: '4G' for memory_mb.")
    storage: str | None = Field(default=None, description="Deprecated in Harbor: '10G' for storage_mb.")
    allow_internet: bool = True
    network_mode: str | None = None
    workdir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class HarborConfig(_Section):
    """The parts of Harbor's task.toml that agenteval reads."""

    metadata: dict[str, Any] = Field(default_factory=dict)
    task: HarborPackage = Field(default_factory=HarborPackage)
    agent: HarborAgent = Field(default_factory=HarborAgent)
    verifier: HarborVerifier = Field(default_factory=HarborVerifier)
    environment: HarborEnvironment = Field(default_factory=HarborEnvironment)


def is_harbor_toml(raw: dict[str, Any], root: Path) -> bool:
    if "version" in raw or "schema_version" in raw:
        return True
    return any(k in raw for k in _HARBOR_ONLY) and (root / TEST_SCRIPT).is_file()


def ignored_keys(raw: dict[str, Any]) -> tuple[str, ...]:
    """Keys of a Harbor task.toml that agenteval does not use and that say something (not empty, not 0)."""
    found: list[str] = []
    for key, value in raw.items():
        if key in _SECTIONS and isinstance(value, dict):
            found += [f"{key}.{k}" for k, v in value.items() if f"{key}.{k}" not in USED_KEYS and _says(v)]
        elif key not in USED_KEYS and _says(value):
            found.append(key)
    network = (raw.get("environment") or {}).get("network_mode")
    if network not in (None, "public", "no-network"):
        found.append("environment.network_mode")
    return tuple(sorted(found))


def _says(value: Any) -> bool:
    return value not in (None, "", 0, False, [], {})


def load_harbor_task(root: Path, raw: dict[str, Any]) -> Task:
    """A Harbor task folder as a ``Task``; TaskError names the file and key of the first problem."""
    toml_path = root / "task.toml"
    try:
        cfg = HarborConfig.model_validate(raw)
    except ValidationError as e:
        raise TaskError(f"{toml_path}: {describe_validation_error(e, HarborConfig)}") from None
    for needed, why in (("instruction.md", "the prompt the agent gets"), (TEST_SCRIPT, "Harbor's verifier")):
        if not (root / needed).is_file():
            raise TaskError(f"{root / needed}: missing ({why})")
    env_dir = root / "environment"
    compose = [f for f in COMPOSE_FILES if (env_dir / f).is_file()]
    if compose:
        raise TaskError(f"{env_dir / compose[0]}: docker-compose environments are not supported: agenteval runs "
                        "each trial in one hardened container (give the task a Dockerfile instead)")
    env = cfg.environment
    dockerfile = (env_dir / "Dockerfile").is_file()
    if not dockerfile and not env.docker_image:
        raise TaskError(f"{env_dir / 'Dockerfile'}: missing, and task.toml names no [environment] docker_image")
    try:
        spec = TaskSpec(
            name=root.resolve().name, description=cfg.task.description, instruction="plain",
            tags=list(dict.fromkeys(str(t) for t in [*_list(cfg.metadata.get("tags")), *cfg.task.keywords])),
            sandbox=SandboxSpec(
                image=_tagged(env.docker_image) if env.docker_image else None,
                build="environment" if dockerfile else None, build_timeout_sec=env.build_timeout_sec,
                memory=f"{_mb(env.memory_mb, env.memory, 2048)}m", cpus=env.cpus, pids=1024,
                workspace_size=f"{_mb(env.storage_mb, env.storage, 10240)}m",
                tmp_size=f"{_mb(env.storage_mb, env.storage, 10240)}m", output_limit="1m",
                workdir=env.workdir, layout="harbor",
                internet=env.allow_internet and env.network_mode != "no-network",
                env=_resolve(env.env, toml_path, "environment.env")),
            agent=AgentSpec(timeout_sec=cfg.agent.timeout_sec or 600.0),
            verifier=VerifierSpec(protocol="reward", command="bash /tests/test.sh", timeout_sec=cfg.verifier.timeout_sec,
                                  env=_resolve(cfg.verifier.env, toml_path, "verifier.env")),
        )
    except ValidationError as e:
        raise TaskError(f"{toml_path}: a value agenteval cannot use: {describe_validation_error(e, TaskSpec)}") from None
    except ValueError as e:
        raise TaskError(f"{toml_path}: {e}") from None
    return Task(path=root, spec=spec, instruction_template=(root / "instruction.md").read_text(encoding="utf-8"),
                content_hash=hash_tree(root), ignored_keys=ignored_keys(raw))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _tagged(image: str) -> str:
    """An image reference with its tag (``ubuntu`` is ``ubuntu:latest``), as agenteval tells tags from names."""
    return image if "@" in image or ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"


def _mb(value: int | None, legacy: str | None, default: int) -> int:
    """Megabytes from memory_mb/storage_mb, or from Harbor's deprecated '4G' / '512M' strings."""
    if value is not None:
        return value
    if not legacy:
        return default
    text = legacy.strip().upper()
    units = {"G": 1024.0, "M": 1.0, "K": 1 / 1024}
    if text[-1:] not in units:
        raise ValueError(f"not a size: {legacy!r} (write e.g. '4G' or '512M')")
    return max(1, int(float(text[:-1]) * units[text[-1]]))


def _resolve(env: dict[str, str], toml_path: Path, where: str) -> dict[str, str]:
    """Harbor's ${VAR} and ${VAR:-default} in env values, from this process's environment."""

    def value(m: re.Match[str]) -> str:
        if m.group(1) in os.environ:
            return os.environ[m.group(1)]
        if m.group(2) is not None:
            return m.group(2)
        raise TaskError(f"{toml_path}: {where} needs ${{{m.group(1)}}}, which is not set here")

    return {k: _VAR.sub(value, v) for k, v in env.items()}
