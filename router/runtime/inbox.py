"""Items from other threads, handled on the loop's thread."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopInbox(Generic[T]):
    """Items from other threads, handled on the loop's thread in arrival
    order with one loop wake-up per burst rather than one per item
    (``call_soon_threadsafe`` writes to the loop's wake-up pipe each time).

    Bounded without loss: once ``capacity`` items are queued, ``put`` counts
    the overflow (``on_overflow``) and blocks the producing thread until the
    loop has drained some. The producers are quickfix's socket threads, so
    a loop that cannot keep up pushes back into TCP instead of growing
    memory without end, and no execution report is ever dropped. ``depth``
    is what is queued now (a gauge reads it at scrape time). Never ``put``
    from the loop's own thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, handle: Callable[[T], None], capacity: int = 0,
                 on_overflow: Callable[[], None] | None = None) -> None:
        self._loop = loop
        self._handle = handle
        self._items: deque[T] = deque()
        self._wake_pending = False
        self._capacity = capacity
        self._on_overflow = on_overflow
        self._room = threading.Condition()
        self._waiting = 0

    @property
    def depth(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Any thread but the loop's (deque appends are atomic)."""
        items = self._items
        if self._capacity and len(items) >= self._capacity:
            self._wait_for_room()
        items.append(item)
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._drain)

    def _wait_for_room(self) -> None:
        if self._on_overflow is not None:
            self._on_overflow()
        with self._room:
            self._waiting += 1
            try:
                while len(self._items) >= self._capacity:
                    # The timeout only re-checks: the drain notifies.
                    self._room.wait(0.05)
            finally:
                self._waiting -= 1

    def _drain(self) -> None:
        # Cleared before draining: an item put meanwhile is drained here or
        # schedules the next wake-up itself.
        self._wake_pending = False
        items = self._items
        while items:
            self._handle(items.popleft())
            if self._waiting:
                with self._room:
                    self._room.notify_all()

    def oldest(self) -> T | None:
        """Loop thread: the item queued longest (None when empty). Only the
        loop takes items, so one seen here stays until the loop takes it."""
        items = self._items
        return items[0] if items else None

    def drain_while(self, take: Callable[[T], bool]) -> int:
        """Loop thread: handle queued items, oldest first, while ``take``
        says so of the oldest (the driver handles what was read before a
        deadline ahead of that deadline); returns how many. A wake-up
        already scheduled finds the rest."""
        items = self._items
        n = 0
        while items and take(items[0]):
            self._handle(items.popleft())
            n += 1
            if self._waiting:
                with self._room:
                    self._room.notify_all()
        return n
