"""The header-only GGUF reader against the gguf package's own reader: the same fields, array
lengths and tensors, on files written by the gguf package; a broken file is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package comes with the serve extra")
np = pytest.importorskip("numpy")

from agenteval.errors import BadInputError  # noqa: E402
from agenteval.models.gguf import gguf_info, has_chat_template  # noqa: E402
from agenteval.models.gguf_header import read_header  # noqa: E402


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


def test_the_fingerprint_facts_come_from_the_header(tmp_path: Path) -> None:
    with_template = write(tmp_path / "a.gguf")
    without = write(tmp_path / "b.gguf", template=None)
    info = gguf_info(with_template)
    assert info["architecture"] == "llama" and info["context_length"] == 4096 and info["quantization"] == "Q8_0"
    assert len(str(info["chat_template_sha256"])) == 16 and "chat_template_sha256" not in gguf_info(without)
    assert has_chat_template(with_template) and not has_chat_template(without)


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
