"""The default agent: a ReAct loop built with LangGraph.

    START -> model -> (tools -> model)* -> END

``model`` calls the served model (native tool calls, or the text protocol for
models without reliable tool calling); ``tools`` runs what it asked for in the
sandbox. The loop ends when the model calls ``done`` (or answers without
acting), or a budget runs out (steps, total tokens, wall time), which is the
``agent_limit`` outcome; the verifier runs on what exists either way.

A task may ship ``graph.py`` defining ``build_graph(model, ctx, runtime)`` with
the same signature as ``build_graph`` here; it must return a compiled graph
over ``AgentState`` and record what it does through ``runtime``.
"""

from __future__ import annotations

import importlib.util
import re
import time
from typing import Any, Literal

from agenteval.agent.prompts import NATIVE_SYSTEM, TEXT_SYSTEM
from agenteval.agent.state import AgentRuntime, AgentState
from agenteval.agent.single_shot import extract_files
from agenteval.agent.tools import TOOLS, run_tool
from agenteval.errors import TaskError
from agenteval.models.base import AgentContext, AgentOutcome
from agenteval.models.chat import ChatResponse, ModelCallError

MAX_TOKENS_PER_CALL = 8192
_BASH_BLOCK = re.compile(r"^```(?:bash|sh|shell)[ \t]*\n(?P<body>.*?)\n```[ \t]*$", re.MULTILINE | re.DOTALL)
_DONE = re.compile(r"^\s*DONE\s*$", re.MULTILINE)


def parse_text_actions(answer: str) -> list[dict[str, Any]]:
    """Tool calls from the text protocol: bash blocks, file blocks, a DONE line; in order of kind."""
    actions: list[dict[str, Any]] = []
    files, refused = extract_files(answer)
    for path, entry in files.items():
        actions.append({"name": "write_file",
                        "arguments": {"path": path, "content": entry.content.decode("utf-8")}})
    for path in refused:
        actions.append({"name": "write_file", "arguments": {"path": path, "content": ""}})
    for m in _BASH_BLOCK.finditer(answer):
        actions.append({"name": "bash", "arguments": {"command": m["body"]}})
    if _DONE.search(answer):
        actions.append({"name": "done", "arguments": {}})
    for i, a in enumerate(actions):
        a["id"] = f"text_{i}"
    return actions


def build_graph(model: Any, ctx: AgentContext, runtime: AgentRuntime) -> Any:
    from langgraph.graph import END, START, StateGraph

    budget = ctx.budget
    auto_protocol = getattr(getattr(model, "cfg", None), "tools", "auto") == "auto"

    def call_model(state: AgentState) -> dict[str, Any]:
        if ctx.cancel.is_set():
            return {"stop": "infra_error: run interrupted"}
        if state["steps"] >= budget.max_steps:
            return {"stop": f"limit: {budget.max_steps} steps"}
        if state["tokens"] >= budget.max_total_tokens:
            return {"stop": f"limit: {budget.max_total_tokens} tokens"}
        if runtime.remaining() <= 0:
            return {"stop": f"limit: {budget.timeout_sec:g} s"}
        try:
            resp = _chat(model, state["messages"], runtime, budget.max_total_tokens - state["tokens"])
        except ModelCallError as e:
            runtime.calls.append(e.call)
            if runtime.protocol == "native" and auto_protocol and _rejects_tools(e):
                runtime.protocol = "text"  # the server refuses tools: fall back, same step
                return {"messages": [{"role": "system", "content": TEXT_SYSTEM}], "pending": []}
            return {"stop": f"{'infra' if e.kind == 'infra' else 'model'}_error: {e}"}
        runtime.calls.append(resp.call)
        used = (resp.call.prompt_tokens or 0) + (resp.call.completion_tokens or 0)
        message: dict[str, Any] = {"role": "assistant", "content": resp.content}  # reasoning never goes back
        if runtime.protocol == "native":
            pending = [{"id": t.id, "name": t.name, "arguments": t.arguments} for t in resp.tool_calls]
            if pending:
                message["tool_calls"] = [{"id": t.id, "type": "function",
                                          "function": {"name": t.name, "arguments": t.arguments}}
                                         for t in resp.tool_calls]
        else:
            pending = parse_text_actions(resp.content)
        # what the answer made happen, for either protocol (the report lists files written from it)
        runtime.transcript.append({"role": "assistant", "content": resp.content, "reasoning": resp.reasoning,
                                   "tool_calls": [dict(p) for p in pending]})
        update: dict[str, Any] = {"messages": [message], "pending": pending, "steps": state["steps"] + 1,
                                  "tokens": state["tokens"] + used}
        if not pending:
            update["stop"] = "length: answer cut at the token cap" if resp.finish_reason == "length" else "done"
        return update

    def run_tools(state: AgentState) -> dict[str, Any]:
        results: list[str] = []
        messages: list[dict[str, Any]] = []
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
                stop = "done"
                break
        if results:
            messages.append({"role": "user", "content": "Results:\n" + "\n\n".join(results)})
        return {"messages": messages, "pending": [], "stop": stop}

    def after_model(state: AgentState) -> Literal["tools", "end"]:
        if state["stop"]:
            return "end"
        return "tools" if state["pending"] else "model_again"  # type: ignore[return-value]

    def after_tools(state: AgentState) -> Literal["model", "end"]:
        return "end" if state["stop"] else "model"

    graph = StateGraph(AgentState)
    graph.add_node("model", call_model)
    graph.add_node("tools", run_tools)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", after_model, {"tools": "tools", "end": END, "model_again": "model"})
    graph.add_conditional_edges("tools", after_tools, {"model": "model", "end": END})
    return graph.compile()


def _chat(model: Any, messages: list[dict[str, Any]], runtime: AgentRuntime, tokens_left: int) -> ChatResponse:
    tools = TOOLS if runtime.protocol == "native" else None
    resp: ChatResponse = model.chat(messages, tools=tools, max_tokens=max(16, min(MAX_TOKENS_PER_CALL, tokens_left)),
                                    timeout_s=max(1.0, runtime.remaining()))
    return resp


def _rejects_tools(e: ModelCallError) -> bool:
    text = str(e).lower()
    return e.kind == "infra" and "tool" in text and any(code in text for code in ("400", "422", "501"))


def load_task_graph(ctx: AgentContext) -> Any | None:
    """A task's own ``graph.py`` factory, if it ships one."""
    path = ctx.task.path / "graph.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"agenteval_task_graph_{ctx.task.name}", path)
    if spec is None or spec.loader is None:
        raise TaskError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory = getattr(module, "build_graph", None)
    if not callable(factory):
        raise TaskError(f"{path}: defines no build_graph(model, ctx, runtime)")
    return factory


def run_graph(model: Any, ctx: AgentContext) -> AgentOutcome:
    cfg_tools = getattr(getattr(model, "cfg", None), "tools", "auto")
    runtime = AgentRuntime(protocol="text" if cfg_tools == "text" else "native",
                           deadline=time.monotonic() + ctx.budget.timeout_sec)
    system = TEXT_SYSTEM if runtime.protocol == "text" else NATIVE_SYSTEM
    first = [{"role": "system", "content": system}, {"role": "user", "content": ctx.instruction}]
    runtime.transcript.extend(first)
    factory = load_task_graph(ctx) or build_graph
    graph = factory(model, ctx, runtime)
    state = graph.invoke({"messages": first, "pending": [], "steps": 0, "tokens": 0, "stop": None},
                         {"recursion_limit": 2 * ctx.budget.max_steps + 10})
    stop = state.get("stop") or "done"
    status = ("limit" if stop.startswith(("limit", "length")) else
              "model_error" if stop.startswith("model_error") else
              "infra_error" if stop.startswith("infra_error") else "done")
    return AgentOutcome(status, stop, model_calls=runtime.calls, transcript=runtime.transcript,
                        details={"steps": state.get("steps", 0), "tokens": state.get("tokens", 0),
                                 "protocol": runtime.protocol})
