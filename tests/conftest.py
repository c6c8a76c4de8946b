"""Shared fixtures: loopback ports and configs for tests that run real FIX."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.config import SimClusterConfig, load_sim_config
from sim.harness import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def default_config() -> SimClusterConfig:
    return load_sim_config(ROOT / "config" / "sor.toml")
