"""Hidden verifier of the `flappy` task: play /workspace/flappy.py and judge what it shows.

The game runs headless under driver.py (virtual clock, scripted input, frame
capture; see its docstring) in a handful of short scenarios, each its own
process with a wall-clock limit:

  start  no input, window closed at 0.6 s                 (start screen, QUIT)
  fall   SPACE at 0.5 s and 0.75 s (starts any 'press SPACE' screen), then nothing
  flap   as fall, plus SPACE every 0.4 s from 1.0 s        (differs from fall only by input)
  probe  as fall, plus SPACE at 3.0 s, after the crash      (is the game over?)
  long   9 s with SPACE at the bird's hover rhythm, measured from fall/flap,
         and late mouse and keyboard noise
  auto1  the autopilot (autopilot.py) plays in lockstep, deciding SPACE from each
         frame's pixels, until the bird has passed 5 pipe pairs (or 15 s); auto2
         and auto3 retry aiming elsewhere in the gap if the bird died

Because the game is deterministic under the driver, 'fall' and 'flap' show the
same frames until the first extra press; from then on they differ exactly where
the bird is. That is how the bird is found, whatever it looks like (vision.py).
Checks judge behaviour only, never source text; every message says what was
measured. What an in-process game could fake is judged from outside it: the exit
after QUIT as waitpid reports it, and the harness's heartbeat (runs.py). Positions and speeds in messages are in the game's own pixels.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any

import numpy as np
from agenteval_verifier import Verdict

import autopilot
import outside
import vision
from runs import Pilot, Run, png, run_game

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

K_SPACE, SC_SPACE = 32, 44
K_A, SC_A = 97, 4
QUIT_GRACE_MS = 1000.0
QUIT_REAL_S = 3.0                                        # real seconds from QUIT to the process's exit
AIMS = (0.5, 0.2, 0.8)                                   # the autopilot's tries: where in the gap to hold
START_TAPS = (500.0, 750.0)
FLAP_TAPS = [1000.0 + 400.0 * i for i in range(8)]      # 1.0 s ... 3.8 s
PROBE_MS = 3000.0
BUDGET_S = 150.0                                         # all scenarios together, real time (task.toml: 180)
MIN_LONG_FRAMES = 150


def tap(t: float, hold: float = 50.0) -> list[list[Any]]:
    return [[t, "key_down", K_SPACE, SC_SPACE], [t + hold, "key_up", K_SPACE, SC_SPACE]]


def scenario(events: list[list[Any]], quit_ms: float, pixels: list[list[float]], every: float = 0.0,
             shots: list[float] | None = None) -> dict[str, Any]:
    return {"events": sorted(events + [[quit_ms, "quit"]], key=lambda e: e[0]), "quit_grace_ms": QUIT_GRACE_MS,
            "deadline_ms": quit_ms + QUIT_GRACE_MS + 500, "pixels": pixels, "pixel_every_ms": every,
            "shots": shots or [], "seed": 20240611, "max_dim": 200, "busy_calls": 5000,
            "startup_stall_s": 6.0, "stall_s": 3.0}


def start_taps() -> list[list[Any]]:
    return [e for t in START_TAPS for e in tap(t)]


def secs(ms: float | None) -> str:
    return "?" if ms is None else f"{ms / 1000:.2f} s"


class Game:
    """The solution under test, its runs, and what was read off them."""

    def __init__(self, v: Verdict) -> None:
        self.v = v
        self.t0 = time.monotonic()
        self.runs: dict[str, Run] = {}
        self.source: bytes | None = None
        self.scale = 1.0   # game px per frame px
        self.h = 1         # frame height in frame px
        self.track = vision.PairTrack(None)
        self.fall = vision.Fall([])
        self.flap = vision.Flap(FLAP_TAPS[0], None)
        self.tap_t = FLAP_TAPS[0]
        self.plays: list[tuple[Run, autopilot.Attempt]] = []

    # -- running ------------------------------------------------------------
    def load(self) -> str | None:
        """flappy.py's bytes, read without following links; None and why if it cannot be."""
        path = self.v.workspace / "flappy.py"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            return f"{path} cannot be opened ({e.strerror})"
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return f"{path} is not a regular file"
            if st.st_size > 2 * 1024**2:
                return f"{path} is {st.st_size} bytes; more than 2 MiB is not a game script"
            self.source = os.read(fd, 2 * 1024**2 + 1)
        finally:
            os.close(fd)
        return None

    def play(self, name: str, cfg: dict[str, Any], limit_s: float, pilot: Pilot | None = None) -> Run:
        left = BUDGET_S - (time.monotonic() - self.t0)
        assert self.source is not None
        run = run_game(name, self.source, cfg, timeout=max(3.0, min(limit_s, left)), pilot=pilot)
        self.runs[name] = run
        for t, w, h, rgb in run.shots:
            self.v.artifact(f"{name}-{t / 1000:.1f}s.png", png(w, h, rgb))
        return run

    def play_all(self) -> None:
        start = self.play("start", scenario([], 600.0, [[0.0, 700.0]], 100.0, [300.0]), 20)
        if not start.frames:
            return  # nothing on screen at all: the other scenarios would only repeat that
        fall = self.play("fall", scenario(start_taps(), 4000.0, [[850.0, 4000.0]], 0.0, [1200.0, 3500.0]), 25)
        flap_ev = start_taps() + [e for t in FLAP_TAPS for e in tap(t)]
        self.play("flap", scenario(flap_ev, 4000.0, [[850.0, 4000.0]], 0.0, [1600.0]), 25)
        self.play("probe", scenario(start_taps() + tap(PROBE_MS), 4000.0, [[2850.0, 4000.0]]), 25)
        if fall.frames:
            f0 = fall.frames[0]
            self.scale, self.h = f0.w / f0.aw, f0.ah
        self.analyse_pair()
        self.play("long", scenario(self.long_events(), 9000.0, [[500.0, 8000.0]], 50.0, [3000.0, 6000.0]), 35)
        self.play_auto()

    def play_auto(self) -> None:
        """The autopilot's tries, until one keeps the bird alive or the game itself fails."""
        fall, flap = self.runs.get("fall"), self.runs.get("flap")
        if fall is None or flap is None or not self.reproducible():
            return
        look = autopilot.learn_bird(self.track, flap, fall, self.flap.rise, self.hover_period())
        if look is None:
            return
        cfg = scenario(start_taps(), autopilot.END_MS, [[800.0, autopilot.END_MS + QUIT_GRACE_MS]], 12.0, [6000.0])
        for i, aim in enumerate(AIMS, 1):
            if i > 1 and BUDGET_S - (time.monotonic() - self.t0) < 30:
                break  # no time left for another try: judged on those made
            pilot = autopilot.Autopilot(look, aim)
            run = self.play(f"auto{i}", cfg, 45, pilot)
            self.plays.append((run, pilot.a))
            if pilot.a.succeeded or self.run_problem(run):
                break

    def long_events(self) -> list[list[Any]]:
        """SPACE at the rhythm that keeps this bird level (if it could be measured), plus noise."""
        period = self.hover_period() or 400.0
        events = start_taps()
        t = START_TAPS[-1] + period
        while t < 8500.0:
            if not 6500.0 <= t <= 7100.0:
                events += tap(t)
            t += period
        events += [[6600.0, "mouse_motion", [10, 10], [3, 2]], [6700.0, "mouse_down", 1, [10, 10]],
                   [6750.0, "mouse_up", 1, [10, 10]], [6900.0, "key_down", K_A, SC_A], [6950.0, "key_up", K_A, SC_A]]
        return events

    # -- reading ------------------------------------------------------------
    def analyse_pair(self) -> None:
        fall, flap = self.runs.get("fall"), self.runs.get("flap")
        self.track = vision.track_pair(fall, flap) if fall and flap else vision.PairTrack(None)
        self.fall = vision.analyse_fall(self.track, fall) if fall else vision.Fall([])
        # The press judged is the last extra one before the screens parted (a game may ignore a
        # press that comes too soon after the previous one).
        taps = [e["t"] for e in (flap.injected if flap else []) if e["kind"] == "key_down" and e["due"] >= FLAP_TAPS[0]]
        d = self.track.diverged_at
        self.tap_t = max([t for t in taps if d is not None and t <= d] or taps[:1] or [FLAP_TAPS[0]])
        self.flap = vision.analyse_flap(self.track, self.tap_t)

    def hover_period(self) -> float | None:
        """The press rhythm that brings the bird back to the same height, from the flap run's arcs."""
        flap = self.runs.get("flap")
        if flap is None:
            return None
        taps = [e["t"] for e in flap.injected if e["kind"] == "key_down" and e["due"] >= FLAP_TAPS[0]]
        times = sorted(flap.by_time())
        frame_ms = float(np.median(np.diff(times))) if len(times) > 2 else 1000 / 60
        period = autopilot.hover_period(self.track, taps, frame_ms)
        return period if period is not None and 180.0 <= period <= 1000.0 else None

    def reproducible(self) -> bool:
        """Did the runs with and without extra presses agree until the first extra press?"""
        d = self.track.diverged_at
        return d is None or d >= FLAP_TAPS[0]

    @property
    def unreproducible(self) -> str:
        return (f"the runs with and without extra SPACE presses already differed at {secs(self.track.diverged_at)}, "
                f"before the first extra press at {secs(FLAP_TAPS[0])}: the game does not replay the same under a "
                f"fixed random seed and clock (does it use os.urandom, SystemRandom or threads?), so the bird "
                f"cannot be told apart from the rest of the screen")

    def px(self, frame_px: float) -> str:
        return f"{frame_px * self.scale:.0f} px"

    # -- checks -------------------------------------------------------------
    def check_runs(self) -> None:
        problems, good = [], []
        scripted = {name: r for name, r in self.runs.items() if not name.startswith("auto")}
        for name, r in scripted.items():
            why = self.run_problem(r)
            if why:
                problems.append(f"{name}: {why}")
            else:
                good.append(f"{name} {len(r.frames)} frames")
        long = self.runs.get("long")
        if long and not problems and len(long.frames) < MIN_LONG_FRAMES:
            problems.append(f"long: only {len(long.frames)} frames in 9 s of game time; "
                            f"at least {MIN_LONG_FRAMES} expected")
        if not problems and len(scripted) < 5:
            problems.append("not every scenario could be run")
        msg = ("ran every scenario to the window being closed, no exception: " + ", ".join(good)) if not problems \
            else "; ".join(problems)
        self.v.check(GAME_RUNS, not problems, msg)

    def run_problem(self, r: Run) -> str | None:
        end = r.end or {}
        quit_at = r.quit_at
        if not r.hello:
            return "the harness could not start python3 with pygame" + self.tail(r)
        if r.tamper or r.stream_problem:
            return "stopped: the game interfered with the harness (see the harness check)"
        if r.error and (quit_at is None or end.get("t", 0) < quit_at):
            where = f" at {secs(end.get('t'))} after {end.get('frames', len(r.frames))} frames" if r.frames else ""
            return f"the game raised an exception{where}:\n{r.error.strip()[-1500:]}"
        if not r.window and not r.frames:
            reason = end.get("reason")
            if reason == "stall":
                return (f"no pygame window was opened and the program stopped making progress "
                        f"({end.get('detail')}): a busy loop, or a game that does not use pygame" + self.tail(r))
            if reason in ("exit", "returned"):
                return (f"the program ended ({reason}, code {end.get('code')}) without opening a pygame window"
                        + self.tail(r))
            if r.timed_out:
                return f"no pygame window after {r.real_s:.0f} s" + self.tail(r)
            return "no pygame window was opened (pygame.display.set_mode was never called)" + self.tail(r)
        if not r.frames:
            return ("a window was opened but no frame was ever shown "
                    "(pygame.display.flip() or update() was never called)")
        if end.get("reason") in ("exit", "returned") and (quit_at is None or end.get("t", 0) < quit_at):
            return (f"the program ended by itself at {secs(end.get('t'))} ({end.get('reason')}, code "
                    f"{end.get('code')}) before the window was closed")
        if end.get("reason") == "stall" and quit_at is None:
            return f"the game hung at {secs(end.get('t'))}: {end.get('detail')}"
        if r.timed_out and quit_at is None:
            return f"still running after {r.real_s:.0f} s of real time at {len(r.frames)} frames (far too slow)"
        if r.end is None and quit_at is None and not r.timed_out:
            return f"the process vanished (exit code {r.exit_code}) after {len(r.frames)} frames" + self.tail(r)
        if quit_at is None:
            return (f"the window could not be closed at the end ({end.get('reason')} at {secs(end.get('t'))}): "
                    f"pygame was no longer running, although the program was")
        return None

    @staticmethod
    def tail(r: Run) -> str:
        text = r.log.strip()
        return f"; its output ends: {text[-600:]}" if text else ""

    def check_draws(self) -> None:
        sampled = [f for name in ("start", "fall", "flap") if name in self.runs
                   for f in self.runs[name].frames if f.px is not None]
        sampled = sampled[::max(1, len(sampled) // 80)]   # a few dozen tell a picture from a blank
        if not sampled:
            self.v.check(DRAWS, False, "no frame could be looked at")
            return
        shares = [vision.dominant_share(vision.image(f)) for f in sampled]
        pictured = sum(s < 0.999 for s in shares)
        distinct = len({f.digest for name in ("fall", "flap") if name in self.runs for f in self.runs[name].frames})
        ok = pictured >= 0.5 * len(sampled) and distinct >= 10
        self.v.check(DRAWS, ok,
                     f"{pictured} of {len(sampled)} sampled frames show a picture (a frame is blank when one colour "
                     f"covers more than 99.9 % of it; the least uniform covered {100 * min(shares):.1f} %); "
                     f"the fall and flap runs showed {distinct} distinct frames (at least 10 expected)")

    def check_falls(self) -> None:
        fl, tr = self.fall, self.track
        if tr.diverged_at is None:
            self.v.check(FALLS, False, "could not find the bird: the runs with and without extra SPACE presses "
                                       "showed identical frames, so nothing on screen responds to SPACE")
            return
        if not self.reproducible():
            self.v.check(FALLS, False, self.unreproducible)
            return
        if len(fl.samples) < 5:
            self.v.check(FALLS, False, f"the bird could be located in only {len(fl.samples)} frames of the run "
                                       f"without input (bird size {tr.bird_area:.0f} frame px); not enough to "
                                       f"measure a fall")
            return
        drop = fl.drop * self.scale
        height = self.h * self.scale
        v1, v2 = fl.v_early * self.scale, fl.v_late * self.scale
        falls = fl.drop >= 0.08 * self.h and v2 > 0
        accel = fl.gravity > 0 and v2 >= 1.25 * max(v1, 0.0) + 0.02 * height
        what = (f"without input after the start presses the bird fell {drop:.0f} px (screen {height:.0f} px high) "
                f"from {secs(fl.apex_t)} to {secs(fl.land_t)}, speed {v1:.0f} px/s over the first 40 % of the "
                f"descent and {v2:.0f} px/s over the last 40 % (fitted gravity {fl.gravity * self.scale:.0f} px/s²)")
        if not falls:
            what = (f"without input the bird went down only {drop:.0f} px from its highest to its lowest point "
                    f"between {secs(fl.samples[0][0])} and {secs(fl.samples[-1][0])} (at least "
                    f"{0.08 * height:.0f} px expected)")
        elif not accel:
            what += "; it does not accelerate (its speed should grow as it falls)"
        self.v.check(FALLS, falls and accel, what)

    def check_flaps(self) -> None:
        f, tr = self.flap, self.track
        need_lead, need_rise = 0.04 * self.h, max(1.0, 0.015 * self.h)
        if f.diverged_at is None:
            ok, msg = False, (f"pressing SPACE at {secs(f.tap_t)} changed nothing on screen: the runs with and "
                              f"without the press showed identical frames to the end")
        elif not self.reproducible():
            ok, msg = False, self.unreproducible
        elif f.diverged_at > f.tap_t + 250:
            ok, msg = False, (f"the first frame that differed after the SPACE press at {secs(f.tap_t)} came only "
                              f"at {secs(f.diverged_at)}")
        elif not f.samples:
            ok, msg = False, "after the press the screen changed in a way that shows no bird moving"
        else:
            ok = f.lead >= need_lead and f.rise >= need_rise
            msg = (f"{secs(f.diverged_at - f.tap_t)} after the SPACE press at {secs(f.tap_t)} the screen changed; "
                   f"within 0.38 s the pressed bird got up to {self.px(f.lead)} above the bird of the run without "
                   f"the press (at least {self.px(need_lead)} expected) and its top edge rose {self.px(f.rise)} "
                   f"(at least {self.px(need_rise)} expected)")
            if f.lead < 0:
                msg += "; the pressed bird is lower: SPACE pushes it down"
        self.v.check(FLAPS, ok, msg)

    def check_pipes(self) -> None:
        best: list[vision.PipeStep] = []
        where = ""
        for name in ("long", "flap", "fall"):
            if name in self.runs:
                stretch = vision.longest_stretch(vision.pipe_steps(self.runs[name]))
                if len(stretch) > len(best):
                    best, where = stretch, name
                if len(best) >= 8 and best[-1].t - best[0].t >= 600:
                    break  # plenty: the other runs would only confirm it
        span = best[-1].t - best[0].t if best else 0.0
        if len(best) >= 4 and span >= 300:
            speeds = sorted(s.shift / s.dt * 1000 * self.scale for s in best)
            gaps = sorted(s.gap * self.scale for s in best)
            self.v.check(PIPES, True, f"in the {where} run, from {secs(best[0].t)} to {secs(best[-1].t)}, "
                                      f"{len(best)} frame pairs show pipes (from the top edge, a gap, then down to "
                                      f"the lower part of the screen) moving left at about "
                                      f"{speeds[len(speeds) // 2]:.0f} px/s, gap about {gaps[len(gaps) // 2]:.0f} px")
        elif best:
            self.v.check(PIPES, False, f"pipe-like structures moved left only briefly ({len(best)} frame pairs over "
                                       f"{span / 1000:.2f} s in the {where} run); expected steady scrolling")
        else:
            self.v.check(PIPES, False, "no pipe pair was seen moving left in any run: nothing that changes between "
                                       "frames reaches from the top edge down to a gap and on below it")

    def check_crash(self) -> None:
        fl, tr = self.fall, self.track
        fall, probe = self.runs.get("fall"), self.runs.get("probe")
        if tr.diverged_at is None or not fl.samples or fall is None:
            self.v.check(CRASH, False, "not measured: the bird could not be located (see the fall check)")
            return
        if fl.drop < 0.08 * self.h:
            self.v.check(CRASH, False, "not measured: without input the bird never came down (see the fall check)")
            return
        stop, rest = fl.stop_t, fl.stop_blob
        seen: list[str] = []
        # 1. The world of the run without input parts from the flapping run's once its bird is down.
        world_t = next((s.t for s in tr.splits if tr.world_changed(s)), None)
        if world_t is not None and world_t >= fl.land_t - 100:
            seen.append(f"once the bird was down the screen changed beyond the bird at {secs(world_t)} "
                        f"(game-over screen, reset or frozen world)")
        # 2. The bird leapt back up in one frame: a new round began by itself.
        if fl.jump_t is not None:
            seen.append(f"at {secs(fl.jump_t)} the bird was back up in one frame (a new round)")
        # 3. SPACE after the crash: a running game flaps a bird lying on the ground; an ended one does not.
        frames = fall.by_time()
        visible = stop is not None and rest is not None and self.bird_visible(stop, rest)
        flapped = None
        if probe is not None:
            pt = vision.track_pair(fall, probe, PROBE_MS - 50, band=tr.band)
            pt.bird_area, pt.bird_height = tr.bird_area, tr.bird_height
            tap_t = next((e["t"] for e in probe.injected if e["kind"] == "key_down" and e["due"] >= PROBE_MS),
                         PROBE_MS)
            # Only a bird still lying, unchanged, where it came down shows what SPACE does to it.
            lying = visible and stop is not None and rest is not None and \
                self.unchanged_until(frames, stop, rest, tap_t)
            if pt.diverged_at is None:
                if lying:
                    seen.append(f"SPACE at {secs(tap_t)} changed nothing: the game was over")
            else:
                win = [s for s in pt.splits if s.t <= pt.diverged_at + 500]
                ups = [s.b for s in win if s.b is not None]
                bh = max(tr.bird_height, 2.0)
                if any(pt.world_changed(s) for s in win):
                    seen.append(f"SPACE at {secs(tap_t)} changed the screen beyond the bird (a restart or a new "
                                f"screen)")
                elif ups and rest is not None:
                    near = ups[0].bottom >= rest.top - bh
                    rises = ups[0].top - min(u.top for u in ups) >= max(1.0, 0.02 * self.h)
                    if near and rises and lying:
                        flapped = (f"SPACE at {secs(tap_t)} flapped the bird up again from where it had lain "
                                   f"since {secs(stop)}: the game was still running")
                    elif not near:
                        seen.append(f"SPACE at {secs(tap_t)} put the bird elsewhere (restart)")
        where = (f"the bird reached its lowest point at {secs(fl.land_t)}" +
                 (f" and lay still from {secs(stop)}" if visible else ", and was not seen lying still on screen"))
        if flapped:
            self.v.check(CRASH, False, f"{where}; {flapped}")
        elif seen:
            self.v.check(CRASH, True, f"{where}; " + "; ".join(seen))
        else:
            self.v.check(CRASH, False, f"{where}, but nothing showed the game ending: the screen went on like the "
                                       f"flapping run's, and SPACE afterwards showed no game-over state")

    def bird_visible(self, t: float, blob: vision.Blob) -> bool:
        """Is the no-input bird on screen at ``blob`` at ``t``? (The flap run shows background there.)"""
        fall, flap = self.runs["fall"].by_time(), self.runs["flap"].by_time()
        if t not in flap or flap[t].px is None:
            return False
        here = vision.image(fall[t])[blob.ys, blob.xs] != vision.image(flap[t])[blob.ys, blob.xs]
        return bool(here.any(axis=1).sum() >= 0.4 * self.track.bird_area)

    @staticmethod
    def unchanged_until(frames: dict[float, Any], t0: float, blob: vision.Blob, t1: float) -> bool:
        ref = vision.image(frames[t0])[blob.ys, blob.xs]
        later = [t for t in sorted(frames) if t0 < t <= t1 and frames[t].px is not None]
        return bool(later) and all(np.array_equal(vision.image(frames[t])[blob.ys, blob.xs], ref) for t in later)

    def check_quits(self) -> None:
        self.v.check(QUITS, *outside.judge_quits(self.runs, QUIT_GRACE_MS, QUIT_REAL_S))

    def check_plays(self) -> None:
        ok, msg = autopilot.judge_play(self.plays, self.run_problem)
        self.v.check(PLAYS, ok, msg)

    def check_harness(self) -> None:
        self.v.check(HARNESS, *outside.judge_harness(self.runs))


def main() -> None:
    with Verdict() as v:
        game = Game(v)
        why = game.load()
        if why is None:
            game.play_all()
        if why is not None or not game.runs:
            for name in ALL_CHECKS:
                v.check(name, False, why or "not measured")
            return
        if "fall" not in game.runs:
            game.check_runs()
            for name in (DRAWS, FALLS, FLAPS, PIPES, CRASH, PLAYS, QUITS):
                v.check(name, False, "not measured: nothing was ever shown on screen")
            game.check_harness()
            return
        game.check_runs()
        game.check_draws()
        game.check_falls()
        game.check_flaps()
        game.check_pipes()
        game.check_crash()
        game.check_plays()
        game.check_quits()
        game.check_harness()


if __name__ == "__main__":
    main()
