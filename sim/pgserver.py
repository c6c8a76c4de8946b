"""A throwaway PostgreSQL server for the tests and ``sor bench``: ``initdb`` into a temporary
directory, ``pg_ctl start`` on a free 127.0.0.1 port (its unix socket in
the same directory), one database per test or run, stopped and removed at
the end.

PostgreSQL refuses to run as root (``initdb`` and ``pg_ctl`` both exit
with "cannot be run as root"), so under euid 0 the server's commands run
as an unprivileged account (``postgres`` where the Debian package made one,
else ``nobody``), in a directory that account owns outside pytest's
root-only temporary tree. The test process itself connects over TCP with
``trust`` authentication as the server's superuser ``sor``.

The binaries are found on PATH or, where Debian puts them, in
``/usr/lib/postgresql/<version>/bin`` (newest version first);
``make deps-system`` installs the package when neither has them.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from sim.harness import free_port

SUPERUSER = "sor"
START_TIMEOUT_S = 60
UNPRIVILEGED = ("postgres", "nobody")
"""Accounts the server runs as when the tests run as root, first found wins."""


class NoPostgresError(Exception):
    """No PostgreSQL binaries on this machine."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        real = Path(on_path).resolve().parent
        if (real / "initdb").exists() and (real / "postgres").exists():
            return real
    def version(d: str) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in Path(d).parent.name.split("."))
        except ValueError:
            return (0,)
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all((Path(d) / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
            return Path(d)
    raise NoPostgresError("no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or in "
                     "/usr/lib/postgresql/*/bin; `make deps-system` installs Debian's postgresql package")


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise NoPostgresError(f"running as root and none of the accounts {UNPRIVILEGED} exists to run PostgreSQL as")


class PgServer:
    def __init__(self) -> None:
        self.bindir = find_bindir()
        self._user = _run_as()
        # Outside pytest's tmp tree: that is root-only (0700) under root.
        self.base = Path(tempfile.mkdtemp(prefix="sor-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = 0
        self._names = itertools.count(1)
        self._started = False
        if self._user is not None:
            os.chown(self.base, self._user.pw_uid, self._user.pw_gid)

    def _cmd(self, *args: str, timeout_s: float = START_TIMEOUT_S,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        kw: dict[str, Any] = {}
        if self._user is not None:
            kw = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "HOME": str(self.base)}
        env.pop("PGDATA", None)
        out = subprocess.run([str(self.bindir / args[0]), *args[1:]], cwd=self.base, env=env, capture_output=True,
                             text=True, timeout=timeout_s, check=False, **kw)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}\n"
                               f"{self.log.read_text() if self.log.exists() else ''}")
        return out

    def start(self) -> None:
        self._cmd("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C",
                  "--no-sync")
        # A free port can be taken between asking and binding: try a few.
        for attempt in range(3):
            self.port = free_port()
            opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} -c max_connections=50"
            out = self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t",
                            str(START_TIMEOUT_S), "start", check=attempt == 2)
            if out.returncode == 0:
                break
        self._started = True
        self._wait_ready(START_TIMEOUT_S)

    def _wait_ready(self, timeout_s: float) -> None:
        """Until a real connection works (pg_ctl -w already waited for the
        postmaster; this is the deadline-bound check from our side)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its URL."""
        name = f"{prefix}_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            if self._started:
                out = self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop", check=False)
                if out.returncode != 0:
                    self._kill()
        finally:
            self._started = False
            shutil.rmtree(self.base, ignore_errors=True)

    def _kill(self) -> None:
        # pg_ctl could not stop it in time: the postmaster's pid is the
        # first line of postmaster.pid.
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)

