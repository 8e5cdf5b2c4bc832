"""The default agent: a ReAct loop built with LangGraph.

    START -> model -> (tools -> model)* -> END

``model`` calls the served model (native tool calls, or the text protocol of
``text_protocol.py``); ``tools`` runs what it asked for in the sandbox. The
loop ends when the model calls ``done`` (or writes DONE), when it did nothing
in two answers in a row (the first gets one reminder), or when a budget runs out
(steps, total tokens, wall time: the ``agent_limit`` outcome); the verifier runs
on what exists either way.

The protocol is chosen before the first call (``protocol.py``). Under
``tools = "auto"`` a native trial switches to the text protocol for good, and
says so in the transcript, when the server refuses the request with tools (the
same step is asked again without them) or when an answer calls no tool but acts
with text blocks (those blocks run).

Nothing the model produced is lost: an answer cut by the time budget or the
repetition guard is kept in the transcript, its tokens counted, and ends the
trial as ``agent_limit``; what it asked for does not run (the time was spent;
a repeating answer is degenerate). An answer cut at the token cap runs its
complete tool calls and closed blocks.

A task may ship ``graph.py`` defining ``build_graph(model, ctx, runtime)`` with
the same signature as ``build_graph`` here; it must return a compiled graph
over ``AgentState``, end by setting ``stop`` to a ``Stop``, and record what it
does through ``runtime`` (tools through ``runtime.record_tool``).
"""

from __future__ import annotations

import importlib.util
import time
from typing import TYPE_CHECKING, Callable, Literal, cast

from agenteval.agent.prompts import reminder, system_prompt
from agenteval.agent.protocol import remember_refusal, starting_protocol
from agenteval.agent.solver import AgentContext, AgentOutcome
from agenteval.agent.state import AgentEvent, AgentRuntime, AgentState, AgentUpdate, PendingCall, Stop
from agenteval.agent.text_protocol import ignored_note, parse_text_actions, pending_calls
from agenteval.agent.tools import TOOLS, run_tool
from agenteval.errors import TaskError
from agenteval.models.base import ChatModel
from agenteval.models.chat import CallStop, ChatResponse, ErrorKind, Failure, Message, ModelCallError
from agenteval.records import StopReason, ToolProtocol

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    AgentGraph = CompiledStateGraph[AgentState, None, AgentState, AgentState]
    GraphFactory = Callable[[ChatModel, AgentContext, AgentRuntime], AgentGraph]

MAX_TOKENS_PER_CALL = 8192


def build_graph(model: ChatModel, ctx: AgentContext, runtime: AgentRuntime) -> "AgentGraph":
    from langgraph.graph import END, START, StateGraph

    budget = ctx.budget

    def call_model(state: AgentState) -> AgentUpdate:
        limit = _budget_stop(state, ctx, runtime)
        if limit:
            return {"stop": limit}
        try:
            resp = _chat(model, state["messages"], runtime, budget.max_total_tokens - state["tokens"])
        except ModelCallError as e:
            runtime.calls.append(e.call)
            if runtime.may_switch and e.failure is Failure.tools_rejected:
                remember_refusal(model)
                _switch(runtime, f"the server refused the request with tools (HTTP {e.status}): {e}")
                return {"pending": []}  # the same step again, without tools
            reason = StopReason.infra_error if e.kind is ErrorKind.infra else StopReason.model_error
            return {"stop": Stop(reason, f"{reason.value}: {e}")}
        runtime.calls.append(resp.call)
        return _answered(state, resp, runtime, budget.timeout_sec)

    def run_tools(state: AgentState) -> AgentUpdate:
        results: list[str] = []
        messages: list[Message] = []
        stop = None
        for call in state["pending"]:
            timeout = min(ctx.task.spec.sandbox.exec_timeout_sec, max(1.0, runtime.remaining()))
            result = run_tool(ctx.sandbox, call["name"], call["arguments"], timeout)
            runtime.record_tool(call["name"], result)
            if runtime.protocol is ToolProtocol.text:  # the protocol the pending calls came in
                results.append(f"[{call['name']}] {result.content}")
            else:
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result.content})
            if result.done:
                stop = Stop(StopReason.done)
                break
        if runtime.results_note:
            results.append(runtime.results_note)
            runtime.results_note = ""
        if results:
            messages.append({"role": "user", "content": "Results:\n" + "\n\n".join(results)})
        return {"messages": messages, "pending": [], "stop": stop}

    def after_model(state: AgentState) -> Literal["tools", "model", "end"]:
        if state["stop"]:
            return "end"
        if state["pending"]:
            return "tools"
        return "model"  # a reminder was sent, or the protocol fell back to text: ask again

    def after_tools(state: AgentState) -> Literal["model", "end"]:
        return "end" if state["stop"] else "model"

    graph = StateGraph(AgentState)
    graph.add_node("model", call_model)
    graph.add_node("tools", run_tools)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", after_model, {"tools": "tools", "model": "model", "end": END})
    graph.add_conditional_edges("tools", after_tools, {"model": "model", "end": END})
    return graph.compile()


def _budget_stop(state: AgentState, ctx: AgentContext, runtime: AgentRuntime) -> Stop | None:
    budget = ctx.budget
    if ctx.cancel.is_set():
        return Stop(StopReason.interrupted, "infra_error: run interrupted")
    if state["steps"] >= budget.max_steps:
        return Stop(StopReason.step_limit, f"limit: {budget.max_steps} steps")
    if state["tokens"] >= budget.max_total_tokens:
        return Stop(StopReason.token_limit, f"limit: {budget.max_total_tokens} tokens")
    if runtime.remaining() <= 0:
        return Stop(StopReason.time_limit, f"limit: {budget.timeout_sec:g} s")
    return None


def _switch(runtime: AgentRuntime, why: str) -> None:
    runtime.protocol, runtime.may_switch = ToolProtocol.text, False
    runtime.note(AgentEvent.protocol_switch, f"switched from native tool calls to the text protocol: {why}")
    runtime.transcript.append({"role": "system", "content": system_prompt(ToolProtocol.text)})


def _answered(state: AgentState, resp: ChatResponse, runtime: AgentRuntime, timeout_sec: float) -> AgentUpdate:
    """What one answer makes happen: tools to run, a protocol switch, a reminder, or the end."""
    message: Message = {"role": "assistant", "content": resp.content}  # reasoning never goes back
    pending: list[PendingCall] = []
    note = ""
    switch = False
    if runtime.protocol is ToolProtocol.native and resp.tool_calls:
        pending = [PendingCall(id=t.id, name=t.name, arguments=t.arguments) for t in resp.tool_calls]
        message["tool_calls"] = [{"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                                 for t in resp.tool_calls]
    elif runtime.protocol is ToolProtocol.text or runtime.may_switch:
        text = parse_text_actions(resp.content)
        note = ignored_note(text.ignored)
        switch = runtime.protocol is ToolProtocol.native and (text.acts or text.done)
        if runtime.protocol is ToolProtocol.text or switch:
            pending = pending_calls(text)
    entry: dict[str, object] = {"role": "assistant", "content": resp.content, "reasoning": resp.reasoning,
                                "tool_calls": [dict(p) for p in pending]}
    if resp.stop is not CallStop.complete:
        entry["stop"] = resp.stop.value
    runtime.transcript.append(entry)
    if switch:  # before the tools run: their results go back as text
        _switch(runtime, "the answer called no tool and acted with text blocks")
    used = (resp.call.prompt_tokens or 0) + (resp.call.completion_tokens or 0)
    update: AgentUpdate = {"messages": [message], "pending": pending, "steps": state["steps"] + 1,
                           "tokens": state["tokens"] + used}
    if resp.stop in (CallStop.budget, CallStop.repetition):
        not_run = f"; its {len(pending)} action(s) did not run" if pending else ""
        if pending:
            runtime.note(AgentEvent.not_run, f"the answer was cut ({resp.stop.value}): its actions did not run")
        update["pending"] = []
        update["stop"] = (Stop(StopReason.time_limit, f"limit: {timeout_sec:g} s, the answer was cut{not_run}")
                          if resp.stop is CallStop.budget else
                          Stop(StopReason.repetition, f"limit: the model kept repeating itself{not_run}"))
        return update
    if pending:
        runtime.results_note = note
        return update
    if resp.stop is CallStop.length or resp.finish_reason == "length":
        update["stop"] = Stop(StopReason.answer_cut, "length: answer cut at the token cap")
    elif runtime.reminded:
        update["stop"] = Stop(StopReason.done, "done: the model answered twice without acting")
    else:
        runtime.reminded = True
        nudge = reminder(runtime.protocol, may_switch=runtime.may_switch, ignored_note=note)
        runtime.note(AgentEvent.reminder, "the answer did nothing: one reminder")
        runtime.transcript.append({"role": "user", "content": nudge})
        update["messages"] = [message, {"role": "user", "content": nudge}]
    return update


def _chat(model: ChatModel, messages: list[Message], runtime: AgentRuntime, tokens_left: int) -> ChatResponse:
    """One call under the protocol in force: its system prompt replaces the first message."""
    if messages and messages[0].get("role") == "system":
        messages = [{"role": "system", "content": system_prompt(runtime.protocol, may_switch=runtime.may_switch)},
                    *messages[1:]]
    tools = TOOLS if runtime.protocol is ToolProtocol.native else None
    return model.chat(messages, tools=tools, max_tokens=max(16, min(MAX_TOKENS_PER_CALL, tokens_left)),
                      timeout_s=max(1.0, runtime.remaining()))


def load_task_graph(ctx: AgentContext) -> "GraphFactory | None":
    """A task's own ``graph.py`` factory, if it ships one."""
    path = ctx.task.path / "graph.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"agenteval_task_graph_{ctx.task.name}", path)
    if spec is None or spec.loader is None:
        raise TaskError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory: object = getattr(module, "build_graph", None)
    if not callable(factory):
        raise TaskError(f"{path}: defines no build_graph(model, ctx, runtime)")
    return cast("GraphFactory", factory)


def run_graph(model: ChatModel, ctx: AgentContext) -> AgentOutcome:
    protocol, why = starting_protocol(model)
    runtime = AgentRuntime(protocol=protocol, deadline=time.monotonic() + ctx.budget.timeout_sec,
                           may_switch=model.tool_protocol is ToolProtocol.auto and protocol is ToolProtocol.native)
    runtime.note(AgentEvent.protocol, f"{protocol.value}: {why}")
    first: list[Message] = [{"role": "system", "content": system_prompt(protocol, may_switch=runtime.may_switch)},
                            {"role": "user", "content": ctx.instruction}]
    runtime.transcript.extend(first)
    factory = load_task_graph(ctx) or build_graph
    graph = factory(model, ctx, runtime)
    state = graph.invoke(AgentState(messages=first, pending=[], steps=0, tokens=0, stop=None),
                         {"recursion_limit": 2 * ctx.budget.max_steps + 10})
    stop = state.get("stop") or Stop(StopReason.done)
    if not isinstance(stop, Stop):
        raise TaskError(f"{ctx.task.path / 'graph.py'}: the graph's stop is {stop!r}, not an agenteval.agent.state.Stop")
    steps = state.get("steps")
    return AgentOutcome(stop.status, stop.message, model_calls=runtime.calls, transcript=runtime.transcript,
                        stop=stop.reason, steps=steps if isinstance(steps, int) else 0,
                        tool_protocol=runtime.protocol, actions_run=runtime.actions_run)
