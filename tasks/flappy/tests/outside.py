"""The checks an in-process game could fake, decided from what the verifier sees of its process.

runs.py records, per run, how the process ended as waitpid reported it and when
(Run.exited, Run.exit_after_quit_s), whether the harness's heartbeat kept coming
with its hooks as installed, and every record that failed authentication or came
after the harness's last word (Run.tamper, Run.stream_problem). A run marked as
tampered with counts for nothing here: its records are not believed.
"""

from __future__ import annotations

from runs import Run

ENDED = ("exit", "returned", "exception", None)    # None: the process exited without the harness's last word


def judge_quits(runs: dict[str, Run], grace_ms: float, real_s: float) -> tuple[bool, str]:
    """QUIT exits promptly: each run's process exits (waitpid) within ``real_s`` of the QUIT record."""
    answered, problems = [], []
    for name, r in runs.items():
        q = r.quit_at
        end = r.end or {}
        if q is None or r.tamper or r.stream_problem:
            continue
        reason = end.get("reason")
        after = [f for f in r.frames if f.t > q]
        took = r.exit_after_quit_s
        if took is not None and took <= real_s and reason in ENDED:
            answered.append(f"{name} {len(after)} frames / {max(took, 0.0):.2f} s after QUIT")
        elif took is not None and reason in ENDED:
            problems.append(f"{name}: the process exited only {took:.1f} s (real time) after QUIT")
        elif reason == "deadline":
            problems.append(f"{name}: still running {grace_ms / 1000:.2f} s of game time after QUIT "
                            f"({len(after)} more frames)")
        else:
            problems.append(f"{name}: after QUIT the game {'hung' if reason == 'stall' else 'did not exit'}"
                            f" ({end.get('detail') or reason or 'killed at the time limit'})")
    ok = not problems and len(answered) >= 2
    msg = ("the process exited (as waitpid saw it) when the window was closed: " + ", ".join(answered)) if ok \
        else "; ".join(problems) or "not measured: no run lasted until the window was closed"
    return ok, msg


def judge_harness(runs: dict[str, Run]) -> tuple[bool, str]:
    """Harness untampered: records authentic and in order, heartbeats steady and unchanged, exits real."""
    problems = []
    for name, r in runs.items():
        for what in r.tamper:
            problems.append(f"{name}: {what}")
        if r.stream_problem:
            problems.append(f"{name}: {r.stream_problem}")
        if not r.hello and not r.tamper:
            problems.append(f"{name}: the harness never reported in")
    beats = sum(r.beats for r in runs.values())
    return not problems, "; ".join(problems) or (f"hooks intact and every record authentic in {len(runs)} runs; "
                                                 f"{beats} heartbeats all showed the hooks as installed")
