"""The journal's encoding, its SQLite store and schema migrations, and the
writer process's batching and failure handling."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest

from router.domain.commands import CancelChild, ReportToOms, SendChildOrder, SubscribeMarketData
from router.domain.decision import Decision
from router.domain.events import MarketDataReceived, MdEntry, NewOrderReceived, TimerFired, TradingHalted
from router.domain.plan import Plan, Slice, Wave
from router.domain.types import ExecType, OrdStatus, OrdType, Side, TimeInForce, Urgency
from router.journal import records
from router.journal.schema import SCHEMA_VERSION
from router.journal.store import JournalError, SqliteStore, migrate
from router.journal.writer import JournalWriter
from sim.harness import poll_until

EV = NewOrderReceived(session="OMS", cl_ord_id="c1", symbol="AAPL", side=Side.BUY, qty=300, ord_type=OrdType.LIMIT,
                      price_ticks=19000, tif=TimeInForce.IOC, recv_ns=5, strategy="spray", trace_ns=9)


def test_every_kind_round_trips_exactly() -> None:
    md = MarketDataReceived(venue="LIT1", snapshot=False, symbol="", recv_ns=7, entries=(
        MdEntry(action="2", kind=1, symbol="AAPL", px_ticks=0, size=0, level=3, aggressor=0),))
    for ev in (EV, md, TimerFired(ts_ns=3), TradingHalted(reason="journal failed", ts_ns=4)):
        assert records.decode_event(records.encode(ev)) == ev
    cmds = [SendChildOrder(venue="LIT1", child_id="P-C2", symbol="AAPL", side=Side.BUY, qty=100,
                           ord_type=OrdType.LIMIT, price_ticks=19000, tif=TimeInForce.IOC),
            CancelChild(venue="LIT1", child_id="P-C2", cancel_id="P-X3", symbol="AAPL", side=Side.BUY, qty=100),
            SubscribeMarketData(venue="LIT2", symbols=("AAPL",), depth=5),
            ReportToOms(session="OMS", order_id="P-P1", cl_ord_id="c1", orig_cl_ord_id=None, exec_id="P-E4",
                        exec_type=ExecType.NEW, ord_status=OrdStatus.NEW, symbol="AAPL", side=Side.BUY, order_qty=300,
                        ord_type=OrdType.LIMIT, price_ticks=19000, cum_qty=0, leaves_qty=300, avg_px_ticks_num=0,
                        last_qty=0, last_px_ticks=0, last_mkt=None, text="", transact_ns=5)]
    assert records.decode_commands(records.encode(cmds)) == cmds
    d = Decision(order_id="P-P1", ts_ns=5, venues=("LIT1", "DARK1"), strategy="spray", model_version="m1",
                 plan=Plan(name="ml:spray", waves=(Wave(slices=(Slice(venue="LIT1", weight=0.5, tif=TimeInForce.IOC,
                                                                      limit_ticks=19000),)),)),
                 features=np.arange(6, dtype=np.float32).reshape(2, 3), scores=np.full((2, 3), 0.25),
                 costs=np.array([1.5, -2.0]), ranking=("DARK1", "LIT1"), stages_ns=(("features", 10),))
    back = records.decode_decision(records.encode(d))
    assert back.plan == d.plan and back.ranking == d.ranking and back.stages_ns == d.stages_ns
    assert back.features is not None and back.features.dtype == np.float32
    assert np.array_equal(back.features, d.features) and np.array_equal(back.scores, d.scores)  # type: ignore[arg-type]
    assert np.array_equal(back.costs, d.costs)  # type: ignore[arg-type]
    bare = Decision(order_id="P-P2", ts_ns=6, plan=Plan(waves=(), name="static"), venues=())
    assert records.decode_decision(records.encode(bare)) == bare


def test_urgency_and_expected_completion_round_trip_and_old_records_still_decode() -> None:
    ev = msgspec.structs.replace(EV, urgency=Urgency.HIGH)
    assert records.decode_event(records.encode(ev)) == ev
    d = Decision(order_id="P-P1", ts_ns=5, venues=(), strategy="static", expected_completion_ms=207.5,
                 plan=Plan(name="static", waves=(Wave(slices=(Slice(venue="LIT1", tif=TimeInForce.IOC,
                                                                    limit_ticks=19000),)),)))
    assert records.decode_decision(records.encode(d)) == d
    # What a build before the fields wrote: the same maps without them.
    old_ev = msgspec.to_builtins(ev)
    del old_ev["urgency"]
    assert records.decode_event(msgspec.msgpack.encode(old_ev)) == msgspec.structs.replace(ev, urgency=Urgency.NORMAL)
    old_d = msgspec.to_builtins(d)
    del old_d["expected_completion_ms"]
    assert records.decode_decision(msgspec.msgpack.encode(old_d)) == msgspec.structs.replace(
        d, expected_completion_ms=None)


def test_store_is_wal_versioned_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "j" / "sor.sqlite"
    s = SqliteStore(path)
    sid = s.begin_session(1, "P-", "static", "{}")
    s.write(sid, [(1, records.EVENT, 5, records.encode(EV))])
    s.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert migrate(db) == SCHEMA_VERSION, "already current: nothing to do"
    db.close()
    again = SqliteStore(path)
    sid2 = again.begin_session(2, "Q-", "m", "{}")
    assert [x.session_id for x in again.sessions()] == [sid, sid2]
    (row,) = list(again.records(sid))
    assert records.decode_event(row[3]) == EV
    again.close()


def test_a_newer_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="newer than this build"):
        SqliteStore(path)


def test_a_partial_batch_is_never_committed(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "j.sqlite")
    sid = s.begin_session(1, "P-", "static", "{}")
    with pytest.raises(sqlite3.IntegrityError):
        s.write(sid, [(1, records.EVENT, 1, b"a"), (1, records.EVENT, 2, b"b")])  # duplicate seq
    assert list(s.records(sid)) == []


class Stats:
    def __init__(self) -> None:
        self.rows = 0
        self.lost = 0

    def written(self, rows: int, batch_seconds: float) -> None:
        self.rows += rows

    def dropped(self, rows: int) -> None:
        self.lost += rows


def test_the_writer_records_everything_in_order(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "j.sqlite")
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


def _journal(tmp_path: Path) -> tuple[SqliteStore, int]:
    store = SqliteStore(tmp_path / "j.sqlite")
    return store, store.begin_session(1, "P-", "static", "{}")


def _started(tmp_path: Path, capacity: int) -> tuple[SqliteStore, int, JournalWriter, list[str], Stats]:
    """A journal, its writer started, and what the writer reports."""
    store, sid = _journal(tmp_path)
    failures: list[str] = []
    stats = Stats()
    w = JournalWriter(store, sid, capacity=capacity, max_delay_ms=1, on_failure=failures.append, stats=stats)
    w.start()
    return store, sid, w, failures, stats


def test_falling_behind_fails_once_and_drops_what_follows(tmp_path: Path) -> None:
    """The writer process is stopped (SIGSTOP): nothing becomes durable, so
    the records waiting pass ``capacity``."""
    store, sid, w, failures, stats = _started(tmp_path, 50)
    assert w.pid is not None
    os.kill(w.pid, signal.SIGSTOP)
    try:
        for i in range(200):
            w.append(records.EVENT, i, TimerFired(ts_ns=i))
    finally:
        os.kill(w.pid, signal.SIGCONT)
    assert w.close()
    assert len(failures) == 1 and "51 records behind" in failures[0]
    assert stats.rows == 51 and stats.lost == 149, "what came before the failure is written, the rest counted lost"
    assert [r[0] for r in store.records(sid)] == list(range(1, 52))


def test_a_failed_write_fails_the_journal(tmp_path: Path) -> None:
    """A write the store refuses (its table dropped under it) ends the
    writer process with the store's reason."""
    _, _, w, failures, stats = _started(tmp_path, 1000)
    w.append(records.EVENT, 0, TimerFired(ts_ns=0))
    assert w.wait_committed(1, timeout_s=10)
    db = sqlite3.connect(tmp_path / "j.sqlite")
    db.execute("DROP TABLE records")
    db.commit()
    db.close()
    for i in range(1, 10):
        w.append(records.EVENT, i, TimerFired(ts_ns=i))
    assert not w.wait_committed(10, timeout_s=10)
    w.append(records.EVENT, 99, TimerFired(ts_ns=99))
    assert w.close()
    assert failures == ["write failed: no such table: records"] and w.failed == failures[0]
    assert stats.rows == 1 and stats.lost == 10


def test_a_killed_writer_process_fails_the_journal(tmp_path: Path) -> None:
    _, _, w, failures, stats = _started(tmp_path, 1000)
    assert w.pid is not None
    os.kill(w.pid, signal.SIGKILL)
    w.append(records.EVENT, 1, TimerFired(ts_ns=1))
    assert not w.wait_committed(1, timeout_s=10)
    assert failures == ["writer process exited (killed by signal 9)"]
    assert w.close() and stats.lost == 1


def test_the_writer_process_dies_with_its_daemon(tmp_path: Path) -> None:
    """``kill -9`` of the daemon takes its writer process with it: a restart
    must not recover from a journal something is still appending to."""
    script = (
        "import sys, time\n"
        "from router.journal.store import SqliteStore\n"
        "from router.journal.writer import JournalWriter\n"
        "s = SqliteStore(sys.argv[1]); w = JournalWriter(s, s.begin_session(1, 'P-', 'm', '{}'), capacity=10,\n"
        "    max_delay_ms=1, on_failure=print); w.start(); print(w.pid, flush=True); time.sleep(60)\n")
    daemon = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "j.sqlite")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert daemon.stdout is not None
        pid = int(daemon.stdout.readline())
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(10)

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            # A zombie until init reaps it: dead all the same.
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")

        assert poll_until(gone, timeout_s=10)
    finally:
        daemon.kill()


def test_a_journal_the_writer_process_cannot_open_fails_the_start(tmp_path: Path) -> None:
    store, sid = _journal(tmp_path)
    (tmp_path / "j.sqlite").unlink()
    (tmp_path / "j.sqlite").mkdir()  # sqlite cannot open a directory
    w = JournalWriter(store, sid, capacity=10, max_delay_ms=1, on_failure=lambda r: None)
    with pytest.raises(JournalError, match="failed to start: cannot open the journal"):
        w.start()


def test_a_version_1_journal_is_migrated_forward(tmp_path: Path) -> None:
    from router.journal.schema import MIGRATIONS

    path = tmp_path / "v1.sqlite"
    db = sqlite3.connect(path)
    for stmt in MIGRATIONS[1]:
        db.execute(stmt)
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    db.execute("INSERT INTO sessions (started_ns, id_prefix, model_version, config) VALUES (1, 'P-', 'm', '{}')")
    db.commit()
    db.close()
    s = SqliteStore(path)
    (old,) = s.sessions()
    assert old.restored_from == 0
    new = s.begin_session(2, "P-", "m", "{}", restored_from=old.session_id)
    assert [x.session_id for x in s.lineage(new)] == [old.session_id, new]
    s.close()


def test_routers_sharing_a_journal_recover_only_their_own_sessions(tmp_path: Path) -> None:
    from router.journal.store import last_session_of

    s = SqliteStore(tmp_path / "shared.sqlite")
    a1 = s.begin_session(1, "A-", "m", "{}", router="alpha")
    b1 = s.begin_session(2, "B-", "m", "{}", router="beta")
    a2 = s.begin_session(3, "A-", "m", "{}", restored_from=a1, router="alpha")
    sessions = s.sessions()
    assert [x.router for x in sessions] == ["alpha", "beta", "alpha"]
    got_a, got_b = last_session_of(sessions, "alpha"), last_session_of(sessions, "beta")
    assert got_a is not None and got_a.session_id == a2
    assert got_b is not None and got_b.session_id == b1
    assert last_session_of(sessions, "gamma") is None, "a new router starts fresh"
    s.close()


def test_a_version_2_session_counts_as_the_routers_own(tmp_path: Path) -> None:
    from router.journal.schema import MIGRATIONS
    from router.journal.store import last_session_of

    path = tmp_path / "v2.sqlite"
    db = sqlite3.connect(path)
    for v in (1, 2):
        for stmt in MIGRATIONS[v]:
            db.execute(stmt)
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
    db.execute("INSERT INTO sessions (started_ns, id_prefix, model_version, config) VALUES (1, 'P-', 'm', '{}')")
    db.commit()
    db.close()
    s = SqliteStore(path)
    (old,) = s.sessions()
    assert old.router == ""
    got = last_session_of(s.sessions(), "sor")
    assert got is not None and got.session_id == old.session_id
    s.close()
