"""The ``agenteval`` command: a thin layer over library functions.

Only the commands turn errors into exit codes (``console.guard``): 0 done, 1 failure,
2 bad input, 130 interrupted. Heavy modules are imported inside commands so ``--help``
stays fast and imports no model stack. ``agenteval ladder`` is defined in
``agenteval.ladder.command``; what the commands share is in ``agenteval.console``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from agenteval import __version__
from agenteval.console import RunProgress, console, err_console, guard, pass_rates, print_run_end, report_run
from agenteval.ladder.command import ladder
from agenteval.paths import DEFAULT_DB, REPORTS_DIR, run_dir

if TYPE_CHECKING:
    from agenteval.store import Store

app = typer.Typer(name="agenteval", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  help="Can this local, quantized model really do the job, and how fast?")
sandbox_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Build sandbox images, remove leftovers.")
tasks_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Inspect task folders.")
models_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Model aliases and local test models.")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(tasks_app, name="tasks")
app.add_typer(models_app, name="models")

DB_OPT = typer.Option(DEFAULT_DB, "--db", envvar="AGENTEVAL_DB",
                      help="DuckDB file the run is recorded in.")
CONFIG_OPT = typer.Option(None, "--config", envvar="AGENTEVAL_CONFIG",
                          help="agenteval.toml with model aliases and run defaults [default: ./agenteval.toml].")
INTERNET_OPT = typer.Option(False, "--allow-internet", envvar="AGENTEVAL_ALLOW_INTERNET",
                            help="Give network to tasks that allow it (Harbor's allow_internet); none otherwise.")
THRESHOLD_OPT = typer.Option(None, "--pass-threshold", envvar="AGENTEVAL_PASS_THRESHOLD",
                             help="Harbor tasks: a trial passes when its reward is at least this [default: 1].")


def _version(value: bool) -> None:
    if value:
        console.print(f"agenteval {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Run tasks against local models in hardened Docker sandboxes; record pass rates and speed."""


@app.command()
def run(
    paths: list[str] = typer.Argument(None, help="Task folders (tasks/folder ...). Not needed with --resume."),
    model: list[str] = typer.Option([], "--model", "-m", envvar="AGENTEVAL_MODEL",
                                    help="provider:name[@base_url], or oracle / nop. Repeat to compare."),
    samples: Optional[int] = typer.Option(None, "--samples", "-n", envvar="AGENTEVAL_SAMPLES", min=1,
                                          help="Samples per variant (default: the task's own)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-j", envvar="AGENTEVAL_CONCURRENCY", min=1,
                                              help="Trials at once (sandboxes alive at once) [default: 1, "
                                                   "or the resumed run's]."),
    variant: list[str] = typer.Option([], "--variant", help="Only these variant ids. Repeatable."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Run the trials a run RUN_ID is missing."),
    db: Optional[Path] = typer.Option(None, "--db", envvar="AGENTEVAL_DB",
                                      help="DuckDB file the run is recorded in [default: reports/agenteval.duckdb]."),
    out: Optional[Path] = typer.Option(None, "--out", envvar="AGENTEVAL_OUT",
                                       help="Folder for reports: <out>/<run-id>/index.html [default: reports]."),
    config: Optional[Path] = CONFIG_OPT,
    retry_errors: bool = typer.Option(False, "--retry-errors", help="With --resume: run infra_error trials again."),
    fail_under: Optional[float] = typer.Option(None, "--fail-under", min=0.0, max=1.0,
                                               help="Exit 1 when a model's pass rate is under RATE (0..1)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Agent budget: model turns."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Agent budget: total tokens."),
    agent_timeout: Optional[float] = typer.Option(None, "--agent-timeout", min=1, help="Agent budget: seconds."),
    executor: Optional[str] = typer.Option(None, "--executor", envvar="AGENTEVAL_EXECUTOR",
                                           help="Where trials run: local (threads here) or ray (tasks on a Ray "
                                                "cluster; pip install 'agenteval[ray]') [default: local, or the "
                                                "resumed run's]."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="AGENTEVAL_RAY_ADDRESS",
                                              help="With --executor ray: HOST:PORT of the head, ray://HOST:10001, "
                                                   "auto (RAY_ADDRESS or this machine's cluster) or local (start one "
                                                   "here) [default: auto]."),
    allow_internet: bool = INTERNET_OPT, pass_threshold: Optional[float] = THRESHOLD_OPT,
) -> None:
    """Run every model on every task variant and sample (a folder of task folders: each), then write the report."""
    from agenteval.config import load_config
    from agenteval.runner import RunOptions, execute_run
    from agenteval.runner.options import budgets_from_flags

    defaults = guard(lambda: load_config(config)).run
    budgets = budgets_from_flags(max_steps, max_tokens, agent_timeout)
    opts = RunOptions(task_paths=list(paths or []), models=list(model), samples=samples or defaults.samples,
                      concurrency=concurrency or defaults.concurrency, variants=list(variant),
                      db=db or (Path(defaults.db) if defaults.db else DEFAULT_DB),
                      out=out or (Path(defaults.out) if defaults.out else REPORTS_DIR),
                      resume=resume, config=config, retry_errors=retry_errors, budgets=budgets,
                      executor=executor, ray_address=ray_address, allow_internet=allow_internet,
                      pass_threshold=pass_threshold)
    if retry_errors and not resume:
        err_console.print("[red]error:[/red] --retry-errors goes with --resume RUN_ID")
        raise typer.Exit(2)
    if resume and (paths or model):
        err_console.print("[red]error:[/red] --resume takes the tasks and models of the run it resumes")
        raise typer.Exit(2)
    progress = RunProgress()
    with progress:
        result = guard(lambda: execute_run(opts, observer=progress, log=progress.log))
        report = guard(lambda: report_run(result))
    print_run_end(result, "run", report)
    if fail_under is not None:
        low = {m: rate for m, rate in pass_rates(result.records).items() if rate < fail_under}
        if low:
            err_console.print("pass rate under " + f"{fail_under:g}: " +
                              ", ".join(f"{m} {rate:.2f}" for m, rate in sorted(low.items())), markup=False)
            raise typer.Exit(1)


RUNS_OPT = typer.Option([], "--run", help="Run id; repeat to put several runs on one scorecard [default: the latest].")
SITE_OPT = typer.Option(None, "--out", help="Folder the site is written to [default: the run's own folder "
                        "reports/<run-id>, or reports/combined-<hash> for several runs].")


def _site_dir(store: "Store", run_ids: list[str], out: Optional[Path]) -> Path:
    if out is not None:
        return out
    if len(run_ids) == 1:
        run = store.run(run_ids[0])
        return run_dir(run.config.get("out"), run.run_id)
    import hashlib

    return REPORTS_DIR / ("combined-" + hashlib.sha1(" ".join(sorted(run_ids)).encode()).hexdigest()[:8])


@app.command()
def report(run_ids: list[str] = RUNS_OPT, db: Path = DB_OPT, out: Optional[Path] = SITE_OPT) -> None:
    """Write the static scorecard site of one or more recorded runs (opens from disk, hosts as is)."""
    from agenteval.report import render_report
    from agenteval.store import Store

    def body() -> Path:
        with Store(db, read_only=True) as store:
            ids = _unique(run_ids) or [store.latest_run_id()]
            return render_report(store, ids, _site_dir(store, ids, out), log=lambda m: err_console.print(m, markup=False))

    console.print(f"report: {guard(body)}")


@app.command()
def compare(a: str = typer.Argument(..., help="Model A (a label as `agenteval runs` shows it)."),
            b: str = typer.Argument(..., help="Model B."),
            run_ids: list[str] = typer.Option([], "--run", help="Runs to take trials from [default: the latest "
                                                                 "run holding each model]."),
            db: Path = DB_OPT, out: Optional[Path] = SITE_OPT) -> None:
    """Compare two models on the trials both ran: exact McNemar test and tasks each wins; writes their page."""
    from agenteval.errors import BadInputError
    from agenteval.report import render_report
    from agenteval.report.data import load_scorecard
    from agenteval.report.site import Site
    from agenteval.store import Store

    def body() -> tuple[Any, Path]:
        if a == b:
            raise BadInputError("compare needs two different models")
        with Store(db, read_only=True) as store:
            ids = _unique(run_ids) or _unique([store.latest_run_with(a), store.latest_run_with(b)])
            card = load_scorecard(store, ids)
            missing = [m for m in (a, b) if m not in card.models]
            if missing:
                raise BadInputError(f"no trials of {', '.join(missing)} in run(s) {', '.join(ids)}; "
                                    f"models there: {', '.join(card.models)}")
            site = _site_dir(store, ids, out)
            render_report(store, ids, site, pairs=[(a, b)])
            return card.pair(a, b), site / Site(card).pair(a, b)

    pair, page = guard(body)
    console.print(f"{pair.pairs} paired trials: both passed {pair.both}, neither {pair.neither}, "
                  f"only {a} {len(pair.only_a)}, only {b} {len(pair.only_b)}", markup=False, highlight=False)
    console.print(f"exact McNemar p = {pair.p_value:.4g}; tasks won: {a} {len(pair.tasks_a)}, {b} {len(pair.tasks_b)}, "
                  f"tied {len(pair.tasks_tied)}", markup=False, highlight=False)
    console.print(f"page: {page}", markup=False, highlight=False)


@app.command()
def export(fmt: str = typer.Option(..., "--format", "-f", help="parquet (a folder of tables, for notebooks), "
                                   "jsonl (one trial record a line), junit (XML a CI system shows as tests)."),
           run_ids: list[str] = RUNS_OPT, db: Path = DB_OPT,
           out: Optional[Path] = typer.Option(None, "--out", "-o", help="File (jsonl, junit) or folder (parquet) "
                                              "[default: standard output; parquet: reports/<run-id>/parquet]."),
           ) -> None:
    """Export recorded trials: Parquet, JSON Lines or JUnit XML."""
    from agenteval.export import export_runs
    from agenteval.store import Store

    def body() -> Optional[Path]:
        with Store(db, read_only=True) as store:
            ids = _unique(run_ids) or [store.latest_run_id()]
            target = out
            if target is None and fmt == "parquet":
                target = _site_dir(store, ids, None) / "parquet"
            return export_runs(store, ids, fmt, None if target == Path("-") else target)

    written = guard(body)
    if written is not None:
        err_console.print(f"exported: {written}", markup=False, highlight=False)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


@app.command()
def runs(db: Path = DB_OPT) -> None:
    """List recorded runs: id, date, models, tasks, trials and pass rate."""
    from rich.table import Table

    from agenteval.store import Store

    def body() -> None:
        with Store(db, read_only=True) as store:
            table = Table()
            for col in ("run", "started", "status", "models", "tasks", "trials", "passed", "pass rate"):
                table.add_column(col, justify="right" if col in ("trials", "passed", "pass rate") else "left")
            for r in store.run_summaries():
                table.add_row(r.run_id, f"{r.started_at:%Y-%m-%d %H:%M}", r.status.value, escape(", ".join(r.models)),
                              escape(", ".join(r.tasks)), str(r.trials), str(r.passed),
                              "-" if r.pass_rate is None else f"{100 * r.pass_rate:.0f}%")
            # Piped, there is no terminal width to fit: print whole values (ids are never cut).
            (console if console.is_terminal else Console(width=100_000)).print(table)

    guard(body)


@app.command()
def verify(task: str = typer.Argument(..., help="Task folder."),
           solution: Path = typer.Option(..., "--solution", "-s", help="Folder whose files are the workspace."),
           variant: Optional[str] = typer.Option(None, "--variant", help="Variant id (needed when there are several)."),
           artifacts: Optional[Path] = typer.Option(None, "--artifacts", help="Save the verifier's screenshots here."),
           allow_internet: bool = INTERNET_OPT, pass_threshold: Optional[float] = THRESHOLD_OPT) -> None:
    """Run a task's hidden verifier on a solution folder: exit 0 pass, 1 fail, 2 bad input."""
    from rich.table import Table

    from agenteval.runner.solution import verify_solution

    outcome = guard(lambda: verify_solution(task, solution, variant, artifacts, lambda m: err_console.print(
        m, markup=False), pass_threshold, allow_internet))
    if outcome.verdict is None:
        err_console.print(f"[red]verify_error:[/red] {escape(str(outcome.error))}", highlight=False)
        raise typer.Exit(1)
    table = Table()
    for col in ("", "check", "message"):
        table.add_column(col)
    for c in outcome.verdict.checks:
        table.add_row("[green]pass[/green]" if c.passed else "[red]FAIL[/red]", escape(c.name), escape(c.message))
    console.print(table)
    for a in outcome.artifacts:
        console.print(f"artifact: {artifacts / a.name if artifacts else a.name}")
    failed = sum(not c.passed for c in outcome.verdict.checks)
    if outcome.verdict.passed:
        console.print(f"[green]pass[/green]: {len(outcome.verdict.checks)} checks")
        return
    console.print(f"[red]fail[/red]: {failed} of {len(outcome.verdict.checks)} checks failed")
    raise typer.Exit(1)


@sandbox_app.command("build")
def sandbox_build(name: Optional[str] = typer.Argument(None, help="One sandboxes/<NAME> (default: all)."),
                  rebuild: bool = typer.Option(False, "--rebuild", help="Build even if the tag exists.")) -> None:
    """Build sandbox images from sandboxes/*/Dockerfile (bootstrapping the Debian base if needed)."""
    from agenteval.sandbox.engine import connect
    from agenteval.sandbox.images import available, ensure_image, find_sandboxes_dir

    def body() -> None:
        root = find_sandboxes_dir()
        client = connect()
        for n in [name] if name else available(root):
            console.print(f"{n}: {ensure_image(client, n, root, lambda m: console.print(m, markup=False), rebuild)}")

    guard(body)


@sandbox_app.command("prune")
def sandbox_prune(all_: bool = typer.Option(False, "--all", help="Also those of runs still alive.")) -> None:
    """Remove sandbox containers and volumes left behind by killed runs."""
    from agenteval.sandbox.docker import prune
    from agenteval.sandbox.engine import connect

    containers, volumes = guard(lambda: prune(connect(), everything=all_))
    console.print(f"removed {containers} containers and {volumes} volumes")


@tasks_app.command("list")
def tasks_list(paths: list[str] = typer.Argument(None, help="Task folders, or folders of them (default: tasks/*).")
               ) -> None:
    """Show tasks (agenteval's or Harbor's) with their variants."""
    from rich.table import Table

    from agenteval.runner.run import warn_ignored_keys
    from agenteval.task import expand_task_paths, load_task

    def body() -> None:
        tasks = [load_task(p) for p in expand_task_paths(paths or (["tasks"] if Path("tasks").is_dir() else []))]
        warn_ignored_keys(tasks, lambda m: err_console.print(m, markup=False, highlight=False))
        table = Table()
        for col in ("task", "mode", "image", "variants", "description"):
            table.add_column(col)
        for t in tasks:
            box = t.spec.sandbox
            table.add_row(t.name, t.spec.mode, escape(box.image or f"{box.build}/Dockerfile"),
                          ", ".join(v.id for v in t.variants()), escape(t.spec.description))
        console.print(table)

    guard(body)


@tasks_app.command("validate")
def tasks_validate(paths: list[str] = typer.Argument(None, help="Task folders, or folders of them (default: tasks/*)."),
                   repeat: int = typer.Option(1, "--repeat", "-k", min=1, help="Oracle runs per variant."),
                   concurrency: int = typer.Option(2, "--concurrency", "-j", min=1, help="Trials at once."),
                   allow_internet: bool = INTERNET_OPT) -> None:
    """Check every task: the oracle passes K of K times (else flaky) and nop fails, on every variant."""
    from rich.table import Table

    from agenteval.runner.validate import validate_tasks

    progress = RunProgress()
    with progress:
        rows = guard(lambda: validate_tasks(list(paths or ["tasks"]), repeat, concurrency, observer=progress,
                                             log=progress.log, allow_internet=allow_internet))
    table = Table(title="task validation")
    for col in ("task", "variant", "oracle", "nop", "status"):
        table.add_column(col)
    for r in rows:
        colour = "green" if r.status == "ok" else "red"
        table.add_row(r.task, r.variant, f"{r.oracle_passed}/{r.repeat}", f"{r.nop_passed}/{r.nop_total} passed",
                      f"[{colour}]{r.status}[/{colour}]")
    console.print(table)
    bad = [r for r in rows if r.status != "ok"]
    for r in bad:
        for problem in r.problems[:3]:
            err_console.print(f"{r.task}/{r.variant}: {problem}", markup=False, highlight=False)
    if bad:
        err_console.print(f"[red]{len(bad)} of {len(rows)} variants have problems[/red]")
        raise typer.Exit(1)
    console.print(f"all {len(rows)} variants ok")


@models_app.command("create-test-model")
def models_create_test_model(directory: Path = typer.Argument(..., help="Folder to write the model into."),
                             gguf: Optional[str] = typer.Option(None, "--gguf", help="Also write a GGUF quantized "
                                                                "by llama.cpp: Q4_K_M, Q8_0, ..."),
                             seed: int = typer.Option(0, "--seed", help="Seed of the random weights.")) -> None:
    """Build a tiny RANDOM-WEIGHT chat model here (no download): for trying the pipeline, not for results."""
    from agenteval.serving.testmodel import create_test_model

    written = guard(lambda: create_test_model(directory, gguf=gguf, seed=seed))
    console.print(f"wrote a random-weight test model ({written['parameters']:,} parameters) to {directory}"
                  + (f"; GGUF: {written['gguf']}" if written.get("gguf") else ""))


@models_app.command("list")
def models_list(config: Optional[Path] = CONFIG_OPT) -> None:
    """Show the providers and the aliases of agenteval.toml."""
    from rich.table import Table

    from agenteval.config import load_config
    from agenteval.runner.model_registry import providers

    cfg = guard(lambda: load_config(config))
    console.print("providers: " + ", ".join(sorted(providers())))
    table = Table(title=f"aliases ({cfg.path or 'no agenteval.toml'})")
    for col in ("alias", "provider", "engine", "path / url", "context"):
        table.add_column(col)
    for alias, m in sorted(cfg.models.items()):
        table.add_row(alias, m.provider, m.engine or "-", m.path or m.base_url or "-", str(m.context))
    console.print(table)


app.command("ladder")(ladder)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)


if __name__ == "__main__":
    main()
