"""One exception tree for everything a user can get wrong or an environment can lack.

Library code raises these with a message that says what to do; only the CLI
turns them into exit codes (``exit_code``).
"""

from __future__ import annotations


class AgentEvalError(Exception):
    """Base of every error agenteval reports to a user as one clean line."""

    exit_code = 1


class BadInputError(AgentEvalError):
    """The user's input is wrong: a path, a name, a key. Exit code 2."""

    exit_code = 2


class TaskError(BadInputError):
    """A task folder breaks the contract (missing file, bad task.toml key)."""


class ModelSpecError(BadInputError):
    """A ``--model`` value names no known provider or is malformed."""


class EngineUnavailableError(BadInputError):
    """No Docker engine answers. Exit code 2: the run cannot start at all."""


class SandboxError(AgentEvalError):
    """The sandbox failed underneath a trial (container died, exec failed)."""


class SandboxStartError(SandboxError):
    """A sandbox could not be created or started (image missing, engine refused)."""


class SandboxClosedError(SandboxError):
    """The sandbox is closed, or its container went away while it was used (Ctrl-C, engine)."""


class SandboxFileError(SandboxError):
    """A file cannot be read back or written as asked (too large, not a regular file, outside the
    writable mounts); the sandbox itself still works, so a tool reports it to the model."""


class ImageBuildError(AgentEvalError):
    """A sandbox image could not be built or its base could not be obtained."""


class StoreError(AgentEvalError):
    """The DuckDB store cannot be opened or written."""


class ClusterError(BadInputError):
    """A distributed executor cannot run the trials: no cluster answers at the address,
    no node declares a Docker engine, a node lacks the sandbox images. Exit code 2."""


class ReportError(AgentEvalError):
    """A report or export could not be written."""


class UnknownRecordError(StoreError, BadInputError):
    """A run id or model named on the command line is not in the store. Exit code 2."""


class InterruptedRunError(AgentEvalError):
    """Ctrl-C or SIGTERM stopped work before a run's trials began; what was recorded is kept
    and the message says how to resume. Exit code 130."""

    exit_code = 130


class ServerStartError(AgentEvalError):
    """A model server agenteval started died or never answered; the message carries its log's last lines."""


class RunFailedError(AgentEvalError):
    """An error stopped a run after it was recorded: the run is marked ``failed`` with the error,
    its servers and sandboxes are gone, and the message names the file holding the traceback and
    the command that resumes it. Exit code 1."""

    def __init__(self, message: str, run_id: str, traceback_path: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.traceback_path = traceback_path
