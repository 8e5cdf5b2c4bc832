"""The state of one run under the driver: virtual clock, scripted input, frame capture, self-checks.

A part of the driver (see driver.py). The hooks (driver_hooks.py, driver_clock.py,
driver_input.py) only call into one Harness, which holds the run's virtual time,
its script and timers, the keys held, what it sends over the channel, and checks
at every call (and from a watchdog thread) that no hook was replaced or traced.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from typing import Any

from driver_channel import (
    Channel,
    _blake2b,
    _getpid,
    _Lock,
    _os_exit,
    _pack,
    _real_mono,
    _real_sleep,
    read_orders,
)

STEP_MS = 1000.0 / 60.0          # virtual length of a frame the game does not pace itself
BEAT_S = 0.1                     # real seconds between heartbeats

Hook = tuple[Any, str, Any]      # (module or class, attribute, what the driver puts there)


class Harness:
    """Virtual clock, scripted input, frame capture and self-checks for one run."""

    def __init__(self, cfg: dict[str, Any], chan: Channel) -> None:
        self.cfg, self.chan = cfg, chan
        self.now = 0.0                                   # virtual milliseconds
        self.deadline = float(cfg["deadline_ms"])        # stop here whatever happens
        self.quit_grace = float(cfg["quit_grace_ms"])
        self.script = sorted(cfg["events"], key=lambda e: e[0])
        self.script_i = 0
        self.timers: dict[int, list[Any]] = {}           # event type -> [due, interval, loops left, event]
        self.held_keys: set[int] = set()
        self.held_buttons: set[int] = set()
        self.paced = False                               # the game called tick/sleep/wait at least once
        self.flips_unpaced = 0
        self.busy_calls = 0
        self.busy_limit = int(cfg.get("busy_calls", 5000))
        self.frames = 0
        self.px_windows = [tuple(w) for w in cfg["pixels"]]
        self.px_every = float(cfg.get("pixel_every_ms", 0))
        self.last_px = -1e18
        self.shots = sorted(cfg.get("shots", []))
        self.max_dim = int(cfg.get("max_dim", 200))
        self.small: tuple[int, int] | None = None
        self.quit_at: float | None = None
        self.window_opened = False
        self.done = False
        self.finish_lock = _Lock()
        self.progress_real = _real_mono()
        self.stats = {"flips": 0, "ticks": 0, "sleeps": 0, "polls": 0, "busy_steps": 0, "timers_fired": 0}
        self.watched: list[tuple[Any, str, Any]] = []
        self.codes: list[tuple[Callable[..., Any], Any]] = []
        self.modules: list[tuple[str, Any]] = []
        self.pg: Any = None
        self.orig: dict[str, Any] = {}
        self.ctl_fd = int(cfg.get("control_fd", -1))    # lockstep: the verifier's orders after each frame

    # -- time ---------------------------------------------------------------
    def advance_to(self, t: float) -> None:
        if t <= self.now:
            return
        self.now = t
        self.busy_calls = 0
        self.progress_real = _real_mono()
        self.fire_due()
        if self.now >= self.deadline:
            self.finish("deadline")

    def pace(self) -> None:
        self.paced = True
        self.flips_unpaced = 0

    def busy(self) -> None:
        """Count a call that does not move time; a loop of them moves it a step (no hang)."""
        self.busy_calls += 1
        if self.busy_calls > self.busy_limit:
            self.stats["busy_steps"] += 1
            self.advance_to(self.now + STEP_MS)

    def next_due(self) -> float:
        due = [self.script[self.script_i][0]] if self.script_i < len(self.script) else []
        due += [t[0] for t in self.timers.values()]
        return min(due) if due else self.now + STEP_MS

    # -- input --------------------------------------------------------------
    def fire_due(self) -> None:
        pg = self.pg
        try:
            ready = bool(self.orig["display_get_init"]())
        except Exception:
            ready = False
        if not ready:
            return  # pygame is not initialised (yet, or any more): events wait
        due: list[tuple[float, int, Any]] = []
        while self.script_i < len(self.script) and self.script[self.script_i][0] <= self.now:
            due.append((float(self.script[self.script_i][0]), 0, self.script[self.script_i]))
            self.script_i += 1
        for etype, timer in list(self.timers.items()):
            n = 0
            while timer[0] <= self.now and n < 100:
                due.append((timer[0], 1, timer[3]))
                timer[0] += timer[1]
                n += 1
                if timer[2] > 0:
                    timer[2] -= 1
                    if timer[2] == 0:
                        self.timers.pop(etype, None)
                        break
        due.sort(key=lambda d: (d[0], d[1]))
        for _, is_timer, item in due:
            if is_timer:
                self.stats["timers_fired"] += 1
                self.post(item)
            else:
                self.inject(item, pg)

    def post(self, event: Any) -> bool:
        try:
            self.orig["event_post"](event)
            return True
        except Exception:
            return False

    def inject(self, item: list[Any], pg: Any) -> None:
        t, kind = item[0], item[1]
        Event = self.orig["Event"]
        if kind == "key_down":
            key = int(item[2])
            self.held_keys.add(key)
            ev = Event(pg.KEYDOWN, key=key, mod=0, unicode=chr(key) if 32 <= key < 127 else "",
                       scancode=int(item[3]), window=None)
        elif kind == "key_up":
            key = int(item[2])
            self.held_keys.discard(key)
            ev = Event(pg.KEYUP, key=key, mod=0, unicode=chr(key) if 32 <= key < 127 else "",
                       scancode=int(item[3]), window=None)
        elif kind == "mouse_down":
            self.held_buttons.add(int(item[2]))
            ev = Event(pg.MOUSEBUTTONDOWN, pos=tuple(item[3]), button=int(item[2]), touch=False, window=None)
        elif kind == "mouse_up":
            self.held_buttons.discard(int(item[2]))
            ev = Event(pg.MOUSEBUTTONUP, pos=tuple(item[3]), button=int(item[2]), touch=False, window=None)
        elif kind == "mouse_motion":
            ev = Event(pg.MOUSEMOTION, pos=tuple(item[2]), rel=tuple(item[3]), buttons=(0, 0, 0),
                       touch=False, window=None)
        elif kind == "quit":
            ev = Event(pg.QUIT)
            self.quit_at = self.now
            self.deadline = min(self.deadline, self.now + self.quit_grace)
        else:
            return
        ok = self.post(ev)
        self.chan.send_json(b"I", {"kind": kind, "due": t, "t": self.now, "posted": ok, "frame": self.frames})

    # -- frames -------------------------------------------------------------
    def on_frame(self) -> None:
        self.check()
        self.stats["flips"] += 1
        try:
            surf = self.orig["get_surface"]()
        except Exception:
            surf = None
        if surf is not None and self.capture(surf) and self.ctl_fd >= 0:
            self.obey()
        self.progress_real = _real_mono()
        self.flips_unpaced += 1
        if not self.paced or self.flips_unpaced >= 3:
            self.advance_to(self.now + STEP_MS)

    def capture(self, surf: Any) -> bool:
        """Send the frame; True when its pixels went with it."""
        try:
            w, h = surf.get_size()
            if self.small is None:
                f = max(1, math.ceil(max(w, h) / self.max_dim))
                self.small = (max(1, w // f), max(1, h // f))
            aw, ah = self.small
            px = self.orig["tostring"](self.orig["scale"](surf, (aw, ah)), "RGB")
            full = self.orig["tostring"](surf, "RGB") if self.shots and self.now >= self.shots[0] else None
        except Exception:
            return False  # e.g. the game called pygame.quit(): no surface to read
        digest = _blake2b(px, digest_size=16).digest()
        t = self.now
        want = any(a <= t <= b for a, b in self.px_windows) and t - self.last_px >= self.px_every
        if want:
            self.last_px = t
        head = _pack(">IdHHHH16sB", self.frames, t, w, h, aw, ah, digest, 1 if want else 0)
        self.chan.send(b"F", head + (px if want else b""))
        if full is not None:
            while self.shots and self.now >= self.shots[0]:
                self.shots.pop(0)
            self.chan.send(b"S", _pack(">dHH", t, w, h) + full)
        self.frames += 1
        return want

    def obey(self) -> None:
        """Lockstep: wait for the verifier's orders on the frame just sent and schedule them.

        Orders are script events (``[due_ms, kind, ...]``, due now or later); the
        verifier decides them from the pixels, outside this process.
        """
        orders = read_orders(self.ctl_fd)
        if orders is None:
            _os_exit(70)  # the verifier is gone
        if orders:
            pending = self.script[self.script_i:] + [list(o) for o in orders]
            self.script = self.script[:self.script_i] + sorted(pending, key=lambda e: float(e[0]))
            self.fire_due()
        self.progress_real = _real_mono()

    # -- integrity ----------------------------------------------------------
    def check(self) -> None:
        """Stop the run if any hook was replaced, wrapped, re-coded or traced."""
        problem = None
        for obj, name, fn in self.watched:
            if obj.__dict__.get(name) is not fn:
                problem = f"{getattr(obj, '__name__', obj)}.{name} was replaced by the game"
                break
        if problem is None:
            for fn, code in self.codes:
                if fn.__code__ is not code:
                    problem = f"the code of the harness hook {fn.__name__} was replaced"
                    break
        if problem is None:
            for name, mod in self.modules:
                if sys.modules.get(name) is not mod:
                    problem = f"sys.modules[{name!r}] was replaced or reloaded"
                    break
        if problem is None and threading.current_thread() is threading.main_thread():
            if sys.gettrace() is not None or sys.getprofile() is not None:
                problem = "a trace or profile function was installed (sys.settrace / sys.setprofile)"
        if problem is not None:
            self.chan.send_json(b"T", {"what": problem, "t": self.now, "frame": self.frames})
            self.finish("tamper", detail=problem)

    def integrity(self) -> dict[str, Any]:
        """What the hooks look like now: the verifier compares every heartbeat with the first (sent before
        any game code ran), so hooks that vanish or change show up outside this process."""
        ids, intact = [], 0
        for obj, name, fn in self.watched:
            ids += [id(obj), id(fn)]
            intact += obj.__dict__.get(name) is fn
        for fn, code in self.codes:
            ids += [id(fn), id(code)]
            intact += fn.__code__ is code
        for key in sorted(self.orig):
            ids.append(id(self.orig[key]))
        for _, mod in self.modules:
            ids.append(id(mod))
        ids += [id(self.chan), id(self.chan.key), len(vars(self.chan))]
        digest = _blake2b(b"".join(_pack(">Q", i & 0xFFFFFFFFFFFFFFFF) for i in ids), digest_size=16).hexdigest()
        return {"hooks": len(self.watched) + len(self.codes), "intact": intact, "orig": len(self.orig),
                "modules": len(self.modules), "digest": digest}

    # -- the end ------------------------------------------------------------
    def finish(self, reason: str, **info: Any) -> None:
        if _getpid() != self.chan.owner:
            _os_exit(0)  # a process the game forked ends quietly; only the game's own process reports
        if not self.finish_lock.acquire(timeout=2.0) or self.done:
            _os_exit(71)
        self.done = True
        self.chan.send_json(b"B", {**self.integrity(), "t": self.now, "frames": self.frames})
        end = {"reason": reason, "t": self.now, "frames": self.frames, "quit_at": self.quit_at,
               "window": self.window_opened, "stats": self.stats, "held": sorted(self.held_keys), **info}
        self.chan.send_json(b"Z", end, last=True)
        _os_exit(0)

    def watchdog(self) -> None:
        startup, later = float(self.cfg["startup_stall_s"]), float(self.cfg["stall_s"])
        beat = _real_mono()
        while not self.done:
            _real_sleep(0.05)
            self.check()
            if _real_mono() - beat >= BEAT_S:
                beat = _real_mono()
                self.chan.send_json(b"B", {**self.integrity(), "t": self.now, "frames": self.frames})
            idle = _real_mono() - self.progress_real
            limit = startup if self.frames == 0 else later
            if idle > limit:
                self.finish("stall", detail=f"no frame and no use of time for {idle:.1f} s of real time",
                            idle_s=round(idle, 2))
