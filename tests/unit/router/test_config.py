"""Configuration loading and validation (router.config): the router's view of
the file. The simulator's sections and the full tree are tests/unit/sim/
test_config.py's.

Bad configs are built from the shipped default by one targeted edit each, so
every case differs from a known-good file in exactly the field under test.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from router.config import (
    Config,
    ConfigError,
    VenueConfig,
    load_config,
    parse_config,
)
from router.domain.types import VenueKind
from tests.unit.config_edits import edited, load_error

REPO = Path(__file__).resolve().parents[3]
DEFAULT = REPO / "config" / "sor.toml"
DEFAULT_TEXT = DEFAULT.read_text()


def _edit(old: str, new: str, count: int = 1) -> str:
    return edited(DEFAULT_TEXT, old, new, count)


def _error(text: str, source: str = "bad.toml") -> str:
    return load_error(parse_config, text, source)


# ------------------------------------------------------------------ good


def test_default_config_loads() -> None:
    cfg = load_config(DEFAULT)
    assert isinstance(cfg, Config)
    assert [v.name for v in cfg.venues] == ["LIT1", "LIT2", "DARK1"]
    assert [v.kind for v in cfg.venues] == [VenueKind.LIT, VenueKind.LIT, VenueKind.DARK]
    assert [s.symbol for s in cfg.symbols] == ["AAPL", "MSFT"]
    assert cfg.waterfall.venues == ["DARK1", "LIT1", "LIT2"]
    assert cfg.waterfall.final_action == "rest"
    assert cfg.waterfall.rest_venue == "LIT1"
    assert cfg.waterfall.child_ack_timeout_ms == 2000
    assert cfg.oms.port == 9870
    assert cfg.oms.allowed_remote == ["127.0.0.1"]
    # The router's view: the simulator's sections are not part of it.
    assert all(type(v) is VenueConfig for v in cfg.venues)
    assert not hasattr(cfg, "sim") and not hasattr(cfg, "scenario")
    assert cfg.venue("DARK1").last_mkt == "XDK1"
    assert cfg.symbol("MSFT").ref_price == "410.00"


def test_load_config_accepts_str_path() -> None:
    assert load_config(str(DEFAULT)) == parse_config(DEFAULT_TEXT)


def test_config_is_frozen() -> None:
    cfg = parse_config(DEFAULT_TEXT)
    with pytest.raises(AttributeError):
        cfg.oms = cfg.oms  # type: ignore[misc]


def test_lookup_helpers() -> None:
    cfg = parse_config(DEFAULT_TEXT)
    with pytest.raises(KeyError):
        cfg.venue("NOPE")
    with pytest.raises(KeyError):
        cfg.symbol("NOPE")


def test_last_mkt_defaults_to_venue_name() -> None:
    v = VenueConfig(name="X", kind=VenueKind.LIT, port=1, target_comp_id="X")
    assert v.last_mkt == "X"
    assert msgspec.structs.replace(v, mic="XMIC").last_mkt == "XMIC"


def test_simulator_sections_are_left_unread() -> None:
    # [sim], [scenario] and [venues.sim] are the simulator's to validate: the
    # router's loader leaves them out, even when they would not decode.
    edited = _edit("levels = 5", "levelz = 5")
    edited = edited.replace("[sim]\n", "[sim]\nbogus = 1\n", 1)
    edited += '\n[scenario]\nnom = "x"\n'
    assert parse_config(edited) == parse_config(DEFAULT_TEXT)


def test_cancel_variant_needs_no_rest_venue() -> None:
    cfg = parse_config(_edit('final_action = "rest"\nrest_venue = "LIT1"\n', 'final_action = "cancel"\n'))
    assert cfg.waterfall.final_action == "cancel"
    assert cfg.waterfall.rest_venue is None


def test_minimal_config_uses_defaults() -> None:
    cfg = parse_config("""
[oms]
port = 1
[[symbols]]
symbol = "X"
[[venues]]
name = "V"
kind = "lit"
port = 2
target_comp_id = "V"
[waterfall]
venues = ["V"]
final_action = "cancel"
""")
    assert cfg.symbols[0].tick_size == "0.01"
    assert cfg.symbols[0].lot_size == 1
    assert cfg.router.driver == "threaded"
    assert cfg.waterfall.child_ack_timeout_ms == 2000
    assert cfg.metrics.enabled is True
    assert cfg.oms.allowed_remote == ["127.0.0.1"]


def test_allowed_remote_accepts_ipv6_and_empty() -> None:
    cfg = parse_config(_edit('allowed_remote = ["127.0.0.1"]', 'allowed_remote = ["::1", "10.0.0.7"]'))
    assert cfg.oms.allowed_remote == ["::1", "10.0.0.7"]
    assert parse_config(_edit('allowed_remote = ["127.0.0.1"]', "allowed_remote = []")).oms.allowed_remote == []


# ------------------------------------------------------------------- bad

BAD = {
    "unknown top-level key": (_edit("[oms]", "bogus = 1\n\n[oms]"), ["bogus", "unknown field"]),
    "unknown top-level table": (_edit("[router]", "[routerz]"), ["routerz", "unknown field"]),
    "unknown key in table": (_edit('target_comp_id = "OMS"', 'target_compid = "OMS"'),
                             ["oms", "target_compid", "unknown field"]),
    "unknown key in a venue": (_edit('mic = "XLT1"', 'mik = "XLT1"'), ["venues[0]", "mik", "unknown field"]),
    "unknown key second venue": (_edit('mic = "XLT2"', 'mic = "XLT2"\nmac = 1'), ["venues[1]", "mac"]),
    "unknown table in a venue": (_edit("[venues.sim]", "[venues.simm]"), ["venues[0]", "simm", "unknown field"]),
    "wrong type port": (_edit("port = 9870", 'port = "abc"'), ["oms.port", "Expected `int`"]),
    "wrong type venue port": (_edit("port = 9882", 'port = "abc"'), ["venues[1].port", "Expected `int`"]),
    "wrong type float": (_edit("take_fee_bps = 0.30", 'take_fee_bps = "cheap"'), ["venues[0].take_fee_bps"]),
    "wrong type bool": (_edit("log_messages = false", "log_messages = 3"), ["fix.log_messages"]),
    "wrong type list": (_edit('venues = ["DARK1", "LIT1", "LIT2"]', 'venues = "DARK1"'), ["waterfall.venues"]),
    "bad enum kind": (_edit('kind = "lit"', 'kind = "grey"'), ["venues[0].kind", "grey"]),
    "bad literal final_action": (_edit('final_action = "rest"', 'final_action = "park"'),
                                 ["waterfall.final_action", "park"]),
    "bad literal driver": (_edit('driver = "threaded"', 'driver = "poll9"'), ["router.driver"]),
    "missing required venue field": (_edit('target_comp_id = "LIT1"\n', ""), ["venues[0]", "target_comp_id"]),
    "missing required oms.port": (_edit("port = 9870\n", ""), ["oms", "port", "missing required field"]),
    "missing required table": (_edit("[waterfall]", "[waterfallz]"), ["waterfall"]),
    "missing symbol name": (_edit('symbol = "MSFT"\n', ""), ["symbols[1]", "symbol"]),
    "duplicate venue name": (_edit('name = "LIT2"', 'name = "LIT1"'), ["venues[1].name", "duplicate venue", "'LIT1'"]),
    "allowed_remote not an IP": (_edit('allowed_remote = ["127.0.0.1"]', 'allowed_remote = ["127.0.0.1", "localhost"]'),
                                 ["oms.allowed_remote[1]", "localhost"]),
    "allowed_remote wrong type": (_edit('allowed_remote = ["127.0.0.1"]', 'allowed_remote = "127.0.0.1"'),
                                  ["oms.allowed_remote", "Expected `array`"]),
    "duplicate symbol": (_edit('symbol = "MSFT"', 'symbol = "AAPL"'), ["symbols[1].symbol", "duplicate", "AAPL"]),
    "waterfall venue not defined": (_edit('venues = ["DARK1", "LIT1", "LIT2"]', 'venues = ["DARK1", "LIT1", "LIT9"]'),
                                    ["waterfall.venues[2]", "LIT9"]),
    "empty waterfall": (_edit('venues = ["DARK1", "LIT1", "LIT2"]', "venues = []"), ["waterfall.venues"]),
    "rest_venue missing": (_edit('rest_venue = "LIT1"\n', ""), ["waterfall.rest_venue", "rest"]),
    "rest_venue unknown": (_edit('rest_venue = "LIT1"', 'rest_venue = "LIT7"'), ["waterfall.rest_venue", "LIT7"]),
    "off-tick ref_price": (_edit('ref_price = "190.00"', 'ref_price = "190.005"'),
                           ["symbols[0].ref_price", "190.005", "tick"]),
    "off-tick ref_price second symbol": (_edit('ref_price = "410.00"', 'ref_price = "410.001"'),
                                         ["symbols[1].ref_price"]),
    "ref_price not a number": (_edit('ref_price = "190.00"', 'ref_price = "abc"'), ["symbols[0].ref_price", "abc"]),
    "tick_size not a number": (_edit('tick_size = "0.01"', 'tick_size = "one cent"'), ["symbols[0].tick_size"]),
    "tick_size zero": (_edit('tick_size = "0.01"', 'tick_size = "0"'), ["symbols[0].tick_size", "positive"]),
    "tick_size negative": (_edit('tick_size = "0.01"', 'tick_size = "-0.01"'), ["symbols[0].tick_size"]),
    "tick_size infinite": (_edit('tick_size = "0.01"', 'tick_size = "Infinity"'), ["symbols[0].tick_size"]),
    "lot_size zero": (_edit("lot_size = 1", "lot_size = 0"), ["symbols[0].lot_size", ">= 1", "got 0"]),
    "max_order_qty negative": (_edit("max_order_qty = 100000", "max_order_qty = -5"), ["symbols[0].max_order_qty"]),
    "venue port out of range": (_edit("port = 9881", "port = 70000"), ["venues[0].port", "70000"]),
    "venue port zero": (_edit("port = 9883", "port = 0"), ["venues[2].port", "got 0"]),
    "oms port out of range": (_edit("port = 9870", "port = 65536"), ["oms.port", "65536"]),
    "oms port negative": (_edit("port = 9870", "port = -1"), ["oms.port", "-1"]),
    "ports clash": (_edit("port = 9882", "port = 9881"), ["port", "distinct"]),
    "oms port clashes with venue": (_edit("port = 9870", "port = 9883"), ["oms.port", "distinct"]),
    "ack timeout zero": (_edit("child_ack_timeout_ms = 2000", "child_ack_timeout_ms = 0"),
                         ["waterfall.child_ack_timeout_ms"]),
    "max_child_qty negative": (_edit("child_ack_timeout_ms = 2000", "child_ack_timeout_ms = 2000\nmax_child_qty = -1"),
                               ["waterfall.max_child_qty", ">= 0", "got -1"]),
    "min_child_qty above max": (_edit("child_ack_timeout_ms = 2000",
                                      "child_ack_timeout_ms = 2000\nmax_child_qty = 100\nmin_child_qty = 200"),
                                ["waterfall.min_child_qty", "max_child_qty"]),
    "spray_top_k zero": (_edit("child_ack_timeout_ms = 2000", "child_ack_timeout_ms = 2000\nspray_top_k = 0"),
                         ["waterfall.spray_top_k", "got 0"]),
    "dark_rest_ms negative": (_edit("child_ack_timeout_ms = 2000", "child_ack_timeout_ms = 2000\ndark_rest_ms = -5"),
                              ["waterfall.dark_rest_ms", "-5"]),
    "allowed_venues unknown": (_edit("child_ack_timeout_ms = 2000",
                                     'child_ack_timeout_ms = 2000\nallowed_venues = ["LIT1", "LIT8"]'),
                               ["waterfall.allowed_venues[1]", "LIT8"]),
    "model threads zero": (_edit("budget_us = 2000", "budget_us = 2000\nthreads = 0"), ["model.threads", "got 0"]),
    "model budget negative": (_edit("budget_us = 2000", "budget_us = -1"), ["model.budget_us", "got -1"]),
    "marketdata depth zero": (_edit("[model]", "[marketdata]\ndepth = 0\n\n[model]"), ["marketdata.depth", "got 0"]),
    "marketdata depth above 20": (_edit("[model]", "[marketdata]\ndepth = 21\n\n[model]"),
                                  ["marketdata.depth", "<= 20", "got 21"]),
    "marketdata capacity zero": (_edit("[model]", "[marketdata]\nbook_capacity = 0\n\n[model]"),
                                 ["marketdata.book_capacity", "got 0"]),
    "marketdata stale_ms zero": (_edit("[model]", "[marketdata]\nstale_ms = 0\n\n[model]"),
                                 ["marketdata.stale_ms", "got 0"]),
    "invalid TOML": (_edit("[oms]", "[oms"), ["not valid TOML"]),
    "invalid TOML value": (_edit("port = 9870", "port = "), ["not valid TOML"]),
    "duplicate TOML key": (_edit("port = 9870", "port = 9870\nport = 9871"), ["not valid TOML"]),
}


@pytest.mark.parametrize(("text", "needles"), list(BAD.values()), ids=list(BAD))
def test_bad_config_names_the_field(text: str, needles: list[str]) -> None:
    msg = _error(text)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_no_venues() -> None:
    text = """
[oms]
port = 1
venues = []
"""
    msg = _error(text + '[[symbols]]\nsymbol = "X"\n[waterfall]\nvenues = ["V"]\n')
    assert "oms" in msg and "venues" in msg  # venues under [oms] is an unknown field
    msg = _error('venues = []\n[oms]\nport = 1\n[[symbols]]\nsymbol = "X"\n[waterfall]\nvenues = ["V"]\n')
    assert "venues: at least one venue" in msg


def test_no_symbols() -> None:
    text = ('symbols = []\n[oms]\nport = 1\n[[venues]]\nname = "V"\nkind = "lit"\nport = 2\n'
            'target_comp_id = "V"\n[waterfall]\nvenues = ["V"]\nfinal_action = "cancel"\n')
    assert "symbols: at least one symbol" in _error(text)


def test_load_config_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(_edit('mic = "XLT1"', 'mik = "XLT1"'))
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert str(exc.value).startswith(f"{bad}: venues[0]")
    assert "mik" in str(exc.value)


def test_load_config_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as exc:
        load_config(missing)
    assert str(missing) in str(exc.value)
    assert "cannot read config" in str(exc.value)


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path)


def test_config_error_is_not_chained() -> None:
    # The CLI prints the message only; no msgspec/tomllib traceback context.
    with pytest.raises(ConfigError) as exc:
        parse_config(_edit("port = 9870", 'port = "abc"'))
    assert exc.value.__cause__ is None
    assert exc.value.__suppress_context__


OVERLOAD_BAD = {
    "inbox clear at the limit": (_edit("inbox_clear_ms = 5", "inbox_clear_ms = 20"),
                                 ["router.overload.inbox_clear_ms", "below inbox_age_ms", "hysteresis"]),
    "ack clear above the limit": (_edit("ack_clear_ms = 20", "ack_clear_ms = 60"),
                                  ["router.overload.ack_clear_ms", "below ack_ms"]),
    "min samples above the window": (_edit("ack_min_samples = 4", "ack_min_samples = 40"),
                                     ["router.overload.ack_min_samples", "ack_samples"]),
    "hold zero": (_edit("hold_ms = 100", "hold_ms = 0"), ["router.overload.hold_ms", "got 0"]),
    "unknown overload key": (_edit("hold_ms = 100", "hold_ms = 100\nhold_s = 1"), ["router.overload", "hold_s"]),
}


@pytest.mark.parametrize(("text", "needles"), list(OVERLOAD_BAD.values()), ids=list(OVERLOAD_BAD))
def test_bad_overload_config_names_the_field(text: str, needles: list[str]) -> None:
    msg = _error(text)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_the_default_file_lists_the_overload_defaults() -> None:
    from router.config import OverloadConfig

    assert load_config(DEFAULT).router.overload == OverloadConfig()
