"""``engine = "transformers"``: `transformers serve` on a model folder
(safetensors weights, tokenizer, chat template)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from agenteval.models.base import TokenCounter
from agenteval.serving.servers import ManagedServer, files_sha256, lazy_counter, package_version


class TransformersServer(ManagedServer):
    requires = ("transformers", "agenteval[serve]")
    needs_model_file = True

    def argv(self) -> list[str]:
        return [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve",
                "--host", "127.0.0.1", "--port", str(self.port), *self.cfg.args, str(self.model_path or "")]

    def served_name(self) -> str:
        return self.cfg.name or str(self.model_path)  # transformers serve loads the model a request names

    def missing_model_hint(self) -> str:
        return " (make one with: agenteval models create-test-model DIR)"

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {"server": "transformers serve", "server_version": package_version("transformers")}
        path = self.model_path
        if path and path.is_dir():
            cfg = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
            info["quantization"] = str(cfg.get("quantization_config", {}).get("quant_method") or
                                       cfg.get("torch_dtype") or cfg.get("dtype") or "unquantized")
            weights = sorted(path.glob("*.safetensors"))
            info["file_bytes"] = sum(w.stat().st_size for w in weights)
            info["file_sha256"] = files_sha256(weights)
            template = path / "chat_template.jinja"
            if template.is_file():
                info["chat_template_sha256"] = hashlib.sha256(template.read_bytes()).hexdigest()[:16]
        return info

    def token_counter(self) -> TokenCounter | None:
        return lazy_counter(self.model_path, _tokenizer_counter)


def _tokenizer_counter(path: Path) -> TokenCounter:
    """Tokens by the model folder's own tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    return lambda t: len(tok.encode(t, add_special_tokens=False))
