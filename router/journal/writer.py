"""The journal's writer: the engine's thread appends, a thread of its own
encodes and commits.

The engine's side is a deque append of the (frozen) object itself, so the
loop never waits for encoding or I/O. The writer wakes when a batch is due
(``max_delay_ms`` after the oldest unwritten record) or large, encodes the
batch and commits it in one transaction. When it falls more than
``capacity`` records behind, or a write fails, it says so once in the log,
counts it, and calls ``on_failure(reason)``; what follows is the daemon's
policy (``journal.on_failure``). Records after a failure are dropped and
counted, never queued without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from router.domain.commands import Command
from router.domain.decision import Decision
from router.domain.events import EngineEvent
from router.journal import records
from router.journal.store import Row

log = logging.getLogger("sor.journal")

BATCH_MAX = 4096
"""Records per transaction at most (a large backlog is written in steps)."""


class Store(Protocol):
    def write(self, session_id: int, rows: list[Row]) -> None: ...


class WriterStats(Protocol):
    """What the writer reports; the daemon binds it to metrics."""

    def written(self, rows: int, batch_seconds: float) -> None: ...

    def dropped(self, rows: int) -> None: ...


Item = tuple[str, int, EngineEvent | list[Command] | Decision]


class JournalWriter:
    def __init__(self, store: Store, session_id: int, *, capacity: int, max_delay_ms: int,
                 on_failure: Callable[[str], None], stats: WriterStats | None = None) -> None:
        self._store = store
        self._session = session_id
        self._capacity = capacity
        self._delay_s = max_delay_ms / 1000.0
        self._on_failure = on_failure
        self._stats = stats
        self._items: deque[Item] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._seq = 0
        self._broken = False
        self.failed: str | None = None
        """Why the journal stopped recording; None while it records."""
        self.high_water = 0
        """The most records ever waiting at once."""
        self.rows_written = 0
        self.appended = 0
        """Records appended so far (the engine's thread counts)."""
        self.committed = 0
        """Of those, how many are durable: the first ``committed`` records
        were committed (the writer's thread advances it after each batch;
        a reader on another thread sees a value at most one batch old)."""
        self.on_commit: Callable[[], None] | None = None
        """Called on the writer's thread after each durable batch."""
        self._thread = threading.Thread(target=self._run, name="sor-journal", daemon=True)

    # ------------------------------------------------------ engine's thread

    def start(self) -> None:
        self._thread.start()

    def append(self, kind: str, ts_ns: int, obj: EngineEvent | list[Command] | Decision) -> None:
        """Record one object (never blocks; the object must not change)."""
        items = self._items
        if self.failed is not None:
            if self._stats is not None:
                self._stats.dropped(1)
            return
        items.append((kind, ts_ns, obj))
        self.appended += 1
        n = len(items)
        if n > self.high_water:
            self.high_water = n
            if n > self._capacity:
                self._fail(f"writer {n} records behind (journal.capacity {self._capacity})")
        if n >= BATCH_MAX:
            self._wake.set()

    def flush_soon(self) -> None:
        """Have the writer commit what is queued now instead of waiting out
        ``max_delay_ms`` (``sync = "every"``: a report waits for it).
        Records appended while a commit runs go in the next one together."""
        self._wake.set()

    @property
    def depth(self) -> int:
        return len(self._items)

    # ------------------------------------------------------ writer's thread

    def _run(self) -> None:
        items = self._items
        while True:
            self._wake.wait(self._delay_s)
            self._wake.clear()
            # What was queued before a "behind" failure is still written;
            # after a failed write nothing more is tried.
            while items and not self._broken:
                n = min(len(items), BATCH_MAX)
                batch = [items.popleft() for _ in range(n)]
                self._write(batch)
            if self._broken and items:
                n = len(items)
                items.clear()
                if self._stats is not None:
                    self._stats.dropped(n)
            if self._stop and not items:
                return

    def _write(self, batch: list[Item]) -> None:
        t0 = time.perf_counter()
        rows: list[Row] = []
        seq = self._seq
        try:
            for kind, ts, obj in batch:
                seq += 1
                rows.append((seq, kind, ts, records.encode(obj)))
            self._store.write(self._session, rows)
        except Exception as e:
            log.exception("journal write failed")
            self._broken = True
            self._fail(f"write failed: {e}")
            if self._stats is not None:
                self._stats.dropped(len(batch))
            return
        self._seq = seq
        self.rows_written += len(rows)
        self.committed += len(rows)
        if self._stats is not None:
            self._stats.written(len(rows), time.perf_counter() - t0)
        if self.on_commit is not None:
            try:
                self.on_commit()
            except Exception:
                log.exception("journal commit hook raised")

    def _fail(self, reason: str) -> None:
        if self.failed is not None:
            return
        self.failed = reason
        log.error("journal stopped recording: %s", reason)
        try:
            self._on_failure(reason)
        except Exception:
            log.exception("journal failure hook raised")

    def close(self, timeout_s: float = 10.0) -> bool:
        """Write what is queued and stop; False if that did not finish in time."""
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()
