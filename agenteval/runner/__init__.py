"""Driving trials: the matrix, the executor, the record of each trial, and the models a run names."""

from agenteval.runner.options import RunOptions
from agenteval.runner.run import RunResult, after_run, execute_run
from agenteval.runner.trial import TrialSpec, run_trial

__all__ = ["RunOptions", "RunResult", "TrialSpec", "after_run", "execute_run", "run_trial"]
