"""The journal's writer process: reads records from a pipe, commits them.

Why a process and not a thread: a writer thread in the daemon's own
interpreter takes the GIL from the engine's thread every time the sqlite3
module (or psycopg) lets go of it around a statement and takes it back,
and every batch it encodes and binds in Python is time the engine waits.
Measured with a thread spinning beside a writer of 3,000 records a second
(demo records, 20 ms batches): 8,300-9,100 stalls of the spinning thread
over 20 us in 8 s with the writer thread, 2,100-3,200 with a flusher
thread feeding this process through a pipe, 500 with no journal at all.
The daemon's side (``router.journal.writer``) has no thread of its own:
the engine's thread encodes each record and writes the buffered bytes to
the pipe without blocking.

The wire, one way: records ``REC`` header (seq, ts_ns, kind code, body
length) then the msgpack body, back to back. The other way: ``ACK`` frames
(kind, n, committed, seconds): ``READY`` once the store is open, one
``COMMITTED`` per transaction (n rows, ``committed`` records durable in
all), or ``FAILED`` followed by ``n`` bytes of UTF-8 reason, after which
the process exits. Whatever is readable when a transaction ends goes in the
next one (group commit). At end of input it commits the rest and exits 0.

It dies with the daemon (``PR_SET_PDEATHSIG``): after a ``kill -9`` a
restart must not read a journal this process is still appending to.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import struct
import sys
import time
from typing import Final, Protocol

from router.journal.records import KINDS
from router.journal.store import Row

REC: Final = struct.Struct("<QqBI")
"""A record's header: seq, ts_ns, index of its kind in ``KINDS``, body length."""
ACK: Final = struct.Struct("<BIQd")
"""An answer: frame kind, rows (or reason length), records committed in all, seconds."""
READY: Final = 0
COMMITTED: Final = 1
FAILED: Final = 2

TARGET_ENV: Final = "SOR_JOURNAL_TARGET"
"""The store's path or URL (an environment variable, not an argument: a
URL's password must not show in ``ps``)."""
BATCH_MAX: Final = 4096
"""Records per transaction at most (a backlog is written in steps)."""
READ_BYTES: Final = 1 << 20
PR_SET_PDEATHSIG: Final = 1


class Writable(Protocol):
    def write(self, session_id: int, rows: list[Row]) -> None: ...


def _send(out: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def serve(store: Writable, session_id: int, inp: int, out: int) -> int:
    """Commit what arrives on ``inp`` until it ends; answer on ``out``.
    Returns the process's exit code (1 after a failed write)."""
    _send(out, ACK.pack(READY, 0, 0, 0.0))
    buf = bytearray()
    rows: list[Row] = []
    committed = 0
    eof = False
    while True:
        if not eof and (not rows or (len(rows) < BATCH_MAX and _readable(inp))):
            chunk = os.read(inp, READ_BYTES)
            if not chunk:
                eof = True
            else:
                buf += chunk
                off = 0
                end = len(buf)
                while end - off >= REC.size:
                    seq, ts, kind, n = REC.unpack_from(buf, off)
                    if end - off - REC.size < n:
                        break
                    start = off + REC.size
                    rows.append((seq, KINDS[kind], ts, bytes(buf[start:start + n])))
                    off = start + n
                del buf[:off]
            continue
        if rows:
            t0 = time.perf_counter()
            try:
                store.write(session_id, rows)
            except Exception as e:
                reason = f"write failed: {e}".encode()
                _send(out, ACK.pack(FAILED, len(reason), committed, 0.0) + reason)
                return 1
            committed += len(rows)
            _send(out, ACK.pack(COMMITTED, len(rows), committed, time.perf_counter() - t0))
            rows = []
        if eof:
            if buf:
                reason = f"write failed: input ended inside a record ({len(buf)} bytes)".encode()
                _send(out, ACK.pack(FAILED, len(reason), committed, 0.0) + reason)
                return 1
            return 0


def main(argv: list[str]) -> int:
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the daemon died before the line above
        return 1
    # Ctrl-C reaches the whole process group: the daemon's orderly shutdown
    # still has records for this process to commit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from router.journal.store import open_store

    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    try:
        store = open_store(os.environ[TARGET_ENV])
    except Exception as e:
        reason = f"cannot open the journal: {e}".encode()
        _send(out, ACK.pack(FAILED, len(reason), 0, 0.0) + reason)
        return 1
    try:
        return serve(store, int(argv[0]), inp, out)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
