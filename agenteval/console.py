"""What every command shares: the consoles, the guard that turns an AgentEvalError into one
line and its exit code, the progress bar of a run, what a command that ran trials prints
last, and the report it writes of its run (``run`` and ``ladder`` alike).

The commands (``cli``, ``ladder.command``) import it; the library below never prints to a
console, it takes a ``Log``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from agenteval.errors import AgentEvalError, InterruptedRunError

if TYPE_CHECKING:  # the runner and records load inside the commands: --help stays light
    from agenteval.records import TrialRecord
    from agenteval.runner.run import RunResult

console = Console()
err_console = Console(stderr=True, soft_wrap=True)
_T = TypeVar("_T")


def guard(fn: Callable[[], _T]) -> _T:
    """Run a command body; AgentEvalError becomes one line and its exit code (an interruption,
    which says how to resume, in yellow; an error in red)."""
    try:
        return fn()
    except InterruptedRunError as e:
        err_console.print(f"[yellow]interrupted[/yellow]: {escape(str(e))}", highlight=False)
        raise typer.Exit(e.exit_code) from None
    except AgentEvalError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(e.exit_code) from None


def report_run(result: "RunResult") -> Path:
    """Write the site of the run that just ended into its own folder; its index.html. A run whose
    report cannot be written failed (``after_run``: marked so, RunFailedError saying how to resume)."""
    from agenteval import report
    from agenteval.runner.run import after_run

    return after_run(result, lambda store, out_dir: report.render_run(store, result.run.run_id, out_dir))


def print_run_end(result: "RunResult", command: str, report: Path | None) -> None:
    """What a command that ran trials prints last: the table, the report, and how to resume an
    interrupted run (exit 130); ``command`` is ``run`` or ``ladder``."""
    print_summary(result.records)
    if report:
        console.print(f"report: {report}")
    if result.interrupted:
        err_console.print(f"[yellow]interrupted[/yellow]: {len(result.records)} trials recorded; "
                          f"resume with: agenteval {command} --resume {result.run.run_id}")
        raise typer.Exit(130)
    console.print(f"{command} {result.run.run_id}: {sum(r.passed for r in result.records)}/{len(result.records)} "
                  "passed")


def pass_rates(records: list["TrialRecord"]) -> dict[str, float]:
    from agenteval.records import pass_rate

    models = {r.model for r in records}
    return {m: pass_rate(sum(r.passed for r in records if r.model == m), sum(r.model == m for r in records))
            for m in models}


class RunProgress:
    """Rich progress bar fed by the runner (a RunObserver)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                                 console=err_console, transient=False)
        self.task_id: Any = None
        self.total = self.done = 0
        self.per_model: dict[str, list[int]] = {}
        self.rates: dict[str, list[float]] = {}

    def __enter__(self) -> "RunProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def log(self, msg: str) -> None:
        self.progress.console.print(msg, highlight=False, markup=False)

    def planned(self, total: int, skipped: int) -> None:
        if skipped:
            self.log(f"{skipped} trials already recorded; running the {total} missing")
        self.total, self.done = total, 0
        self.task_id = self.progress.add_task("trials", total=total, stats="")

    def trial_done(self, record: "TrialRecord") -> None:
        """Live pass rate per model and its median decode tokens/s. Where no terminal shows the
        bar (a log file, CI), one line per recorded trial says the same, so a long run can be watched."""
        from statistics import median

        self.done += 1
        if not self.progress.console.is_terminal:
            outcome = "passed" if record.passed else (record.failure_mode.value if record.failure_mode else "failed")
            self.log(f"trial {self.done}/{self.total} recorded: {record.key} {outcome} ({record.duration_s:.1f} s)")
        counts = self.per_model.setdefault(record.model, [0, 0])
        counts[0] += int(record.passed)
        counts[1] += 1
        self.rates.setdefault(record.model, []).extend(
            c.decode_tokens_per_s for c in record.model_calls if c.decode_tokens_per_s)
        parts = []
        for model, (passed, total) in self.per_model.items():
            rates = self.rates.get(model)
            parts.append(f"{model} {passed}/{total}" + (f" {median(rates):.0f} tok/s" if rates else ""))
        self.progress.update(self.task_id, advance=1, stats=" | ".join(parts))


def print_summary(records: list["TrialRecord"]) -> None:
    from rich.table import Table

    from agenteval.report import summarize

    cells = summarize(records)
    if not cells:
        return
    table = Table(title="passed / trials")
    tasks = sorted({c.task for c in cells})
    table.add_column("model")
    for t in tasks:
        table.add_column(t, justify="right")
    grid = {(c.model, c.task): c for c in cells}
    random_models = {r.model for r in records if r.fingerprint.model_info.get("random_weights")}
    requantized = {r.model: str(r.fingerprint.model_info["provenance"]) for r in records
                   if str(r.fingerprint.model_info.get("provenance", "")).startswith("requantized")}
    for m in sorted({c.model for c in cells}):
        row = [m + (" (random weights)" if m in random_models else "") + (f" ({requantized[m]})" if m in requantized
                                                                          else "")]
        for t in tasks:
            c = grid.get((m, t))
            row.append(f"{c.passed}/{c.total}" if c else "-")
        table.add_row(*row)
    console.print(table)
