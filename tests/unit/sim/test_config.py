"""The simulator's configuration (sim.config): its sections of the one file,
the full tree built on the router's, its loader and the TOML writer.

Bad configs are built from a shipped file by one targeted edit each, as in
tests/unit/router/test_config.py (the router's view of the same files).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from router.config import Config, ConfigError, SymbolConfig, VenueConfig, parse_config, router_sections
from sim.config import (
    SimClusterConfig,
    SimVenueConfig,
    dump_config,
    load_sim_config,
    parse_sim_config,
)
from sim.report import MORE_SCENARIOS, SCENARIO_DIR, SCENARIOS
from tests.unit.config_edits import edited, load_error

REPO = Path(__file__).resolve().parents[3]
DEFAULT = REPO / "config" / "sor.toml"
DEFAULT_TEXT = DEFAULT.read_text()
REGIME_TEXT = (SCENARIO_DIR / "regime.toml").read_text()


def _edit(old: str, new: str, text: str = DEFAULT_TEXT) -> str:
    return edited(text, old, new)


def _error(text: str, source: str = "bad.toml") -> str:
    return load_error(parse_sim_config, text, source)


# ------------------------------------------------------------------ good


def test_default_config_loads_the_full_tree() -> None:
    cfg = load_sim_config(DEFAULT)
    assert isinstance(cfg, SimClusterConfig) and isinstance(cfg, Config)
    assert all(type(v) is SimVenueConfig for v in cfg.venues)
    assert isinstance(cfg.venue("LIT1"), VenueConfig)
    assert cfg.venue("LIT1").sim.taker_rate_hz == 20.0
    assert cfg.venue("LIT2").sim.seed == 2
    assert cfg.venue("DARK1").sim.levels == 5  # default for a key the file leaves out
    assert cfg.sim.mid_vol_ticks == 0.6
    assert cfg.scenario is None


@pytest.mark.parametrize("name", SCENARIOS + MORE_SCENARIOS)
def test_shipped_scenarios_load(name: str) -> None:
    cfg = load_sim_config(SCENARIO_DIR / f"{name}.toml")
    assert cfg.scenario is not None and cfg.scenario.name == name


def test_the_router_reads_the_same_file_without_the_simulator_sections() -> None:
    full = parse_sim_config(DEFAULT_TEXT)
    router = parse_config(DEFAULT_TEXT)
    assert router_sections(msgspec.to_builtins(full)) == msgspec.to_builtins(router)


def test_load_sim_config_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(_edit("levels = 5", "levelz = 5"))
    with pytest.raises(ConfigError) as exc:
        load_sim_config(bad)
    assert str(exc.value).startswith(f"{bad}: venues[0].sim")
    assert "levelz" in str(exc.value)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_sim_config(tmp_path / "missing.toml")


# ------------------------------------------------------------ TOML writer


def test_dump_parse_round_trip_default() -> None:
    cfg = parse_sim_config(DEFAULT_TEXT)
    text = dump_config(cfg)
    again = parse_sim_config(text, "dumped")
    assert again == cfg
    assert dump_config(again) == text


def test_dump_round_trip_scenario() -> None:
    cfg = parse_sim_config(REGIME_TEXT)
    assert cfg.scenario is not None and cfg.scenario.regimes
    again = parse_sim_config(dump_config(cfg), "dumped")
    assert again == cfg
    # Regime fields left unset (None) are left out: TOML has no null.
    assert again.scenario is not None and again.scenario.regimes[0].level_size_mean is None


def test_dumped_full_tree_is_what_the_daemon_reads() -> None:
    # The harness writes one file for the daemon and the sim venues.
    cfg = parse_sim_config(REGIME_TEXT)
    assert parse_config(dump_config(cfg), "dumped") == parse_config(REGIME_TEXT)


def test_dump_parse_round_trip_non_defaults() -> None:
    cfg = parse_sim_config(DEFAULT_TEXT)
    cfg = msgspec.structs.replace(
        cfg,
        waterfall=msgspec.structs.replace(cfg.waterfall, final_action="cancel", rest_venue=None),
        fix=msgspec.structs.replace(cfg.fix, state_dir='C:\\fix "state"', log_messages=True, file_store=False),
        symbols=[*cfg.symbols, SymbolConfig(symbol="BRK.A", tick_size="0.05", lot_size=10, ref_price="600000.05")],
    )
    again = parse_sim_config(dump_config(cfg), "dumped")
    assert again == cfg
    assert again.waterfall.rest_venue is None
    assert again.fix.state_dir == 'C:\\fix "state"'


@pytest.mark.parametrize("value", ["var/fix\nx", "tab\there", "bell\x07", "\x1b[0m", "caf\u00e9 \u2028 \U0001f600",
                                   'quote " and back\\slash', "", "a\x7fb"])
def test_dump_round_trip_strings_needing_escapes(value: str) -> None:
    cfg = parse_sim_config(DEFAULT_TEXT)
    cfg = msgspec.structs.replace(cfg, fix=msgspec.structs.replace(cfg.fix, state_dir=value))
    assert parse_sim_config(dump_config(cfg)).fix.state_dir == value


def test_dump_router_only_config() -> None:
    cfg = parse_config(DEFAULT_TEXT)
    assert parse_config(dump_config(cfg)) == cfg


# ------------------------------------------------------------------- bad

BAD = {
    "unknown nested key": (_edit("levels = 5", "levelz = 5"), ["venues[0].sim", "levelz", "unknown field"]),
    "unknown key second venue": (_edit("seed = 2", "sed = 2"), ["venues[1].sim", "sed"]),
    "wrong type float": (_edit("taker_rate_hz = 20.0", 'taker_rate_hz = "fast"'), ["venues[0].sim.taker_rate_hz"]),
    "unknown key in [sim]": (_edit("mid_step_ms = 100", "mid_step_msx = 100"), ["sim", "mid_step_msx"]),
    "negative leak": (_edit("contra_prob = 0.4", "contra_prob = 0.4\nleak_ticks = -1"),
                      ["venues[2].sim.leak_ticks", ">= 0", "got -1"]),
    "contra_prob above 1": (_edit("contra_prob = 0.4", "contra_prob = 1.5"), ["venues[2].sim.contra_prob", "1.5"]),
    # The router's sections are checked here too.
    "router typo": (_edit('mic = "XLT1"', 'mik = "XLT1"'), ["venues[0]", "mik", "unknown field"]),
    "router cross-field check": (_edit('name = "LIT2"', 'name = "LIT1"'), ["venues[1].name", "duplicate venue"]),
    "unknown key in [scenario]": (_edit("impact_half_life_ms = 500", "impact_half_life = 500", REGIME_TEXT),
                                  ["scenario", "impact_half_life", "unknown field"]),
    "flow qty_min above qty_max": (_edit("qty_min = 500", "qty_min = 5000", REGIME_TEXT),
                                   ["scenario.flow.qty_min", "5000", "qty_max"]),
    "flow qty_min zero": (_edit("qty_min = 500", "qty_min = 0", REGIME_TEXT), ["scenario.flow.qty_min", "got 0"]),
    "flow negative parents": (_edit("parents = 500", "parents = -1", REGIME_TEXT), ["scenario.flow.parents", "-1"]),
    "flow interval zero": (_edit("interval_ms = 200.0", "interval_ms = 0.0", REGIME_TEXT),
                           ["scenario.flow.interval_ms", "> 0", "got 0.0"]),
    "flow buy_prob above 1": (_edit("qty_min = 500", "qty_min = 500\nbuy_prob = 2.0", REGIME_TEXT),
                              ["scenario.flow.buy_prob", "<= 1", "got 2.0"]),
    "flow urgency shares above 1": (_edit("qty_min = 500", "qty_min = 500\nlow_prob = 0.6\nhigh_prob = 0.5",
                                          REGIME_TEXT), ["scenario.flow.high_prob", "low_prob + high_prob", "above 1"]),
    "regime unknown venue": (_edit('venue = "LIT2"', 'venue = "LIT9"', REGIME_TEXT),
                             ["scenario.regimes[1].venue", "LIT9"]),
    "regime negative time": (_edit("at_s = 50.0", "at_s = -1.0", REGIME_TEXT), ["scenario.regimes[0].at_s", "-1.0"]),
    "regime negative leak": (_edit("leak_ticks = 2", "leak_ticks = -2", REGIME_TEXT),
                             ["scenario.regimes[0].leak_ticks", "-2"]),
    "regime unknown key": (_edit("leak_ticks = 2", "leak_tick = 2", REGIME_TEXT), ["scenario.regimes[0]", "leak_tick"]),
}


@pytest.mark.parametrize(("text", "needles"), list(BAD.values()), ids=list(BAD))
def test_bad_config_names_the_field(text: str, needles: list[str]) -> None:
    msg = _error(text)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
