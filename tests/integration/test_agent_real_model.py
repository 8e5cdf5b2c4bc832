"""A real small model acts through the agent: SmolLM2-135M-Instruct (Q4_1), served
by llama-cpp-python, which agenteval starts. Its server drops tools, so the
trial runs the text protocol from the first call, and the model's bash block
runs in the real sandbox.

The GGUF file comes from ``.ci/real-models.sh`` (it downloads 350 MB once into
its cache). The test skips when the file is absent, unless the requirement gate requires
real-models (CI), where the script is run to fetch it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agenteval.records import ToolProtocol
from agenteval.runner import RunOptions, execute_run
from tests.conftest import REPO, missing, required, requires

pytestmark = pytest.mark.docker
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A 135M model follows little: this instruction is what it turns into a bash block (greedy decoding).
INSTRUCTION = "Run the shell command echo hi > hello.txt\n"
VERIFY = """from agenteval_verifier import Verdict

with Verdict() as v:
    p = v.workspace / "hello.txt"
    v.check("hello.txt says hi", p.is_file() and p.read_bytes() == b"hi\\n", "expected 'hi\\\\n'")
"""


def smollm2() -> Path:
    requires("llamacpp")
    cache = Path(os.environ.get("AGENTEVAL_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agenteval") / "models"
    if not (cache / SMOLLM2).is_file():
        if not required("real-models"):
            missing("real-models", f"{cache / SMOLLM2} is absent (350 MB, fetched once)")
        folder = subprocess.run(["bash", str(REPO / ".ci" / "real-models.sh")], capture_output=True, text=True,
                                check=True, timeout=1800).stdout.strip()
        cache = Path(folder)
    return cache / SMOLLM2


def test_smollm2_bash_block_runs_in_the_sandbox(workdir: Path, docker_client: Any, python_image: str,
                                                tmp_path: Path) -> None:
    model = smollm2()
    task = tmp_path / "hi"
    (task / "tests").mkdir(parents=True)
    (task / "tests" / "verify.py").write_text(VERIFY)
    (task / "instruction.md").write_text(INSTRUCTION)
    (task / "task.toml").write_text("[agent]\nmax_steps = 3\ntimeout_sec = 180\n")
    config = workdir / "agenteval.toml"
    config.write_text(f'[models.smol]\nengine = "llamacpp"\npath = "{model}"\ncontext = 4096\n'
                      'sampling = { temperature = 0.0, seed = 0 }\n')  # tools = "auto": the server is asked
    result = execute_run(RunOptions(task_paths=[str(task)], models=["smol"], db=workdir / "db.duckdb",
                                    out=workdir / "reports", config=config), log=lambda m: None)
    [record] = result.records
    commands = [e.command for e in record.execs if e.phase == "agent"]
    assert commands and commands[0].strip() == "echo hi > hello.txt", (record.error, record.transcript)
    assert record.passed, (record.error, record.transcript)
    assert record.tool_protocol is ToolProtocol.text and record.actions_run and record.actions_run >= 1
    first = [m for m in record.transcript if m["role"] == "agent"][0]
    assert first["event"] == "protocol" and "does not honour native tool calls" in str(first["content"])
