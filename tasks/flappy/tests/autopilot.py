"""Playing the game from outside its process: an autopilot that keeps the bird alive through the pipes.

The 'auto' scenario runs in lockstep (runs.py): after every frame with pixels the
driver waits for this pilot's orders. The pilot sees only pixels and decides
only input, so nothing the game does inside its own process can play for it:

* the bird is found by its colours (BirdLook, learnt from the fall/flap pair:
  the pixels where the pressed run's bird stood on the other run's background)
  in its column band;
* the next gap is read off the change between this frame and one about 0.1 s
  older (vision.pipe_gaps): the nearest pipe edge at or right of the bird's left
  side, so the pipe the bird is inside stays the target until it is behind it;
* SPACE is tapped when the bird's centre sinks below a line in that gap, placed
  so that one flap's measured rise keeps it under the gap's top (``aim`` is the
  share of the remaining room below that line; retries try other shares; with
  the following gap in sight the line moves to the side of that gap).

The pilot also judges the play: the bird is alive while the frames keep changing,
the bird stays visible, does not jump (a new round) and does not lie still under
taps. A pipe counts as passed when the nearest pipe edge ahead of the bird, last
seen at the bird, jumps right to the next pipe (and does not come back). The play succeeds at PASSES_WANTED pipes, or after PLAY_MS of pipes with new
ones still coming in from the right; then the pilot closes the window itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import vision
from runs import Frame, Run

K_SPACE, SC_SPACE = 32, 44
PASSES_WANTED = 5
PLAY_MS = 15000.0           # or this long alive with pipes still spawning
END_MS = 22000.0            # the scripted QUIT, should the pilot never send one
REF_MS = (70.0, 200.0)      # how old the frame compared with for pipe motion is
HOLD_TAP_MS = 50.0
DEAD_STILL_MS = 500.0       # the whole frame unchanged this long: the game is over (or frozen)
MISSING_MS = 400.0          # the bird not found this long


@dataclass
class BirdLook:
    """How to find the bird in a frame: its colours and the columns it flies in (frame px)."""

    palette: np.ndarray          # packed 0xRRGGBB colours of the bird, none common in the rest of the scene
    band: tuple[int, int]        # columns to search
    x0: int                      # the bird's own left and right columns
    x1: int
    height: float
    count: float                 # palette pixels of a whole bird
    rise: float                  # frame px one flap lifts the bird (at least)
    hover_ms: float              # the rhythm of presses that keeps it level


def learn_bird(track: vision.PairTrack, flap: Run, fall: Run, rise: float, hover_ms: float | None) -> BirdLook | None:
    """The pressed bird's colours in the flap run, less the colours of the scene around it."""
    fl, fa = flap.by_time(), fall.by_time()
    good = [s for s in track.splits if s.b is not None and track.bird_like(s.b) and not track.world_changed(s)
            and s.t in fl and s.t in fa and fl[s.t].px is not None and fa[s.t].px is not None]
    if len(good) < 3 or track.bird_area <= 0:
        return None
    bird, behind, xs = [], [], []
    for s in good[:40]:
        assert s.b is not None
        bird.append(vision.packed(vision.image(fl[s.t])[s.b.ys, s.b.xs]))
        behind.append(vision.packed(vision.image(fa[s.t])[s.b.ys, s.b.xs]))
        xs.append((int(s.b.xs.min()), int(s.b.xs.max())))
    colours, counts = np.unique(np.concatenate(bird), return_counts=True)
    total = counts.sum()
    # Colours of the scene away from the bird: a few frames of the run without input, outside the band.
    x_lo, x_hi = track.band
    scene: dict[int, int] = {}
    sample = [f for f in list(fa.values())[::max(1, len(fa) // 10)] if f.px is not None][:10]
    for f in sample:
        img = vision.packed(vision.image(f))
        outside = np.concatenate([img[:, :x_lo].ravel(), img[:, x_hi:].ravel()])
        v, c = np.unique(outside, return_counts=True)
        for k, n in zip(v.tolist(), c.tolist()):
            scene[k] = scene.get(k, 0) + n
    bv, bc = np.unique(np.concatenate(behind), return_counts=True)
    background = dict(zip(bv.tolist(), bc.tolist()))      # (where the two birds overlap, bird colours too)
    keep = [int(c) for c, n in zip(colours.tolist(), counts.tolist())
            if n >= 0.02 * total and background.get(c, 0) <= 0.2 * n
            and scene.get(int(c), 0) / max(1, len(sample)) < 0.3 * track.bird_area]
    if not keep:  # every colour of the bird shows elsewhere too: take the ones it owns most
        owned = sorted(((n / (1 + scene.get(int(c), 0) / max(1, len(sample))), int(c))
                        for c, n in zip(colours.tolist(), counts.tolist())
                        if n >= 0.02 * total and background.get(c, 0) <= 0.2 * n), reverse=True)
        keep = [c for _, c in owned[:2]]
    if not keep:
        return None
    palette = np.array(keep, dtype=np.uint32)
    x0 = int(np.median([a for a, _ in xs]))
    x1 = int(np.median([b for _, b in xs]))
    look = BirdLook(palette, track.band, x0, x1, max(track.bird_height, 2.0), 0.0, max(rise, 1.0),
                    hover_ms or 400.0)
    seen = [look_count(look, vision.image(fl[s.t])) for s in good[:20]]
    look.count = float(np.median(seen))
    return look if look.count >= 3 else None


def hover_period(track: vision.PairTrack, taps: list[float], frame_ms: float) -> float | None:
    """Twice the time from a press to the top of its arc, in ms: the rhythm that keeps the bird level.

    The frame stamped with the press's time already shows its effect (the game
    read the event after the clock ticked), so the arc starts one frame earlier.
    """
    periods = []
    for t0, t1 in list(itertools.pairwise(taps))[:3]:
        # The pressed bird's top edge is exact whenever it is above the other bird, overlapping or not.
        pts = [(s.t, float(s.b.top)) for s in track.splits if t0 + 30 < s.t < t1 and s.b is not None
               and (s.a is None or s.b.top < s.a.top) and not track.world_changed(s)]
        if len(pts) < 6:
            continue
        tau = np.array([(t - t0 + frame_ms) / 1000.0 for t, _ in pts])
        c2, c1, _ = np.polyfit(tau, np.array([y for _, y in pts]), 2)
        if c2 > 0 and c1 < 0:
            periods.append(-1000.0 * c1 / c2)
    return float(np.median(periods)) if periods else None


def look_count(look: BirdLook, img: np.ndarray) -> int:
    return int(np.isin(vision.packed(img[:, look.band[0]:look.band[1]]), look.palette).sum())


def locate(look: BirdLook, img: np.ndarray) -> float | None:
    """The bird's centre row, or None when too little of it shows."""
    mask = np.isin(vision.packed(img[:, look.band[0]:look.band[1]]), look.palette)
    rows = mask.sum(axis=1).astype(np.float64)
    win = max(1, round(look.height))
    sums = np.convolve(rows, np.ones(win), mode="same")
    y = int(np.argmax(sums))
    if sums[y] < 0.35 * look.count:
        return None
    lo, hi = max(0, y - win), min(len(rows), y + win + 1)
    w = rows[lo:hi]
    return float((np.arange(lo, hi) * w).sum() / w.sum())


@dataclass
class Attempt:
    """What one autopilot play did: its decisions, and how far the bird got."""

    aim: float
    taps: int = 0
    passes: int = 0
    life_start: float | None = None       # first pipe seen
    died_at: float | None = None
    death: str = ""                       # how the round was seen to end
    last_t: float = 0.0
    last_spawn: float | None = None       # last instant a pipe edge was seen coming in at the right
    quit_sent: float | None = None

    @property
    def alive_ms(self) -> float:
        if self.life_start is None:
            return 0.0
        return (self.died_at if self.died_at is not None else self.last_t) - self.life_start

    @property
    def spawning(self) -> bool:
        """New pipes still came in from the right over the last seconds of the play."""
        end = self.died_at if self.died_at is not None else self.last_t
        return self.last_spawn is not None and end - 4000.0 <= self.last_spawn <= end

    @property
    def succeeded(self) -> bool:
        return self.died_at is None and (self.passes >= PASSES_WANTED or (self.alive_ms >= PLAY_MS and self.spawning))


class Autopilot:
    """The pilot of one lockstep run (a runs.Pilot): frame in, input events out."""

    def __init__(self, look: BirdLook, aim: float) -> None:
        self.look, self.a = look, Attempt(aim)
        self.history: list[tuple[float, np.ndarray]] = []
        self.last_tap = -1e9
        self.target: tuple[int, int] | None = None      # the gap steered for (top, bottom)
        self.then: tuple[int, int] | None = None        # the gap after it, when one is in sight
        self.ahead_x: int | None = None                 # the nearest pipe edge at or right of the bird
        self.passing: tuple[float, int] | None = None   # (when, where) the edge ahead last jumped away
        self.bird_seen = -1e9
        self.bird_y: list[tuple[float, float]] = []
        self.changed_at = -1e9
        self.h, self.w = 1, 1
        self.seen = 0

    def __call__(self, frame: Frame) -> list[list[Any]]:
        img = vision.image(frame)
        t = frame.t
        self.h, self.w = img.shape[:2]
        a = self.a
        a.last_t = t
        if not self.history or not np.array_equal(self.history[-1][1], img):
            self.changed_at = t
        y = locate(self.look, img)
        gaps = self.gaps(t, img)
        self.history = [(s, i) for s, i in self.history if t - s <= REF_MS[1]] + [(t, img)]
        self.seen += 1
        if self.seen % 6:
            frame.px = None   # the run keeps every sixth frame's pixels, not 80 kB a frame
        if a.quit_sent is not None:
            return []
        self.follow(t, y, gaps)
        if a.died_at is None and a.life_start is not None:
            self.judge(t, y)
        if a.succeeded or (a.died_at is not None and t >= a.died_at + 300) or t >= END_MS - 500:
            a.quit_sent = t
            return [[t, "quit"]]
        if y is None or a.died_at is not None:
            return []
        return self.steer(t, y)

    # -- seeing -------------------------------------------------------------
    def gaps(self, t: float, img: np.ndarray) -> list[tuple[int, int, int]]:
        ref = next((i for s, i in self.history if REF_MS[0] <= t - s <= REF_MS[1]), None)
        if ref is None:
            return []
        found = vision.pipe_gaps(vision.diff_mask(ref, img))
        if any(x >= 0.75 * self.w for x, _, _ in found):
            self.a.last_spawn = t
        return found

    def follow(self, t: float, y: float | None, gaps: list[tuple[int, int, int]]) -> None:
        """The gap ahead of the bird, and the pipes it got past.

        A pipe is passed when the nearest edge ahead, last seen at the bird, jumps right
        to the next pipe. An edge seen again near the old place soon after was only
        missed for a moment: that pass is taken back.
        """
        a = self.a
        if y is not None:
            self.bird_seen = t
            self.bird_y.append((t, y))
        ahead = sorted((x, top, bottom) for x, top, bottom in gaps if x >= self.look.x0 - 1)
        if not ahead:
            return
        x, gap = ahead[0][0], (ahead[0][1], ahead[0][2])
        if a.life_start is None:
            a.life_start = t
        self.target = gap
        self.then = next(((top, bottom) for _, top, bottom in ahead[1:] if not self.same((top, bottom), gap)), None)
        near = self.look.x1 + 0.1 * self.w
        if self.passing is not None and t - self.passing[0] <= 300.0 and x < self.passing[1] + 0.05 * self.w:
            a.passes -= 1 if a.died_at is None else 0
            self.passing = None
        elif self.ahead_x is not None and x > self.ahead_x + 0.1 * self.w and self.ahead_x <= near:
            a.passes += 1 if a.died_at is None else 0
            self.passing = (t, self.ahead_x)
        self.ahead_x = x

    def same(self, g1: tuple[int, int], g2: tuple[int, int]) -> bool:
        tol = max(2, 0.02 * self.h)
        return abs(g1[0] - g2[0]) <= tol and abs(g1[1] - g2[1]) <= tol

    def judge(self, t: float, y: float | None) -> None:
        """Has the round ended? (The pilot stops steering then; a retry may do better.)"""
        a = self.a
        if t - self.changed_at >= DEAD_STILL_MS:
            a.died_at, a.death = self.changed_at, "the picture stopped changing"
        elif t - self.bird_seen >= MISSING_MS:
            a.died_at, a.death = self.bird_seen, "the bird was no longer to be seen"
        elif y is not None and len(self.bird_y) >= 2 and self.bird_y[-2][1] - y > 0.2 * self.h:
            a.died_at, a.death = t, "the bird was back up in one frame (a new round)"
        else:
            recent = [v for s, v in self.bird_y if t - s <= 500.0]
            if (t - self.last_tap <= 400 and len(recent) >= 5 and max(recent) - min(recent) <= 1.0
                    and self.bird_y[0][0] <= t - 500.0):
                a.died_at, a.death = t, "the bird lay still although SPACE was pressed"

    # -- steering -----------------------------------------------------------
    def steer(self, t: float, y: float) -> list[list[Any]]:
        look, a = self.look, self.a
        half = look.height / 2
        if self.target is None:
            line = 0.5 * self.h
        else:
            top, bottom = self.target
            high = top + half + look.rise + 0.1 * look.height     # a flap from here just clears the top
            low = bottom - half - 0.3 * look.height               # lower than this scrapes the bottom
            aim = a.aim
            if self.then is not None and abs(sum(self.then) - sum(self.target)) > look.height:
                aim = 0.15 if sum(self.then) < sum(self.target) else 0.85   # be on the side of the next gap
            line = high + aim * (low - high) if low >= high else (top + bottom) / 2 + look.rise / 2
        if y <= line or t - self.last_tap < max(100.0, 0.35 * look.hover_ms):
            return []
        self.last_tap = t
        a.taps += 1
        return [[t, "key_down", K_SPACE, SC_SPACE], [t + HOLD_TAP_MS, "key_up", K_SPACE, SC_SPACE]]



def secs(ms: float | None) -> str:
    return "?" if ms is None else f"{ms / 1000:.2f} s"


def judge_play(plays: list[tuple[Run, Attempt]], problem: Callable[[Run], str | None]) -> tuple[bool, str]:
    """The long-play check from the autopilot's attempts: any fault of the game's fails it at once."""
    tried = []
    for run, a in plays:
        so_far = (f"the bird had passed {a.passes} pipe pairs in {a.alive_ms / 1000:.1f} s of play"
                  if a.life_start is not None else "no pipe had come yet")
        why = problem(run)
        if why:
            return False, f"while the autopilot played ({run.name}), {why}\n(by then {so_far})"
        if a.succeeded:
            how = f"through {a.passes} pipe pairs" if a.passes >= PASSES_WANTED else \
                f"for {a.alive_ms / 1000:.1f} s with new pipes still coming ({a.passes} pipe pairs passed)"
            return True, (f"the autopilot (SPACE decided outside the game from each frame's pixels, aiming at the "
                          f"next gap) kept the bird alive {how}, with {a.taps} presses, in {run.name}; "
                          f"the game then closed on QUIT")
        end = f"then {a.death} at {secs(a.died_at)}" if a.died_at is not None else "and the play ran out of time"
        tried.append(f"{run.name} (aim {a.aim:.2f}): {a.passes} pipe pairs in {a.alive_ms / 1000:.1f} s, {end}")
    if not tried:
        return False, "not measured: the bird's colours could not be learnt (see the fall and flap checks)"
    return False, (f"the autopilot could not keep the bird alive through {PASSES_WANTED} pipe pairs or "
                   f"{PLAY_MS / 1000:.0f} s with pipes still coming: " + "; ".join(tried))
