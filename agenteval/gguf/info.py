"""What a GGUF file says about itself, for fingerprints, preflight and ladders: its
quantization, architecture, trained context and chat template (``gguf_info``), and llama.cpp's
names of its file types (``ftype_name``, ``server_ftype_name``, ``quant_from_file_name``).
Reads the header only (``agenteval.gguf.header``): no optional package.
"""

from __future__ import annotations

import re
from pathlib import Path

# general.file_type as llama.cpp numbers it (include/llama.h, enum llama_ftype); 4-6 and
# 33-35 are gone from GGUF files. Names are the ones llama-quantize and file names use.
LLAMA_FTYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}
FTYPE_GUESSED = 1024  # flag: the file did not say, llama.cpp guessed
_SIZES = {"Small": "S", "Medium": "M", "Large": "L"}
_QUANT_IN_NAME = re.compile(r"(?<![A-Za-z0-9])(I?Q\d_(?:K_[SML]|K|\d|XXS|XS|S|M|NL)|TQ\d_0|MXFP4_MOE|BF16|F16|F32)"
                            r"(?![A-Za-z0-9])", re.IGNORECASE)


def ftype_name(file_type: int) -> str:
    """A GGUF ``general.file_type`` as its quantization name (``3`` is Q4_1)."""
    name = LLAMA_FTYPES.get(file_type & ~FTYPE_GUESSED)
    return name if name is not None else f"file_type {file_type}"


def server_ftype_name(text: str) -> str | None:
    """llama.cpp's own description of a file type (``llama_ftype_name``: "Q4_K - Medium",
    "IQ2_XS - 2.3125 bpw", "all F32", "MXFP4 MoE"), as the quantization name."""
    text = text.strip().removeprefix("all ").removeprefix("(guessed) ")
    if not text:
        return None
    base, _, rest = text.partition(" - ")
    if base == "IQ3_S mix":
        return "IQ3_M"
    base = base.replace(" ", "_").upper()
    size = _SIZES.get(rest.strip())
    if size and base.endswith("_K"):
        return base if (base, size) == ("Q2_K", "M") else f"{base}_{size}"  # Q2_K is "Q2_K - Medium"
    return base


def quant_from_file_name(name: str) -> str | None:
    """The quantization a GGUF file name states (``qwq-32b-q4_k_m.gguf``), upper-cased."""
    m = _QUANT_IN_NAME.search(Path(name).name)
    return m[1].upper() if m else None


def gguf_info(path: Path) -> dict[str, object]:
    """Quantization, architecture, trained context and chat template hash of a GGUF file, for
    the fingerprint (``chat_template_sha256`` is absent when the file carries no template)."""
    import hashlib

    from agenteval.gguf.header import read_header

    fields = read_header(path).fields
    info: dict[str, object] = {}
    arch = fields.get("general.architecture")
    if arch is not None:
        info["architecture"] = arch
        context = fields.get(f"{arch}.context_length")
        if context is not None:
            info["context_length"] = context
    file_type = fields.get("general.file_type")
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        info["quantization"] = ftype_name(file_type)
    template = fields.get("tokenizer.chat_template")
    if template is not None:
        info["chat_template_sha256"] = hashlib.sha256(str(template).encode()).hexdigest()[:16]
    return info


def has_chat_template(path: Path) -> bool:
    from agenteval.gguf.header import read_header

    return read_header(path).has("tokenizer.chat_template")
