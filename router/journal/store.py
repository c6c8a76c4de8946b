"""The embedded journal: one SQLite file in WAL mode.

WAL lets a reader (``sor journal``, ``sor replay``) open the file while the
daemon writes; ``synchronous=FULL`` makes every committed batch durable
(the WAL is fsynced at each commit), which is the ``sync = "batch"``
contract: a record is at most one batch behind the engine.

``open_store`` picks the store a configuration (or a path, or a URL) names:
this one, or ``pgstore.PostgresStore`` for a ``postgresql://`` URL, where
several routers share one journal. Both are ``JournalStore``s.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec

from router.config import JournalConfig
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
    router: str = ""
    """``router.name`` of the daemon that wrote it: in a journal several
    routers share, a router recovers only its own sessions ("": written
    before schema 3, by the only router there was)."""


Row = tuple[int, str, int, bytes]
"""(seq, kind, ts_ns, body)."""

POSTGRES_SCHEMES = ("postgresql://", "postgres://")

ROWS_PER_INSERT = 500
"""Rows per INSERT statement (5 parameters each: SQLite allows 32,766)."""


@functools.lru_cache(maxsize=ROWS_PER_INSERT)
def _insert_sql(n: int) -> str:
    return "INSERT INTO records (seq, session_id, kind, ts_ns, body) VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * n)


def last_session_of(sessions: Sequence[SessionInfo], router: str) -> SessionInfo | None:
    """The session a restart of router ``router`` recovers from: its own
    latest (a session from before schema 3, unnamed, counts as anyone's)."""
    own = [s for s in sessions if s.router in (router, "")]
    return own[-1] if own else None


class JournalStore(Protocol):
    """What the daemon, restart recovery, ``sor replay`` and ``sor journal``
    need of a journal; ``SqliteStore`` and ``pgstore.PostgresStore`` are
    both one, with the same answers for the same records."""

    @property
    def path(self) -> str | Path:
        """Where the journal is, for messages: the SQLite file, or the URL
        without its password."""
        ...

    @property
    def target(self) -> str:
        """What opens it again (the writer process): the path, or the URL
        with its password."""
        ...

    def begin_session(self, started_ns: int, id_prefix: str, model_version: str, config_json: str,
                      restored_from: int = 0, router: str = "") -> int:
        """A new session, its id (ids only grow: sessions are ordered by it)."""
        ...

    def write(self, session_id: int, rows: Sequence[Row]) -> None:
        """One transaction, durable when this returns: all of ``rows`` or none."""
        ...

    def sessions(self) -> list[SessionInfo]:
        """Every session, oldest (smallest id) first."""
        ...

    def lineage(self, session_id: int) -> list[SessionInfo]: ...

    def events(self, session_id: int) -> Iterator[bytes]: ...

    def records(self, session_id: int) -> Iterator[Row]:
        """A session's rows in seq order."""
        ...

    def count(self, session_id: int) -> dict[str, int]: ...

    def close(self) -> None: ...


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def open_store(target: JournalConfig | str | Path, readonly: bool = False) -> JournalStore:
    """The journal ``target`` names: a ``JournalConfig`` (``url`` when set,
    else ``path``), a ``postgresql://`` URL, or a SQLite file's path.
    Read-only stores never create or migrate anything."""
    if isinstance(target, JournalConfig):
        target = target.url or target.path
    if is_postgres_url(target):
        # psycopg is loaded only where PostgreSQL is used.
        from router.journal.pgstore import PostgresStore

        assert isinstance(target, str)
        return PostgresStore(target, readonly=readonly)
    return SqliteStore(target, readonly=readonly)


SESSIONS_QUERY: Final = ("SELECT session_id, started_ns, id_prefix, model_version, config, restored_from, router "
                         "FROM sessions ORDER BY session_id")
"""Every session, oldest first: the same statement for both stores."""


def session_info(row: Sequence[Any]) -> SessionInfo:
    """A row of ``SESSIONS_QUERY``."""
    return SessionInfo(session_id=row[0], started_ns=row[1], id_prefix=row[2], model_version=row[3], config=row[4],
                       restored_from=row[5], router=row[6])


def lineage_of(sessions: Iterable[SessionInfo], session_id: int, where: object) -> list[SessionInfo]:
    """The chain of ``restored_from`` that ends at ``session_id``, oldest
    first (``JournalStore.lineage`` of either store)."""
    by_id = {s.session_id: s for s in sessions}
    chain: list[SessionInfo] = []
    sid = session_id
    while sid:
        s = by_id.get(sid)
        if s is None or s in chain:
            raise JournalError(f"{where}: session {session_id} restores from missing session {sid}")
        chain.append(s)
        sid = s.restored_from
    return chain[::-1]


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
        self.target = str(self.path)
        """What the writer process opens (``router.journal.writer.Target``)."""
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # The daemon's own connection begins sessions and reads (the
                # writer process opens one of its own); any thread may use it.
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                migrate(self._db)
        except sqlite3.Error as e:
            raise JournalError(f"journal {self.path}: {e}") from e

    def begin_session(self, started_ns: int, id_prefix: str, model_version: str, config_json: str,
                      restored_from: int = 0, router: str = "") -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO sessions (started_ns, id_prefix, model_version, config, restored_from, router) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (started_ns, id_prefix, model_version, config_json, restored_from, router))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def write(self, session_id: int, rows: Sequence[Row]) -> None:
        """One transaction: all of ``rows`` or none.

        Rows go in as multi-row INSERTs of up to ``ROWS_PER_INSERT``, not
        ``executemany``: the sqlite3 module lets go of the GIL around every
        statement step, and each time the writer takes it back the engine's
        thread is made to hand it over. Measured with a thread spinning
        beside a writer of 60-row batches every 20 ms (3,000 rows/s):
        executemany added 4,000-5,300 stalls of the spinning thread over 20
        us in 8 s, multi-row INSERTs 900-1,900."""
        db = self._db
        db.execute("BEGIN")
        try:
            for k in range(0, len(rows), ROWS_PER_INSERT):
                chunk = rows[k:k + ROWS_PER_INSERT]
                params: list[object] = []
                for seq, kind, ts, body in chunk:
                    params += (seq, session_id, kind, ts, body)
                db.execute(_insert_sql(len(chunk)), params)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def sessions(self) -> list[SessionInfo]:
        return [session_info(r) for r in self._db.execute(SESSIONS_QUERY)]

    def lineage(self, session_id: int) -> list[SessionInfo]:
        """The sessions whose inputs rebuild ``session_id``'s starting state
        and its own: the chain of ``restored_from``, oldest first."""
        return lineage_of(self.sessions(), session_id, self.path)

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
