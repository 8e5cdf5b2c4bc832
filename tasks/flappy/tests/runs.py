"""Running the game once under driver.py and reading what it reported.

Why not ``Verdict.run``: the driver reports over a pipe of our own (passed with
``pass_fds``, which ``Verdict.run`` closes) and the game's own output must be
capped, not buffered whole. The guarantees are the same: its own session, a
clean environment, a hard wall-clock limit, the whole process group killed at
the end, and here also every stray process it left behind.

Records (see driver_channel.py): ``len:u32 | kind:1 | seq:u32 | payload | mac:16``.
Any record that fails its MAC or comes out of sequence ends the reading: what
came before it stands, and the run is marked as tampered with.
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
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The driver, read once, before any game can touch its files: driver.py runs with ``-c`` and gets the
# sources of its other modules, in import order, as JSON on its command line (see driver.load_parts).
DRIVER_PARTS = ("driver_channel", "driver_harness", "driver_clock", "driver_input", "driver_hooks")
DRIVER_SOURCE = (HERE / "driver.py").read_text()
DRIVER_PARTS_JSON = json.dumps([[name, (HERE / f"{name}.py").read_text()] for name in DRIVER_PARTS])
MAX_STREAM = 160 * 1024**2                         # bytes of records one run may send
LOG_KEEP = 6000                                    # bytes kept of the game's own stdout+stderr
FRAME_HEAD = struct.Struct(">IdHHHH16sB")


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
    timed_out: bool = False
    real_s: float = 0.0
    log: str = ""

    def by_time(self) -> dict[float, Frame]:
        """Frames keyed by virtual time; a later flip at the same instant replaces an earlier one."""
        return {f.t: f for f in self.frames}

    @property
    def quit_at(self) -> float | None:
        return next((e["t"] for e in self.injected if e["kind"] == "quit" and e.get("posted")), None)


def _ancestors() -> set[int]:
    pids, pid = {1}, os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _in_sandbox() -> bool:
    """Only inside agenteval's sandbox is every other process of our uid the game's."""
    return os.getuid() != 0 and HERE == Path("/agenteval/tests")


def reap_strays(marker: str) -> int:
    """Kill processes a game left behind (daemons escape its process group)."""
    killed = 0
    uid, keep = os.getuid(), _ancestors()
    for _ in range(5):
        found = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in keep:
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                ours = _in_sandbox()
                if not ours:
                    with open(f"/proc/{entry}/environ", "rb") as f:
                        ours = marker.encode() in f.read()
                if ours:
                    os.kill(int(entry), signal.SIGKILL)
                    found += 1
            except OSError:
                continue
        killed += found
        if not found:
            break
        time.sleep(0.05)
    return killed


def scratch_root() -> str:
    home = Path("/agenteval/home")
    return str(home) if home.is_dir() and os.access(home, os.W_OK) else tempfile.gettempdir()


def run_game(name: str, source: bytes, cfg: dict[str, Any], timeout: float) -> Run:
    """Run ``source`` as flappy.py under the driver with ``cfg``; never longer than ``timeout``."""
    run = Run(name)
    tmp = tempfile.mkdtemp(prefix=f"flappy-{name}-", dir=scratch_root())
    game = os.path.join(tmp, "flappy.py")
    with open(game, "wb") as f:
        f.write(source)
    key, marker = secrets.token_bytes(32), secrets.token_hex(12)
    cfg = {**cfg, "key": key.hex(), "game": game}
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "XDG_RUNTIME_DIR": tmp,
           "LANG": "C.UTF-8", "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy",
           "PYGAME_HIDE_SUPPORT_PROMPT": "1", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1", "FLAPPY_HARNESS_RUN": marker}
    cfg_r, cfg_w = os.pipe()
    data_r, data_w = os.pipe()
    t0 = time.monotonic()
    try:
        argv = [sys.executable, "-c", DRIVER_SOURCE, str(cfg_r), str(data_w), DRIVER_PARTS_JSON]
        proc = subprocess.Popen(argv, cwd=tmp, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                pass_fds=(cfg_r, data_w), start_new_session=True)
    except OSError as e:
        for fd in (cfg_r, cfg_w, data_r, data_w):
            os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)
        run.error = f"could not start python3: {e}"
        return run
    os.close(cfg_r)
    os.close(data_w)
    try:
        os.write(cfg_w, json.dumps(cfg).encode())
    except OSError:
        pass
    os.close(cfg_w)
    reader = _Reader(run, key)
    log = bytearray()
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(data_r, selectors.EVENT_READ, "data")
    sel.register(proc.stdout, selectors.EVENT_READ, "log")
    data_open, log_open, data_eof_at = True, True, 0.0
    deadline = t0 + timeout
    try:
        while data_open or log_open:
            now = time.monotonic()
            if run.end is not None or reader.stopped:
                break  # the driver said its last word (or lied): whatever still runs is killed
            if not data_open and now > data_eof_at + 0.5:
                break  # a stray child may hold the log pipe open forever
            if now >= deadline:
                run.timed_out = True
                break
            for sk, _ in sel.select(timeout=min(deadline - now, 0.25)):
                chunk = os.read(sk.fd, 1 << 20)
                if sk.data == "data":
                    if not chunk or not reader.feed(chunk):
                        sel.unregister(sk.fileobj)
                        data_open, data_eof_at = False, time.monotonic()
                elif not chunk:
                    sel.unregister(sk.fileobj)
                    log_open = False
                else:
                    log += chunk
                    if len(log) > 4 * LOG_KEEP:
                        del log[:-LOG_KEEP]
    finally:
        sel.close()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            run.exit_code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            run.exit_code = None
        proc.stdout.close()
        os.close(data_r)
        reap_strays(marker)
        shutil.rmtree(tmp, ignore_errors=True)
    run.real_s = time.monotonic() - t0
    run.log = log[-LOG_KEEP:].decode("utf-8", "replace")
    return run


class _Reader:
    """Authenticates and decodes records as they arrive."""

    def __init__(self, run: Run, key: bytes) -> None:
        self.run, self.key = run, key
        self.buf = bytearray()
        self.seq = 0
        self.total = 0
        self.stopped = False

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
            self._take(body[:1], body[5:])
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
            run.frames.append(Frame(idx, t, w, h, aw, ah, digest, px))
        elif kind == b"S":
            t, w, h = struct.unpack_from(">dHH", payload)
            data = payload[12:]
            if len(data) == w * h * 3:
                run.shots.append((t, w, h, data))
        elif kind == b"I":
            run.injected.append(json.loads(payload))
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


def png(width: int, height: int, rgb: bytes) -> bytes:
    """A PNG of raw RGB rows (no pygame or PIL needed in the verifier)."""
    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
