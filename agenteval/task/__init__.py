"""Task folders: the contract, the typed task.toml, the loader (agenteval's format and Harbor's)."""

from agenteval.task.folder import Task
from agenteval.task.loader import expand_task_paths, load_task
from agenteval.task.spec import TaskSpec, VariantSpec, parse_size

__all__ = ["Task", "TaskSpec", "VariantSpec", "expand_task_paths", "load_task", "parse_size"]
