"""quickfix SessionSettings generated from plain session specs.

``fix`` does not import the router's config tree (see DESIGN.md's layout);
the composition root turns config into ``SessionSpec`` values and this module
turns those into quickfix settings, so there is no hand-written .cfg file to
drift from the TOML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec
import quickfix as fix

BEGIN_STRING = "FIX.4.4"
DICTIONARY = Path(__file__).resolve().parent / "spec" / "FIX44-sor.xml"


class SessionSpec(msgspec.Struct, frozen=True, kw_only=True):
    role: Literal["acceptor", "initiator"]
    sender_comp_id: str
    target_comp_id: str
    host: str = "127.0.0.1"
    port: int
    heartbeat_s: int = 30
    reconnect_s: int = 1
    allowed_remote: tuple[str, ...] = ()
    """Acceptors only: peer addresses allowed to log on (empty: any)."""
    repeating_groups: bool = False
    """Parse with SOR's own FIX 4.4 dictionary (fix/spec/FIX44-sor.xml).
    Needed where messages carry repeating groups (market data): without a
    dictionary quickfix files body fields by tag and the groups are lost."""


def session_id(spec: SessionSpec) -> fix.SessionID:
    return fix.SessionID(BEGIN_STRING, spec.sender_comp_id, spec.target_comp_id)


def session_key(sid: fix.SessionID) -> str:
    """A stable string for a session: what the engine carries around."""
    return sid.toString()


def build_settings(specs: list[SessionSpec], state_dir: str | Path, log_messages: bool = False) -> fix.SessionSettings:
    if not specs:
        raise ValueError("at least one FIX session is required")
    roles = {s.role for s in specs}
    if len(roles) != 1:
        raise ValueError("one quickfix engine serves either acceptors or initiators, not both")
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)

    settings = fix.SessionSettings()
    d = fix.Dictionary()
    d.setString("ConnectionType", specs[0].role)
    d.setString("FileStorePath", str(state / "store"))
    if log_messages:
        d.setString("FileLogPath", str(state / "log"))
    # Always-on sessions: a router runs across the trading day and the
    # sequence numbers persist in the file store, not a schedule.
    d.setString("StartTime", "00:00:00")
    d.setString("EndTime", "00:00:00")
    # The edge validates every field itself and answers with a readable
    # reject; quickfix's dictionary would also refuse the custom tags that
    # later issues add.
    d.setString("UseDataDictionary", "N")
    d.setString("ValidateUserDefinedFields", "N")
    d.setString("CheckLatency", "N")
    d.setString("SocketNodelay", "Y")
    d.setString("PersistMessages", "Y")
    settings.set(d)

    for spec in specs:
        sd = fix.Dictionary()
        sd.setString("HeartBtInt", str(spec.heartbeat_s))
        if spec.repeating_groups:
            sd.setString("UseDataDictionary", "Y")
            sd.setString("DataDictionary", str(DICTIONARY))
            # The dictionary describes structure; field checks stay with the
            # edge so every reject is the router's own readable one.
            sd.setString("ValidateFieldsOutOfOrder", "N")
            sd.setString("ValidateFieldsHaveValues", "N")
            sd.setString("AllowUnknownMsgFields", "Y")
        if spec.role == "acceptor":
            sd.setString("SocketAcceptPort", str(spec.port))
            # quickfix 1.16 has no listen-address setting: the acceptor binds
            # every interface. What it can do is refuse logons from peers
            # not on this list (checked when the Logon arrives).
            if spec.allowed_remote:
                sd.setString("AllowedRemoteAddresses", ",".join(spec.allowed_remote))
        else:
            sd.setString("SocketConnectHost", spec.host)
            sd.setString("SocketConnectPort", str(spec.port))
            sd.setString("ReconnectInterval", str(spec.reconnect_s))
        settings.set(session_id(spec), sd)
    return settings
