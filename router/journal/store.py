"""The embedded journal: one SQLite file in WAL mode.

WAL lets a reader (``sor journal``, ``sor replay``) open the file while the
daemon writes; ``synchronous=FULL`` makes every committed batch durable
(the WAL is fsynced at each commit), which is the ``sync = "batch"``
contract: a record is at most one batch behind the engine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from router.journal.schema import MIGRATIONS, SCHEMA_VERSION


class JournalError(Exception):
    """The journal cannot be opened or written."""


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    session_id: int
    started_ns: int
    id_prefix: str
    model_version: str
    config: str
    """The daemon's configuration as JSON."""
    restored_from: int = 0
    """The session whose state this one started from (0: a fresh start)."""


Row = tuple[int, str, int, bytes]
"""(seq, kind, ts_ns, body)."""


def migrate(db: sqlite3.Connection) -> int:
    """Bring ``db`` to ``SCHEMA_VERSION``; returns the version it had."""
    has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    found = 0
    if has_meta:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        found = int(row[0]) if row else 0
    if found > SCHEMA_VERSION:
        raise JournalError(f"journal schema {found} is newer than this build's {SCHEMA_VERSION}")
    for version in range(found + 1, SCHEMA_VERSION + 1):
        with db:
            for stmt in MIGRATIONS[version]:
                db.execute(stmt)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),))
    return found


class SqliteStore:
    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # The writer thread owns the connection once the daemon runs;
                # it is created here, on the thread that starts the daemon.
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                migrate(self._db)
        except sqlite3.Error as e:
            raise JournalError(f"journal {self.path}: {e}") from e

    def begin_session(self, started_ns: int, id_prefix: str, model_version: str, config_json: str,
                      restored_from: int = 0) -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO sessions (started_ns, id_prefix, model_version, config, restored_from) "
                "VALUES (?, ?, ?, ?, ?)", (started_ns, id_prefix, model_version, config_json, restored_from))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def write(self, session_id: int, rows: Sequence[Row]) -> None:
        """One transaction: all of ``rows`` or none."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO records (seq, session_id, kind, ts_ns, body) VALUES (?, ?, ?, ?, ?)",
                           [(seq, session_id, kind, ts, body) for seq, kind, ts, body in rows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def sessions(self) -> list[SessionInfo]:
        return [SessionInfo(session_id=r[0], started_ns=r[1], id_prefix=r[2], model_version=r[3], config=r[4],
                            restored_from=r[5])
                for r in self._db.execute(
                    "SELECT session_id, started_ns, id_prefix, model_version, config, restored_from FROM sessions "
                    "ORDER BY session_id")]

    def lineage(self, session_id: int) -> list[SessionInfo]:
        """The sessions whose inputs rebuild ``session_id``'s starting state
        and its own: the chain of ``restored_from``, oldest first."""
        by_id = {s.session_id: s for s in self.sessions()}
        chain: list[SessionInfo] = []
        sid = session_id
        while sid:
            s = by_id.get(sid)
            if s is None or s in chain:
                raise JournalError(f"{self.path}: session {session_id} restores from missing session {sid}")
            chain.append(s)
            sid = s.restored_from
        return chain[::-1]

    def events(self, session_id: int) -> Iterator[bytes]:
        """The bodies of a session's input events, in order."""
        for (body,) in self._db.execute(
                "SELECT body FROM records WHERE session_id = ? AND kind = 'event' ORDER BY seq", (session_id,)):
            yield body

    def records(self, session_id: int) -> Iterator[Row]:
        yield from self._db.execute(
            "SELECT seq, kind, ts_ns, body FROM records WHERE session_id = ? ORDER BY seq", (session_id,))

    def count(self, session_id: int) -> dict[str, int]:
        return dict(self._db.execute(
            "SELECT kind, COUNT(*) FROM records WHERE session_id = ? GROUP BY kind", (session_id,)).fetchall())

    def close(self) -> None:
        self._db.close()
