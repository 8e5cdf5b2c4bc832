"""Installing the driver's hooks into pygame, time and random, and what the self-checks watch.

A part of the driver (see driver.py). The hooks themselves come from
driver_clock.py (time and chance), driver_input.py (events, held keys) and here
(presenting frames); install() puts them in place in one fixed order and gives the
Harness the attributes, code objects and modules it checks at every call.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any

from driver_channel import Channel
from driver_clock import make_clock, pygame_time_plan, seed_hooks, time_plan
from driver_harness import Harness, Hook
from driver_input import event_plan, pressed_plan


def display_plan(h: Harness, pg: Any) -> list[Hook]:
    """Hooks for pygame.display: a presented frame is captured."""
    o = h.orig

    def flip() -> None:
        o["flip"]()
        h.on_frame()

    def update(*args: Any, **kw: Any) -> None:
        o["update"](*args, **kw)
        h.on_frame()

    def set_mode(*args: Any, **kw: Any) -> Any:
        h.check()
        surf = o["set_mode"](*args, **kw)
        if not h.window_opened:
            h.window_opened = True
            h.chan.send_json(b"W", {"size": list(surf.get_size()), "t": h.now})
        return surf

    return [(pg.display, "flip", flip), (pg.display, "update", update), (pg.display, "set_mode", set_mode)]


def install(h: Harness) -> None:
    """Replace what the game may use to read time, input and to present frames."""
    import pygame as pg
    import pygame.display
    import pygame.event
    import pygame.image
    import pygame.key
    import pygame.mouse
    import pygame.time
    import pygame.transform

    h.pg = pg
    o = h.orig
    o.update(display_get_init=pg.display.get_init, get_surface=pg.display.get_surface,
             scale=pg.transform.scale, tostring=pg.image.tostring, event_post=pg.event.post,
             Event=pg.event.Event, flip=pg.display.flip, update=pg.display.update, set_mode=pg.display.set_mode,
             ev_get=pg.event.get, ev_poll=pg.event.poll, ev_peek=pg.event.peek, ev_pump=pg.event.pump,
             NOEVENT=pg.NOEVENT)

    Clock = make_clock(h)
    seed0 = int(h.cfg["seed"])
    m_seed, r_seed, urandom = seed_hooks(seed0)
    plan: list[Hook] = (display_plan(h, pg) + event_plan(h, pg) + pygame_time_plan(h, pg, Clock)
                        + pressed_plan(h, pg) + time_plan(h) + [(random, "seed", m_seed)])
    os.urandom = urandom
    setattr(random, "_urandom", urandom)
    for obj, name, fn in plan:
        setattr(obj, name, fn)
    random.Random.seed = r_seed  # type: ignore[method-assign]
    h.watched = plan + [(random.Random, "seed", r_seed)] + [
        (Clock, n, Clock.__dict__[n]) for n in ("tick", "tick_busy_loop", "get_time", "get_fps", "__init__")]
    h.codes = [(fn, fn.__code__) for _, _, fn in plan if hasattr(fn, "__code__")]
    h.codes += [(Clock.__dict__[n], Clock.__dict__[n].__code__) for n in ("tick", "__init__")]
    h.codes += [(fn, fn.__code__) for fn in (Harness.on_frame, Harness.check, Harness.capture, Harness.advance_to)]
    h.modules = [(n, sys.modules[n]) for n in ("pygame", "pygame.display", "pygame.event", "pygame.time",
                                               "pygame.key", "pygame.mouse", "time", "random")]
    h.watched += [(pg, n, sys.modules[f"pygame.{n}"]) for n in ("display", "event", "time", "key", "mouse")]
    h.watched += [(Harness, n, Harness.__dict__[n]) for n in ("on_frame", "check", "capture", "advance_to", "finish",
                                                              "obey", "fire_due", "inject", "post", "integrity")]
    h.watched += [(Channel, n, Channel.__dict__[n]) for n in ("send", "send_json")]
    random.seed(seed0)
