"""The driver's channel to the verifier, and what the driver uses, saved before any game code exists.

A part of the driver (see driver.py). Records go to a pipe the verifier created:
``len:u32 | kind:1 | seq:u32 | payload | mac:16``, the MAC a keyed BLAKE2 with the
run's key; runs.py checks both the MAC and the sequence. Kinds: H hello (with the
hooks' digest), B heartbeat, W window, F frame, S screenshot, I injected event,
T tampering seen, X the game's exception, Z the last word (nothing may follow it).
In lockstep runs the verifier's orders come back on a second pipe
(``len:u32 | JSON list of script events``), read by read_orders.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from typing import Any

# What the driver itself uses, saved before any game code exists.
_os_write, _os_exit, _os_read, _os_close, _getpid = os.write, os._exit, os.read, os.close, os.getpid
_real_mono, _real_sleep = time.monotonic, time.sleep
_blake2b, _pack = hashlib.blake2b, struct.pack
_json_dumps, _json_loads, _Lock, _Thread = json.dumps, json.loads, threading.Lock, threading.Thread
_unpack = struct.unpack


class Channel:
    """Length-prefixed, sequence-numbered, MAC'd records to the verifier's pipe."""

    def __init__(self, fd: int, key: bytes) -> None:
        self.fd, self.key, self.seq = fd, key, 0
        self.closed = False                      # the last word was sent: nothing may follow it
        self.owner = _getpid()
        self.lock = _Lock()
        os.register_at_fork(after_in_child=self.detach)

    def detach(self) -> None:
        """In a process the game forked: this channel is not its to write."""
        try:
            _os_close(self.fd)
        except OSError:
            pass
        self.fd = -1

    def send(self, kind: bytes, payload: bytes, last: bool = False) -> None:
        if _getpid() != self.owner or self.fd < 0:
            return
        with self.lock:
            if self.closed:
                return
            self.closed = last
            body = kind + _pack(">I", self.seq) + payload
            self.seq += 1
            mac = _blake2b(body, key=self.key, digest_size=16).digest()
            view = memoryview(_pack(">I", len(body)) + body + mac)
            try:
                while view:
                    view = view[_os_write(self.fd, view):]
            except OSError:
                _os_exit(70)  # the verifier is gone: nothing left to report to

    def send_json(self, kind: bytes, obj: dict[str, Any], last: bool = False) -> None:
        self.send(kind, _json_dumps(obj).encode(), last)


def read_exactly(fd: int, n: int) -> bytes:
    """``n`` bytes from ``fd``; fewer only at end of file."""
    out = b""
    while len(out) < n:
        chunk = _os_read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def read_orders(fd: int) -> list[list[Any]] | None:
    """One message of the verifier's control pipe (``len:u32 | JSON list``); None once it is closed."""
    head = read_exactly(fd, 4)
    if len(head) < 4:
        return None
    body = read_exactly(fd, _unpack(">I", head)[0])
    orders = _json_loads(body)
    return orders if isinstance(orders, list) else []
