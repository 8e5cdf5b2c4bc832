"""``agenteval ladder``: the command line of a quantization ladder (the work is in ``run``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from agenteval.console import RunProgress, console, err_console, guard, print_run_end, report_run
from agenteval.ladder.divergence import MIN_TOKENS
from agenteval.paths import DEFAULT_DB, REPORTS_DIR


def _split(values: list[str]) -> list[str]:
    """``--quants Q8_0,Q4_K_M --quants Q2_K`` and ``--quants "Q8_0 Q4_K_M"`` alike."""
    return [part for v in values for part in v.replace(",", " ").split()]


def ladder(
    source: Optional[Path] = typer.Argument(None, help="The source GGUF (F32, F16, BF16 or Q8_0): the reference "
                                            "rung. Not needed with --resume."),
    paths: list[str] = typer.Argument(None, help="Task folders (tasks/folder ...)."),
    quants: list[str] = typer.Option([], "--quants", "-q", help="Rungs to make with llama.cpp's quantizer, "
                                     "comma-separated: Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K."),
    samples: Optional[int] = typer.Option(None, "--samples", "-n", min=1,
                                          help="Samples per variant (default: the task's own)."),
    variant: list[str] = typer.Option([], "--variant", help="Only these variant ids (TASK/ID). Repeatable."),
    kv_cache: list[str] = typer.Option([], "--kv-cache", help="Second axis: K/V cache types, comma-separated "
                                       "(f16,q8_0,q4_0); every rung runs with each."),
    engine: Optional[str] = typer.Option(None, "--engine", help="llama-server or llamacpp (llama-cpp-python) "
                                         "[default: llama-server where it is built]."),
    context: int = typer.Option(8192, "--context", min=256, help="Context size every rung is served with."),
    server_arg: list[str] = typer.Option([], "--server-arg", help="An argument for every rung's server alike, "
                                         "e.g. --server-arg=-ngl --server-arg=99 to offload to a GPU. Repeatable."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="Sampling temperature of every rung. "
                                      "Above 0, sample i is its own draw (seed i on every rung), so samples pair "
                                      "with the reference's; at 0 they repeat one greedy decode."),
    chat_template: Optional[str] = typer.Option(None, "--chat-template",
                                                help="chatml, for a source GGUF without a chat template."),
    imatrix: Optional[Path] = typer.Option(None, "--imatrix", help="Importance matrix for the quantizer "
                                           "(llama-imatrix's output); part of the rung cache's key."),
    allow_requantize: bool = typer.Option(False, "--allow-requantize",
                                          help="Quantize a source that is already quantized below a rung's "
                                               "precision; every figure of those rungs says so."),
    kl_text: Optional[Path] = typer.Option(None, "--kl-text", help="Text the divergence from the reference is "
                                           "measured on [default: the tasks' own instructions]."),
    kl_tokens: int = typer.Option(MIN_TOKENS, "--kl-tokens", min=MIN_TOKENS,
                                  help="Positions of the text the divergence scores (whole chunks, at least this many; the reference's logits take about "
                                  "2 bytes x vocabulary x this on disk)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for every server, the "
                                          "quantizer and the divergence [default: half the cores for servers, "
                                          "all of them for the divergence, which runs alone]."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-j", min=1, help="Trials at once."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Finish ladder run RUN_ID (after a crash or "
                                         "Ctrl-C): rungs come from the cache, recorded work is kept."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Agent budget: model turns."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Agent budget: total tokens."),
    agent_timeout: Optional[float] = typer.Option(None, "--agent-timeout", min=1, help="Agent budget: seconds."),
    db: Path = typer.Option(DEFAULT_DB, "--db", envvar="AGENTEVAL_DB", help="DuckDB file the run is recorded in."),
    out: Path = typer.Option(REPORTS_DIR, "--out", envvar="AGENTEVAL_OUT",
                             help="Folder for reports: <out>/<run-id>/ladder.html."),
) -> None:
    """One model, every quant: make each rung, measure its divergence from the source, run it on the tasks."""
    from agenteval.ladder.run import LadderOptions, run_ladder
    from agenteval.runner.options import budgets_from_flags

    if resume and (source or paths or quants):
        err_console.print("[red]error:[/red] --resume takes the source, rungs and tasks of the ladder it resumes")
        raise typer.Exit(2)
    if not resume and source is None:
        err_console.print("[red]error:[/red] give the source GGUF: agenteval ladder MODEL.gguf --quants Q8_0,Q4_K_M "
                          "tasks/folder")
        raise typer.Exit(2)
    if engine not in (None, "llama-server", "llamacpp"):
        err_console.print(f"[red]error:[/red] --engine {engine!r}: choose llama-server or llamacpp", markup=False)
        raise typer.Exit(2)
    if chat_template not in (None, "chatml"):
        err_console.print(f"[red]error:[/red] --chat-template {chat_template!r}: only chatml is known", markup=False)
        raise typer.Exit(2)
    budgets = budgets_from_flags(max_steps, max_tokens, agent_timeout)
    opts = LadderOptions(source=source or Path(), quants=_split(quants), task_paths=list(paths or []), samples=samples,
                         variants=list(variant), kv_caches=_split(kv_cache), engine=engine,  # type: ignore[arg-type]
                         context=context, temperature=temperature, server_args=list(server_arg),
                         chat_template=chat_template,  # type: ignore[arg-type]
                         imatrix=imatrix, allow_requantize=allow_requantize, kl_text=kl_text, kl_tokens=kl_tokens,
                         threads=threads,
                         budgets=budgets, concurrency=concurrency, db=db, out=out, resume=resume)
    progress = RunProgress()
    with progress:
        result = guard(lambda: run_ladder(opts, observer=progress, log=progress.log))
        report = guard(lambda: report_run(result.run))
    run = result.run
    for rung in result.rungs:
        kl = "-" if rung.kl_mean is None else f"{rung.kl_mean:.4g}"
        console.print(f"{rung.model}: {rung.provenance}, {rung.bits_per_weight:.2f} bpw, "
                      f"{rung.file_bytes / 2**20:.1f} MiB, KL {kl}", markup=False, highlight=False)
    print_run_end(run, "ladder", report.parent / "ladder.html")
