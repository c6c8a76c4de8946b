"""The journal's writer, the daemon's side: the engine's thread encodes each
record and hands the bytes to a writer process (``router.journal.proc``)
through a pipe, never waiting on it.

Nothing here runs on a thread of its own (why: ``router.journal.proc``).
``append`` encodes into a buffer; the buffer goes to the pipe, without
blocking, once its oldest record is ``max_delay_ms`` old (a loop timer
sees to that when the writer runs on a loop; otherwise the next append or
``flush``), or at once on ``flush`` (``sync = "every"``). The writer
process commits and answers how many records are durable; on a loop those
answers are read as they arrive (a reader on the pipe) and ``on_commit``
runs on the loop's thread.

When more than ``capacity`` records are not yet durable, or the writer
process fails or dies, the writer says so once in the log, counts it, and
calls ``on_failure(reason)``; what follows is the daemon's policy
(``journal.on_failure``). Records after a failure are dropped and counted,
never buffered without bound; a "behind" failure still writes what was
appended before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Protocol

from router.domain.commands import Command
from router.domain.decision import Decision
from router.domain.events import EngineEvent
from router.journal import records
from router.journal.proc import ACK, COMMITTED, FAILED, READY, REC, TARGET_ENV
from router.journal.store import JournalError

log = logging.getLogger("sor.journal")

KIND_CODES = {k: i for i, k in enumerate(records.KINDS)}
FLUSH_BYTES = 256 * 1024
"""A buffer this large goes to the pipe without waiting for its delay."""
PIPE_BYTES = 1 << 20
"""The pipe's capacity asked of Linux (F_SETPIPE_SZ; 64 KiB otherwise)."""
START_TIMEOUT_S = 30.0
F_SETPIPE_SZ = 1031


class Target(Protocol):
    """A store the writer process can open again: its path or URL."""

    @property
    def target(self) -> str: ...


class WriterStats(Protocol):
    """What the writer reports; the daemon binds it to metrics."""

    def written(self, rows: int, batch_seconds: float) -> None: ...

    def dropped(self, rows: int) -> None: ...


class JournalWriter:
    def __init__(self, store: Target, session_id: int, *, capacity: int, max_delay_ms: int,
                 on_failure: Callable[[str], None], stats: WriterStats | None = None) -> None:
        self._target = store.target
        self._session = session_id
        self._capacity = capacity
        self._delay_ns = max_delay_ms * 1_000_000
        self._on_failure = on_failure
        self._stats = stats
        self._buf = bytearray()
        self._first_ns = 0
        """When the oldest record in ``_buf`` was appended."""
        self._acks = bytearray()
        self._proc: subprocess.Popen[bytes] | None = None
        self._out = -1
        self._in = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._broken = False
        self._reason: str | None = None
        """What the writer process said when it failed."""
        self.failed: str | None = None
        """Why the journal stopped recording; None while it records."""
        self.high_water = 0
        """The most records ever appended and not yet durable."""
        self.appended = 0
        """Records appended so far."""
        self.committed = 0
        """Of those, how many are durable: the first ``committed`` records
        were committed (as the writer process last answered)."""
        self._notified = 0
        self.on_commit: Callable[[], None] | None = None
        """Called on the loop's thread after answers that made records durable."""

    # ------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        """The writer process (None before ``start``)."""
        return None if self._proc is None else self._proc.pid

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the writer process and wait until it has the store open.
        With ``loop``, answers are read on it as they come and the delay is
        kept by a loop timer. Call it on a thread that lives as long as the
        writer: the process dies with it (``PR_SET_PDEATHSIG``)."""
        env = dict(os.environ)
        env[TARGET_ENV] = self._target
        self._proc = subprocess.Popen([sys.executable, "-m", "router.journal.proc", str(self._session)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._out = self._proc.stdin.fileno()
        self._in = self._proc.stdout.fileno()
        with contextlib.suppress(OSError):
            import fcntl

            fcntl.fcntl(self._out, F_SETPIPE_SZ, PIPE_BYTES)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                self._proc.kill()
                raise JournalError(f"journal writer process did not start within {START_TIMEOUT_S:.0f} s")
            chunk = os.read(self._in, 4096)
            if not chunk:
                break
            self._acks += chunk
            if len(self._acks) >= ACK.size:
                break
        if len(self._acks) < ACK.size or self._acks[0] != READY:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            self._acks += self._proc.stdout.read()
            self._take_answers()
            raise JournalError(f"journal writer process failed to start: {self._reason or 'it exited'}")
        del self._acks[:ACK.size]
        os.set_blocking(self._out, False)
        os.set_blocking(self._in, False)
        if loop is not None:
            self._loop = loop
            loop.add_reader(self._in, self._answers_ready)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Write what is buffered, let the writer process commit it and
        exit; False if that did not finish in time (the process is killed)."""
        proc = self._proc
        if proc is None:
            return True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._in)
            self._loop = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = time.monotonic() + timeout_s
        while self._buf and not self._broken and time.monotonic() < deadline:
            self._write(wait_s=deadline - time.monotonic())
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        while not self._broken and time.monotonic() < deadline:
            if not self._read(wait_s=deadline - time.monotonic()):
                break
        self._notify()
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return False
        finally:
            assert proc.stdout is not None
            proc.stdout.close()
        return code == 0 or self.failed is not None

    # ------------------------------------------------------ engine's thread

    def append(self, kind: str, ts_ns: int, obj: EngineEvent | list[Command] | Decision) -> None:
        """Record one object (never blocks; the object must not change)."""
        if self.failed is not None:
            if self._stats is not None:
                self._stats.dropped(1)
            return
        body = records.encode(obj)
        self.appended += 1
        buf = self._buf
        if not buf:
            self._first_ns = time.monotonic_ns()
            if self._loop is not None and self._timer is None:
                self._timer = self._loop.call_later(self._delay_ns / 1e9, self._due)
        buf += REC.pack(self.appended, ts_ns, KIND_CODES[kind], len(body))
        buf += body
        depth = self.appended - self.committed
        if depth > self.high_water:
            self.high_water = depth
            if depth > self._capacity:
                self._fail(f"writer {depth} records behind (journal.capacity {self._capacity})")
                return
        # On a loop its timer keeps the delay: no clock read per record.
        if len(buf) >= FLUSH_BYTES or (self._loop is None and time.monotonic_ns() - self._first_ns >= self._delay_ns):
            self.flush()

    def flush(self) -> None:
        """Hand over what the pipe takes now, instead of waiting out
        ``max_delay_ms`` (``sync = "every"``: a report waits for it), and
        read the answers waiting (before ``start``, records only wait in
        the buffer)."""
        if self._proc is None:
            return
        if self._buf and not self._broken:
            self._write(wait_s=0.0)
        self._read(wait_s=0.0)
        if self._buf and self._loop is not None and self._timer is None and not self._broken:
            # The pipe was full: try again shortly.
            self._timer = self._loop.call_later(self._delay_ns / 1e9, self._due)

    def wait_committed(self, n: int, timeout_s: float) -> bool:
        """Block (at most ``timeout_s``) until the first ``n`` records are
        durable; False if they are not (or the journal failed)."""
        deadline = time.monotonic() + timeout_s
        while self.committed < n and not self._broken:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self._buf:
                self._write(wait_s=min(left, 0.01))
            self._read(wait_s=min(left, 0.01))
        self._notify()
        return self.committed >= n

    @property
    def depth(self) -> int:
        """Records appended and not yet durable."""
        return self.appended - self.committed

    # ------------------------------------------------------------- plumbing

    def _due(self) -> None:
        self._timer = None
        self.flush()

    def _answers_ready(self) -> None:
        self._read(wait_s=0.0)
        self._notify()

    def _write(self, wait_s: float) -> None:
        if wait_s > 0 and not select.select([], [self._out], [], wait_s)[1]:
            return
        try:
            n = os.write(self._out, self._buf)
        except BlockingIOError:
            return
        except OSError as e:  # EPIPE: the process is gone; its answers say why
            self._read(wait_s=1.0)
            self._lost(f"writer process gone ({e.strerror})")
            return
        del self._buf[:n]
        if self._buf:
            self._first_ns = time.monotonic_ns()

    def _read(self, wait_s: float) -> bool:
        """Read the answers that are there (waiting at most ``wait_s`` for
        the first); False once the writer process has ended."""
        if self._in < 0 or self._broken:
            return False
        if wait_s > 0 and not select.select([self._in], [], [], wait_s)[0]:
            return True
        while True:
            try:
                chunk = os.read(self._in, 65536)
            except BlockingIOError:
                break
            if not chunk:
                self._take_answers()
                self._ended()
                return False
            self._acks += chunk
        self._take_answers()
        return not self._broken

    def _take_answers(self) -> None:
        acks = self._acks
        off = 0
        while len(acks) - off >= ACK.size:
            kind, n, committed, seconds = ACK.unpack_from(acks, off)
            if kind == FAILED:
                if len(acks) - off - ACK.size < n:
                    break
                start = off + ACK.size
                self._reason = bytes(acks[start:start + n]).decode(errors="replace")
                self.committed = committed
                off = start + n
                continue
            off += ACK.size
            if kind == COMMITTED:
                self.committed = committed
                if self._stats is not None:
                    self._stats.written(n, seconds)
        del acks[:off]

    def _ended(self) -> None:
        """The writer process closed its side: it failed, died, or finished
        after ``close``."""
        proc = self._proc
        assert proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1.0)
        if self._reason is None and self.committed >= self.appended and not self._buf and proc.returncode == 0:
            return  # a clean end after close()
        why = self._reason or f"writer process exited ({_exit_text(proc.returncode)})"
        self._lost(why)

    def _lost(self, reason: str) -> None:
        if self._broken:
            return
        self._broken = True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._in)
        lost = self.appended - self.committed
        self._buf.clear()
        if lost and self._stats is not None:
            self._stats.dropped(lost)
        self._fail(reason)

    def _notify(self) -> None:
        if self.on_commit is not None and self.committed > self._notified:
            self._notified = self.committed
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


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by signal {-code}"
    return f"code {code}"
