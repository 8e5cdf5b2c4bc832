"""The agent phase: composes a model with a task inside a sandbox.

- ``DirectSolver`` models (oracle, nop) act on the sandbox themselves.
- Tasks with ``mode = "single-shot"`` get one answer; the files in it are written.
- Otherwise a LangGraph ReAct graph (``graph.py``) drives the model with tools
  (bash, write_file, read_file, done) until it is done or a budget runs out. A
  task may ship its own ``graph.py`` with ``build_graph(model, ctx)``.
"""

from __future__ import annotations

from typing import Any

from agenteval.models.base import AgentContext, AgentOutcome, DirectSolver


def run_agent(model: Any, ctx: AgentContext) -> AgentOutcome:
    if isinstance(model, DirectSolver):
        return model.solve(ctx)
    if ctx.task.spec.mode == "single-shot":
        from agenteval.agent.single_shot import single_shot

        return single_shot(model, ctx)
    from agenteval.agent.graph import run_graph

    return run_graph(model, ctx)
