"""The record schema: one definition for what a trial produced.

Everything downstream (the DuckDB tables, the HTML report, exports) derives
from these models. ``SCHEMA_VERSION`` goes up whenever a stored meaning
changes; readers check it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 2  # 2: agent_stop, agent_steps, tool_protocol, actions_run; verdict.rewards, fingerprint.network


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def pass_rate(passed: int, total: int) -> float:
    """Fraction of trials that passed; 0.0 for no trials (a model with none has passed none)."""
    return passed / total if total else 0.0


class FailureMode(str, Enum):
    """Why a trial did not pass; the first that applies wins (see ``classify``).

    The two verify modes split on who is to blame. ``verify_error``: the
    verifier wrote no usable verdict before it had started any solution code
    (its own bug, or the sandbox's). ``verify_failed``: the verdict failed, or
    the verifier died, timed out or found its verdict missing or changed
    after it had started solution code, which counts as the solution
    interfering (the check ``agenteval.verify.INTERFERENCE_CHECK``).
    """

    infra_error = "infra_error"
    sandbox_error = "sandbox_error"
    model_error = "model_error"
    agent_limit = "agent_limit"
    verify_error = "verify_error"            # no verdict, and no solution code had run
    verify_failed = "verify_failed"          # a failing verdict, or interference after solution code ran


class StopReason(str, Enum):
    """Why the agent phase ended (made by the agent, kept as ``TrialRecord.agent_stop``)."""

    done = "done"  # the model called done, or answered without acting
    step_limit = "step_limit"
    token_limit = "token_limit"
    time_limit = "time_limit"
    answer_cut = "answer_cut"  # the answer stopped at the per-call token cap with nothing to act on
    repetition = "repetition"  # the loop guard stopped a model repeating itself
    model_error = "model_error"
    infra_error = "infra_error"
    interrupted = "interrupted"  # the run was cancelled (Ctrl-C)
    solver = "solver"  # oracle or nop: no agent loop ran


class RunStatus(str, Enum):
    """Where a run stands. Every run ends ``completed``, ``interrupted`` or ``failed``; a run whose
    process is gone without ending it (kill -9, a power cut) is stored ``running`` and shown
    ``abandoned`` by readers, which never write. ``--resume`` continues any but ``completed``."""

    running = "running"
    completed = "completed"
    interrupted = "interrupted"  # Ctrl-C or SIGTERM: every finished trial kept
    failed = "failed"  # an error stopped it: ``RunRecord.error`` says which
    abandoned = "abandoned"  # shown, never stored: running, and its process is gone


class ToolProtocol(str, Enum):
    """How a chat model is offered tools (``TrialRecord.tool_protocol``: the one the trial ended with)."""

    auto = "auto"  # native tool calls while the server honours them, else the text protocol
    native = "native"  # tool schemas in the request, tool calls in the answer
    text = "text"  # fenced blocks in plain text (agent/prompts.py)


class Check(BaseModel):
    """One verifier check: a name a person understands and why it failed."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short stable name of the check, e.g. 'file src/main.py content'.")
    passed: bool = Field(description="Whether the check passed.")
    message: str = Field(default="", description="What was expected and what was found.")
    weight: float = Field(default=1.0, ge=0, description="Weight of the check in the score.")


class Verdict(BaseModel):
    """What the hidden verifier concluded. Only the verifier's verdict file produces one."""

    model_config = ConfigDict(extra="forbid")

    checks: list[Check] = Field(default_factory=list, description="Every check, in order.")
    passed: bool = Field(default=False, description="True when there is at least one check and all passed.")
    score: float = Field(default=0.0, description="Weighted fraction of checks passed, 0..1 (reward protocol: "
                         "the deciding reward, clamped to 0..1).")
    rewards: dict[str, float] | None = Field(default=None, description="Reward protocol (Harbor): every value "
                                             "of reward.txt ({'reward': x}) or reward.json, as written.")

    @classmethod
    def from_checks(cls, checks: list[Check]) -> "Verdict":
        total = sum(c.weight for c in checks)
        got = sum(c.weight for c in checks if c.passed)
        return cls(
            checks=checks,
            passed=bool(checks) and all(c.passed for c in checks),
            score=(got / total) if total else 0.0,
        )


class ExecRecord(BaseModel):
    """One command run inside the sandbox, by the agent or by the verifier."""

    phase: str = Field(description="'agent', 'verify' or 'setup'.")
    user: str = Field(description="The uid[:gid] it ran as.")
    command: str = Field(description="The command line as given.")
    exit_code: int | None = Field(description="Exit status; None when the host had to kill it.")
    duration_s: float = Field(description="Wall-clock seconds, measured on the host.")
    timed_out: bool = Field(default=False, description="Killed by the exec timeout.")
    oom_killed: bool = Field(default=False, description="Killed by the memory cap.")
    stdout: str = Field(default="", description="Captured stdout, capped.")
    stderr: str = Field(default="", description="Captured stderr, capped.")
    stdout_bytes: int = Field(default=0, description="Bytes the command wrote to stdout in total.")
    stderr_bytes: int = Field(default=0, description="Bytes the command wrote to stderr in total.")
    truncated: bool = Field(default=False, description="Output went past the cap and was cut.")


class ModelCall(BaseModel):
    """Telemetry of one model call. Token counts come from the server's usage;
    ``tokens_estimated`` marks figures counted with a tokenizer instead."""

    index: int = Field(default=0, description="Order of the call within its trial.")
    model: str = ""
    started_at: datetime = Field(default_factory=lambda: utcnow())
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    tokens_estimated: bool = Field(default=False, description="Counts come from a tokenizer, not the server.")
    ttft_s: float | None = Field(default=None, description="Time to the first token of any kind.")
    ttfat_s: float | None = Field(default=None, description="Time to the first answer token, after any thinking.")
    decode_s: float | None = Field(default=None, description="First token to last token.")
    decode_tokens_per_s: float | None = Field(default=None, description="completion_tokens / decode_s.")
    e2e_s: float = Field(default=0.0, description="Request sent to response complete.")
    finish_reason: str | None = None
    concurrency: int = Field(default=1, description="Requests in flight to this model when the call started.")
    retries: int = 0
    server_timings: dict[str, Any] = Field(default_factory=dict, description="The server's own figures, as sent.")
    error: str | None = None
    error_kind: str | None = Field(default=None, description="'infra' (server, network) or 'model' (its output).")


class Artifact(BaseModel):
    """A file the verifier saved for people to look at (a screenshot, a log)."""

    name: str
    path: str = Field(description="Path relative to the store's artifact folder.")
    size: int
    media_type: str = "application/octet-stream"


class Fingerprint(BaseModel):
    """Where and with what a trial ran, so figures can be compared honestly."""

    agenteval_version: str
    host: str
    platform: str
    cpu_count: int | None = None
    docker_version: str | None = None
    image: str | None = None
    image_id: str | None = None
    model: str
    provider: str
    model_info: dict[str, Any] = Field(default_factory=dict, description="Server, quantization, ...")
    network: str = Field(default="none", description="'none', or 'internet' where --allow-internet granted "
                         "it to a task that allows it.")


class TrialRecord(BaseModel):
    """One (run, model, task, variant, sample): the unit that is committed atomically."""

    schema_version: int = SCHEMA_VERSION
    trial_id: str
    run_id: str
    key: str = Field(description="Stable key 'task/variant/model/sample' within a run.")
    task: str
    task_path: str
    task_hash: str
    variant: str
    sample: int
    model: str
    passed: bool = False
    score: float = 0.0
    failure_mode: FailureMode | None = None
    error: str | None = Field(default=None, description="One line saying what went wrong, if anything.")
    started_at: datetime
    finished_at: datetime
    duration_s: float
    setup_s: float = 0.0
    agent_s: float = 0.0
    verify_s: float = 0.0
    teardown_s: float = 0.0
    agent_stop: StopReason | None = Field(default=None, description="Why the agent phase ended (None: it never ran).")
    agent_steps: int | None = Field(default=None, description="Model turns the agent took.")
    tool_protocol: ToolProtocol | None = Field(default=None, description="The tool protocol the agent ended with "
                                               "(a switch from native to text is said in the transcript).")
    actions_run: int | None = Field(default=None, description="Commands run and files written on the model's "
                                                             "behalf; 0: nothing the model wrote ever acted.")
    verdict: Verdict | None = None
    execs: list[ExecRecord] = Field(default_factory=list)
    model_calls: list[ModelCall] = Field(default_factory=list, description="Telemetry of every model call.")
    transcript: list[dict[str, Any]] = Field(default_factory=list, description="Messages, reasoning kept apart.")
    artifacts: list[Artifact] = Field(default_factory=list)
    fingerprint: Fingerprint


class RunRecord(BaseModel):
    """One invocation of ``agenteval run``; trials point at it by ``run_id``."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    status: RunStatus = RunStatus.running
    error: str | None = Field(default=None, description="What stopped a failed run, one line (the traceback is "
                              "in the file the command named).")
    owner: str | None = Field(default=None, description="host:pid:start of the process running it (last resumed by).")
    agenteval_version: str
    models: list[str]
    tasks: list[str]
    samples: int
    concurrency: int
    config: dict[str, Any] = Field(default_factory=dict, description="Everything needed to resume the run.")


class ServingRecord(BaseModel):
    """One time a run served a model: how long its server took to answer and the most memory it held,
    figures of the model and engine rather than of any one trial."""

    run_id: str
    model: str
    started_at: datetime
    stopped_at: datetime
    load_s: float | None = Field(default=None, description="Seconds from starting the server to its first healthy "
                                 "answer (None: a server the user runs).")
    peak_rss_bytes: int | None = Field(default=None, description="The server process's peak resident memory "
                                       "(the kernel's VmHWM, read just before it stopped); None where unknown.")
    trials: int = Field(default=0, description="Trials committed while it was served.")


class RungRecord(BaseModel):
    """One rung of a quantization ladder run (``agenteval ladder``): the file that was served under
    the rung's model label, where it came from, and how far its next-token distributions are from
    the reference rung's over a fixed text."""

    run_id: str
    model: str = Field(description="The rung's model label in the run, e.g. 'Q4_K_M' or 'Q4_K_M@kv=q8_0'.")
    quant: str
    kv_cache: str | None = Field(default=None, description="K and V cache type the server ran with (None: the "
                                 "engine's default, f16).")
    reference: bool = Field(default=False, description="The source file itself, against which rungs are compared.")
    provenance: str = Field(description="'reference (F16)', 'quantized from F16' or 'requantized from Q4_1'.")
    requantized: bool = False
    source: str = Field(description="The source GGUF's file name.")
    source_quant: str
    source_sha256: str
    path: str
    file_bytes: int
    file_sha256: str
    params: int
    bits_per_weight: float
    imatrix_sha256: str | None = None
    quantizer: str | None = None
    quantize_s: float | None = Field(default=None, description="Seconds spent quantizing (None: reused from the "
                                     "cache, or the reference).")
    kl_mean: float | None = None
    kl_median: float | None = None
    kl_p99: float | None = None
    kl_max: float | None = None
    top1_agreement: float | None = Field(default=None, description="Share of scored positions where the rung's "
                                         "most likely next token is the reference's.")
    kl_tokens: int | None = Field(default=None, description="Positions of the divergence text scored.")
    perplexity: float | None = None
    reference_perplexity: float | None = None
    kl_method: str | None = None
    kl_s: float | None = Field(default=None, description="Seconds the divergence measurement of this rung took "
                               "(the reference: its logits pass; 0 when reused).")
    kl_text_sha256: str | None = None
    kl_text_origin: str | None = None
    kl_error: str | None = Field(default=None, description="Why the divergence could not be measured, if so.")
