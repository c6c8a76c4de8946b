"""The shared journal: PostgreSQL (psycopg 3), for several routers writing
one journal.

The same tables as ``store.SqliteStore`` (``meta``, ``sessions``,
``records``) in PostgreSQL's types, the same rows, the same answers, in the
same order. The schema has its own migrations (``MIGRATIONS`` here, one per
version of ``schema.SCHEMA_VERSION``, which must keep step with it) and its
version in ``meta``; opening a database for writing creates or migrates it,
one transaction per step, under an advisory lock, so routers starting
together on an empty database do not both create the tables.

Durability: each batch is one transaction, and PostgreSQL returns from a
commit once its WAL record is flushed (``synchronous_commit = on``, the
default; this store turns it back on for its own connection where the
server has it off). That is the ``sync = "batch"`` contract. A server
running with ``fsync = off`` cannot keep it, and is logged as such.

Several routers: session ids come from an identity column (a sequence), so
concurrent ``begin_session`` calls never collide, and rows are keyed by
(session_id, seq): each writer appends to its own session only.

Readers page through a session by its key (``seq > last ORDER BY seq
LIMIT n``, the primary key's index): a trading day's session can be
millions of rows, and a page is a statement of its own, so a half-read
generator holds no transaction or cursor open on the connection the
writer commits on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, Final, LiteralString
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo
from psycopg.rows import TupleRow

from router.journal.schema import SCHEMA_VERSION
from router.journal.store import SESSIONS_QUERY, JournalError, Row, SessionInfo, lineage_of, session_info

log = logging.getLogger("sor.journal")

MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    # 0 -> 1: the first schema (schema.MIGRATIONS[1] in PostgreSQL's types).
    1: (
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE sessions (
            session_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            started_ns BIGINT NOT NULL,
            id_prefix TEXT NOT NULL,
            model_version TEXT NOT NULL,
            config TEXT NOT NULL
        )""",
        """CREATE TABLE records (
            seq BIGINT NOT NULL,
            session_id BIGINT NOT NULL REFERENCES sessions(session_id),
            kind TEXT NOT NULL,
            ts_ns BIGINT NOT NULL,
            body BYTEA NOT NULL,
            PRIMARY KEY (session_id, seq)
        )""",
    ),
    # 1 -> 2: a session restored from the one before it (restart recovery).
    2: (
        """ALTER TABLE sessions ADD COLUMN restored_from BIGINT NOT NULL DEFAULT 0""",
    ),
    3: (
        """ALTER TABLE sessions ADD COLUMN router TEXT NOT NULL DEFAULT ''""",
    ),
}
"""version -> the statements that turn version - 1 into it."""
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1)), "pgstore.MIGRATIONS must follow schema.SCHEMA_VERSION"

MIGRATION_LOCK: Final = 0x534F_524A_4E4C
"""The advisory lock key migrations hold ("SORJNL")."""

CONNECT_TIMEOUT_S: Final = 10
"""libpq's connect_timeout where the URL does not set one."""

PAGE_ROWS: Final = 2000
"""Rows per round trip when reading a session."""

# Batches go in with COPY ... FROM STDIN (FORMAT BINARY), the faster way
# measured: a local PostgreSQL 15 over TCP on 127.0.0.1 (fsync and
# synchronous_commit on), a 2-core box shared with other work; batches of
# 100 rows with 300-byte bodies, one transaction each, the methods taking
# turns batch by batch, 2,000 and 3,000 batches; median / p99 ms a batch,
# commit included (an empty-ish commit alone: 0.2-0.3 ms):
#   COPY binary                          2.3 / 9.0    2.2 / 7.9
#   COPY text                            2.9 / 11.9   2.6 / 8.3
#   executemany (psycopg 3.3 pipelines)  4.6 / 12.6   3.5 / 12.0
#   execute row by row                   7.6 / 24.0   7.7 / 20.0
# COPY streams the batch in one message; executemany, even pipelined, is a
# Bind/Execute per row and a server-side INSERT per row.
_COPY: Final = "COPY records (seq, session_id, kind, ts_ns, body) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES: Final = ["int8", "int8", "text", "int8", "bytea"]

Connection = psycopg.Connection[TupleRow]


def redact(url: str) -> str:
    """``url`` without its password (in the authority or ``?password=``), for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            host = parts.hostname or ""
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        if any(k == "password" for k, _ in query):
            parts = parts._replace(query=urlencode([(k, "***" if k == "password" else v) for k, v in query],
                                                   safe="*"))
        return urlunsplit(parts)
    except ValueError:
        return "<unparsable postgresql URL>"


def _version(conn: Connection) -> int:
    row = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: Connection) -> int:
    """Bring the database to ``SCHEMA_VERSION`` (``conn`` in autocommit
    mode); returns the version it had. One transaction per step, each under
    the advisory lock and re-reading the version, so a router that waited
    for another's migration finds the work done."""
    found: int | None = None
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            version = _version(conn)
            if found is None:
                found = version
            if version > SCHEMA_VERSION:
                raise JournalError(f"journal schema {version} is newer than this build's {SCHEMA_VERSION}")
            if version == SCHEMA_VERSION:
                return found
            for stmt in MIGRATIONS[version + 1]:
                conn.execute(stmt)
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (str(version + 1),))


class PostgresStore:
    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.path = redact(url)
        """Where the journal is (``JournalStore.path``): the URL, no password."""
        self.target = url
        """What the writer process opens (``router.journal.writer.Target``):
        the URL with its password, handed over in its environment."""
        self.readonly = readonly
        try:
            params = conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as e:
            raise JournalError(f"journal {self.path}: {e}") from e
        extra: dict[str, Any] = {}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = CONNECT_TIMEOUT_S
        if "application_name" not in params:
            extra["application_name"] = "sor-journal-reader" if readonly else "sor-journal"
        try:
            # Autocommit: every transaction is an explicit block (a batch,
            # a migration step); reads are statements of their own.
            self._db: Connection = psycopg.connect(url, autocommit=True, **extra)
        except psycopg.Error as e:
            raise JournalError(f"journal {self.path}: {e}") from e
        try:
            if readonly:
                self._db.execute("SET default_transaction_read_only = on")
                found = _version(self._db)
                if found == 0:
                    raise JournalError(f"{self.path}: no journal here (nothing was ever recorded)")
                if found > SCHEMA_VERSION:
                    raise JournalError(f"journal schema {found} is newer than this build's {SCHEMA_VERSION}")
                if found < SCHEMA_VERSION:
                    raise JournalError(f"{self.path}: journal schema {found} is older than this build's "
                                       f"{SCHEMA_VERSION}; a router opening it for writing migrates it")
            else:
                self._durable_commits()
                migrate(self._db)
        except psycopg.Error as e:
            self._db.close()
            raise JournalError(f"journal {self.path}: {e}") from e
        except JournalError:
            self._db.close()
            raise

    def _durable_commits(self) -> None:
        row = self._db.execute("SELECT current_setting('synchronous_commit'), current_setting('fsync')").fetchone()
        assert row is not None
        sync_commit, fsync = row
        if sync_commit == "off":
            # "local", "remote_write", "on", "remote_apply" all flush the
            # local WAL before the commit returns; only "off" does not.
            self._db.execute("SET synchronous_commit = on")
        if fsync != "on":
            log.warning("journal %s: the server runs with fsync = %s: a committed batch can be lost in a crash "
                        "(journal.sync = \"batch\" is not kept)", self.path, fsync)

    def begin_session(self, started_ns: int, id_prefix: str, model_version: str, config_json: str,
                      restored_from: int = 0, router: str = "") -> int:
        row = self._db.execute(
            "INSERT INTO sessions (started_ns, id_prefix, model_version, config, restored_from, router) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING session_id",
            (started_ns, id_prefix, model_version, config_json, restored_from, router)).fetchone()
        assert row is not None
        return int(row[0])

    def write(self, session_id: int, rows: Sequence[Row]) -> None:
        """One transaction: all of ``rows`` or none, durable at its commit."""
        db = self._db
        with db.transaction(), db.cursor() as cur, cur.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            for seq, kind, ts, body in rows:
                copy.write_row((seq, session_id, kind, ts, body))

    def sessions(self) -> list[SessionInfo]:
        return [session_info(r) for r in self._db.execute(SESSIONS_QUERY)]

    def lineage(self, session_id: int) -> list[SessionInfo]:
        """The sessions whose inputs rebuild ``session_id``'s starting state
        and its own: the chain of ``restored_from``, oldest first."""
        return lineage_of(self.sessions(), session_id, self.path)

    def _pages(self, query: LiteralString, session_id: int) -> Iterator[Any]:
        """The rows of ``query`` (seq first; ``%s`` for the session, the last
        seq and the page size), page by page."""
        last = 0
        while True:
            with self._db.cursor(binary=True) as cur:
                page = cur.execute(query, (session_id, last, PAGE_ROWS)).fetchall()
            yield from page
            if len(page) < PAGE_ROWS:
                return
            last = page[-1][0]

    def events(self, session_id: int) -> Iterator[bytes]:
        """The bodies of a session's input events, in order."""
        for _, body in self._pages("SELECT seq, body FROM records WHERE session_id = %s AND kind = 'event' "
                                   "AND seq > %s ORDER BY seq LIMIT %s", session_id):
            yield body

    def records(self, session_id: int) -> Iterator[Row]:
        # int8, text, int8, bytea load as Row's int, str, int, bytes.
        yield from self._pages("SELECT seq, kind, ts_ns, body FROM records WHERE session_id = %s AND seq > %s "
                               "ORDER BY seq LIMIT %s", session_id)

    def count(self, session_id: int) -> dict[str, int]:
        return {kind: n for kind, n in self._db.execute(
            "SELECT kind, COUNT(*) FROM records WHERE session_id = %s GROUP BY kind", (session_id,))}

    def close(self) -> None:
        self._db.close()
