"""The agent phase: composes a model with a task inside a sandbox.

- A ``DirectSolver`` (``solver``: ``oracle``, ``nop``) acts on the sandbox itself.
- A ``ChatModel`` on a task with ``mode = "single-shot"`` answers once; the files
  in its answer are written.
- Otherwise a LangGraph ReAct graph (``graph.py``) drives the chat model with
  tools (bash, write_file, read_file, done: ``tools.py``), as native tool calls
  or as the fenced blocks of the text protocol (``text_protocol.py``; which one
  is decided in ``protocol.py``), until it is done or a budget runs out. A task
  may ship its own ``graph.py`` with ``build_graph(model, ctx, runtime)``.

Every chat-model trial's ``AgentOutcome`` says why it stopped, how many model
turns it took, the tool protocol it ended with and how many actions ran.
"""

from __future__ import annotations

from typing import assert_never

from agenteval.agent.solver import AgentContext, AgentModel, AgentOutcome, DirectSolver
from agenteval.models.base import ChatModel


def run_agent(model: AgentModel, ctx: AgentContext) -> AgentOutcome:
    if isinstance(model, DirectSolver):
        return model.solve(ctx)
    if isinstance(model, ChatModel):
        if ctx.task.spec.mode == "single-shot":
            from agenteval.agent.single_shot import single_shot

            return single_shot(model, ctx)
        from agenteval.agent.graph import run_graph

        return run_graph(model, ctx)
    assert_never(model)
