"""Running the game once under driver.py and reading what it reported.

Why not ``Verdict.run``: the driver reports over a pipe of our own (passed with
``pass_fds``, which ``Verdict.run`` closes) and the game's own output must be
capped, not buffered whole. The guarantees are the same: the solution's own uid
(``solution_argv``), a scratch folder outside the verifier's (``solution_dir``),
its own session, a clean environment, a hard wall-clock limit, and every process
of the solution killed at the end (``kill_solution``, and our own process group).

Records (see driver_channel.py): ``len:u32 | kind:1 | seq:u32 | payload | mac:16``.
Any record that fails its MAC or comes out of sequence ends the reading: what
came before it stands, and the run is marked as tampered with.

The driver shares the game's interpreter, so anything it says could be forged by a
game that reads its key (through gc, say). What is judged here from outside:

* how the process ended: its exit as waitpid reports it, and when (the harness's
  last word ``Z`` is believed only if the process then exits within EXIT_WAIT_S);
* the heartbeat: the driver's watchdog sends a ``B`` record every 0.1 s with a
  digest of its hooks; one that differs from the ``H`` record's (sent before any
  game code ran), or a silence of SILENCE_S while the game runs, ends the run as
  tampered with;
* in lockstep runs, the input: the pilot decides it here from the pixels.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Any

from agenteval_verifier import kill_solution, solution_argv, solution_dir

HERE = Path(__file__).resolve().parent
# The driver, read once, before any game can touch its files: driver.py runs with ``-c`` and gets the
# sources of its other modules, in import order, as JSON on its command line (see driver.load_parts).
DRIVER_PARTS = ("driver_channel", "driver_harness", "driver_clock", "driver_input", "driver_hooks")
DRIVER_SOURCE = (HERE / "driver.py").read_text()
DRIVER_PARTS_JSON = json.dumps([[name, (HERE / f"{name}.py").read_text()] for name in DRIVER_PARTS])
MAX_STREAM = 160 * 1024**2                         # bytes of records one run may send
LOG_KEEP = 6000                                    # bytes kept of the game's own stdout+stderr
FRAME_HEAD = struct.Struct(">IdHHHH16sB")
EXIT_WAIT_S = 2.0                                  # after the harness's last word, the process must be gone
SILENCE_S = 4.0                                    # real seconds without a heartbeat that end a run
BEAT_FIELDS = ("hooks", "intact", "orig", "modules", "digest")


@dataclass
class Frame:
    """One presented frame: virtual time, full size, downscaled size and pixels (when asked for)."""

    idx: int
    t: float
    w: int
    h: int
    aw: int
    ah: int
    digest: bytes
    px: bytes | None


@dataclass
class Run:
    """Everything one scenario produced, already authenticated."""

    name: str
    frames: list[Frame] = field(default_factory=list)
    shots: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    injected: list[dict[str, Any]] = field(default_factory=list)
    window: dict[str, Any] | None = None
    tamper: list[str] = field(default_factory=list)
    error: str | None = None             # the game's exception, as text
    end: dict[str, Any] | None = None    # the driver's last word: reason, virtual time, stats
    stream_problem: str | None = None    # a record that failed authentication or order
    hello: bool = False
    exit_code: int | None = None
    exited: bool = False                 # the process exited by itself (seen by waitpid before we killed it)
    exit_real: float | None = None       # monotonic time its exit was seen
    quit_real: float | None = None       # monotonic time the record of the posted QUIT arrived
    beats: int = 0
    timed_out: bool = False
    real_s: float = 0.0
    log: str = ""

    def by_time(self) -> dict[float, Frame]:
        """Frames keyed by virtual time; a later flip at the same instant replaces an earlier one."""
        return {f.t: f for f in self.frames}

    @property
    def quit_at(self) -> float | None:
        return next((e["t"] for e in self.injected if e["kind"] == "quit" and e.get("posted")), None)

    @property
    def exit_after_quit_s(self) -> float | None:
        """Real seconds from the QUIT record's arrival to the process's exit, both seen here."""
        if not self.exited or self.exit_real is None or self.quit_real is None:
            return None
        return self.exit_real - self.quit_real


# Decides, from a frame's pixels, the script events to inject now (lockstep runs).
Pilot = Callable[[Frame], list[list[Any]]]


def reap_strays(marker: str) -> int:
    """Run by hand (the game under our own uid): kill processes it left behind, found by the run's marker.

    In the sandbox the game runs as its own uid and kill_solution() ends all of them; there
    these processes are not ours to read and nothing is found here.
    """
    killed = 0
    for _ in range(5):
        found = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                    continue
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker.encode() not in f.read():
                        continue
                os.kill(int(entry), signal.SIGKILL)
                found += 1
            except OSError:
                continue
        killed += found
        if not found:
            break
        time.sleep(0.05)
    return killed


def game_env(home: str, marker: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "XDG_RUNTIME_DIR": home,
            "LANG": "C.UTF-8", "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy",
            "PYGAME_HIDE_SUPPORT_PROMPT": "1", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1", "FLAPPY_HARNESS_RUN": marker}


def run_game(name: str, source: bytes, cfg: dict[str, Any], timeout: float, pilot: Pilot | None = None) -> Run:
    """Run ``source`` as flappy.py under the driver with ``cfg``; never longer than ``timeout``.

    With a ``pilot`` the run goes in lockstep: after each frame with pixels the driver waits
    for the pilot's orders (script events) on a control pipe of ours.
    """
    run = Run(name)
    home = solution_dir(f"flappy-{name}-")
    game = home / "flappy.py"
    game.write_bytes(source)
    game.chmod(0o644)
    key, marker = secrets.token_bytes(32), secrets.token_hex(12)
    cfg = {**cfg, "key": key.hex(), "game": str(game)}
    fds = list(os.pipe()) + list(os.pipe())
    cfg_r, cfg_w, data_r, data_w = fds
    if pilot is not None:
        ctl_r, ctl_w = os.pipe()
        os.set_blocking(ctl_w, False)  # a game that forges frames must not make us wait on a full pipe
        fds += [ctl_r, ctl_w]
        cfg["control_fd"] = ctl_r
    t0 = time.monotonic()
    try:
        argv = [sys.executable, "-c", DRIVER_SOURCE, str(cfg_r), str(data_w), DRIVER_PARTS_JSON]
        passed = (cfg_r, data_w) + ((ctl_r,) if pilot is not None else ())
        proc = subprocess.Popen(solution_argv(argv), cwd=home, env=game_env(str(home), marker),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                pass_fds=passed, start_new_session=True)
    except OSError as e:
        for fd in fds:
            os.close(fd)
        shutil.rmtree(home, ignore_errors=True)
        run.error = f"could not start python3: {e}"
        return run
    os.close(cfg_r)
    os.close(data_w)
    if pilot is not None:
        os.close(ctl_r)
    try:
        os.write(cfg_w, json.dumps(cfg).encode())
    except OSError:
        pass
    os.close(cfg_w)
    reader = _Reader(run, key, pilot, ctl_w if pilot is not None else -1)
    try:
        _watch(run, proc, reader, data_r, t0 + timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            code = proc.wait(timeout=5)
            if run.exit_code is None and not run.exited:
                run.exit_code = code
        except subprocess.TimeoutExpired:
            pass
        assert proc.stdout is not None
        proc.stdout.close()
        os.close(data_r)
        if pilot is not None:
            os.close(ctl_w)
        kill_solution()
        reap_strays(marker)
        shutil.rmtree(home, ignore_errors=True)
    run.real_s = time.monotonic() - t0
    return run


def _watch(run: Run, proc: subprocess.Popen[bytes], reader: _Reader, data_r: int, deadline: float) -> None:
    """Read the records and the game's output until the run is over, and see how it ended.

    The run is over when the process exits (observed here, whatever the records say), when
    the harness's last word came and the process does not exit within EXIT_WAIT_S, when a
    record fails authentication, when the heartbeat goes silent, or at ``deadline``.
    """
    log = bytearray()
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(data_r, selectors.EVENT_READ, "data")
    sel.register(proc.stdout, selectors.EVENT_READ, "log")
    data_open, end_at, eof_at = True, 0.0, 0.0
    try:
        while True:
            now = time.monotonic()
            if run.end is not None and not end_at:
                end_at = now
            if proc.poll() is not None:
                run.exited, run.exit_code, run.exit_real = True, proc.returncode, now
                _drain(sel, reader, log)
                break
            if reader.stopped:
                break  # a record failed authentication or the hooks changed: the rest is not believed
            if end_at and now > end_at + EXIT_WAIT_S:
                run.tamper.append(f"the harness reported the end of the run ({run.end and run.end.get('reason')}), "
                                  f"but the game's process was still running {EXIT_WAIT_S:.0f} s later")
                break
            if now >= deadline:
                run.timed_out = True
                break
            if not data_open and run.end is None and now > eof_at + 1.0:
                run.tamper.append("the harness's channel was closed while the game's process went on running")
                break
            if run.hello and run.end is None and data_open and now - reader.last_beat > SILENCE_S:
                run.tamper.append(f"the harness's heartbeat stopped for {now - reader.last_beat:.1f} s while the "
                                  f"game ran (its watchdog was stopped or blocked)")
                break
            if not sel.get_map():
                time.sleep(0.02)
                continue
            for sk, _ in sel.select(timeout=min(deadline - now, 0.05)):
                if not _read_one(sk, sel, reader, log) and data_open:
                    data_open, eof_at = False, time.monotonic()
    finally:
        sel.close()
        run.log = log[-LOG_KEEP:].decode("utf-8", "replace")
    lasted = time.monotonic() - reader.hello_at
    if run.hello and not run.beats and not run.tamper and lasted >= 1.0:
        run.tamper.append(f"the harness never sent a heartbeat in the {lasted:.1f} s the game ran "
                          f"(its watchdog was stopped)")


def _read_one(sk: selectors.SelectorKey, sel: selectors.BaseSelector, reader: _Reader, log: bytearray) -> bool:
    """Read what is ready on one pipe; False once the data pipe is done."""
    chunk = os.read(sk.fd, 1 << 20)
    if sk.data == "data":
        if not chunk or not reader.feed(chunk):
            sel.unregister(sk.fileobj)
            return False
    elif not chunk:
        sel.unregister(sk.fileobj)
    else:
        log += chunk
        if len(log) > 4 * LOG_KEEP:
            del log[:-LOG_KEEP]
    return True


def _drain(sel: selectors.BaseSelector, reader: _Reader, log: bytearray) -> None:
    """The process is gone: read what it wrote before it went (a stray child may keep a pipe open)."""
    until = time.monotonic() + 0.5
    while sel.get_map() and time.monotonic() < until:
        ready = sel.select(timeout=0.05)
        if not ready:
            break
        for sk, _ in ready:
            _read_one(sk, sel, reader, log)


class _Reader:
    """Authenticates and decodes records as they arrive."""

    def __init__(self, run: Run, key: bytes, pilot: Pilot | None = None, ctl_w: int = -1) -> None:
        self.run, self.key = run, key
        self.pilot, self.ctl_w = pilot, ctl_w
        self.buf = bytearray()
        self.seq = 0
        self.total = 0
        self.stopped = False
        self.last_beat = self.hello_at = time.monotonic()
        self.baseline: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> bool:
        """Take more bytes; False once nothing more will be read."""
        if self.stopped:
            return False
        self.total += len(chunk)
        if self.total > MAX_STREAM:
            self.run.stream_problem = f"the harness stream exceeded {MAX_STREAM // 1024**2} MiB"
            self.stopped = True
            return False
        self.buf += chunk
        while len(self.buf) >= 4:
            (n,) = struct.unpack_from(">I", self.buf)
            if n < 5 or n > 64 * 1024**2:
                return self._bad(f"record {self.seq} has an impossible length {n}")
            if len(self.buf) < 4 + n + 16:
                break
            body, mac = bytes(self.buf[4:4 + n]), bytes(self.buf[4 + n:4 + n + 16])
            del self.buf[:4 + n + 16]
            want = blake2b(body, key=self.key, digest_size=16).digest()
            if not hmac.compare_digest(mac, want):
                return self._bad(f"record {self.seq} failed authentication (something else wrote to the channel)")
            (seq,) = struct.unpack_from(">I", body, 1)
            if seq != self.seq:
                return self._bad(f"record {seq} arrived where {self.seq} was due")
            self.seq += 1
            if self.run.end is not None:
                return self._bad(f"record {seq} ({body[:1].decode(errors='replace')}) came after the harness's "
                                 f"last word: something else holds the key")
            self._take(body[:1], body[5:])
            if self.stopped:
                return False
        return True

    def _bad(self, why: str) -> bool:
        self.run.stream_problem = why
        self.stopped = True
        return False

    def _take(self, kind: bytes, payload: bytes) -> None:
        run = self.run
        if kind == b"F":
            idx, t, w, h, aw, ah, digest, has = FRAME_HEAD.unpack_from(payload)
            px = payload[FRAME_HEAD.size:] if has else None
            if px is not None and len(px) != aw * ah * 3:
                self._bad(f"frame {idx} has {len(px)} bytes of pixels, expected {aw * ah * 3}")
                return
            frame = Frame(idx, t, w, h, aw, ah, digest, px)
            run.frames.append(frame)
            if px is not None and self.pilot is not None:
                self.order(self.pilot(frame))
        elif kind == b"S":
            t, w, h = struct.unpack_from(">dHH", payload)
            data = payload[12:]
            if len(data) == w * h * 3:
                run.shots.append((t, w, h, data))
        elif kind == b"I":
            event = json.loads(payload)
            run.injected.append(event)
            if event.get("kind") == "quit" and event.get("posted") and run.quit_real is None:
                run.quit_real = time.monotonic()
        elif kind == b"B":
            self.beat(json.loads(payload))
        elif kind == b"W":
            run.window = json.loads(payload)
        elif kind == b"T":
            run.tamper.append(str(json.loads(payload).get("what")))
        elif kind == b"X":
            run.error = payload.decode("utf-8", "replace")
        elif kind == b"Z":
            run.end = json.loads(payload)
        elif kind == b"H":
            run.hello = True
            self.baseline = {k: v for k, v in json.loads(payload).items() if k in BEAT_FIELDS}
            self.last_beat = self.hello_at = time.monotonic()

    def beat(self, state: dict[str, Any]) -> None:
        """A heartbeat: the hooks must look as they did before the game's code ran."""
        self.run.beats += 1
        self.last_beat = time.monotonic()
        now = {k: state.get(k) for k in BEAT_FIELDS}
        if now != self.baseline:
            b = self.baseline
            self.run.tamper.append(f"the harness's hooks changed while the game ran: {now['intact']} of "
                                   f"{b.get('intact')} hooks still in place ({now['hooks']} of {b.get('hooks')} "
                                   f"still watched), {now['orig']} of {b.get('orig')} saved functions"
                                   + ("" if now["digest"] == b.get("digest") else ", their identities changed"))
            self.stopped = True

    def order(self, events: list[list[Any]]) -> None:
        """Send the pilot's orders for the frame just read (the driver waits for them)."""
        body = json.dumps(events).encode()
        try:
            os.write(self.ctl_w, struct.pack(">I", len(body)) + body)
        except OSError:
            pass  # the driver is gone; its end shows in the records and the exit


def png(width: int, height: int, rgb: bytes) -> bytes:
    """A PNG of raw RGB rows (no pygame or PIL needed in the verifier)."""
    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
