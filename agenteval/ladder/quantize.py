"""The rungs of a quantization ladder: one source GGUF, each rung made from it by llama.cpp's
own quantizer (``llama-quantize``, else llama-cpp-python's ``llama_model_quantize``), so every
rung is what a user running llama.cpp would get.

Rungs are cached by (source sha256, type, imatrix sha256), so a rerun evaluates the same
bytes without quantizing again. Layout of ``ladder_cache_dir()`` (or ``cache_dir``)::

    <source sha256[:16]>/
        Q4_K_M.gguf                      a finished rung: renamed into place only once complete
        Q4_K_M.json                      its provenance (quantizer, seconds, source, size, mtime_ns, sha256)
        Q4_K_M.log                       the quantizer's output
        Q4_K_M.lock                      fcntl lock: one process makes a rung at a time
        .Q4_K_M.gguf.<pid>.tmp           being written (or left by a kill -9): never a finished rung
        IQ2_XS-imatrix-<sha[:12]>.gguf   a rung made with an importance matrix
    hashes/<path hash>.json              a file's sha256 keyed by (size, mtime_ns): hashed once
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agenteval.errors import BadInputError
from agenteval.gguf.info import LLAMA_FTYPES, ftype_name
from agenteval.logs import Log
from agenteval.paths import cache_dir

REFERENCE_TYPES = ("F32", "F16", "BF16", "Q8_0")  # sources a ladder accepts without --allow-requantize
UNQUANTIZED_TYPES = ("F32", "F16", "BF16")  # sources llama-quantize reads without its --allow-requantize
ENV_QUANTIZE = "AGENTEVAL_LLAMA_QUANTIZE"
ENV_CACHE = "AGENTEVAL_LADDER_CACHE"
SIDECAR_VERSION = 1

# Nominal bits per weight of each type llama-quantize makes (tools/quantize/quantize.cpp's
# QUANT_OPTIONS, highest first). Only the order matters: it decides what "below the source" means.
NOMINAL_BPW: dict[str, float] = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_1": 6.0, "Q5_K_M": 5.69,
    "Q5_K_S": 5.54, "Q5_0": 5.5, "Q4_1": 5.0, "Q4_K_M": 4.89, "Q4_K_S": 4.58, "Q4_0": 4.5, "IQ4_NL": 4.5,
    "Q3_K_L": 4.27, "IQ4_XS": 4.25, "MXFP4_MOE": 4.25, "Q3_K_M": 3.91, "IQ3_M": 3.66, "Q3_K_S": 3.5,
    "IQ3_S": 3.44, "IQ3_XS": 3.3, "IQ3_XXS": 3.06, "Q2_K": 2.96, "Q2_K_S": 2.9, "IQ2_M": 2.7, "IQ2_S": 2.5,
    "IQ2_XS": 2.31, "Q2_0": 2.25, "IQ2_XXS": 2.06, "TQ2_0": 2.06, "IQ1_M": 1.75, "TQ1_0": 1.69,
    "IQ1_S": 1.56, "Q1_0": 1.125,
}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}  # llama-quantize's own aliases
# Types llama.cpp refuses to make without an importance matrix (src/llama-quant.cpp,
# tensor_requires_imatrix: IQ1_*, IQ2_XXS/XS/S, IQ3_XXS tensors, Q2_K inside Q2_K_S; IQ2_M and
# IQ3_XS files hold IQ2_S and IQ3_XXS tensors).
IMATRIX_REQUIRED = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS",
                              "Q2_K_S"})
_FTYPE_OF = {name: ftype for ftype, name in LLAMA_FTYPES.items()}
_PY_QUANTIZE = """\
import sys
import llama_cpp
src, out, ftype, allow, nthread = sys.argv[1:]
params = llama_cpp.llama_model_quantize_default_params()
params.ftype, params.allow_requantize, params.nthread = int(ftype), allow == "1", int(nthread)
sys.exit(0 if llama_cpp.llama_model_quantize(src.encode(), out.encode(), params) == 0 else 1)
"""


@dataclass(frozen=True)
class SourceModel:
    path: Path
    quant: str  # "F16", "Q4_1", ... from general.file_type
    params: int  # number of weights: sum of tensor element counts
    file_bytes: int
    sha256: str  # full hex, cached by (size, mtime_ns) so a 60 GB file is hashed once


@dataclass(frozen=True)
class RungPlan:
    quant: str  # canonical upper-case name
    requantized: bool  # from a non-reference source, or not below the source's precision


@dataclass(frozen=True)
class RungFile:
    quant: str
    path: Path
    file_bytes: int
    sha256: str
    params: int
    bits_per_weight: float  # tensor data bits / params, as llama.cpp reports BPW (not file size)
    source_quant: str
    requantized: bool
    reference: bool  # True only for the source itself
    imatrix_sha256: str | None
    quantizer: str | None  # None for the reference
    quantize_s: float | None  # None when reused from the cache, and for the reference
    cached: bool

    @property
    def provenance(self) -> str:
        """How this rung's bytes came to be, for every figure that shows it."""
        if self.reference:
            return f"reference ({self.quant})"
        return f"{'requantized' if self.requantized else 'quantized'} from {self.source_quant}"


@dataclass(frozen=True)
class _Summary:
    quant: str
    params: int
    tensor_bytes: int


def canonical_quant(name: str) -> str:
    """A quantization name as llama-quantize spells it (``q4_k`` is Q4_K_M)."""
    upper = name.strip().upper()
    upper = ALIASES.get(upper, upper)
    if upper not in NOMINAL_BPW:
        raise BadInputError(f"unknown quantization {name!r} (known: {', '.join(NOMINAL_BPW)})")
    return upper


def ladder_cache_dir() -> Path:
    """$AGENTEVAL_LADDER_CACHE, else ``ladder/`` in agenteval's cache, beside the llama-server builds."""
    explicit = os.environ.get(ENV_CACHE)
    return Path(explicit) if explicit else cache_dir() / "ladder"


def rung_path(cache_dir: Path, source_sha256: str, quant: str, imatrix_sha256: str | None) -> Path:
    """Where a rung lives: one folder per source, one file per (type, imatrix)."""
    stem = quant if imatrix_sha256 is None else f"{quant}-imatrix-{imatrix_sha256[:12]}"
    return cache_dir / source_sha256[:16] / f"{stem}.gguf"


def find_quantizer() -> Path | None:
    """``$AGENTEVAL_LLAMA_QUANTIZE``, PATH, beside llama-server, or its build cache."""
    from agenteval.serving.engines.llama_server import find_llama_tool

    return find_llama_tool("llama-quantize", ENV_QUANTIZE)


def read_source(path: Path) -> SourceModel:
    """The ladder's source as its header states it; the hash names its rungs' cache folder."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"no GGUF file at {path}: pass the path of the model file to build the ladder from")
    summary = _read_summary(path)
    return SourceModel(path=path, quant=summary.quant, params=summary.params, file_bytes=path.stat().st_size,
                       sha256=file_sha256(path))


def plan_rungs(source: SourceModel, quants: Sequence[str], *, allow_requantize: bool,
               imatrix: Path | None) -> list[RungPlan]:
    """The rungs to make, deduplicated in the order asked; refuses what llama.cpp would refuse
    and what the ladder's source policy forbids, before anything is quantized."""
    if imatrix is not None and not Path(imatrix).is_file():
        raise BadInputError(f"no importance matrix file at {imatrix}: pass the .dat/.gguf llama-imatrix wrote")
    names = list(dict.fromkeys(canonical_quant(q) for q in quants))
    if source.quant in names:
        raise BadInputError(f"the source is already {source.quant}: it is the reference rung; "
                            f"leave {source.quant} out of --quants")
    needs = [q for q in names if q in IMATRIX_REQUIRED]
    if needs and imatrix is None:
        raise BadInputError(f"llama.cpp makes {', '.join(needs)} only with an importance matrix: pass --imatrix "
                            f"FILE (from llama-imatrix) or leave them out")
    requant = [q for q in names if _is_requantized(source.quant, q)]
    if requant and not allow_requantize:
        raise BadInputError(f"the source is {source.quant}: {', '.join(requant)} would be requantized from it "
                            f"(a ladder starts from {'/'.join(REFERENCE_TYPES)} and goes down); pass "
                            f"--allow-requantize to make them anyway, labelled 'requantized from {source.quant}'")
    return [RungPlan(quant=q, requantized=q in requant) for q in names]


def reference_rung(source: SourceModel) -> RungFile:
    """The source itself as the ladder's top rung, so it is measured like every other."""
    summary = _read_summary(source.path)
    return RungFile(quant=source.quant, path=source.path, file_bytes=source.file_bytes, sha256=source.sha256,
                    params=summary.params, bits_per_weight=_bpw(summary), source_quant=source.quant,
                    requantized=False, reference=True, imatrix_sha256=None, quantizer=None, quantize_s=None,
                    cached=False)


def make_rung(source: SourceModel, plan: RungPlan, *, cache_dir: Path | None = None, imatrix: Path | None = None,
              threads: int | None = None, log: Log = print) -> RungFile:
    """The rung's file, from the cache when a finished one is there, else quantized now."""
    if plan_rungs(source, [plan.quant], allow_requantize=True, imatrix=imatrix) != [plan]:
        raise BadInputError(f"rung {plan} does not fit source {source.quant}: make plans with plan_rungs()")
    imatrix_sha = file_sha256(Path(imatrix)) if imatrix is not None else None
    final = rung_path(Path(cache_dir or ladder_cache_dir()).absolute(), source.sha256, plan.quant, imatrix_sha)
    final.parent.mkdir(parents=True, exist_ok=True)
    with _rung_lock(final, log):
        cached = _cached_rung(final, source, plan, imatrix_sha)
        if cached is not None:
            log(f"{plan.quant}: cached at {final}")
            return cached
        return _quantize(source, plan, final, imatrix, imatrix_sha, threads, log)


def file_sha256(path: Path) -> str:
    """The full sha256 of a file, remembered by (size, mtime_ns) in the ladder cache."""
    st = path.stat()
    resolved = str(path.resolve())
    record = ladder_cache_dir() / "hashes" / f"{hashlib.sha256(resolved.encode()).hexdigest()[:32]}.json"
    known = _read_json(record)
    if (known and known.get("path") == resolved and known.get("size") == st.st_size
            and known.get("mtime_ns") == st.st_mtime_ns and isinstance(known.get("sha256"), str)):
        return str(known["sha256"])
    digest = _hash_file(path)
    try:
        _write_json(record, {"path": resolved, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest})
    except OSError:
        pass  # a read-only cache only costs hashing again next time
    return digest


def _hash_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _is_requantized(source_quant: str, quant: str) -> bool:
    if source_quant not in REFERENCE_TYPES:
        return True
    return NOMINAL_BPW[quant] >= NOMINAL_BPW[source_quant]


def _bpw(summary: _Summary) -> float:
    return summary.tensor_bytes * 8 / summary.params if summary.params else 0.0


def _read_summary(path: Path) -> _Summary:
    """Type, weight count and tensor bytes of a GGUF, from its header (the data stays on disk)."""
    from agenteval.gguf.header import ggml_type, read_header

    header = read_header(path)
    file_type = header.fields.get("general.file_type")
    counts: dict[str, int] = {}
    for t in header.tensors:
        if len(t.shape) > 1:
            name = ggml_type(t.ggml_type).name
            counts[name] = counts.get(name, 0) + 1
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        quant = ftype_name(file_type)
    else:
        quant = _guess_quant(counts)
    return _Summary(quant=quant, params=sum(t.n_elements for t in header.tensors),
                    tensor_bytes=sum(header.tensor_bytes(t) for t in header.tensors))


def _guess_quant(matrix_types: dict[str, int]) -> str:
    """No general.file_type: the most common matrix type, named as llama.cpp's guess names it."""
    if not matrix_types:
        return "unknown (no general.file_type, no matrices)"
    common = max(matrix_types, key=lambda k: matrix_types[k])
    name = {"MXFP4": "MXFP4_MOE"}.get(common, ALIASES.get(common, common))
    return name if name in NOMINAL_BPW else f"{common} (guessed)"


@contextmanager
def _rung_lock(final: Path, log: Log) -> Iterator[None]:
    with open(final.with_suffix(".lock"), "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{final.name}: another process is making it; waiting")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _cached_rung(final: Path, source: SourceModel, plan: RungPlan, imatrix_sha: str | None) -> RungFile | None:
    meta = _read_json(final.with_suffix(".json"))
    if meta is None or not final.is_file():
        return None
    st = final.stat()
    expected = {"version": SIDECAR_VERSION, "quant": plan.quant, "file_bytes": st.st_size,
                "mtime_ns": st.st_mtime_ns, "source_sha256": source.sha256, "imatrix_sha256": imatrix_sha}
    if any(meta.get(k) != v for k, v in expected.items()):
        return None
    try:
        return RungFile(quant=plan.quant, path=final, file_bytes=st.st_size, sha256=str(meta["sha256"]),
                        params=int(meta["params"]), bits_per_weight=float(meta["bits_per_weight"]),
                        source_quant=source.quant, requantized=plan.requantized, reference=False,
                        imatrix_sha256=imatrix_sha, quantizer=str(meta["quantizer"]), quantize_s=None, cached=True)
    except (KeyError, TypeError, ValueError):
        return None


def _quantize(source: SourceModel, plan: RungPlan, final: Path, imatrix: Path | None, imatrix_sha: str | None,
              threads: int | None, log: Log) -> RungFile:
    """Quantize into a temp name, check it, rename it into place, then write its sidecar:
    a rung without a matching sidecar is never taken as finished."""
    binary = _choose_quantizer(imatrix)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        stale.unlink(missing_ok=True)  # we hold the lock: whoever wrote it is gone
    _check_free_space(source, plan.quant, final.parent)
    tmp = final.parent / f".{final.name}.{os.getpid()}.tmp"
    log_path = final.with_suffix(".log")
    argv = _argv(binary, source, plan.quant, tmp, imatrix, threads)
    log(f"{plan.quant}: quantizing {source.path.name} ({source.quant}) with "
        f"{binary.name if binary else 'llama-cpp-python'}; log: {log_path}")
    try:
        start = time.monotonic()
        with open(log_path, "w") as out:
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                check=False).returncode
        seconds = time.monotonic() - start
        quantizer = _describe_quantizer(binary, log_path)
        if rc != 0 or not tmp.is_file():
            raise BadInputError(f"{quantizer} could not make {plan.quant} from {source.path.name} (exit {rc}): "
                                f"{_tail(log_path)} (log: {log_path})")
        summary = _read_summary(tmp)
        if summary.quant != plan.quant:
            raise BadInputError(f"{quantizer} wrote a {summary.quant} file when asked for {plan.quant} "
                                f"(log: {log_path})")
        sha = _hash_file(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    st = final.stat()
    rung = RungFile(quant=plan.quant, path=final, file_bytes=st.st_size, sha256=sha, params=summary.params,
                    bits_per_weight=_bpw(summary), source_quant=source.quant, requantized=plan.requantized,
                    reference=False, imatrix_sha256=imatrix_sha, quantizer=quantizer, quantize_s=seconds,
                    cached=False)
    _write_json(final.with_suffix(".json"), _sidecar(rung, source, binary, st.st_mtime_ns))
    log(f"{plan.quant}: {st.st_size / 1e6:.1f} MB, {rung.bits_per_weight:.2f} BPW in {seconds:.1f}s")
    return rung


def _choose_quantizer(imatrix: Path | None) -> Path | None:
    """llama-quantize when there is one (it takes an imatrix); None means llama-cpp-python."""
    found = find_quantizer()
    if found is not None:
        if not (found.is_file() and os.access(found, os.X_OK)):
            raise BadInputError(f"{found} is not an executable llama-quantize: fix {ENV_QUANTIZE} "
                                f"(the binary or its folder) or unset it")
        return found
    if imatrix is not None:
        raise BadInputError(f"--imatrix needs llama.cpp's llama-quantize, which is not here: build it with "
                            f"'bash .ci/llama-server.sh' or set {ENV_QUANTIZE} to the binary or its folder")
    if importlib.util.find_spec("llama_cpp") is None:
        raise BadInputError(f"quantizing needs llama.cpp: build llama-quantize with 'bash .ci/llama-server.sh' "
                            f"(or set {ENV_QUANTIZE}), or pip install 'agenteval[llamacpp]'")
    return None


def _argv(binary: Path | None, source: SourceModel, quant: str, out: Path, imatrix: Path | None,
          threads: int | None) -> list[str]:
    """The quantizer's command line. Paths are absolute: llama-quantize reads a second
    positional that parses as a type or an integer ("7b/x.gguf") as the type."""
    src, dst = str(source.path.absolute()), str(out.absolute())
    allow = source.quant not in UNQUANTIZED_TYPES  # llama.cpp asks for it even from Q8_0
    if binary is None:
        return [sys.executable, "-c", _PY_QUANTIZE, src, dst, str(_FTYPE_OF[quant]), "1" if allow else "0",
                str(threads or 0)]
    flags = (["--allow-requantize"] if allow else []) + (["--imatrix", str(Path(imatrix).absolute())]
                                                         if imatrix is not None else [])
    return [str(binary), *flags, src, dst, quant, *([str(threads)] if threads else [])]


def _describe_quantizer(binary: Path | None, log_path: Path) -> str:
    if binary is None:
        from importlib.metadata import version

        return f"llama-cpp-python {version('llama-cpp-python')}"
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.startswith("version:")]
    return f"{binary.name} ({lines[0]})" if lines else binary.name


def _check_free_space(source: SourceModel, quant: str, folder: Path) -> None:
    """Refuse now rather than after an hour of quantizing into a full disk."""
    needed = source.params * NOMINAL_BPW[quant] / 8
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise BadInputError(f"{quant} of {source.path.name} needs about {needed / 1e9:.1f} GB but {folder} has "
                            f"{free / 1e9:.1f} GB free: free space or set {ENV_CACHE} to a larger disk")


def _sidecar(rung: RungFile, source: SourceModel, binary: Path | None, mtime_ns: int) -> dict[str, object]:
    return {"version": SIDECAR_VERSION, "quant": rung.quant, "file_bytes": rung.file_bytes, "mtime_ns": mtime_ns,
            "sha256": rung.sha256, "params": rung.params, "bits_per_weight": rung.bits_per_weight,
            "quantizer": rung.quantizer, "quantizer_path": str(binary) if binary else None,
            "quantize_s": rung.quantize_s, "imatrix_sha256": rung.imatrix_sha256,
            "requantized": rung.requantized, "source_path": str(source.path.absolute()),
            "source_quant": source.quant, "source_sha256": source.sha256,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def _tail(log_path: Path, lines: int = 4) -> str:
    """The last lines of a quantizer log, on one line for an error message."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "no log"
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-600:] or "no output"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, object]) -> None:
    """Write beside and rename, so a reader never sees half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
