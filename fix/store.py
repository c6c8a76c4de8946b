"""What quickfix's file store says this process already handed over.

quickfix writes every outgoing application message to the session's store
(``<FileStorePath>/<BeginString>-<Sender>-<Target>.body``) before it goes
on the wire, and resends from there when the counterparty asks. So after
a crash a message found there was delivered, or will be by resend; one
that is not was never handed to quickfix.
"""

from __future__ import annotations

import re
from pathlib import Path

from fix.settings import BEGIN_STRING, SessionSpec

_EXEC_ID = re.compile(rb"\x0117=([^\x01]*)\x01")


def store_body(state_dir: str | Path, gateway: str, spec: SessionSpec) -> Path:
    """The store file of ``spec``'s session under a gateway's state dir."""
    return Path(state_dir) / gateway / "store" / f"{BEGIN_STRING}-{spec.sender_comp_id}-{spec.target_comp_id}.body"


def exec_ids_sent(body: Path) -> set[str] | None:
    """ExecIDs of every ExecutionReport in a session's store; None when the
    store does not exist (a memory store, or a fresh state dir)."""
    try:
        raw = body.read_bytes()
    except FileNotFoundError:
        return None
    return {m.decode(errors="replace") for m in _EXEC_ID.findall(raw)}
