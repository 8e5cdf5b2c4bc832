"""Executors run trials; the driver process alone records them.

``LocalExecutor`` runs trials on threads of this process. A distributed
executor implements the same two methods.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Protocol, TypeVar

T = TypeVar("T")


class Executor(Protocol):
    def submit(self, fn: Callable[[], T]) -> "Future[T]": ...

    def shutdown(self, cancel_pending: bool) -> None: ...


class LocalExecutor:
    """At most ``concurrency`` trials at once, each on its own thread."""

    def __init__(self, concurrency: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="trial")

    def submit(self, fn: Callable[[], T]) -> "Future[T]":
        return self._pool.submit(fn)

    def shutdown(self, cancel_pending: bool) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel_pending)
