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
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, cast

from agenteval import __version__
from agenteval.errors import BadInputError
from agenteval.ladder.quantize import RungFile, SourceModel, make_rung, plan_rungs, read_source, reference_rung
from agenteval.paths import DEFAULT_DB, REPORTS_DIR
from agenteval.records import RungRecord, RunRecord, utcnow
from agenteval.runner.run import Budgets, RunObserver, RunOptions, RunResult, execute_run, new_run_id
from agenteval.store import Store

LadderEngine = Literal["llama-server", "llamacpp"]
Log = Callable[[str], None]
# K/V cache types both engines take (llama.cpp's --cache-type-k/-v names; ggml type numbers for
# llama-cpp-python's --type_k/--type_v).
KV_TYPES: dict[str, int] = {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q5_1": 7, "q5_0": 6, "q4_1": 3, "q4_0": 2,
                            "iq4_nl": 20}
DEFAULT_KV = "f16"


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
    chat_template: Literal["chatml"] | None = None
    imatrix: Path | None = None
    allow_requantize: bool = False
    kl_text: Path | None = None
    kl_tokens: int = 2000  # positions scored: the first chunks of the text that reach this many
    threads: int | None = None
    budgets: Budgets = field(default_factory=Budgets)
    concurrency: int | None = None
    db: Path = DEFAULT_DB
    out: Path = REPORTS_DIR
    resume: str | None = None

    def to_config(self) -> dict[str, Any]:
        return {"source": str(self.source.resolve()), "quants": self.quants, "task_paths": self.task_paths,
                "samples": self.samples, "variants": self.variants, "kv_caches": self.kv_caches,
                "engine": self.engine, "context": self.context, "chat_template": self.chat_template,
                "imatrix": str(self.imatrix.resolve()) if self.imatrix else None,
                "allow_requantize": self.allow_requantize,
                "kl_text": str(self.kl_text.resolve()) if self.kl_text else None, "kl_tokens": self.kl_tokens,
                "threads": self.threads,
                "budgets": dict(self.budgets)}

    def resumed(self, stored: dict[str, Any]) -> "LadderOptions":
        """The stored ladder, keeping where this invocation reads and writes (db, out, -j)."""
        return dataclasses.replace(
            self, source=Path(stored["source"]), quants=list(stored["quants"]),
            task_paths=list(stored["task_paths"]), samples=stored["samples"], variants=list(stored["variants"]),
            kv_caches=list(stored["kv_caches"]), engine=stored["engine"], context=int(stored["context"]),
            chat_template=stored["chat_template"], imatrix=Path(stored["imatrix"]) if stored["imatrix"] else None,
            allow_requantize=bool(stored["allow_requantize"]),
            kl_text=Path(stored["kl_text"]) if stored["kl_text"] else None, kl_tokens=int(stored["kl_tokens"]),
            threads=stored["threads"],
            budgets=cast(Budgets, stored["budgets"] or {}))


@dataclass(frozen=True)
class Rung:
    """One model of the ladder run: a rung file served with one K/V cache type."""

    file: RungFile
    kv_cache: str | None  # None: the engine's default

    @property
    def label(self) -> str:
        return self.file.quant if self.kv_cache in (None, DEFAULT_KV) else f"{self.file.quant}@kv={self.kv_cache}"

    @property
    def is_reference(self) -> bool:
        return self.file.reference and self.kv_cache in (None, DEFAULT_KV)


@dataclass
class LadderResult:
    run: RunResult
    rungs: list[RungRecord]


def choose_engine(asked: LadderEngine | None) -> LadderEngine:
    """llama.cpp's own server where it is built (it reports its timings), else llama-cpp-python."""
    if asked is not None:
        return asked
    from agenteval.models.engines.llama_server import find_binary

    found = find_binary()
    return "llama-server" if found is not None and os.access(found, os.X_OK) else "llamacpp"


def check_kv_caches(kv_caches: list[str]) -> list[str]:
    out: list[str] = []
    for kv in kv_caches:
        name = kv.strip().lower()
        if name not in KV_TYPES:
            raise BadInputError(f"--kv-cache {kv!r}: unknown K/V cache type (known: {', '.join(KV_TYPES)})")
        if name not in out:
            out.append(name)
    return out


def server_args(engine: LadderEngine, threads: int, kv_cache: str | None) -> list[str]:
    """The command-line arguments every rung's server gets: the same thread count everywhere,
    and the K/V cache type (a quantized V cache needs flash attention in llama.cpp)."""
    if engine == "llama-server":
        args = ["-t", str(threads)]
        if kv_cache is not None:
            args += ["--cache-type-k", kv_cache, "--cache-type-v", kv_cache]
            if kv_cache not in ("f16", "f32", "bf16"):
                args += ["--flash-attn", "on"]
        return args
    args = ["--n_threads", str(threads)]
    if kv_cache is not None:
        args += ["--type_k", str(KV_TYPES[kv_cache]), "--type_v", str(KV_TYPES[kv_cache])]
        if kv_cache not in ("f16", "f32", "bf16"):
            args += ["--flash_attn", "true"]
    return args


def write_config(path: Path, rungs: list[Rung], opts: LadderOptions, engine: LadderEngine, threads: int) -> Path:
    """An agenteval.toml with one alias per rung: what the run serves, and what a user can serve
    again (``agenteval run --config reports/RUN/ladder.toml --model Q4_K_M``)."""
    lines = [f"# Written by agenteval ladder {__version__}: one alias per rung of {opts.source.name}.", ""]
    for rung in rungs:
        lines.append(f"[models.{json.dumps(rung.label)}]")
        table: dict[str, object] = {"engine": engine, "path": str(rung.file.path), "context": opts.context,
                                    "args": server_args(engine, threads, rung.kv_cache)}
        if opts.chat_template:
            table["chat_template"] = opts.chat_template
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]  # JSON strings and lists are TOML
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def prepare_rungs(opts: LadderOptions, source: SourceModel, log: Log) -> list[Rung]:
    """The reference and every rung file (quantized now, or from the cache), times each K/V cache type."""
    plans = plan_rungs(source, opts.quants, allow_requantize=opts.allow_requantize, imatrix=opts.imatrix)
    files = [reference_rung(source)]
    for plan in plans:
        files.append(make_rung(source, plan, imatrix=opts.imatrix, threads=opts.threads, log=log))
    kv_list: list[str | None] = list(opts.kv_caches) if opts.kv_caches else [None]
    if opts.kv_caches and DEFAULT_KV not in opts.kv_caches:
        kv_list.insert(0, None)  # the reference's own cache is always the comparison's baseline
    _mark_random_weights(source, files)
    return [Rung(f, kv) for f in files for kv in kv_list]


def _mark_random_weights(source: SourceModel, files: list[RungFile]) -> None:
    """Rungs of agenteval's random-weight test model are labelled as such wherever they appear,
    as the source is: its marker goes beside them in the cache."""
    import shutil

    from agenteval.models.testmodel import MARKER, is_random_test_model

    if not is_random_test_model(source.path):
        return
    marker = source.path.parent / MARKER
    for f in files:
        if not (f.path.parent / MARKER).is_file():
            shutil.copyfile(marker, f.path.parent / MARKER)


def run_ladder(opts: LadderOptions, observer: RunObserver | None = None, log: Log = print) -> LadderResult:
    """Quantize, measure divergence, run every rung on the tasks; resumable at every step."""
    if opts.resume:
        with Store(opts.db, read_only=True) as store:
            stored = store.run(opts.resume).config.get("ladder")
        if not stored:
            raise BadInputError(f"run {opts.resume} is not a ladder run: resume it with agenteval run --resume")
        opts = opts.resumed(stored)
    if not opts.quants:
        raise BadInputError("no rung given: --quants Q8_0,Q4_K_M,...")
    kv_caches = check_kv_caches(opts.kv_caches)
    opts = dataclasses.replace(opts, kv_caches=kv_caches)
    source = read_source(opts.source.resolve())
    engine = choose_engine(opts.engine)
    threads = opts.threads or max(1, (os.cpu_count() or 2) // 2)
    tasks = _load_tasks(opts)
    rungs = prepare_rungs(opts, source, log)

    run_id = opts.resume or new_run_id()
    run_opts = RunOptions(task_paths=opts.task_paths, models=[r.label for r in rungs], samples=opts.samples,
                          concurrency=opts.concurrency, variants=opts.variants, db=opts.db, out=opts.out,
                          resume=run_id, config=write_config(opts.out / run_id / "ladder.toml", rungs, opts, engine,
                                                             threads),
                          budgets=opts.budgets, ladder={**opts.to_config(), "engine": engine, "threads": threads})
    with Store(opts.db) as store:
        if not opts.resume:
            store.save_run(RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version=__version__,
                                     models=run_opts.models, tasks=[t.name for t in tasks],
                                     samples=opts.samples or max(t.spec.samples for t in tasks),
                                     concurrency=run_opts.jobs, config=dict(run_opts.to_config())))
        log(f"ladder {run_id}: {len(rungs)} rungs of {source.path.name} ({source.quant}) on {engine}")
        _record_rungs(store, run_id, rungs, source, opts, tasks, threads, log)
    result = execute_run(run_opts, observer=observer, log=log)
    with Store(opts.db, read_only=True) as store:
        return LadderResult(result, store.rungs(run_id))


def _load_tasks(opts: LadderOptions) -> list[Any]:
    from agenteval.task import expand_task_paths, load_task

    if not opts.task_paths:
        raise BadInputError("no task given: agenteval ladder MODEL.gguf --quants Q8_0,Q4_K_M tasks/folder")
    return [load_task(p) for p in expand_task_paths(opts.task_paths)]


def _record_rungs(store: Store, run_id: str, rungs: list[Rung], source: SourceModel, opts: LadderOptions,
                  tasks: list[Any], threads: int, log: Log) -> None:
    """Each rung's record, with its divergence from the reference (measured once: a resumed
    ladder keeps what was recorded)."""
    from agenteval.ladder.divergence import DivergenceMeter, divergence_text

    done = {r.model: r for r in store.rungs(run_id) if r.kl_mean is not None or r.reference}
    todo = [r for r in rungs if r.label not in done]
    if not todo:
        return
    text = divergence_text(tasks, opts.kl_text)
    work = _divergence_dir(source)
    meter: DivergenceMeter | None = None
    for rung in todo:
        record = _rung_record(run_id, rung, source)
        if rung.is_reference:
            store.save_rung(record.model_copy(update={"kl_mean": 0.0, "top1_agreement": 1.0, "kl_method": "reference",
                                                      "kl_text_sha256": text.sha256, "kl_text_origin": text.origin}))
            continue
        try:
            meter = meter or DivergenceMeter(source.path, text, work, threads=threads, max_tokens=opts.kl_tokens,
                                             log=log)
            log(f"{rung.label}: measuring divergence from {source.quant} over {text.origin}")
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
        store.save_rung(record.model_copy(update={"kl_text_sha256": text.sha256, "kl_text_origin": text.origin}))


def _divergence_dir(source: SourceModel) -> Path:
    """Reference logits can be gigabytes: they live beside the rungs in the ladder cache, not in reports/."""
    from agenteval.ladder.quantize import ladder_cache_dir

    return ladder_cache_dir() / source.sha256[:16] / "divergence"


def _rung_record(run_id: str, rung: Rung, source: SourceModel) -> RungRecord:
    f = rung.file
    return RungRecord(run_id=run_id, model=rung.label, quant=f.quant, kv_cache=rung.kv_cache,
                      reference=rung.is_reference, provenance=f.provenance, requantized=f.requantized,
                      source=source.path.name, source_quant=source.quant, source_sha256=source.sha256,
                      path=str(f.path), file_bytes=f.file_bytes, file_sha256=f.sha256, params=f.params,
                      bits_per_weight=f.bits_per_weight, imatrix_sha256=f.imatrix_sha256, quantizer=f.quantizer,
                      quantize_s=f.quantize_s)
