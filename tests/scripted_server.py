"""A scripted HTTP server on loopback: a test double for a model server.

Each request gets the next scripted ``Reply`` (status, body pieces with
delays, or a cut connection), so protocol fixtures written from the servers'
API documentation can be replayed byte for byte. ``refuse_tools`` plays a
server without tool support: every request carrying tools gets that reply
instead of the next one. ``Reply.stalled`` is an answer that stops arriving
(the client's time budget cuts it: a partial answer).

Only chat requests (POST to a path ending in ``CHAT_PATHS``) take replies
from the script; any other request (a client probing /props, /v1/models,
/tokenize) gets its entry in ``routes`` or a 404, so probes never eat the
script. ``requests`` keeps every request, ``chats`` the chat requests' bodies.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

CHAT_PATHS = ("/chat/completions", "/completions", "/api/chat", "/api/generate")
NOT_SCRIPTED = b'{"error": "not scripted"}'


@dataclass
class Reply:
    status: int = 200
    pieces: list[bytes] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)  # before each piece
    content_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None  # close the socket after this many pieces, mid-stream

    @classmethod
    def sse(cls, chunks: list[dict[str, Any] | str], done: bool = True, **kw: Any) -> "Reply":
        pieces = [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n".encode() for c in chunks]
        if done:
            pieces.append(b"data: [DONE]\n\n")
        return cls(pieces=pieces, **kw)

    @classmethod
    def ndjson(cls, objects: list[dict[str, Any]], **kw: Any) -> "Reply":
        return cls(pieces=[(json.dumps(o) + "\n").encode() for o in objects], content_type="application/x-ndjson", **kw)

    @classmethod
    def stalled(cls, chunks: list[dict[str, Any] | str], stall_s: float, **kw: Any) -> "Reply":
        """``chunks`` at once, then nothing for ``stall_s`` seconds before the stream ends."""
        reply = cls.sse(chunks, **kw)
        reply.delays = [0.0] * len(chunks) + [stall_s]
        return reply

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> "Reply":
        return cls(status=status, pieces=[json.dumps(obj).encode()], content_type="application/json")


class ScriptedServer:
    def __init__(self, replies: list[Reply] | None = None, port: int = 0, refuse_tools: Reply | None = None) -> None:
        self.replies = list(replies or [])
        self.refuse_tools = refuse_tools
        self.routes: dict[str, Reply] = {}
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                server.requests.append((self.command, self.path, body))
                reply = server.routes.get(self.path)
                if reply is None and server.refuse_tools is not None and body.get("tools"):
                    reply = server.refuse_tools
                if reply is None and not (self.command == "POST" and self.path.endswith(CHAT_PATHS)):
                    reply = Reply(status=404, pieces=[NOT_SCRIPTED], content_type="application/json")
                if reply is None:
                    reply = server.replies.pop(0) if server.replies else Reply(status=599)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Transfer-Encoding", "chunked")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                for i, piece in enumerate(reply.pieces):
                    if reply.cut_after is not None and i >= reply.cut_after:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.connection.close()
                        return
                    if i < len(reply.delays):
                        time.sleep(reply.delays[i])
                    try:
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                self.wfile.write(b"0\r\n\r\n")

            do_GET = _serve
            do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def chats(self) -> list[dict[str, Any]]:
        """The bodies of the chat requests, in order."""
        return [body for method, path, body in self.requests if method == "POST" and path.endswith(CHAT_PATHS)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "ScriptedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pieces(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i:i + size]
