"""The driver's channel to the verifier, and what the driver uses, saved before any game code exists.

A part of the driver (see driver.py). Records go to a pipe the verifier created:
``len:u32 | kind:1 | seq:u32 | payload | mac:16``, the MAC a keyed BLAKE2 with the
run's key; runs.py checks both the MAC and the sequence.
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
_json_dumps, _Lock, _Thread = json.dumps, threading.Lock, threading.Thread


class Channel:
    """Length-prefixed, sequence-numbered, MAC'd records to the verifier's pipe."""

    def __init__(self, fd: int, key: bytes) -> None:
        self.fd, self.key, self.seq = fd, key, 0
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

    def send(self, kind: bytes, payload: bytes) -> None:
        if _getpid() != self.owner or self.fd < 0:
            return
        with self.lock:
            body = kind + _pack(">I", self.seq) + payload
            self.seq += 1
            mac = _blake2b(body, key=self.key, digest_size=16).digest()
            view = memoryview(_pack(">I", len(body)) + body + mac)
            try:
                while view:
                    view = view[_os_write(self.fd, view):]
            except OSError:
                _os_exit(70)  # the verifier is gone: nothing left to report to

    def send_json(self, kind: bytes, obj: dict[str, Any]) -> None:
        self.send(kind, _json_dumps(obj).encode())
