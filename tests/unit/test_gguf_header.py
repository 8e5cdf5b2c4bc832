"""The header-only GGUF reader against the gguf package's own reader: the same fields, array
lengths and tensors, on files written by the gguf package; a broken file is one clear error.
The reader itself needs no optional package: its table of ggml types is carried, and checked
here against the gguf package's."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from agenteval.errors import BadInputError
from agenteval.gguf.header import GGML_TYPES, read_header
from agenteval.gguf.info import gguf_info, has_chat_template
from tests.conftest import missing

try:
    import gguf
    import numpy as np
except ImportError:  # the test and serve extras install both
    gguf = np = None


@pytest.fixture
def gguf_package() -> None:
    if gguf is None:
        missing("serve", "the gguf package is not installed (the test extra installs it too): its writer makes "
                         "these files and holds the table checked here")


needs_gguf = pytest.mark.usefixtures("gguf_package")
# gguf 0.19.0 (PyPI's newest) still sizes Q8_1 as two float32 + 32 int8; ggml's block_q8_1 holds two
# halves (36 bytes), as llama.cpp's own gguf-py says since. Q8_1 is a scratch type no file stores.
STALE_IN_GGUF_PACKAGE = {"Q8_1": (32, 4 + 4 + 32)}


def write(path: Path, template: str | None = "{{ messages }}") -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("test ✓ model")
    w.add_context_length(4096)
    w.add_block_count(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(7)
    w.add_bool("test.flag", True)
    w.add_int64("test.big", -(1 << 40))
    w.add_float64("test.double", 0.125)
    w.add_token_list(["<s>", "héllo", "wörld", "", "😀"] * 20)
    w.add_token_scores([0.5] * 100)
    w.add_token_types([1] * 100)
    w.add_array("test.nested", [[1, 2], [3]])
    if template is not None:
        w.add_chat_template(template)
    w.add_tensor("token_embd.weight", np.zeros((64, 32), dtype=np.float16))
    w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    q8 = gguf.quantize(np.random.default_rng(0).random((8, 64), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@needs_gguf
def test_fields_arrays_and_tensors_match_the_gguf_packages_reader(tmp_path: Path) -> None:
    path = write(tmp_path / "m.gguf")
    header, reader = read_header(path), gguf.GGUFReader(str(path))
    for key, value in header.fields.items():
        assert value == reader.fields[key].contents(), key
    for key, n in header.arrays.items():
        if key != "test.nested":  # the gguf reader lists a nested array's leaves; the length is the outer count
            assert n == len(reader.fields[key].data), key
    assert header.arrays["test.nested"] == 2
    assert set(header.fields) | set(header.arrays) == set(reader.fields) - {"GGUF.version", "GGUF.tensor_count",
                                                                           "GGUF.kv_count"}
    assert [(t.name, t.n_elements, header.tensor_bytes(t)) for t in header.tensors] == \
        [(t.name, int(t.n_elements), int(t.n_bytes)) for t in reader.tensors]
    assert header.fields["general.name"] == "test ✓ model" and header.arrays["tokenizer.ggml.tokens"] == 100
    assert header.fields["test.big"] == -(1 << 40) and header.fields["test.flag"] is True


@needs_gguf
def test_the_fingerprint_facts_come_from_the_header(tmp_path: Path) -> None:
    with_template = write(tmp_path / "a.gguf")
    without = write(tmp_path / "b.gguf", template=None)
    info = gguf_info(with_template)
    assert info["architecture"] == "llama" and info["context_length"] == 4096 and info["quantization"] == "Q8_0"
    assert len(str(info["chat_template_sha256"])) == 16 and "chat_template_sha256" not in gguf_info(without)
    assert has_chat_template(with_template) and not has_chat_template(without)


@needs_gguf
@pytest.mark.parametrize("cut", [3, 20, 200, 1000, -1])  # -1: one byte of tensor data missing
def test_a_cut_or_foreign_file_is_one_clear_error(tmp_path: Path, cut: int) -> None:
    data = write(tmp_path / "m.gguf").read_bytes()
    broken = tmp_path / "cut.gguf"
    broken.write_bytes(data[:cut])
    assert len(broken.read_bytes()) < len(data)
    with pytest.raises(BadInputError, match="cut.gguf"):
        read_header(broken)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(BadInputError, match="not a GGUF file"):
        read_header(other)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty.gguf"):
        read_header(empty)


@needs_gguf
def test_the_carried_type_table_is_the_gguf_packages() -> None:
    """Every type the gguf package knows is carried with the same name, block and size (or the
    package's one known stale size); types newer than the package are carried too."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    assert GGML_QUANT_SIZES
    for kind, sizes in GGML_QUANT_SIZES.items():
        carried = GGML_TYPES.get(int(kind))
        assert carried is not None, f"{kind.name} ({int(kind)}) is not carried"
        assert carried.name == GGMLQuantizationType(int(kind)).name
        assert (carried.block, carried.size) == sizes or STALE_IN_GGUF_PACKAGE.get(carried.name) == sizes, kind.name
    newest_known = max(int(k) for k in GGML_QUANT_SIZES)
    assert [t for t in set(GGML_TYPES) - {int(k) for k in GGML_QUANT_SIZES} if t <= newest_known] == []


def write_by_hand(path: Path, ggml_type: int, elements: int, data_bytes: int) -> Path:
    """A one-tensor GGUF v3 written with struct alone, for a process without the gguf package."""
    def string(s: str) -> bytes:
        return struct.pack("<Q", len(s)) + s.encode()

    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + string("general.architecture") + struct.pack("<I", 8) + \
        string("llama") + string("t") + struct.pack("<IQIQ", 1, elements, ggml_type, 0)
    path.write_bytes(head + b"\0" * (-len(head) % 32) + b"\1" * data_bytes)
    return path


def test_reading_a_header_needs_no_optional_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("gguf", "gguf.constants", "numpy"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError
    q4_k = write_by_hand(tmp_path / "q4k.gguf", 12, 512, 2 * 144)
    header = read_header(q4_k)
    assert [(t.name, t.n_elements, header.tensor_bytes(t)) for t in header.tensors] == [("t", 512, 288)]
    assert header.fields["general.architecture"] == "llama"
    with pytest.raises(BadInputError, match="short.gguf"):
        read_header(write_by_hand(tmp_path / "short.gguf", 12, 512, 2 * 144 - 1))


@pytest.mark.parametrize("type_id", [4, 31, 43, 999])  # removed from ggml (4, 31) or never there
def test_a_tensor_of_a_type_ggml_does_not_have_is_refused(tmp_path: Path, type_id: int) -> None:
    odd = write_by_hand(tmp_path / "odd.gguf", type_id, 32, 64)
    with pytest.raises(BadInputError, match=f"odd.gguf.*{type_id} is not a ggml tensor type"):
        read_header(odd)
