"""Reading a game off its frames: where the bird is, whether pipes scroll, what changed.

No source is read and no drawing call is trusted. Everything here works on the
downscaled RGB frames driver.py captured (nearest-neighbour, so flat colours stay
exact) and on one idea: two runs of the same deterministic game that differ only
in the input differ on screen only where the input acted. Comparing a run with
SPACE presses to one without isolates the bird, whatever it looks like.

Coordinates are in frame pixels (the downscaled frame); ``scale`` converts to the
game's own pixels for messages. y grows downwards, as on screen.

numpy comes with python3-pygame in the image (a hard Debian dependency).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from runs import Frame, Run

MAX_COMPONENT_PIXELS = 12000  # a diff bigger than this is not about the bird


def image(f: Frame) -> np.ndarray:
    assert f.px is not None
    return np.frombuffer(f.px, np.uint8).reshape(f.ah, f.aw, 3)


def packed(a: np.ndarray) -> np.ndarray:
    """One int per pixel (0xRRGGBB), to count colours."""
    a32 = a.astype(np.uint32)
    return (a32[..., 0] << 16) | (a32[..., 1] << 8) | a32[..., 2]


def dominant_share(a: np.ndarray) -> float:
    """Share of the frame covered by its most common colour (1.0: a blank frame)."""
    _, counts = np.unique(packed(a), return_counts=True)
    return float(counts.max()) / float(a.shape[0] * a.shape[1])


def diff_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m: np.ndarray = (a != b).any(axis=2)
    return m


def dilate(m: np.ndarray, r: int = 1) -> np.ndarray:
    out = m.copy()
    for _ in range(r):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def components(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """8-connected components of a small mask, as (ys, xs) arrays."""
    ys, xs = np.nonzero(mask)
    todo = set(zip(ys.tolist(), xs.tolist()))
    comps = []
    while todo:
        seed = todo.pop()
        stack, comp = [seed], [seed]
        while stack:
            y, x = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    n = (y + dy, x + dx)
                    if n in todo:
                        todo.remove(n)
                        stack.append(n)
                        comp.append(n)
        arr = np.array(comp)
        comps.append((arr[:, 0], arr[:, 1]))
    return comps


def _palette_distance(pix: np.ndarray, pal: np.ndarray) -> np.ndarray:
    """L1 distance of each pixel to the nearest palette colour."""
    d = np.abs(pix[:, None, :].astype(np.int16) - pal[None, :, :].astype(np.int16)).sum(axis=2)
    nearest: np.ndarray = d.min(axis=1)
    return nearest


@dataclass
class Blob:
    """Pixels of one run's bird in a frame: where they are and how many."""

    ys: np.ndarray
    xs: np.ndarray

    @property
    def n(self) -> int:
        return int(self.ys.size)

    @property
    def cy(self) -> float:
        return float(self.ys.mean())

    @property
    def top(self) -> int:
        return int(self.ys.min())

    @property
    def bottom(self) -> int:
        return int(self.ys.max())

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1


@dataclass
class Split:
    """The difference between two runs' frames at one instant, split by owner."""

    t: float
    total: int            # pixels that differ
    outside: int          # of those, outside the bird's column band
    a: Blob | None        # pixels where run A shows something and B shows background
    b: Blob | None


def split_owners(t: float, a: np.ndarray, b: np.ndarray, band: tuple[int, int]) -> Split:
    """Who owns each differing pixel in the band: the frame whose colour is foreign to its surroundings.

    Around each changed blob the two frames agree (that is background: sky, a pipe,
    the ground). A pixel belongs to the bird of the frame whose colour there is far
    from every colour of that ring, and is background in the other.
    """
    m = diff_mask(a, b)
    total = int(m.sum())
    inside = np.zeros_like(m)
    inside[:, band[0]:band[1]] = m[:, band[0]:band[1]]
    n_in = int(inside.sum())
    if n_in == 0 or n_in > MAX_COMPONENT_PIXELS:
        return Split(t, total, total - n_in, None, None)
    h, w = m.shape
    own_a: list[tuple[np.ndarray, np.ndarray]] = []
    own_b: list[tuple[np.ndarray, np.ndarray]] = []
    for ys, xs in components(dilate(inside, 1)):
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        Y0, Y1, X0, X1 = max(0, y0 - 3), min(h, y1 + 3), max(0, x0 - 3), min(w, x1 + 3)
        ring = ~m[Y0:Y1, X0:X1]
        ring[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = False
        colours = a[Y0:Y1, X0:X1][ring]
        if colours.size == 0:
            colours = a[~m][:: max(1, int((~m).sum()) // 2000)]
        if colours.size == 0:
            continue
        values, counts = np.unique(packed(colours), return_counts=True)
        top = values[np.argsort(counts)[::-1][:48]]
        pal = np.stack([(top >> 16) & 255, (top >> 8) & 255, top & 255], axis=1)
        sel = m[ys, xs]
        ys, xs = ys[sel], xs[sel]
        if ys.size == 0:
            continue
        da, db = _palette_distance(a[ys, xs], pal), _palette_distance(b[ys, xs], pal)
        ka, kb = da > db + 12, db > da + 12
        own_a.append((ys[ka], xs[ka]))
        own_b.append((ys[kb], xs[kb]))

    def blob(parts: list[tuple[np.ndarray, np.ndarray]]) -> Blob | None:
        if not parts:
            return None
        ys = np.concatenate([p[0] for p in parts])
        xs = np.concatenate([p[1] for p in parts])
        return Blob(ys, xs) if ys.size else None

    return Split(t, total, total - n_in, blob(own_a), blob(own_b))


@dataclass
class PairTrack:
    """Two runs that differ only in input, followed from the moment they diverge."""

    diverged_at: float | None
    band: tuple[int, int] = (0, 0)
    splits: list[Split] = field(default_factory=list)
    bird_area: float = 0.0
    bird_height: float = 0.0
    frame_area: int = 1
    height: int = 1

    def bird_like(self, blob: Blob | None) -> bool:
        """A whole bird, neither a sliver of an overlapping one nor scattered bits of a bigger change."""
        return (blob is not None and 0.55 * self.bird_area <= blob.n <= 1.8 * self.bird_area
                and blob.height <= 3 * self.bird_area ** 0.5 + 2)

    def valid_a(self) -> list[Split]:
        return [s for s in self.splits if self.bird_like(s.a)]

    def world_changed(self, s: Split) -> bool:
        """More differs than two birds can explain: an overlay, a reset, frozen pipes..."""
        inside = s.total - s.outside
        return (s.outside > max(2 * self.bird_area, 0.004 * self.frame_area)
                or inside > 3.5 * self.bird_area + 0.004 * self.frame_area)


def common_times(x: Run, y: Run) -> list[float]:
    tx, ty = x.by_time(), y.by_time()
    return sorted(set(tx) & set(ty))


def divergence(x: Run, y: Run, t_from: float = 0.0) -> float | None:
    """First instant at or after ``t_from`` where the two runs showed different frames."""
    tx, ty = x.by_time(), y.by_time()
    for t in common_times(x, y):
        if t >= t_from and tx[t].digest != ty[t].digest:
            return t
    return None


def track_pair(x: Run, y: Run, t_from: float = 0.0, t_to: float = 1e18,
               band: tuple[int, int] | None = None) -> PairTrack:
    """Split every later pair of frames into x's bird and y's bird (in ``band``, or the columns first seen to differ)."""
    d = divergence(x, y, t_from)
    if d is None:
        return PairTrack(None)
    tx, ty = x.by_time(), y.by_time()
    times = [t for t in common_times(x, y) if d <= t <= t_to and tx[t].px is not None and ty[t].px is not None]
    if not times:
        return PairTrack(d)
    h, w = image(tx[times[0]]).shape[:2]
    if band is None:
        cols: set[int] = set()
        for t in times[:6]:
            m = diff_mask(image(tx[t]), image(ty[t]))
            if m.sum() <= 0.08 * m.size:
                cols |= set(np.nonzero(m.any(axis=0))[0].tolist())
        if not cols:
            return PairTrack(d, frame_area=h * w, height=h)
        x0, x1 = min(cols), max(cols) + 1
        pad = max(2, (x1 - x0) // 2)
        band = (max(0, x0 - pad), min(w, x1 + pad))
    track = PairTrack(d, band, frame_area=h * w, height=h)
    for t in times:
        track.splits.append(split_owners(t, image(tx[t]), image(ty[t]), band))
    # The bird's size: from the first second after divergence, leaving out frames where
    # much more than two birds' worth differs (a game-over screen, say).
    totals = [s.total for s in track.splits[:8] if s.total > 0]
    base = float(np.median(totals)) if totals else 0.0
    early = [max(s.a.n if s.a else 0, s.b.n if s.b else 0) for s in track.splits
             if s.t <= d + 1200 and 0 < s.total <= 2.5 * base]
    early = [n for n in early if n > 0]
    if early:
        track.bird_area = float(np.percentile(early, 90))
        heights = [b.height for s in track.splits if not track.world_changed(s)
                   for b in (s.a, s.b) if b is not None and track.bird_like(b)]
        track.bird_height = float(np.median(heights)) if heights else 0.0
    return track


# -- the fall -----------------------------------------------------------------
@dataclass
class Fall:
    """The no-input bird's descent: samples, where it came to rest, how its speed grew."""

    samples: list[tuple[float, float]]       # (ms, centroid y) of whole no-input bird blobs
    jump_t: float | None = None               # the bird leapt back up (a new round) at this instant
    apex_t: float = 0.0
    land_t: float = 0.0                       # lowest point of the first descent
    land_blob: Blob | None = None
    stop_t: float | None = None               # from here the bird lay still for 300 ms
    stop_blob: Blob | None = None             # its pixels then (or its whole landing spot)
    drop: float = 0.0                         # frame px from apex to lowest point
    v_early: float = 0.0                      # frame px per second, first 40 % of the descent
    v_late: float = 0.0                       # last 40 %
    gravity: float = 0.0                      # frame px / s^2, from a quadratic fit of the descent


def stayed_put(frames: dict[float, Frame], t: float, blob: Blob, hold_ms: float) -> bool:
    """Do these pixels stay exactly as they are at ``t`` for ``hold_ms``?"""
    later = [s for s in sorted(frames) if t < s <= t + hold_ms and frames[s].px is not None]
    if not later or later[-1] < t + 0.8 * hold_ms:
        return False
    ref = image(frames[t])[blob.ys, blob.xs]
    return all(np.array_equal(image(frames[s])[blob.ys, blob.xs], ref) for s in later)


def find_rest(track: PairTrack, frames: dict[float, Frame], t_land: float, blob: Blob, hold_ms: float = 300.0,
              search_ms: float = 1000.0) -> tuple[float, Blob] | None:
    """First instant after the landing from which the bird lies still for ``hold_ms``.

    The bird's own pixels are watched, so pipes scrolling behind it do not count as
    movement. When the bird cannot be told apart any more (a game-over panel drawn
    across it, say), its whole landing spot is watched instead.
    """
    for s in track.splits:
        if t_land <= s.t <= t_land + search_ms and track.bird_like(s.a) and s.a is not None \
                and stayed_put(frames, s.t, s.a, hold_ms):
            return s.t, s.a
    some = next(f for f in frames.values() if f.px is not None)
    y0, y1 = blob.top, min(some.ah, blob.bottom + 1 + blob.height // 2)
    x0, x1 = max(0, int(blob.xs.min()) - 1), min(some.aw, int(blob.xs.max()) + 2)
    gy, gx = np.mgrid[y0:y1, x0:x1]
    spot = Blob(gy.ravel(), gx.ravel())
    for t in sorted(frames):
        if t_land <= t <= t_land + search_ms and frames[t].px is not None and stayed_put(frames, t, spot, hold_ms):
            return t, spot
    return None


def analyse_fall(track: PairTrack, run_a: Run) -> Fall:
    """The first descent of the no-input bird, up to its lowest point, and where it came to rest."""
    series = [(s.t, s.a) for s in track.valid_a() if s.a is not None and not track.world_changed(s)]
    for i in range(1, len(series)):   # a jump upwards is a restart: the first descent ends before it
        if series[i - 1][1].cy - series[i][1].cy > 0.15 * track.height:
            jump_t = series[i][0]
            series = series[:i]
            break
    else:
        jump_t = None
    fall = Fall([(t, b.cy) for t, b in series], jump_t)
    if len(series) < 4:
        return fall
    ts = np.array([t for t, _ in series]) / 1000.0
    ys = np.array([b.cy for _, b in series])
    i_land = int(np.argmax(ys))
    i_apex = int(np.argmin(ys[:i_land + 1]))
    fall.apex_t, fall.land_t = float(ts[i_apex] * 1000), float(ts[i_land] * 1000)
    fall.land_blob = series[i_land][1]
    fall.drop = float(ys[i_land] - ys[i_apex])
    rest = find_rest(track, run_a.by_time(), fall.land_t, fall.land_blob)
    if rest is not None:
        fall.stop_t, fall.stop_blob = rest
    dt = ts[i_land] - ts[i_apex]
    if i_land - i_apex >= 4 and dt > 0.05:
        def y_at(t: float) -> float:
            return float(np.interp(t, ts[i_apex:i_land + 1], ys[i_apex:i_land + 1]))
        a, b = ts[i_apex], ts[i_land]
        fall.v_early = (y_at(a + 0.4 * dt) - y_at(a)) / (0.4 * dt)
        fall.v_late = (y_at(b) - y_at(b - 0.4 * dt)) / (0.4 * dt)
        fall.gravity = float(2 * np.polyfit(ts[i_apex:i_land + 1], ys[i_apex:i_land + 1], 2)[0])
    return fall


# -- the flap -----------------------------------------------------------------
@dataclass
class Flap:
    """What one extra SPACE press did, against the run without it."""

    tap_t: float
    diverged_at: float | None
    lead: float = 0.0        # frame px the pressed bird ended above the unpressed one (at best)
    rise: float = 0.0        # frame px the pressed bird's top edge went up after the press
    samples: int = 0


def analyse_flap(track: PairTrack, tap_t: float, window_ms: float = 380.0) -> Flap:
    flap = Flap(tap_t, track.diverged_at)
    if track.diverged_at is None:
        return flap
    win = [s for s in track.splits if s.t <= tap_t + window_ms and s.a is not None and s.b is not None
           and not track.world_changed(s)]
    flap.samples = len(win)
    if not win:
        return flap
    bh = track.bird_height or max(max(s.a.height, s.b.height) for s in win if s.a and s.b)
    leads = []
    for s in win:
        assert s.a is not None and s.b is not None
        leads.append((s.a.bottom - s.b.top) - (bh - 1))   # = a.top - b.top whether or not they overlap
    flap.lead = float(max(leads))
    # Where the bird was when SPACE was pressed: the unpressed bird at the first differing frame
    # (its bottom edge is exact even while the two overlap).
    first = win[0]
    before = first.a.bottom - (bh - 1) if first.a is not None else (first.b.top if first.b else 0)
    flap.rise = float(before - min(s.b.top for s in win if s.b is not None))
    return flap


# -- pipes --------------------------------------------------------------------
def _runs(col: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in a column, 1-pixel holes closed."""
    c = col.copy()
    c[1:-1] |= col[:-2] & col[2:]
    idx = np.flatnonzero(np.diff(np.concatenate(([0], c.astype(np.int8), [0]))))
    return list(zip(idx[0::2].tolist(), idx[1::2].tolist()))


def pipe_gaps(m: np.ndarray) -> list[tuple[int, int, int]]:
    """Columns whose change runs from the top, stops for a gap, and resumes down to the lower part.

    A pipe pair moving sideways changes, at its edges, a run from the top of the
    screen to the gap and another from the gap downwards; nothing else in the game
    (the bird, the ground, clouds) does that. Returns (x, gap top, gap bottom) in frame px.
    """
    h = m.shape[0]
    out = []
    for x in np.nonzero(m.sum(axis=0) >= 0.3 * h)[0]:
        col = m[:, x]
        long = [r for r in _runs(col) if r[1] - r[0] >= max(2, 0.04 * h)]
        if len(long) < 2:
            continue
        r1, r2 = long[0], long[-1]
        gap = r2[0] - r1[1]
        if (r1[0] <= 0.12 * h and r2[1] >= 0.55 * h and gap >= 0.08 * h
                and (r1[1] - r1[0]) + (r2[1] - r2[0]) >= 0.3 * h and col[r1[1]:r2[0]].mean() <= 0.5):
            out.append((int(x), int(r1[1]), int(r2[0])))
    return out


def pipe_columns(m: np.ndarray) -> list[tuple[int, int]]:
    """(x, gap height) of each pipe-like column of the change mask ``m`` (see pipe_gaps)."""
    return [(x, bottom - top) for x, top, bottom in pipe_gaps(m)]


@dataclass
class PipeStep:
    """Pipes seen moving between two frames: by how much, and their gap."""

    t: float
    dt: float
    shift: int            # frame px the pipes moved left (positive: leftwards)
    gap: float            # frame px


def pipe_motion(t: float, dt: float, a: np.ndarray, b: np.ndarray) -> PipeStep | None:
    """Pipe-like columns that changed between ``a`` and ``b``, and the sideways shift explaining them."""
    m = diff_mask(a, b)
    cols = pipe_columns(m)
    if not cols:
        return None
    keep = np.zeros(m.shape[1], bool)
    keep[[c for c, _ in cols]] = True
    ys, xs = np.nonzero(m & keep[None, :])
    w = m.shape[1]
    # Colours match within a small tolerance: a shaded pipe moved by a fraction of a
    # frame pixel shows neighbouring shades after nearest-neighbour downscaling.
    ai, after = a.astype(np.int16), b[ys, xs].astype(np.int16)
    best_s, best, worst_left = 0, 0, 0
    for s in range(-max(3, w // 4), max(3, w // 4) + 1):
        if s == 0:
            continue
        ok = (xs + s >= 0) & (xs + s < w)
        score = int((np.abs(after[ok] - ai[ys[ok], xs[ok] + s]).sum(axis=1) <= 30).sum())
        if s > 0 and score > best:
            best_s, best = s, score
        if s < 0:
            worst_left = max(worst_left, score)
    if best_s > 0 and best >= 0.6 * ys.size and best >= 2 * max(worst_left, 1):
        return PipeStep(t, dt, best_s, float(np.median([g for _, g in cols])))
    return None


def pipe_steps(run: Run, gap_ms: tuple[float, float] = (80.0, 170.0)) -> list[PipeStep]:
    """Pipe motion between frames about 0.1 s apart, over the whole run."""
    frames = [f for f in sorted(run.by_time().values(), key=lambda f: f.t) if f.px is not None]
    steps, last = [], -1e18
    for i, f in enumerate(frames):
        if f.t - last < 45:
            continue
        nxt = next((g for g in frames[i + 1:] if gap_ms[0] <= g.t - f.t <= gap_ms[1]), None)
        if nxt is None:
            continue
        last = f.t
        step = pipe_motion(f.t, nxt.t - f.t, image(f), image(nxt))
        if step is not None:
            steps.append(step)
    return steps


def longest_stretch(steps: Iterable[PipeStep], max_hole_ms: float = 400.0) -> list[PipeStep]:
    """The longest series of steps with no hole longer than ``max_hole_ms``."""
    best: list[PipeStep] = []
    cur: list[PipeStep] = []
    for s in sorted(steps, key=lambda s: s.t):
        if cur and s.t - cur[-1].t > max_hole_ms:
            cur = []
        cur.append(s)
        if len(cur) > len(best) or (len(cur) == len(best) and cur[-1].t - cur[0].t > best[-1].t - best[0].t):
            best = list(cur)
    return best
