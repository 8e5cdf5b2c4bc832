"""A tiny random-weight chat model built on this machine, so the whole
pipeline (server, streaming, telemetry, report) runs where no weights can be
downloaded. Its answers are noise: it is labelled as random weights
everywhere it appears.

Layout written to DIR: a Llama-architecture ``config.json`` and safetensors
weights, a byte-level BPE tokenizer trained here with ``tokenizers``, a
ChatML chat template, and ``agenteval-test-model.json``. With ``gguf``, also
``model-f16.gguf`` and ``model-<QUANT>.gguf`` quantized by llama.cpp.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NotRequired, TypedDict

from agenteval.errors import BadInputError

MARKER = "agenteval-test-model.json"
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# Enough text to train a small byte-level BPE vocabulary with code and prose merges.
_CORPUS = [
    "def main():\n    print('hello world')\n\nif __name__ == '__main__':\n    main()\n",
    "import pygame\nscreen = pygame.display.set_mode((400, 600))\nclock = pygame.time.Clock()\n",
    "mkdir -p src/pkg tests && touch src/pkg/__init__.py && chmod 755 scripts/run.sh\n",
    "The bird falls under gravity; pressing SPACE makes it flap upward. Pipes scroll left.\n",
    "Translate the source document into English technical Markdown with headings and tables.\n",
    "<think>I should write the file first, then run it.</think>Here is the file.\n",
    '{"path": "a.txt", "content": "hi"} write_file read_file bash done\n',
] * 40


def _corpus() -> list[str]:
    """Prose, code and task text to learn merges from: agenteval's own sources and tasks,
    so prompts tokenize to a realistic length."""
    texts = list(_CORPUS)
    package = Path(__file__).resolve().parents[1]
    for pattern in ("**/*.py", "**/*.j2", "**/*.md"):
        texts += [p.read_text(errors="replace") for p in sorted(package.glob(pattern))]
    tasks = package.parent / "tasks"
    if tasks.is_dir():
        texts += [p.read_text(errors="replace") for p in sorted(tasks.glob("*/*.md")) + sorted(tasks.glob("*/task.toml"))]
    return texts


class WrittenModel(TypedDict):
    dir: str
    parameters: int
    gguf: NotRequired[str]  # the quantized GGUF file, when one was asked for


def create_test_model(directory: str | Path, *, gguf: str | None = None, seed: int = 0,
                      hidden_size: int = 256, layers: int = 2) -> WrittenModel:
    """Build the model in ``directory``; returns what was written (paths, sizes)."""
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    except ImportError as e:
        raise BadInputError(f"creating a test model needs the serve extra: pip install 'agenteval[serve]' ({e})") from None

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>",  # type: ignore[no-untyped-call]
                                   pad_token="<|endoftext|>", chat_template=CHATML)
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden_size,
                         intermediate_size=2 * hidden_size, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-5,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.eval()  # type: ignore[no-untyped-call]
    # Tokens that are not whole UTF-8 characters on their own (raw bytes, split multi-byte
    # merges) get a zero output row, so greedy decoding never emits them: servers hold back
    # incomplete UTF-8 and some stall on a model that produces nothing else.
    partial = [i for tok_str, i in fast.get_vocab().items()
               if "\ufffd" in fast.convert_tokens_to_string([tok_str])]
    with torch.no_grad():
        model.lm_head.weight[partial] = 0.0
    model.generation_config.do_sample = False
    model.generation_config.max_new_tokens = 256
    model.save_pretrained(out)
    written = WrittenModel(dir=str(out), parameters=sum(p.numel() for p in model.parameters()))
    if gguf:
        from agenteval.gguf.write import quantize, write_gguf

        f16 = write_gguf(out, out / "model-f16.gguf")
        written["gguf"] = str(quantize(f16, out / f"model-{gguf}.gguf", gguf))
    (out / MARKER).write_text(json.dumps({"random_weights": True, "seed": seed, **written}, indent=2))
    return written


def is_random_test_model(path: str | Path) -> bool:
    p = Path(path)
    return (p if p.is_dir() else p.parent).joinpath(MARKER).is_file()
