"""agenteval's tiny test model as GGUF: written with the ``gguf`` package (as llama.cpp's
convert_hf_to_gguf.py does for Llama models) and quantized by llama.cpp itself through
llama-cpp-python, so the quantized path that users run (Q8_0, Q4_K_M) is the one tested here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from agenteval.errors import BadInputError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

QUANT_TYPES = {"F16": 1, "Q8_0": 7, "Q4_0": 2, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}  # what ``quantize`` makes


def _permute(w: "NDArray[np.generic]", n_head: int) -> "NDArray[np.generic]":
    """HF's rotary layout to llama.cpp's, for q and k projections."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(hf_dir: Path, out: Path) -> Path:
    try:
        import gguf
        import numpy as np
        from safetensors.numpy import load_file
    except ImportError as e:
        raise BadInputError(f"writing GGUF needs the serve extra: pip install 'agenteval[serve]' ({e})") from None
    cfg = json.loads((hf_dir / "config.json").read_text())
    tok = json.loads((hf_dir / "tokenizer.json").read_text())
    tok_cfg = json.loads((hf_dir / "tokenizer_config.json").read_text())
    tensors = load_file(str(hf_dir / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("agenteval tiny random test model")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(cfg["hidden_size"] // n_head)
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(QUANT_TYPES["F16"])

    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    specials = {t["id"] for t in tok.get("added_tokens", []) if t.get("special")}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if i in specials else 1 for _, i in vocab])
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    template = tok_cfg.get("chat_template") or (hf_dir / "chat_template.jinja").read_text()
    w.add_chat_template(template)

    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    w.add_tensor("token_embd.weight", tensors["model.embed_tokens.weight"].astype(np.float16))
    for i in range(cfg["num_hidden_layers"]):
        for hf, gg in names.items():
            t = tensors[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = _permute(t, n_head)
            elif gg == "attn_k":
                t = _permute(t, n_kv)
            w.add_tensor(f"blk.{i}.{gg}.weight", t.astype(np.float32 if gg.endswith("norm") else np.float16))
    w.add_tensor("output_norm.weight", tensors["model.norm.weight"].astype(np.float32))
    w.add_tensor("output.weight", tensors["lm_head.weight"].astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def quantize(src: Path, out: Path, quant: str) -> Path:
    """Quantize with llama.cpp (llama-cpp-python's binding of llama_model_quantize)."""
    if quant not in QUANT_TYPES:
        raise BadInputError(f"unknown quantization {quant!r} (known: {', '.join(QUANT_TYPES)})")
    try:
        import llama_cpp
    except ImportError:
        raise BadInputError("quantizing needs llama-cpp-python: pip install 'agenteval[llamacpp]'") from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[quant]
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), params)
    if rc != 0 or not out.is_file():
        raise BadInputError(f"llama.cpp could not quantize {src} to {quant} (code {rc})")
    return out
