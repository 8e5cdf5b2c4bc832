"""One ladder, as one resumable run: make the rungs, measure how far each one's next-token
distributions are from the reference's, then run every rung on the tasks.

The run row is saved before anything slow, with the ladder's own options in its config,
so ``agenteval ladder --resume RUN_ID`` can pick up after a crash at any step: rungs come
back from the quantization cache, divergences already recorded are kept, committed trials
are skipped. Every rung is served by the same engine with the same context, sampling, seed
and threads, one after another (the runner serves one model at a time).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from agenteval import __version__
from agenteval.config import ModelConfig
from agenteval.errors import BadInputError, InterruptedRunError
from agenteval.ladder.divergence import MIN_TOKENS
from agenteval.ladder.quantize import (RungFile, RungPlan, SourceModel, make_rung, plan_rungs, read_source,
                                      reference_rung)
from agenteval.ladder.rung_config import (DEFAULT_KV, LadderEngine, ServedRung, check_kv_caches, rung_label,
                                          write_config)
from agenteval.logs import Log
from agenteval.paths import DEFAULT_DB, REPORTS_DIR
from agenteval.processes import sigterm_as_interrupt, this_process
from agenteval.records import RungRecord, RunRecord, RunStatus, utcnow
from agenteval.runner.options import Budgets, LadderConfig, RunOptions
from agenteval.runner.run import RunObserver, RunResult, execute_run, mark_failed, new_run_id
from agenteval.store import Store
from agenteval.task.folder import Task

if TYPE_CHECKING:
    from agenteval.ladder.divergence import DivergenceMeter


@dataclass(frozen=True)
class LadderOptions:
    """What ``agenteval ladder`` was asked; stored in the run's config so --resume repeats it."""

    source: Path
    quants: list[str]
    task_paths: list[str]
    samples: int | None = None
    variants: list[str] = field(default_factory=list)
    kv_caches: list[str] = field(default_factory=list)  # empty: the engine's default (f16) only
    engine: LadderEngine | None = None  # None: llama-server where it is built, else llama-cpp-python
    context: int = 8192
    server_args: list[str] = field(default_factory=list)  # for every rung's server alike (-ngl 99, ...)
    temperature: float = 0.0  # above 0, each sample is its own draw (seed = sample index, alike on every rung)
    chat_template: Literal["chatml"] | None = None
    imatrix: Path | None = None
    allow_requantize: bool = False
    kl_text: Path | None = None
    kl_tokens: int = MIN_TOKENS  # positions scored: the first chunks of the text that reach this many
    threads: int | None = None
    budgets: Budgets = field(default_factory=Budgets)
    concurrency: int | None = None
    db: Path = DEFAULT_DB
    out: Path = REPORTS_DIR
    resume: str | None = None
    source_sha256: str | None = None  # a resumed ladder's source as it began, which the file must still be

    def to_config(self) -> LadderConfig:
        return {"source": str(self.source.resolve()), "quants": self.quants, "task_paths": self.task_paths,
                "samples": self.samples, "variants": self.variants, "kv_caches": self.kv_caches,
                "engine": self.engine, "context": self.context, "temperature": self.temperature,
                "server_args": self.server_args,
                "chat_template": self.chat_template,
                "imatrix": str(self.imatrix.resolve()) if self.imatrix else None,
                "allow_requantize": self.allow_requantize,
                "kl_text": str(self.kl_text.resolve()) if self.kl_text else None, "kl_tokens": self.kl_tokens,
                "threads": self.threads,
                "budgets": Budgets(**self.budgets), "source_sha256": self.source_sha256}

    def resumed(self, stored: LadderConfig) -> "LadderOptions":
        """The stored ladder, keeping where this invocation reads and writes (db, out, -j)."""
        return dataclasses.replace(
            self, source=Path(stored["source"]), quants=list(stored["quants"]),
            task_paths=list(stored["task_paths"]), samples=stored["samples"], variants=list(stored["variants"]),
            kv_caches=list(stored["kv_caches"]), engine=cast(LadderEngine | None, stored["engine"]),
            context=int(stored["context"]),
            temperature=float(stored["temperature"]), server_args=list(stored["server_args"]),
            chat_template=stored["chat_template"], imatrix=Path(stored["imatrix"]) if stored["imatrix"] else None,
            allow_requantize=bool(stored["allow_requantize"]),
            kl_text=Path(stored["kl_text"]) if stored["kl_text"] else None, kl_tokens=int(stored["kl_tokens"]),
            threads=stored["threads"],
            budgets=stored["budgets"] or Budgets(), source_sha256=stored.get("source_sha256"))


@dataclass(frozen=True)
class Rung:
    """One model of the ladder run: a rung file served with one K/V cache type."""

    file: RungFile
    kv_cache: str | None  # None: the engine's default

    @property
    def label(self) -> str:
        return rung_label(self.file.quant, self.kv_cache)

    @property
    def is_reference(self) -> bool:
        return self.file.reference and self.kv_cache in (None, DEFAULT_KV)

    @property
    def provenance(self) -> str:
        """Said beside every figure of the rung: "requantized from Q4_1", "quantized from F16, K/V cache q8_0"."""
        f = self.file
        return f.provenance if self.kv_cache in (None, DEFAULT_KV) else f"{f.provenance}, K/V cache {self.kv_cache}"

    def served(self) -> ServedRung:
        return ServedRung(self.label, self.file.path, self.kv_cache, self.provenance)


@dataclass
class LadderResult:
    run: RunResult
    rungs: list[RungRecord]


def choose_engine(asked: LadderEngine | None) -> LadderEngine:
    """llama.cpp's own server where it is built (it reports its timings), else llama-cpp-python."""
    if asked is not None:
        return asked
    from agenteval.serving.engines.llama_server import find_binary

    found = find_binary()
    return "llama-server" if found is not None and os.access(found, os.X_OK) else "llamacpp"


def plan_ladder(opts: LadderOptions, source: SourceModel) -> tuple[list[RungPlan], list[str | None]]:
    """The rungs to make and the K/V cache types to serve each with, checked before anything is made."""
    plans = plan_rungs(source, opts.quants, allow_requantize=opts.allow_requantize, imatrix=opts.imatrix)
    kv_list: list[str | None] = list(opts.kv_caches) if opts.kv_caches else [None]
    if opts.kv_caches and DEFAULT_KV not in opts.kv_caches:
        kv_list.insert(0, None)  # the reference's own cache is always the comparison's baseline
    return plans, kv_list


def labels(source: SourceModel, plans: list[RungPlan], kv_list: list[str | None]) -> list[str]:
    """The run's model labels, the reference first: known before any rung is made."""
    quants = [source.quant, *(p.quant for p in plans)]
    return [rung_label(q, kv) for q in quants for kv in kv_list]


def make_rungs(opts: LadderOptions, source: SourceModel, plans: list[RungPlan], kv_list: list[str | None],
               log: Log) -> list[Rung]:
    """The reference and every rung file (quantized now, or from the cache), times each K/V cache type."""
    files = [reference_rung(source)]
    for plan in plans:
        files.append(make_rung(source, plan, imatrix=opts.imatrix, threads=opts.threads, log=log))
    _mark_random_weights(source, files)
    return [Rung(f, kv) for f in files for kv in kv_list]


def _mark_random_weights(source: SourceModel, files: list[RungFile]) -> None:
    """Rungs of agenteval's random-weight test model are labelled as such wherever they appear,
    as the source is: its marker goes beside them in the cache."""
    import shutil

    from agenteval.serving.testmodel import MARKER, is_random_test_model

    if not is_random_test_model(source.path):
        return
    marker = source.path.parent / MARKER
    for f in files:
        if not (f.path.parent / MARKER).is_file():
            shutil.copyfile(marker, f.path.parent / MARKER)


def run_ladder(opts: LadderOptions, observer: RunObserver | None = None, log: Log = print) -> LadderResult:
    """Quantize, measure divergence, run every rung on the tasks; resumable at every step.
    Raises InterruptedRunError when stopped (Ctrl-C, SIGTERM) before its trials began."""
    opts = _resolved(opts)
    source = read_source(opts.source.resolve())
    plans, kv_list = plan_ladder(opts, source)
    engine = choose_engine(opts.engine)
    threads = opts.threads or max(1, (os.cpu_count() or 2) // 2)
    tasks = _load_tasks(opts)
    _check_can_run(engine)
    _check_same_source(opts, source)
    run_id = opts.resume or new_run_id()
    config_path = opts.out / run_id / "ladder.toml"
    run_opts = RunOptions(task_paths=opts.task_paths, models=labels(source, plans, kv_list), samples=opts.samples,
                          concurrency=opts.concurrency, variants=opts.variants, db=opts.db, out=opts.out,
                          resume=run_id, config=config_path, budgets=opts.budgets,
                          ladder={**opts.to_config(), "engine": engine, "threads": threads,
                                  "source_sha256": source.sha256})
    with Store(opts.db) as store:
        if not opts.resume:  # recorded before anything slow, so every later step can be resumed
            store.save_run(RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version=__version__,
                                     owner=this_process(), models=run_opts.models, tasks=[t.name for t in tasks],
                                     samples=opts.samples or max(t.spec.samples for t in tasks),
                                     concurrency=run_opts.jobs, config=dict(run_opts.to_config())))
        log(f"ladder {run_id}: {len(run_opts.models)} rungs of {source.path.name} ({source.quant}) on {engine}")
        try:
            with sigterm_as_interrupt():
                measured = {r.model for r in store.rungs(run_id) if r.kl_mean is not None or r.reference}
                meter = None if set(run_opts.models) <= measured else _divergence_meter(opts, source, tasks, log)
                rungs = make_rungs(opts, source, plans, kv_list, log)
                write_config(config_path, [r.served() for r in rungs], engine=engine, threads=threads,
                             context=opts.context, temperature=opts.temperature, chat_template=opts.chat_template,
                             source_name=source.path.name, extra_args=tuple(opts.server_args))
                _record_rungs(store, run_id, [r for r in rungs if r.label not in measured], source, meter, log)
        except KeyboardInterrupt:
            store.finish_run(run_id, RunStatus.interrupted)
            raise InterruptedRunError(f"ladder {run_id} stopped before its trials; what it made is kept: "
                                      f"agenteval ladder --resume {run_id}") from None
        except Exception as e:  # never left "running"; --resume picks it up after a fix
            raise mark_failed(store, run_id, opts.out / run_id, e, run_opts.resume_command(run_id)) from e
    result = execute_run(run_opts, observer=observer, log=log)
    with Store(opts.db, read_only=True) as store:
        return LadderResult(result, store.rungs(run_id))


def _check_same_source(opts: LadderOptions, source: SourceModel) -> None:
    """A resumed ladder must compare the file it started with: a changed source would mix two models."""
    recorded = opts.source_sha256
    if recorded and recorded != source.sha256:
        raise BadInputError(f"{source.path} changed since ladder {opts.resume} began (sha256 {recorded[:16]} then, "
                            f"{source.sha256[:16]} now): start a new ladder for the new file")


def _resolved(opts: LadderOptions) -> LadderOptions:
    """The options to run: a resumed ladder's own, else the ones given, checked."""
    if opts.resume:
        with Store(opts.db, read_only=True) as store:
            stored = store.run(opts.resume).config.get("ladder")
        if not stored:
            raise BadInputError(f"run {opts.resume} is not a ladder run: resume it with agenteval run --resume")
        opts = opts.resumed(stored)
    if not opts.quants:
        raise BadInputError("no rung given: --quants Q8_0,Q4_K_M,...")
    return dataclasses.replace(opts, kv_caches=check_kv_caches(opts.kv_caches))


def _check_can_run(engine: LadderEngine) -> None:
    """What would otherwise fail only after hours of quantizing: the Docker engine and the server."""
    from agenteval.sandbox.engine import connect

    connect()
    if engine == "llama-server":
        from agenteval.serving.engines.llama_server import LlamaServer

        LlamaServer("ladder", ModelConfig(engine="llama-server", path="-"), None).binary()
    elif importlib.util.find_spec("llama_cpp") is None:
        raise BadInputError("engine 'llamacpp' needs llama-cpp-python: pip install 'agenteval[llamacpp]'")


def _load_tasks(opts: LadderOptions) -> list[Task]:
    from agenteval.task import expand_task_paths, load_task

    if not opts.task_paths:
        raise BadInputError("no task given: agenteval ladder MODEL.gguf --quants Q8_0,Q4_K_M tasks/folder")
    return [load_task(p) for p in expand_task_paths(opts.task_paths)]


def _divergence_meter(opts: LadderOptions, source: SourceModel, tasks: list[Task], log: Log) -> DivergenceMeter:
    """The divergence text and the reference's logits, made before any rung: a text too short to
    score is one clear error now, not after hours of quantizing."""
    from agenteval.ladder.divergence import DivergenceMeter, divergence_text

    text = divergence_text(tasks, opts.kl_text)
    # no server runs while divergences are measured: every core, unless --threads says otherwise
    meter = DivergenceMeter(source.path, text, _divergence_dir(source), threads=opts.threads or os.cpu_count() or 1,
                            max_tokens=opts.kl_tokens, log=log)
    meter.prepare()
    return meter


def _record_rungs(store: Store, run_id: str, rungs: list[Rung], source: SourceModel, meter: DivergenceMeter | None,
                  log: Log) -> None:
    """Each rung's record with its divergence from the reference. A rung whose divergence cannot
    be measured is recorded with the reason, and its trials still run."""
    if meter is None:
        return  # every rung was measured before this ladder was resumed
    for rung in rungs:
        record = _rung_record(run_id, rung, source)
        text = {"kl_text_sha256": meter.text.sha256, "kl_text_origin": meter.text.origin}
        if rung.is_reference:
            store.save_rung(record.model_copy(update={"kl_mean": 0.0, "top1_agreement": 1.0, "kl_method": "reference",
                                                      "kl_s": meter.reference_s, **text}))
            continue
        try:
            log(f"{rung.label}: measuring divergence from {source.quant} over {meter.text.origin}")
            t0 = time.monotonic()
            d = meter.measure(rung.file.path, kv_cache=rung.kv_cache)
            record = record.model_copy(update={
                "kl_mean": d.mean_kl, "kl_median": d.median_kl, "kl_p99": d.p99_kl, "kl_max": d.max_kl,
                "top1_agreement": d.top1_agreement, "kl_tokens": d.tokens, "perplexity": d.perplexity,
                "reference_perplexity": d.reference_perplexity, "kl_method": d.method,
                "kl_s": round(time.monotonic() - t0, 3)})
        except BadInputError as e:
            log(f"{rung.label}: divergence not measured: {e}")
            record = record.model_copy(update={"kl_error": str(e)})
        store.save_rung(record.model_copy(update=text))


def _divergence_dir(source: SourceModel) -> Path:
    """Reference logits can be gigabytes: they live beside the rungs in the ladder cache, not in reports/."""
    from agenteval.ladder.quantize import ladder_cache_dir

    return ladder_cache_dir() / source.sha256[:16] / "divergence"


def _rung_record(run_id: str, rung: Rung, source: SourceModel) -> RungRecord:
    f = rung.file
    return RungRecord(run_id=run_id, model=rung.label, quant=f.quant, kv_cache=rung.kv_cache,
                      reference=rung.is_reference, provenance=rung.provenance, requantized=f.requantized,
                      source=source.path.name, source_quant=source.quant, source_sha256=source.sha256,
                      path=str(f.path), file_bytes=f.file_bytes, file_sha256=f.sha256, params=f.params,
                      bits_per_weight=f.bits_per_weight, imatrix_sha256=f.imatrix_sha256, quantizer=f.quantizer,
                      quantize_s=f.quantize_s)
