"""Which tool protocol a trial starts with.

``tools = "native"`` and ``tools = "text"`` are taken as given. ``auto`` is
decided before the first call from what is known of the server: its own word
(``ChatModel.tool_support``: llama-server's /props, llama-cpp-python's "no"),
or an earlier trial of the same model whose request with tools was refused.
Unknown means native, with two ways out during the trial (``graph.py``): a
refusal of the request with tools, and an answer that acts with text blocks
and calls no tool.
"""

from __future__ import annotations

import threading
import weakref

from agenteval.models.base import ChatModel, ToolSupport
from agenteval.records import ToolProtocol

_refused: "weakref.WeakSet[ChatModel]" = weakref.WeakSet()
_lock = threading.Lock()


def starting_protocol(model: ChatModel) -> tuple[ToolProtocol, str]:
    """The protocol to start with (native or text) and why, for the transcript."""
    if model.tool_protocol is ToolProtocol.text:
        return ToolProtocol.text, "tools = 'text'"
    if model.tool_protocol is ToolProtocol.native:
        return ToolProtocol.native, "tools = 'native'"
    if _was_refused(model):
        return ToolProtocol.text, "the server refused a request with tools in an earlier trial"
    support = model.tool_support()
    if support is ToolSupport.no:
        return ToolProtocol.text, "the server does not honour native tool calls"
    if support is ToolSupport.yes:
        return ToolProtocol.native, "the server honours native tool calls"
    return ToolProtocol.native, "unknown whether the server honours tools: native until it shows otherwise"


def _was_refused(model: ChatModel) -> bool:
    try:
        with _lock:
            return model in _refused
    except TypeError:  # an unhashable model class is never remembered
        return False


def remember_refusal(model: ChatModel) -> None:
    """The model's server refused tools: later trials of it start with the text protocol."""
    try:
        with _lock:
            _refused.add(model)
    except TypeError:  # an unhashable model class: every trial finds out again
        pass
