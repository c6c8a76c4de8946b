"""Shared fixtures: loopback ports and configs for tests that run real FIX."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sim.config import SimClusterConfig, load_sim_config
from sim.harness import free_port

if TYPE_CHECKING:
    from sim.pgserver import PgServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def default_config() -> SimClusterConfig:
    return load_sim_config(ROOT / "config" / "sor.toml")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for the whole run (``sim/pgserver.py``);
    skipped, saying why, only where no PostgreSQL binaries exist."""
    from sim.pgserver import NoPostgresError, PgServer

    try:
        server = PgServer()
    except NoPostgresError as e:
        pytest.skip(str(e))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the test server: its postgresql:// URL."""
    return pg_server.create_database()
