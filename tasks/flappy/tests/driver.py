"""In-game harness: runs the solution's flappy.py under virtual time and scripted input.

runs.py starts it as ``python3 -c <this source> CFG_FD DATA_FD PARTS``, where PARTS
is JSON of the sources of the driver's other modules (driver_channel.py,
driver_harness.py, driver_clock.py, driver_input.py, driver_hooks.py), in import
order. All of them are read once by the verifier before any solution code runs,
so a game cannot rewrite them for later runs, and this process never imports
them from disk: load_parts makes them into modules from those sources. It reads
its configuration, including a fresh MAC key, from CFG_FD, installs its hooks into
pygame and ``time`` before the game is imported, seeds ``random``, then runs
flappy.py with runpy as ``__main__``.

Why each hook exists:

* Virtual time. ``Clock.tick``, ``pygame.time.get_ticks/wait/delay/set_timer``,
  ``time.time/monotonic/perf_counter/sleep`` all read one clock that only moves
  when the game paces itself (tick, sleep, wait) or shows a frame without pacing
  (then one 1/60 s step per frame). Runs are therefore reproducible frame for
  frame whatever the machine's speed, which is what lets the verifier compare a
  run without input to one with SPACE presses and see only the bird differ.
* Scripted input. Events fall due on that clock and are posted into pygame's real
  queue (so ``event.get/poll/wait/peek`` and filters behave natively);
  ``key.get_pressed`` and ``mouse.get_pressed`` report the scripted held keys.
* Frame capture. ``display.flip/update`` call the real function, then read the
  display surface through functions saved before the game ran, downscale it
  (nearest neighbour, so flat colours stay exact) and send it to the verifier.

* Lockstep (the autopilot's runs). With ``control_fd`` in the configuration, the
  driver waits after each frame with pixels for the verifier's orders (script
  events to inject), read from a pipe of the verifier's: the verifier plays the
  game from the pixels, outside this process.

The verifier never trusts this process for a verdict: it gets pixels and events,
and decides. The channel is a pipe the verifier created, every record carries a
sequence number and a keyed BLAKE2 MAC, and the hooks check at every call (and a
watchdog thread every 50 ms) that nobody replaced, wrapped or traced them; a
game that does is reported and stopped at once. All of that shares the game's
interpreter, so a game can defeat it (gc reaches every object here, the key
included): the watchdog's heartbeat (a digest of the hooks every 0.1 s, compared
by the verifier with the one sent before the game ran) and the process's exit as
the verifier sees it are what the verifier relies on (runs.py).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback
import types


def load_parts(parts_json: str) -> list[types.ModuleType]:
    """The driver's other modules, made from the sources passed in, in order (each imports only earlier ones).

    Their code is compiled as ``<string>``, like this file's under ``-c``, so format_error
    leaves all of the driver's frames out. Once main has imported what it needs they leave
    sys.modules again: the game sees the interpreter as it was with a single driver file.
    """
    modules = []
    for name, source in json.loads(parts_json):
        module = types.ModuleType(name)
        sys.modules[name] = module
        exec(compile(source, "<string>", "exec", dont_inherit=True), module.__dict__)
        modules.append(module)
    return modules


def format_error(exc: BaseException, game: str) -> str:
    """The exception as the player would see it, without the harness's own frames."""
    tb = [f for f in traceback.extract_tb(exc.__traceback__)
          if f.filename != "<string>" and not f.filename.startswith("<frozen")
          and not f.filename.endswith("runpy.py")]
    lines = traceback.format_list(tb[-6:]) + traceback.format_exception_only(type(exc), exc)
    return "".join(lines).replace(game, "flappy.py")[-3000:]


def main() -> None:
    cfg_fd, data_fd = int(sys.argv[1]), int(sys.argv[2])
    parts = load_parts(sys.argv[3])
    from driver_channel import Channel, _os_close, _os_read, _Thread
    from driver_harness import Harness
    from driver_hooks import install
    for part in parts:
        del sys.modules[part.__name__]
    raw = b""
    while True:
        chunk = _os_read(cfg_fd, 65536)
        if not chunk:
            break
        raw += chunk
    _os_close(cfg_fd)
    cfg = json.loads(raw)
    os.set_inheritable(data_fd, False)  # programs the game starts do not get the channel
    chan = Channel(data_fd, bytes.fromhex(cfg.pop("key")))
    h = Harness(cfg, chan)
    game = cfg["game"]
    install(h)
    if h.ctl_fd >= 0:
        os.set_inheritable(h.ctl_fd, False)
    chan.send_json(b"H", {"pid": os.getpid(), **h.integrity()})
    _Thread(target=h.watchdog, name="harness-watchdog", daemon=True).start()
    sys.argv = [game]
    sys.path[0] = os.path.dirname(game)
    try:
        runpy.run_path(game, run_name="__main__")
    except SystemExit as e:
        h.finish("exit", code=str(e.code) if e.code is not None else None)
    except BaseException as e:  # noqa: BLE001 - the game's own crash is what we report
        chan.send(b"X", format_error(e, game).encode("utf-8", "replace"))
        h.finish("exception", error=f"{type(e).__name__}: {e}"[:300])
    h.finish("returned")


if __name__ == "__main__":
    main()
