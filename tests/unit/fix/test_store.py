"""``fix.store``: which ExecutionReports a session's file store holds.

quickfix's FileStore body file is the raw messages one after another, under
``<state dir>/<gateway>/store/FIX.4.4-<Sender>-<Target>.body`` (the layout
``fix.settings`` gives it; the e2e restart tests and the soak read a real
one)."""

from __future__ import annotations

from pathlib import Path

import quickfix as fix

from fix.settings import SessionSpec
from fix.store import exec_ids_sent, store_body


def _er(seq: int, exec_id: str) -> str:
    m = fix.Message()
    h = m.getHeader()
    h.setField(8, "FIX.4.4")
    h.setField(35, "8")
    h.setField(34, str(seq))
    m.setField(17, exec_id)
    m.setField(150, "F")
    return str(m.toString())


def test_exec_ids_come_from_the_sessions_store(tmp_path: Path) -> None:
    spec = SessionSpec(role="acceptor", sender_comp_id="SOR", target_comp_id="OMS", port=1, heartbeat_s=30)
    body = store_body(tmp_path, "oms", spec)
    assert body == tmp_path / "oms" / "store" / "FIX.4.4-SOR-OMS.body"
    body.parent.mkdir(parents=True)
    body.write_text("".join(_er(i, e) for i, e in enumerate(["E1", "E2", "E17"], start=1)))
    assert exec_ids_sent(body) == {"E1", "E2", "E17"}
    assert exec_ids_sent(tmp_path / "nowhere.body") is None
