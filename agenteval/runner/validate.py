"""Task validation: the oracle passes K out of K times and nop fails, on every
variant. A task that fails this measures nothing (CI runs it on every task). Its runs
go to a scratch store and write no report.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from agenteval.errors import RunFailedError
from agenteval.logs import Log
from agenteval.runner.options import RunOptions
from agenteval.runner.run import RunObserver, execute_run


@dataclass
class VariantValidation:
    task: str
    variant: str
    repeat: int
    oracle_passed: int = 0
    nop_passed: int = 0
    nop_total: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.oracle_passed == 0:
            return "oracle fails"
        if self.oracle_passed < self.repeat:
            return "flaky"
        if self.nop_passed:
            return "nop passes"
        return "ok"


def validate_tasks(paths: list[str], repeat: int = 1, concurrency: int = 1, db: Path | None = None,
                   observer: RunObserver | None = None, log: Log = print,
                   allow_internet: bool = False) -> list[VariantValidation]:
    with tempfile.TemporaryDirectory(prefix="agenteval-validate-") as tmp:
        store = db or Path(tmp) / "validate.duckdb"
        common = RunOptions(task_paths=paths, models=[], concurrency=concurrency, db=store, out=Path(tmp) / "reports",
                            allow_internet=allow_internet)
        try:
            oracle = execute_run(dataclasses.replace(common, models=["oracle"], samples=repeat), observer, log)
            nop = execute_run(dataclasses.replace(common, models=["nop"], samples=1), observer, log)
        except RunFailedError as e:  # its traceback would go with the scratch folder: keep it
            kept = Path(tempfile.mkstemp(prefix="agenteval-validate-", suffix="-traceback.txt")[1])
            shutil.copyfile(e.traceback_path, kept)
            message = str(e).split("; resume with:", 1)[0].replace(e.traceback_path, str(kept))
            raise RunFailedError(f"task validation failed: {message}", e.run_id, str(kept)) from e
    rows: dict[tuple[str, str], VariantValidation] = {}
    for r in oracle.records + nop.records:
        row = rows.setdefault((r.task, r.variant), VariantValidation(r.task, r.variant, repeat))
        if r.model == "oracle":
            row.oracle_passed += int(r.passed)
            if not r.passed:
                row.problems.append(f"oracle sample {r.sample}: {r.failure_mode.value if r.failure_mode else ''} "
                                    f"{r.error or ''}".strip())
        else:
            row.nop_total += 1
            row.nop_passed += int(r.passed)
            if r.passed:
                row.problems.append("nop passed: the verifier accepts an untouched workspace")
    return list(rows.values())
