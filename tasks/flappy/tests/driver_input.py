"""Scripted input for the driver: the hooks on pygame's event queue and on held keys and buttons.

A part of the driver (see driver.py). The script's events are posted into pygame's
real queue as they fall due on the virtual clock (Harness.fire_due), so
``event.get/poll/peek`` and their filters behave natively; these hooks count the
calls that do not let time pass (Harness.busy), make ``event.wait`` wait on the
virtual clock, and answer ``key.get_pressed`` and ``mouse.get_pressed`` from the
scripted held keys and buttons.
"""

from __future__ import annotations

from typing import Any

from driver_harness import STEP_MS, Harness, Hook

PRESSED_LEN = 512                # length of the tuple key.get_pressed() returns in pygame 2.1


class Pressed(tuple):  # type: ignore[type-arg]
    """What key.get_pressed() returns: a 512-tuple that also answers any key code (K_UP is > 512)."""

    held: frozenset[int] = frozenset()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return key in self.held
        return tuple.__getitem__(self, key)


def event_plan(h: Harness, pg: Any) -> list[Hook]:
    """Hooks for pygame.event."""
    o = h.orig

    def ev_get(*args: Any, **kw: Any) -> Any:
        h.check()
        h.stats["polls"] += 1
        h.busy()
        return o["ev_get"](*args, **kw)

    def ev_poll() -> Any:
        h.check()
        h.busy()
        return o["ev_poll"]()

    def ev_peek(*args: Any, **kw: Any) -> Any:
        h.busy()
        return o["ev_peek"](*args, **kw)

    def ev_pump() -> None:
        h.busy()
        o["ev_pump"]()

    def ev_wait(timeout: int = 0) -> Any:
        h.check()
        waited = 0.0
        while True:
            ev = o["ev_poll"]()
            if ev.type != o["NOEVENT"]:
                return ev
            if timeout and waited >= timeout:
                return ev
            step = min(max(h.next_due() - h.now, 1.0), STEP_MS)
            h.pace()
            h.advance_to(h.now + step)
            waited += step

    return [(pg.event, "get", ev_get), (pg.event, "poll", ev_poll), (pg.event, "peek", ev_peek),
            (pg.event, "pump", ev_pump), (pg.event, "wait", ev_wait)]


def pressed_plan(h: Harness, pg: Any) -> list[Hook]:
    """Hooks for pygame.key.get_pressed and pygame.mouse.get_pressed."""

    def get_pressed() -> Pressed:
        h.busy()
        p = Pressed(i in h.held_keys for i in range(PRESSED_LEN))
        p.held = frozenset(h.held_keys)
        return p

    def mouse_pressed(num_buttons: int = 3) -> tuple[bool, ...]:
        return tuple(b in h.held_buttons for b in range(1, num_buttons + 1))

    return [(pg.key, "get_pressed", get_pressed), (pg.mouse, "get_pressed", mouse_pressed)]
