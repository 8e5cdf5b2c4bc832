"""Driving trials: the matrix, the executor, the record of each trial."""

from agenteval.runner.run import RunOptions, RunResult, execute_run
from agenteval.runner.trial import TrialSpec, run_trial

__all__ = ["RunOptions", "RunResult", "TrialSpec", "execute_run", "run_trial"]
