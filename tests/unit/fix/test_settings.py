"""quickfix SessionSettings generated from SessionSpec values."""

from __future__ import annotations

from pathlib import Path

import pytest
import quickfix as fix

from fix.settings import BEGIN_STRING, SessionSpec, build_settings, session_id, session_key

ROOT = Path(__file__).resolve().parents[3]

OMS = SessionSpec(role="acceptor", sender_comp_id="SOR", target_comp_id="OMS", host="127.0.0.1", port=9870,
                  heartbeat_s=15)
LIT1 = SessionSpec(role="initiator", sender_comp_id="SOR", target_comp_id="LIT1", host="10.1.2.3", port=9881,
                   heartbeat_s=20, reconnect_s=3)
LIT2 = SessionSpec(role="initiator", sender_comp_id="SOR", target_comp_id="LIT2", port=9882)


def _has(d: fix.Dictionary, key: str) -> bool:
    return bool(d.has(key))


def test_session_id_and_key() -> None:
    sid = session_id(OMS)
    assert sid.getBeginString().getValue() == BEGIN_STRING == "FIX.4.4"
    assert sid.getSenderCompID().getValue() == "SOR"
    assert sid.getTargetCompID().getValue() == "OMS"
    assert session_key(sid) == "FIX.4.4:SOR->OMS"
    assert session_key(session_id(OMS)) == session_key(sid)


def test_acceptor_settings(tmp_path: Path) -> None:
    state = tmp_path / "state" / "oms"
    settings = build_settings([OMS], state)
    assert state.is_dir(), "the state directory is created"
    assert settings.size() == 1

    defaults = settings.get()
    assert defaults.getString("ConnectionType") == "acceptor"
    assert defaults.getString("FileStorePath") == str(state / "store")
    assert not _has(defaults, "FileLogPath")
    for key, value in {"StartTime": "00:00:00", "EndTime": "00:00:00", "UseDataDictionary": "N",
                       "ValidateUserDefinedFields": "N", "CheckLatency": "N", "SocketNodelay": "Y",
                       "PersistMessages": "Y"}.items():
        assert defaults.getString(key) == value, key

    s = settings.get(session_id(OMS))
    assert s.getString("SocketAcceptPort") == "9870"
    assert s.getInt("SocketAcceptPort") == 9870
    assert s.getString("HeartBtInt") == "15"
    assert s.getString("BeginString") == "FIX.4.4"
    assert s.getString("SenderCompID") == "SOR"
    assert s.getString("TargetCompID") == "OMS"
    # Defaults are merged into each session.
    assert s.getString("ConnectionType") == "acceptor"
    assert s.getString("FileStorePath") == str(state / "store")
    for initiator_only in ("SocketConnectHost", "SocketConnectPort", "ReconnectInterval"):
        assert not _has(s, initiator_only), initiator_only


def test_initiator_settings(tmp_path: Path) -> None:
    settings = build_settings([LIT1, LIT2], str(tmp_path / "venues"))
    assert settings.size() == 2
    assert settings.get().getString("ConnectionType") == "initiator"

    s1 = settings.get(session_id(LIT1))
    assert s1.getString("SocketConnectHost") == "10.1.2.3"
    assert s1.getString("SocketConnectPort") == "9881"
    assert s1.getString("ReconnectInterval") == "3"
    assert s1.getString("HeartBtInt") == "20"
    assert s1.getString("TargetCompID") == "LIT1"
    assert s1.getString("ConnectionType") == "initiator"
    assert not _has(s1, "SocketAcceptPort")

    s2 = settings.get(session_id(LIT2))
    assert s2.getString("SocketConnectHost") == "127.0.0.1"
    assert s2.getString("SocketConnectPort") == "9882"
    assert s2.getString("ReconnectInterval") == "1"
    assert s2.getString("HeartBtInt") == "30"

    keys = {session_key(sid) for sid in settings.getSessions()}
    assert keys == {"FIX.4.4:SOR->LIT1", "FIX.4.4:SOR->LIT2"}


def test_message_logs_only_when_asked(tmp_path: Path) -> None:
    settings = build_settings([OMS], tmp_path, log_messages=True)
    assert settings.get().getString("FileLogPath") == str(tmp_path / "log")
    assert settings.get(session_id(OMS)).getString("FileLogPath") == str(tmp_path / "log")


def test_existing_state_dir_is_fine(tmp_path: Path) -> None:
    build_settings([OMS], tmp_path)
    build_settings([OMS], tmp_path)


def test_settings_are_usable_by_a_store_factory(tmp_path: Path) -> None:
    settings = build_settings([LIT1], tmp_path)
    fix.FileStoreFactory(settings)


def test_mixing_roles_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either acceptors or initiators"):
        build_settings([OMS, LIT1], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()


def test_no_sessions_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_settings([], tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


def test_acceptor_restricts_logons_to_allowed_remote(tmp_path: Path) -> None:
    """quickfix 1.16 has no listen-address setting, so what the config can
    enforce is who may log on (refusal is shown end to end in
    tests/integration/test_bridge.py)."""
    spec = SessionSpec(role="acceptor", sender_comp_id="SOR", target_comp_id="OMS", port=9999,
                       allowed_remote=("127.0.0.1", "10.0.0.7"))
    settings = build_settings([spec], tmp_path)
    assert settings.get(session_id(spec)).getString("AllowedRemoteAddresses") == "127.0.0.1,10.0.0.7"
    open_spec = SessionSpec(role="acceptor", sender_comp_id="SOR", target_comp_id="OMS2", port=9998)
    assert not build_settings([open_spec], tmp_path / "b").get(session_id(open_spec)).has("AllowedRemoteAddresses")
