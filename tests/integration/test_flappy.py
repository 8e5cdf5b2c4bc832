"""The `flappy` task's verifier against real games in the real pygame sandbox.

Correct games of many shapes must pass every check; each broken game must fail,
and fail the check that names what is wrong with it. The games live under
tests/fixtures/flappy/ as plain flappy.py files that are only ever copied into a
sandbox, never imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agenteval.records import FailureMode
from agenteval.runner import RunOptions, execute_run
from agenteval.runner.solution import verify_solution
from agenteval.verify import VerifyOutcome
from tests.conftest import FIXTURES, REPO

pytestmark = pytest.mark.docker

TASK = REPO / "tasks" / "flappy"
GAMES = FIXTURES / "flappy"

GAME_RUNS = "game runs"
DRAWS = "draws frames"
FALLS = "bird falls under gravity"
FLAPS = "SPACE flaps the bird up"
PIPES = "pipes scroll left with a gap"
CRASH = "crash ends the game"
QUITS = "QUIT exits promptly"
HARNESS = "harness untampered"
PLAYS = "plays on through 5 pipes"
ALL_CHECKS = [GAME_RUNS, DRAWS, FALLS, FLAPS, PIPES, CRASH, PLAYS, QUITS, HARNESS]
BUDGET_S = 180.0    # tasks/flappy/task.toml [verifier] timeout_sec

# Each correct fixture's docstring lists the shapes it covers; together with the
# oracle they cover classes and plain functions, Group.draw / pygame.draw /
# pre-rendered blits / a small canvas scaled up, title screens (one blocking in
# event.wait()), restarts on SPACE, after a delay and on the next frame, a silent
# frozen game over, per-frame physics, dt from clock.tick(), get_ticks() and
# time.time(), a fixed-step accumulator, KEYDOWN and key.get_pressed(), SPACE plus
# mouse, windows from 288x512 to 1280x720, loops under __main__ and at module
# level, set_timer, time.sleep / pygame.time.delay / busy-wait pacing, other
# physics constants on a fixed 100 Hz step, a flap that adds to the velocity.
# Every one must also be played by the autopilot through 5 pipe pairs.
CORRECT = ["sprites_dt", "functions_module_level", "ticks_timing", "time_dt", "big_center", "freeze_silent",
           "scaled_surface", "accumulator", "instant_restart", "mouse_fixed_step", "dt_added_flap"]

BROKEN = {
    "syntax_error": GAME_RUNS,
    "crash_after_frames": GAME_RUNS,
    "exit_at_import": GAME_RUNS,
    "busy_loop": GAME_RUNS,
    "hang_after_window": GAME_RUNS,
    "tkinter_game": GAME_RUNS,
    "curses_game": GAME_RUNS,
    "fooler": GAME_RUNS,
    "nothing_drawn": DRAWS,
    "no_gravity": FALLS,
    "constant_fall": FALLS,
    "space_ignored": FLAPS,
    "no_pipes": PIPES,
    "static_pipes": PIPES,
    "no_collision": CRASH,
    "fall_through": CRASH,
    "quit_ignored": QUITS,
    "channel_forger": HARNESS,
    "monkeypatch_flip": HARNESS,
    "clock_patch": HARNESS,
    "crash_after_pipes": PLAYS,             # raises only once the bird has passed 3 pipe pairs
    "gc_hooks": HARNESS,                    # empties the harness's hooks through gc, ends the run itself on QUIT
    "key_forger": HARNESS,                  # reads the MAC key through gc, forges "exited" and plays on
    "signals_parents": GAME_RUNS,           # SIGSTOP / ptrace / SIGKILL at its parents, then kill(-1)
    "writes_verifier_files": FALLS,         # plants modules in /agenteval/tests and /agenteval/lib, plays badly
}
# Games that never handle QUIT themselves: whatever they fake in-process, the exit is judged from outside.
FAKES_QUIT = {"gc_hooks", "key_forger"}


@pytest.fixture(scope="module")
def pygame_image(docker_client: Any) -> str:
    from agenteval.sandbox.images import ensure_image

    return ensure_image(docker_client, "pygame", REPO / "sandboxes", log=lambda m: None)


def verify(solution: Path, artifacts: Path | None = None) -> VerifyOutcome:
    outcome = verify_solution(TASK, solution, artifacts_dir=artifacts, log=lambda m: None)
    assert outcome.verdict is not None, f"no verdict for {solution.name}: {outcome.error}"
    assert [c.name for c in outcome.verdict.checks] == ALL_CHECKS, "every run reports the same checks"
    if outcome.exec_record is not None:
        assert outcome.exec_record.duration_s < BUDGET_S, f"{solution.name}: {outcome.exec_record.duration_s:.0f} s"
    return outcome


def failed(outcome: VerifyOutcome) -> dict[str, str]:
    assert outcome.verdict is not None
    return {c.name: c.message for c in outcome.verdict.checks if not c.passed}


def test_oracle_passes_every_check_and_saves_screenshots(pygame_image: str, tmp_path: Path) -> None:
    outcome = verify(TASK / "solution" / "workspace", tmp_path)
    assert outcome.verdict is not None and outcome.verdict.passed, failed(outcome)
    shots = sorted(a.name for a in outcome.artifacts)
    assert any(n.startswith("fall-") for n in shots) and any(n.startswith("long-") for n in shots), shots
    for a in outcome.artifacts:
        assert a.media_type == "image/png"
        assert (tmp_path / a.name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("name", CORRECT)
def test_correct_games_pass(pygame_image: str, name: str) -> None:
    outcome = verify(GAMES / "correct" / name)
    assert outcome.verdict is not None and outcome.verdict.passed, failed(outcome)


@pytest.mark.parametrize("name,check", sorted(BROKEN.items()))
def test_broken_games_fail_the_right_check(pygame_image: str, name: str, check: str) -> None:
    outcome = verify(GAMES / "broken" / name)
    assert outcome.verdict is not None and not outcome.verdict.passed
    fails = failed(outcome)
    assert check in fails, f"{name} should fail {check!r}; it failed {sorted(fails)}"
    if name == "fooler":  # printed and written verdicts count for nothing: only the harness check can pass
        assert set(fails) == set(ALL_CHECKS) - {HARNESS}, sorted(fails)
    if name in FAKES_QUIT:
        assert QUITS in fails, f"{name} never handles QUIT itself but passed {QUITS!r}"
    if name == "crash_after_pipes":  # only the long play reaches the bug
        assert set(fails) == {PLAYS}, sorted(fails)
        assert "exception" in fails[PLAYS] and "IndexError" in fails[PLAYS], fails[PLAYS]


def test_oracle_passes_and_nop_fails_end_to_end(workdir: Path, docker_client: Any, pygame_image: str) -> None:
    opts = RunOptions(task_paths=[str(TASK)], models=["oracle", "nop"], db=workdir / "db.duckdb",
                      out=workdir / "reports")
    result = execute_run(opts, log=lambda m: None)
    assert result.run.status == "completed"
    by_model = {r.model: r for r in result.records}
    oracle, nop = by_model["oracle"], by_model["nop"]
    assert oracle.passed and oracle.failure_mode is None and oracle.verdict and oracle.verdict.score == 1.0, \
        oracle.error
    pngs = [a for a in oracle.artifacts if a.name.endswith(".png")]
    assert len(pngs) >= 4, oracle.artifacts
    for a in pngs:
        assert (opts.out / result.run.run_id / a.path).read_bytes().startswith(b"\x89PNG")
    assert not nop.passed and nop.failure_mode is FailureMode.verify_failed
    assert nop.verdict is not None and nop.verdict.checks and not any(c.passed for c in nop.verdict.checks)
    assert "flappy.py" in nop.verdict.checks[0].message
    mine = {"label": f"agenteval.run={result.run.run_id}"}   # other runs may share the engine
    assert docker_client.api.containers(all=True, filters=mine) == []
    assert not (docker_client.api.volumes(filters=mine) or {}).get("Volumes")
