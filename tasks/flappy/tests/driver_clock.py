"""Virtual time for the driver: the hooks the game may use to read or wait on time, and chance.

A part of the driver (see driver.py). ``pygame.time`` (get_ticks, wait, delay,
set_timer, Clock) and ``time`` (time, monotonic, perf_counter, their _ns forms,
sleep, process_time) all read the run's one virtual clock, Harness.now; waiting
moves it. ``random`` and ``os.urandom`` replay from the run's seed.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable

from driver_harness import STEP_MS, Harness, Hook

EPOCH = 1_700_000_000.0          # what time.time() reads at virtual t=0
MONO0 = 1000.0                   # what time.monotonic() / perf_counter() read at t=0


def make_clock(h: Harness) -> type:
    """pygame.time.Clock for this run."""

    class Clock:
        """Stands in for pygame.time.Clock: tick() waits on the virtual clock."""

        __slots__ = ("_last", "_dt", "_hist", "__weakref__")

        def __init__(self) -> None:
            cls = type(self)
            if cls is not Clock and any(n in vars(c) for c in cls.__mro__[:-2] for n in ("tick", "tick_busy_loop")):
                h.chan.send_json(b"T", {"what": "pygame.time.Clock was subclassed to replace tick()", "t": h.now})
                h.finish("tamper", detail="pygame.time.Clock was subclassed to replace tick()")
            self._last = int(h.now)
            self._dt = 0
            self._hist: list[int] = []

        def tick(self, framerate: float = 0) -> int:
            h.check()
            h.stats["ticks"] += 1
            period = max(1000.0 / framerate, STEP_MS) if framerate and framerate > 0 else STEP_MS
            h.pace()
            target = self._last + period
            if h.now < target:
                h.advance_to(target)
            now = int(h.now)
            self._dt, self._last = now - self._last, now
            self._hist = (self._hist + [self._dt])[-10:]
            return self._dt

        tick_busy_loop = tick

        def get_time(self) -> int:
            return self._dt

        def get_rawtime(self) -> int:
            return self._dt

        def get_fps(self) -> float:
            total = sum(self._hist)
            return 1000.0 * len(self._hist) / total if total else 0.0

    return Clock


def pygame_time_plan(h: Harness, pg: Any, clock: type) -> list[Hook]:
    """Hooks for pygame.time; ``clock`` stands in for its Clock."""
    o = h.orig

    def get_ticks() -> int:
        h.busy()
        return int(h.now)

    def t_wait(ms: int = 0) -> int:
        h.check()
        h.stats["sleeps"] += 1
        h.pace()
        h.advance_to(h.now + max(0, int(ms)))
        return int(ms)

    def set_timer(event: Any, millis: int, loops: int = 0) -> None:
        h.check()
        etype = int(getattr(event, "type", event))
        ev = event if hasattr(event, "type") else o["Event"](etype)
        if int(millis) <= 0:
            h.timers.pop(etype, None)
        else:
            h.timers[etype] = [h.now + int(millis), int(millis), int(loops), ev]

    return [(pg.time, "get_ticks", get_ticks), (pg.time, "wait", t_wait), (pg.time, "delay", t_wait),
            (pg.time, "set_timer", set_timer), (pg.time, "Clock", clock)]


def time_plan(h: Harness) -> list[Hook]:
    """Hooks for the time module."""

    def t_time() -> float:
        h.busy()
        return EPOCH + h.now / 1000.0

    def t_time_ns() -> int:
        h.busy()
        return int((EPOCH + h.now / 1000.0) * 1e9)

    def t_mono() -> float:
        h.busy()
        return MONO0 + h.now / 1000.0

    def t_mono_ns() -> int:
        h.busy()
        return int((MONO0 + h.now / 1000.0) * 1e9)

    def t_sleep(seconds: float) -> None:
        h.check()
        if seconds and seconds > 0:
            h.stats["sleeps"] += 1
            h.pace()
            h.advance_to(h.now + float(seconds) * 1000.0)
        else:
            h.busy()

    def t_process() -> float:
        h.busy()
        return h.now / 1000.0

    return [(time, "time", t_time), (time, "time_ns", t_time_ns), (time, "monotonic", t_mono),
            (time, "monotonic_ns", t_mono_ns), (time, "perf_counter", t_mono), (time, "perf_counter_ns", t_mono_ns),
            (time, "sleep", t_sleep), (time, "process_time", t_process)]


def seed_hooks(seed0: int) -> tuple[Callable[..., None], Callable[..., None], Callable[[int], bytes]]:
    """(random.seed, random.Random.seed, os.urandom) for a run seeded with ``seed0``."""
    real_seed = random.Random.seed

    inst: random.Random = getattr(random, "_inst")   # the instance behind random.random() & co.

    def r_seed(self: random.Random, a: Any = None, version: int = 2) -> None:
        """Random(None) / rng.seed() would read os.urandom: use the run's fixed seed instead."""
        real_seed(self, seed0 if a is None else a, version)

    def m_seed(a: Any = None, version: int = 2) -> None:
        real_seed(inst, seed0 if a is None else a, version)

    # os.urandom feeds SystemRandom, secrets and Random(None): make it replay too.
    noise = random.Random(seed0 ^ 0x5EED)

    def urandom(n: int) -> bytes:
        return noise.randbytes(n)

    return m_seed, r_seed, urandom
