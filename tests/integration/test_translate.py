"""tasks/translate against the real engine, in its `markdown` sandbox (Debian's markdown-it-py):
the oracle's output passes every variant, correct alternatives pass, damaged outputs fail the
check meant to catch them, and a whole run gives oracle a pass and nop a fail on every variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agenteval.console import report_run
from agenteval.records import FailureMode
from agenteval.runner import RunOptions, execute_run
from agenteval.runner.solution import verify_solution
from agenteval.verify import VerifyOutcome
from tests.conftest import REPO
from tests.fixtures.translate.mutations import (ALL_CHECKS, EXISTS, IDS, MUTATIONS, TASK, Mutation, alternatives,
                                                oracle)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def markdown_image(docker_client: Any) -> str:
    from agenteval.sandbox.images import ensure_image

    return ensure_image(docker_client, "markdown", REPO / "sandboxes", log=lambda m: None)


def mine(client: Any, run_id: str) -> tuple[list[str], list[str]]:
    """Containers and volumes this run left (the engine is shared: other runs' are not ours)."""
    label = {"label": f"agenteval.run={run_id}"}
    containers = [c["Names"][0] for c in client.api.containers(all=True, filters=label)]
    volumes = [v["Name"] for v in (client.api.volumes(filters=label) or {}).get("Volumes") or []]
    return containers, volumes


def judge(tmp_path: Path, vid: str, content: str | bytes) -> VerifyOutcome:
    """verify_solution on a workspace holding only output.md."""
    ws = tmp_path / "workspace"
    ws.mkdir(exist_ok=True)
    (ws / "output.md").write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    outcome = verify_solution(TASK, ws, vid, log=lambda m: None)
    assert outcome.verdict is not None, outcome.error
    assert [c.name for c in outcome.verdict.checks] == ALL_CHECKS
    return outcome


def failing(outcome: VerifyOutcome) -> dict[str, str]:
    assert outcome.verdict is not None
    return {c.name: c.message for c in outcome.verdict.checks if not c.passed}


@pytest.mark.parametrize("vid", IDS)
def test_oracle_output_passes_in_the_sandbox(tmp_path: Path, markdown_image: str, vid: str) -> None:
    outcome = judge(tmp_path, vid, oracle(vid))
    assert outcome.verdict is not None and outcome.verdict.passed, failing(outcome)


@pytest.mark.parametrize(("vid", "path"), alternatives(), ids=[p.name for _, p in alternatives()])
def test_correct_alternative_passes_in_the_sandbox(tmp_path: Path, markdown_image: str, vid: str, path: Path) -> None:
    outcome = judge(tmp_path, vid, path.read_bytes())
    assert outcome.verdict is not None and outcome.verdict.passed, failing(outcome)


PICKED = {"empty file": "ja-backup-runbook", "code block content altered": "de-cache-runbook",
          "table row dropped": "fr-api-notes", "prose number changed": "es-deploy-guide",
          "decimal commas kept": "de-cache-runbook", "first section left untranslated": "ja-backup-runbook",
          "section headings flattened to plain text": "fr-api-notes", "identifier altered": "es-deploy-guide",
          "glossary term replaced by a synonym": "de-cache-runbook", "list item dropped": "ja-backup-runbook"}
CASES = [(m, PICKED[m.name]) for m in MUTATIONS if m.name in PICKED]


@pytest.mark.parametrize(("mutation", "vid"), CASES, ids=[m.name for m, _ in CASES])
def test_mutation_fails_in_the_sandbox(tmp_path: Path, markdown_image: str, mutation: Mutation, vid: str) -> None:
    outcome = judge(tmp_path, vid, mutation.apply(oracle(vid), vid))
    bad = failing(outcome)
    assert mutation.expect <= set(bad), bad
    if mutation.exact:
        assert set(bad) == mutation.expect, bad


def test_oracle_passes_and_nop_fails_every_translate_variant(workdir: Path, docker_client: Any,
                                                             markdown_image: str) -> None:
    opts = RunOptions(task_paths=[str(TASK)], models=["oracle", "nop"], db=workdir / "db.duckdb",
                      out=workdir / "reports", concurrency=4)
    result = execute_run(opts, log=lambda m: None)
    assert result.run.status == "completed" and report_run(result).is_file()
    by_model = {m: {r.variant: r for r in result.records if r.model == m} for m in ("oracle", "nop")}
    assert sorted(by_model["oracle"]) == sorted(IDS) == sorted(by_model["nop"])
    for r in by_model["oracle"].values():
        assert r.passed and r.failure_mode is None and r.verdict and r.verdict.score == 1.0, (r.variant, r.error)
    for r in by_model["nop"].values():
        assert not r.passed and r.failure_mode is FailureMode.verify_failed, (r.variant, r.error)
        assert r.verdict and r.verdict.score == 0.0
        assert "found nothing there" in next(c.message for c in r.verdict.checks if c.name == EXISTS)
    assert mine(docker_client, result.run.run_id) == ([], [])
