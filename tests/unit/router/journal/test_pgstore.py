"""The PostgreSQL journal store against a real server (``sim/pgserver.py``):
the same answers as the SQLite store (the shared tests run on both), its own
schema migrations, read-only opening, several routers writing one database
at once, and ``open_store`` choosing between the two."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from router.config import ConfigError, JournalConfig, parse_config
from router.domain.events import TimerFired
from router.journal import pgstore, records
from router.journal.schema import SCHEMA_VERSION
from router.journal.store import JournalError, JournalStore, SqliteStore, open_store
from router.journal.writer import JournalWriter

from .test_journal import EV, Stats

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh journal goes: a SQLite path, or an empty PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "j" / "sor.sqlite")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(target: str) -> Iterator[JournalStore]:
    s = open_store(target)
    yield s
    s.close()


def _meta_version(target: str) -> str:
    if target.startswith("postgresql://"):
        with psycopg.connect(target) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    else:
        db = sqlite3.connect(target)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        db.close()
    assert row is not None
    return str(row[0])


# ------------------------------------------------ the same on both stores


def test_a_journal_is_versioned_and_reopens(target: str) -> None:
    s = open_store(target)
    sid = s.begin_session(1, "P-", "static", "{}")
    s.write(sid, [(1, records.EVENT, 5, records.encode(EV))])
    s.close()
    assert _meta_version(target) == str(SCHEMA_VERSION)
    again = open_store(target)
    sid2 = again.begin_session(2, "Q-", "m", '{"a": 1}')
    assert sid2 > sid
    assert [(x.session_id, x.started_ns, x.id_prefix, x.model_version, x.config, x.restored_from)
            for x in again.sessions()] == [(sid, 1, "P-", "static", "{}", 0), (sid2, 2, "Q-", "m", '{"a": 1}', 0)]
    (row,) = list(again.records(sid))
    assert row[:3] == (1, records.EVENT, 5) and isinstance(row[3], bytes)
    assert records.decode_event(row[3]) == EV
    assert list(again.records(sid2)) == []
    again.close()


def test_records_events_and_counts_come_back_in_seq_order(store: JournalStore) -> None:
    sid = store.begin_session(1, "P-", "static", "{}")
    other = store.begin_session(2, "P-", "static", "{}")
    bodies = [bytes([i]) * (i + 1) for i in range(6)]
    kinds = [records.EVENT, records.COMMANDS, records.DECISION, records.EVENT, records.EVENT, records.COMMANDS]
    rows = [(seq, kind, 100 + seq, body) for seq, (kind, body) in enumerate(zip(kinds, bodies), 1)]
    # Written out of order, in two batches, with another session's rows between.
    store.write(sid, rows[3:])
    store.write(other, [(1, records.EVENT, 1, b"x")])
    store.write(sid, rows[:3])
    assert list(store.records(sid)) == rows
    assert list(store.events(sid)) == [bodies[0], bodies[3], bodies[4]]
    assert store.count(sid) == {records.EVENT: 3, records.COMMANDS: 2, records.DECISION: 1}
    assert store.count(other) == {records.EVENT: 1}
    assert store.count(999) == {} and list(store.records(999)) == []


def test_a_partial_batch_is_never_committed(store: JournalStore) -> None:
    sid = store.begin_session(1, "P-", "static", "{}")
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.IntegrityError)):
        store.write(sid, [(1, records.EVENT, 1, b"a"), (1, records.EVENT, 2, b"b")])  # duplicate seq
    assert list(store.records(sid)) == []
    store.write(sid, [(1, records.EVENT, 1, b"a")])
    assert [r[0] for r in store.records(sid)] == [1], "the store still writes after a failed batch"


def test_the_writer_records_everything_in_order(store: JournalStore) -> None:
    sid = store.begin_session(1, "P-", "static", "{}")
    stats = Stats()
    w = JournalWriter(store, sid, capacity=100_000, max_delay_ms=5, on_failure=lambda r: None, stats=stats)
    w.start()
    evs = [TimerFired(ts_ns=i) for i in range(10_000)]
    for ev in evs:
        w.append(records.EVENT, ev.ts_ns, ev)
    assert w.close()
    rows = list(store.records(sid))
    assert [r[0] for r in rows] == list(range(1, 10_001))
    assert [records.decode_event(r[3]) for r in rows] == evs
    assert stats.rows == 10_000 and stats.lost == 0 and w.failed is None


def test_lineage_follows_restored_from(store: JournalStore) -> None:
    a = store.begin_session(1, "P-", "m", "{}")
    unrelated = store.begin_session(2, "Q-", "m", "{}")
    b = store.begin_session(3, "P-", "m", "{}", restored_from=a)
    c = store.begin_session(4, "P-", "m", "{}", restored_from=b)
    assert [s.session_id for s in store.lineage(c)] == [a, b, c]
    assert [s.session_id for s in store.lineage(unrelated)] == [unrelated]
    broken = store.begin_session(5, "P-", "m", "{}", restored_from=12345)
    with pytest.raises(JournalError, match="missing session 12345"):
        store.lineage(broken)


def test_a_newer_journal_is_refused(target: str) -> None:
    open_store(target).close()
    newer = str(SCHEMA_VERSION + 1)
    if target.startswith("postgresql://"):
        with psycopg.connect(target) as conn:
            conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (newer,))
    else:
        with sqlite3.connect(target) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (newer,))
        db.close()
    with pytest.raises(JournalError, match="newer than this build"):
        open_store(target)


def test_a_reader_sees_what_a_writer_committed(target: str) -> None:
    w = open_store(target)
    sid = w.begin_session(1, "P-", "m", "{}")
    w.write(sid, [(1, records.EVENT, 1, b"a")])
    r = open_store(target, readonly=True)
    assert [s.session_id for s in r.sessions()] == [sid]
    w.write(sid, [(2, records.EVENT, 2, b"b")])
    assert [row[0] for row in r.records(sid)] == [1, 2]
    r.close()
    w.close()


# ------------------------------------------------------ PostgreSQL's own


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}


def test_an_empty_database_is_migrated_to_the_current_schema(pg_url: str) -> None:
    assert _tables(pg_url) == set()
    s = pgstore.PostgresStore(pg_url)
    assert _tables(pg_url) == {"meta", "sessions", "records"}
    with psycopg.connect(pg_url) as conn:
        assert pgstore.migrate(conn) == SCHEMA_VERSION, "already current: nothing to do"
        cols = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'records'").fetchall())
        identity = conn.execute("SELECT is_identity FROM information_schema.columns "
                                "WHERE table_name = 'sessions' AND column_name = 'session_id'").fetchone()
    assert cols == {"seq": "bigint", "session_id": "bigint", "kind": "text", "ts_ns": "bigint", "body": "bytea"}
    assert identity == ("YES",)
    s.close()


def test_a_version_1_database_is_migrated_forward(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        for stmt in pgstore.MIGRATIONS[1]:
            conn.execute(stmt)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO sessions (started_ns, id_prefix, model_version, config) VALUES (1, 'P-', 'm', '{}')")
    with pytest.raises(JournalError, match="older than this build"):
        pgstore.PostgresStore(pg_url, readonly=True)
    s = pgstore.PostgresStore(pg_url)
    (old,) = s.sessions()
    assert old.restored_from == 0
    new = s.begin_session(2, "P-", "m", "{}", restored_from=old.session_id)
    assert [x.session_id for x in s.lineage(new)] == [old.session_id, new]
    s.close()
    assert _meta_version(pg_url) == str(SCHEMA_VERSION)


def test_migrations_keep_step_with_the_sqlite_schema() -> None:
    from router.journal.schema import MIGRATIONS

    assert sorted(pgstore.MIGRATIONS) == sorted(MIGRATIONS)


def test_read_only_creates_nothing_and_writes_nothing(pg_url: str) -> None:
    with pytest.raises(JournalError, match="no journal here"):
        pgstore.PostgresStore(pg_url, readonly=True)
    assert _tables(pg_url) == set(), "a reader never creates the schema"
    w = pgstore.PostgresStore(pg_url)
    sid = w.begin_session(1, "P-", "m", "{}")
    w.close()
    r = pgstore.PostgresStore(pg_url, readonly=True)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        r.write(sid, [(1, records.EVENT, 1, b"a")])
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        r.begin_session(2, "P-", "m", "{}")
    assert [s.session_id for s in r.sessions()] == [sid] and list(r.records(sid)) == []
    r.close()


def test_a_half_read_session_holds_nothing_open(pg_url: str) -> None:
    s = pgstore.PostgresStore(pg_url)
    sid = s.begin_session(1, "P-", "m", "{}")
    s.write(sid, [(i, records.EVENT, i, b"e") for i in range(1, pgstore.PAGE_ROWS + 11)])
    reading = s.records(sid)
    assert next(reading)[0] == 1
    s.write(sid, [(pgstore.PAGE_ROWS + 11, records.EVENT, 0, b"late")])
    other = pgstore.PostgresStore(pg_url, readonly=True)
    assert other.count(sid) == {records.EVENT: pgstore.PAGE_ROWS + 11}, "the write committed mid-read"
    other.close()
    assert [r[0] for r in reading] == list(range(2, pgstore.PAGE_ROWS + 12))
    s.close()


def test_commits_are_durable_even_where_the_server_says_otherwise(pg_url: str) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" SET synchronous_commit = off')
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
    s = pgstore.PostgresStore(pg_url)
    assert s._db.execute("SHOW synchronous_commit").fetchone() == ("on",)
    s.close()


def test_two_routers_share_one_database(pg_url: str) -> None:
    """Two routers start at once on an empty database (both migrate), begin
    their sessions at once and journal at once through their writers."""
    n_routers, n_events = 4, 3000
    barrier = threading.Barrier(n_routers)
    stores: list[JournalStore] = []
    sessions: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def router(i: int) -> None:
        try:
            barrier.wait(10)
            s = open_store(pg_url)
            barrier.wait(10)
            sid = s.begin_session(i, f"R{i}-", "m", "{}")
            w = JournalWriter(s, sid, capacity=100_000, max_delay_ms=1, on_failure=errors.append)
            barrier.wait(10)
            w.start()
            for k in range(n_events):
                w.append(records.EVENT, k, TimerFired(ts_ns=k * n_routers + i))
            assert w.close() and w.failed is None
            with lock:
                stores.append(s)
                sessions.append(sid)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=router, args=(i,)) for i in range(n_routers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(set(sessions)) == n_routers, "every router got its own session"
    reader = open_store(pg_url, readonly=True)
    infos = reader.sessions()
    assert sorted(sessions) == [s.session_id for s in infos]
    for info in infos:
        i = info.started_ns
        assert info.id_prefix == f"R{i}-"
        rows = list(reader.records(info.session_id))
        assert [r[0] for r in rows] == list(range(1, n_events + 1))
        assert [records.decode_event(r[3]) for r in rows] == [TimerFired(ts_ns=k * n_routers + i)
                                                            for k in range(n_events)]
    reader.close()
    for s in stores:
        s.close()


# ------------------------------------------------ choosing, config, secrets


def test_open_store_chooses_by_url(pg_url: str, tmp_path: Path) -> None:
    sq = open_store(JournalConfig(path=str(tmp_path / "a.sqlite")))
    assert isinstance(sq, SqliteStore)
    sq.close()
    sq2 = open_store(tmp_path / "b.sqlite")
    assert isinstance(sq2, SqliteStore)
    sq2.close()
    pg = open_store(JournalConfig(path=str(tmp_path / "unused.sqlite"), url=pg_url))
    assert isinstance(pg, pgstore.PostgresStore) and pg.path == pg_url
    pg.close()
    assert not (tmp_path / "unused.sqlite").exists()
    ro = open_store(pg_url, True)
    assert isinstance(ro, pgstore.PostgresStore) and ro.readonly
    ro.close()


def test_journal_url_must_be_a_postgresql_url() -> None:
    base = (ROOT / "config" / "sor.toml").read_text()
    ok = parse_config(base + '\n[journal]\nurl = "postgresql://sor@db:5432/journal"\n')
    assert ok.journal.url == "postgresql://sor@db:5432/journal"
    assert parse_config(base).journal.url == ""
    with pytest.raises(ConfigError, match=r"journal\.url: .*mysql://x"):
        parse_config(base + '\n[journal]\nurl = "mysql://x"\n')


def test_the_password_never_reaches_a_message() -> None:
    from sim.harness import free_port

    url = f"postgresql://sor:s3cret@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    assert "s3cret" not in pgstore.redact(url) and "sor:***@127.0.0.1" in pgstore.redact(url)
    assert pgstore.redact("postgresql://h/db?password=s3cret&sslmode=require") == \
        "postgresql://h/db?password=***&sslmode=require"
    assert pgstore.redact("postgresql://sor@h:5/db") == "postgresql://sor@h:5/db"
    with pytest.raises(JournalError) as err:
        open_store(url)
    assert "s3cret" not in str(err.value) and "127.0.0.1" in str(err.value)
