"""The default agent: a ReAct loop built with LangGraph.

    START -> model -> (tools -> model)* -> END

``model`` calls the served model (native tool calls, or the text protocol for
models without reliable tool calling); ``tools`` runs what it asked for in the
sandbox. The loop ends when the model calls ``done`` (or answers without
acting), or a budget runs out (steps, total tokens, wall time), which is the
``agent_limit`` outcome; the verifier runs on what exists either way. A model
whose ``tool_protocol`` is ``auto`` starts with native tool calls and switches
to the text protocol, in the same step, when its server refuses tools.

A task may ship ``graph.py`` defining ``build_graph(model, ctx, runtime)`` with
the same signature as ``build_graph`` here; it must return a compiled graph
over ``AgentState``, end by setting ``stop`` to a ``Stop``, and record what it
does through ``runtime``.
"""

from __future__ import annotations

import importlib.util
import re
import time
from typing import TYPE_CHECKING, Callable, Literal, cast

from agenteval.agent.prompts import NATIVE_SYSTEM, TEXT_SYSTEM
from agenteval.agent.single_shot import extract_files
from agenteval.agent.state import AgentRuntime, AgentState, AgentUpdate, PendingCall, Stop
from agenteval.agent.tools import TOOLS, run_tool
from agenteval.errors import TaskError
from agenteval.models.base import AgentContext, AgentOutcome, ChatModel
from agenteval.models.chat import ChatResponse, ErrorKind, Failure, Message, ModelCallError
from agenteval.records import StopReason, ToolProtocol

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    AgentGraph = CompiledStateGraph[AgentState, None, AgentState, AgentState]
    GraphFactory = Callable[[ChatModel, AgentContext, AgentRuntime], AgentGraph]

MAX_TOKENS_PER_CALL = 8192
_BASH_BLOCK = re.compile(r"^```(?:bash|sh|shell)[ \t]*\n(?P<body>.*?)\n```[ \t]*$", re.MULTILINE | re.DOTALL)
_DONE = re.compile(r"^\s*DONE\s*$", re.MULTILINE)


def parse_text_actions(answer: str) -> list[PendingCall]:
    """Tool calls from the text protocol: bash blocks, file blocks, a DONE line; in order of kind."""
    actions: list[tuple[str, dict[str, object]]] = []
    files, refused = extract_files(answer)
    for path, entry in files.items():
        actions.append(("write_file", {"path": path, "content": entry.content.decode("utf-8")}))
    for path in refused:
        actions.append(("write_file", {"path": path, "content": ""}))
    for m in _BASH_BLOCK.finditer(answer):
        actions.append(("bash", {"command": m["body"]}))
    if _DONE.search(answer):
        actions.append(("done", {}))
    return [PendingCall(id=f"text_{i}", name=name, arguments=args) for i, (name, args) in enumerate(actions)]


def build_graph(model: ChatModel, ctx: AgentContext, runtime: AgentRuntime) -> "AgentGraph":
    from langgraph.graph import END, START, StateGraph

    budget = ctx.budget
    may_fall_back = model.tool_protocol is ToolProtocol.auto

    def call_model(state: AgentState) -> AgentUpdate:
        if ctx.cancel.is_set():
            return {"stop": Stop(StopReason.interrupted, "infra_error: run interrupted")}
        if state["steps"] >= budget.max_steps:
            return {"stop": Stop(StopReason.step_limit, f"limit: {budget.max_steps} steps")}
        if state["tokens"] >= budget.max_total_tokens:
            return {"stop": Stop(StopReason.token_limit, f"limit: {budget.max_total_tokens} tokens")}
        if runtime.remaining() <= 0:
            return {"stop": Stop(StopReason.time_limit, f"limit: {budget.timeout_sec:g} s")}
        try:
            resp = _chat(model, state["messages"], runtime, budget.max_total_tokens - state["tokens"])
        except ModelCallError as e:
            runtime.calls.append(e.call)
            if runtime.protocol == "native" and may_fall_back and e.failure is Failure.tools_rejected:
                runtime.protocol = "text"  # the server refuses tools: fall back, same step
                return {"messages": [{"role": "system", "content": TEXT_SYSTEM}], "pending": []}
            reason = StopReason.infra_error if e.kind is ErrorKind.infra else StopReason.model_error
            return {"stop": Stop(reason, f"{reason.value}: {e}")}
        runtime.calls.append(resp.call)
        used = (resp.call.prompt_tokens or 0) + (resp.call.completion_tokens or 0)
        message: Message = {"role": "assistant", "content": resp.content}  # reasoning never goes back
        if runtime.protocol == "native":
            pending = [PendingCall(id=t.id, name=t.name, arguments=t.arguments) for t in resp.tool_calls]
            if pending:
                message["tool_calls"] = [{"id": t.id, "type": "function",
                                          "function": {"name": t.name, "arguments": t.arguments}}
                                         for t in resp.tool_calls]
        else:
            pending = parse_text_actions(resp.content)
        # what the answer made happen, for either protocol (the report lists files written from it)
        runtime.transcript.append({"role": "assistant", "content": resp.content, "reasoning": resp.reasoning,
                                   "tool_calls": [dict(p) for p in pending]})
        update: AgentUpdate = {"messages": [message], "pending": pending, "steps": state["steps"] + 1,
                               "tokens": state["tokens"] + used}
        if not pending:
            update["stop"] = (Stop(StopReason.answer_cut, "length: answer cut at the token cap")
                              if resp.finish_reason == "length" else Stop(StopReason.done))
        return update

    def run_tools(state: AgentState) -> AgentUpdate:
        results: list[str] = []
        messages: list[Message] = []
        stop = None
        for call in state["pending"]:
            timeout = min(ctx.task.spec.sandbox.exec_timeout_sec, max(1.0, runtime.remaining()))
            result = run_tool(ctx.sandbox, call["name"], call["arguments"], timeout)
            runtime.transcript.append({"role": "tool", "name": call["name"], "content": result.content})
            if runtime.protocol == "native":
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result.content})
            else:
                results.append(f"[{call['name']}] {result.content}")
            if result.done:
                stop = Stop(StopReason.done)
                break
        if results:
            messages.append({"role": "user", "content": "Results:\n" + "\n\n".join(results)})
        return {"messages": messages, "pending": [], "stop": stop}

    def after_model(state: AgentState) -> Literal["tools", "model", "end"]:
        if state["stop"]:
            return "end"
        if state["pending"]:
            return "tools"
        if runtime.protocol == "text":
            return "model"  # fell back to the text protocol: the same step again
        raise RuntimeError("the model node left no stop, no tool calls and no protocol change")

    def after_tools(state: AgentState) -> Literal["model", "end"]:
        return "end" if state["stop"] else "model"

    graph = StateGraph(AgentState)
    graph.add_node("model", call_model)
    graph.add_node("tools", run_tools)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", after_model, {"tools": "tools", "model": "model", "end": END})
    graph.add_conditional_edges("tools", after_tools, {"model": "model", "end": END})
    return graph.compile()


def _chat(model: ChatModel, messages: list[Message], runtime: AgentRuntime, tokens_left: int) -> ChatResponse:
    tools = TOOLS if runtime.protocol == "native" else None
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
    runtime = AgentRuntime(protocol="text" if model.tool_protocol is ToolProtocol.text else "native",
                           deadline=time.monotonic() + ctx.budget.timeout_sec)
    system = TEXT_SYSTEM if runtime.protocol == "text" else NATIVE_SYSTEM
    first: list[Message] = [{"role": "system", "content": system}, {"role": "user", "content": ctx.instruction}]
    runtime.transcript.extend(first)
    factory = load_task_graph(ctx) or build_graph
    graph = factory(model, ctx, runtime)
    state = graph.invoke(AgentState(messages=first, pending=[], steps=0, tokens=0, stop=None),
                         {"recursion_limit": 2 * ctx.budget.max_steps + 10})
    stop = state.get("stop") or Stop(StopReason.done)
    if not isinstance(stop, Stop):
        raise TaskError(f"{ctx.task.path / 'graph.py'}: the graph's stop is {stop!r}, not an agenteval.agent.state.Stop")
    return AgentOutcome(stop.status, stop.message, model_calls=runtime.calls, transcript=runtime.transcript)
