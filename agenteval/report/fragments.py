"""The long, repeated parts of the pages, written as HTML here rather than in
the templates: a trial's verifier checks, model calls, transcript and sandbox
commands, and the trial squares and outcomes of the task, pair and list pages.

A trial page shows some 300 values; through Jinja each costs a lookup, a
filter call and an escape, which made rendering most of the cost of a large
report. Here each row is one string join. The rule the templates follow
holds here too: every value that comes from a record goes through ``text``
(only numbers this module formats itself do not), so model output stays text.
The output is byte for byte what the templates wrote before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache

from markupsafe import Markup

from agenteval.report.rows import JSON, CallRow, CheckRow, ExecRow, TrialRow

MAX_TEXT = 40_000  # characters of one message or output shown on a trial page
_ROLES = {"system", "user", "assistant", "tool", "agent"}  # agent: what the agent loop itself did (a switch)


def escape_text(s: str) -> str:
    """MarkupSafe's replacements (``&<>'"``), in Python."""
    return s.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;").replace("'", "&#39;").replace('"', "&#34;")


try:  # the C function behind markupsafe.escape, three times faster than escape_text
    from markupsafe._speedups import _escape_inner as _escape_str
except ImportError:  # pragma: no cover - markupsafe without its C extension
    _escape_str = escape_text


def text(value: object) -> str:
    """``value`` (a plain value from a record, never ``Markup``) as HTML text, exactly as Jinja's
    autoescape (``markupsafe.escape``) writes it, without wrapping each value in a ``Markup``
    object, which costs nine times the escaping itself."""
    return _escape_str(value if type(value) is str else str(value))


def clip(value: object, limit: int = MAX_TEXT) -> str:
    """At most ``limit`` characters, saying how many were left out."""
    s = "" if value is None else str(value)
    if len(s) <= limit:
        return s
    return s[:limit] + f"\n[... {len(s) - limit:,} more characters not shown]"


def seconds_text(v: float | None) -> str:
    return "-" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")


def number_text(v: float | None, fmt: str = "%.1f") -> str:
    return "-" if v is None else fmt % v


def pretty_arguments(arguments: JSON) -> str:
    """Tool-call arguments one per line, text values as written (a file's content stays readable)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return str(arguments)
    if not isinstance(arguments, dict):
        return json.dumps(arguments, ensure_ascii=False)
    lines = []
    for key, value in arguments.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f"{key}:\n{shown}" if "\n" in shown else f"{key}: {shown}")
    return "\n".join(lines)


@lru_cache(maxsize=64)
def fingerprint_text(stored: str | None) -> str:
    """A trial's fingerprint as its page shows it. Every trial of a model in a run has the same
    one, so its text is made once, not once a page."""
    return clip(pretty_arguments(None if stored is None else json.loads(stored)), 8000)


def files_written(transcript: Sequence[JSON]) -> list[tuple[str, str]]:
    """(path, content) of every write_file action in the transcript, in order."""
    out = []
    for message in transcript:
        if not isinstance(message, dict):
            continue
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict) or call.get("name") != "write_file":
                continue
            args = call.get("arguments")
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except ValueError:
                    continue
            if isinstance(args, dict):
                out.append((str(args.get("path", "?")), str(args.get("content", ""))))
    return out


def _count(v: int | None) -> str:
    # an int needs no escaping; anything else stored there is escaped like text
    return str(v) if type(v) is int else text(v)


def _token_count(v: int | None) -> str:
    return "-" if v is None else _count(v)


def check_rows(checks: Sequence[CheckRow]) -> Markup:
    """The rows of the verifier's table, one per check."""
    return Markup("".join(
        f'<tr><td class="{result}">{result}</td><td>{text(clip(c.name, 500))}</td>'
        f"<td>{text(clip(c.message, 4000))}</td></tr>"
        for c in checks for result in ("pass" if c.passed else "fail",)))


def exec_details(execs: Sequence[ExecRow]) -> Markup:
    """One folded entry per sandbox command: how it ended, then its command line and output."""
    out: list[str] = []
    for e in execs:
        out += ("<details", " open" if e.exit_code != 0 else "", "><summary><code>[", text(e.phase), " uid ",
                text(e.user), "] exit ", "killed" if e.exit_code is None else _count(e.exit_code),
                " (timed out)" if e.timed_out else "", " (out of memory)" if e.oom_killed else "", " ",
                seconds_text(e.duration_s), "</code> <code>", text(clip(e.command, 160)), "</code></summary>\n<pre>$ ",
                text(clip(e.command, 4000)), "</pre>\n")
        if e.stdout:
            # the capped-output note follows the text directly: the template this replaced wrote it so
            out += ("<pre>", text(clip(e.stdout, 8000)), f"[output capped by the sandbox: {_count(e.stdout_bytes)} "
                    "bytes of stdout in all]" if e.truncated else "", "</pre>")
        if e.stderr:
            out += ("<pre>", text(clip(e.stderr, 8000)), "</pre>")
        out.append("</details>\n")
    return Markup("".join(out))


def call_rows(calls: Sequence[CallRow]) -> Markup:
    """The rows of the model-call table, one per call, numbered within the trial."""
    out = []
    for n, c in enumerate(calls, 1):
        out.append("".join((
            '<tr><td class="num">', str(n), '</td><td class="num">', _token_count(c.prompt_tokens),
            '</td>\n<td class="num">', _token_count(c.completion_tokens), "*" if c.tokens_estimated else "",
            '</td>\n<td class="num">', _token_count(c.reasoning_tokens),
            '</td><td class="num">', seconds_text(c.ttft_s), '</td><td class="num">', seconds_text(c.ttfat_s),
            '</td>\n<td class="num">', number_text(c.decode_tokens_per_s),
            '</td><td class="num">', seconds_text(c.e2e_s), "</td><td>", text(clip(c.finish_reason or "-", 100)),
            '</td><td class="num">', _count(c.concurrency), '</td><td class="num">', _count(c.retries),
            "</td><td>", text(clip(c.error or "", 1000)), "</td></tr>")))
    return Markup("".join(out))


def _tool_calls(message: Mapping[str, JSON]) -> list[str]:
    calls = message.get("tool_calls")
    out: list[str] = []
    for call in calls if isinstance(calls, list) else ():
        if isinstance(call, dict):
            out += ("<details open><summary>tool call <code>", text(call.get("name", "?")),
                    "</code></summary><pre>", text(clip(pretty_arguments(call.get("arguments")))), "</pre></details>")
    return out


def transcript_html(transcript: Sequence[JSON]) -> Markup:
    """Every message: its role, reasoning folded, content clipped, tool calls with their arguments."""
    out: list[str] = []
    for entry in transcript:
        m: Mapping[str, JSON] = entry if isinstance(entry, dict) else {"role": "?", "content": entry}
        role = str(m.get("role") or "?")
        name, content, reasoning = m.get("name"), m.get("content"), m.get("reasoning")
        known = role in _ROLES
        out += ('<div class="msg ', role if known else "other", '">\n<div><code>', role if known else text(role),
                " " + text(name) if name else "", "</code></div>\n")
        if reasoning:
            size = len(reasoning) if isinstance(reasoning, (str, list, dict)) else len(str(reasoning))
            out += ("<details><summary>reasoning (", str(size), " characters)</summary><pre>", text(clip(reasoning)),
                    "</pre></details>")
        if role == "system":
            out += ("<details><summary>system prompt</summary><pre>", text(clip(content)), "</pre></details>\n")
        elif content:
            out += ("<pre>", text(clip(content)), "</pre>")
        out += _tool_calls(m)
        out.append("</div>\n")
    return Markup("".join(out))


def agent_summary(stop: str | None, steps: int | None, protocol: str | None, actions: int | None) -> Markup:
    """What the agent did, in one line: why it stopped, its steps, its tool protocol, whether anything ran."""
    if stop is None:
        return Markup('<p class="meta" id="agent">The agent phase was not recorded (it never ran, or an older '
                      "agenteval ran this trial).</p>")
    if stop == "solver":
        return Markup(f'<p class="meta" id="agent">No agent loop: the model acts on the sandbox itself; '
                      f"{_count(actions or 0)} actions.</p>")
    parts = [f"stopped: <strong>{text(stop)}</strong>", f"{_count(steps or 0)} model turns"]
    if protocol:
        parts.append(f"{text(protocol)} tool protocol")
    if actions:
        parts.append(f"{_count(actions)} actions run in the sandbox")
    else:
        parts.append('<strong class="fail">nothing the model wrote ever ran</strong>')
    return Markup('<p id="agent">Agent: ' + " &middot; ".join(parts) + ".</p>")


def outcome(t: TrialRow) -> Markup:
    """Passed, or how it failed (a trial in a list or a comparison)."""
    if t.passed:
        return Markup('<span class="pass">passed</span>')
    return Markup(f'<span class="fail">{text(t.failure_mode or "failed")}</span>')


_FAILED = ("verify_failed", "agent_limit", "model_error")  # a red square; any other failure is an error (amber)


def dot(root: str, t: TrialRow) -> Markup:
    """A trial as a coloured square linking to its page (a task page has thousands)."""
    kind = "ok" if t.passed else ("no" if t.failure_mode in _FAILED else "err")
    return Markup(f'<a class="dot {kind}" href="{text(root)}trials/{text(t.trial_id)}.html" '
                  f'title="{text(t.key)}: {text(t.outcome)}"></a>')
