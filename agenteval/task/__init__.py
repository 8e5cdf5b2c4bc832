"""Task folders: the contract, the typed task.toml, the loader."""

from agenteval.task.loader import Task, load_task
from agenteval.task.spec import TaskSpec, VariantSpec, parse_size

__all__ = ["Task", "TaskSpec", "VariantSpec", "load_task", "parse_size"]
