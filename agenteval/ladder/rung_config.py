"""How every rung is served alike: one engine, one thread count, one context, one sampling,
each with its K/V cache type, written as an agenteval.toml with one alias per rung (what
the run serves, and what a user can serve again with ``agenteval run --config``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agenteval import __version__
from agenteval.errors import BadInputError

LadderEngine = Literal["llama-server", "llamacpp"]
# K/V cache types both engines take: llama.cpp's --cache-type-k/-v names, to the ggml type
# numbers llama-cpp-python's server takes as --type_k/--type_v.
KV_TYPES: dict[str, int] = {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q5_1": 7, "q5_0": 6, "q4_1": 3, "q4_0": 2,
                            "iq4_nl": 20}
DEFAULT_KV = "f16"  # what both engines use when told nothing
FLOAT_KV = ("f32", "f16", "bf16")  # a V cache of any other type needs flash attention in llama.cpp


def needs_flash_attention(kv_cache: str | None) -> bool:
    return kv_cache is not None and kv_cache not in FLOAT_KV


def rung_label(quant: str, kv_cache: str | None) -> str:
    """A rung's model label in the run: its quant, and a K/V cache other than the default."""
    return quant if kv_cache in (None, DEFAULT_KV) else f"{quant}@kv={kv_cache}"


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
    """The command-line arguments every rung's server gets: the same threads everywhere (prompt
    processing too), and the K/V cache type."""
    if engine == "llama-server":
        args = ["-t", str(threads), "-tb", str(threads)]
        if kv_cache is not None:
            args += ["--cache-type-k", kv_cache, "--cache-type-v", kv_cache]
        return args + (["--flash-attn", "on"] if needs_flash_attention(kv_cache) else [])
    args = ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    if kv_cache is not None:
        args += ["--type_k", str(KV_TYPES[kv_cache]), "--type_v", str(KV_TYPES[kv_cache])]
    return args + (["--flash_attn", "true"] if needs_flash_attention(kv_cache) else [])


@dataclass(frozen=True)
class ServedRung:
    """What one alias of the written config says."""

    label: str
    path: Path
    kv_cache: str | None
    provenance: str


def toml_string(text: str) -> str:
    """A TOML basic string. JSON's escapes are not TOML's for characters outside the BMP (JSON
    writes surrogate pairs, which TOML refuses), so only quotes, backslashes and control
    characters are escaped and the rest is written as it is."""
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise BadInputError(f"{text!r}: not valid Unicode (a file name in another encoding?): rename it")
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def write_config(path: Path, rungs: list[ServedRung], *, engine: LadderEngine, threads: int, context: int,
                 temperature: float, chat_template: str | None, source_name: str,
                 extra_args: tuple[str, ...] = ()) -> Path:
    """An agenteval.toml with one alias per rung; every alias the same but for its file and cache."""
    printable = "".join(ch for ch in source_name if ch >= " " and ch != "\x7f")  # a comment takes no escapes
    lines = [f"# Written by agenteval ladder {__version__}: one alias per rung of {printable}.", ""]
    for rung in rungs:
        lines.append(f"[models.{toml_string(rung.label)}]")
        args = [*server_args(engine, threads, rung.kv_cache), *extra_args]  # --server-arg: GPU offload, ...
        lines += [f"engine = {toml_string(engine)}", f"path = {toml_string(str(rung.path))}", f"context = {context}",
                  f"args = [{', '.join(toml_string(a) for a in args)}]",
                  f"sampling = {{ temperature = {float(temperature)!r}, seed = 0 }}",
                  f"provenance = {toml_string(rung.provenance)}"]
        if chat_template:
            lines.append(f"chat_template = {toml_string(chat_template)}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
