"""Starting and stopping quickfix engines (one acceptor or initiator each).

Shutdown needs care: quickfix 1.16's ``Acceptor::stop`` can crash the
process in ``SocketServer::close`` (use after free; reproduced here in about
1 stop in 10 when the peer had logged out first, core dumps show the
acceptor thread already gone). So an acceptor is never stopped: ``stop``
logs its sessions out (which also disables them, so a reconnecting peer is
refused) and leaves the idle engine to end with the process. Initiators are
stopped for real (``Initiator::stop`` logs out itself); that path has not
crashed in any stress run. 0 crashes in 60 runs of either order this way.

The daemon and the sim venues exit with ``os._exit`` after ``stop``: the file
stores are written through on every message, so nothing is lost, and no
interpreter teardown runs while quickfix threads still exist.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import quickfix as fix

from fix.bridge import BridgeApplication
from fix.settings import SessionSpec, build_settings

log = logging.getLogger("sor.fix")

# Started engines stay referenced until stopped (acceptors: until exit), so
# no engine is destroyed while its threads may still call into Python.
_KEEP_ALIVE: list[object] = []


class Gateway:
    def __init__(self, name: str, specs: list[SessionSpec], app: BridgeApplication, state_dir: str | Path,
                 log_messages: bool = False, file_store: bool = True) -> None:
        self.name = name
        self.app = app
        self.specs = specs
        self._settings = build_settings(specs, Path(state_dir) / name, log_messages)
        self._store = fix.FileStoreFactory(self._settings) if file_store else fix.MemoryStoreFactory()
        self._log = fix.FileLogFactory(self._settings) if log_messages else None
        cls = fix.SocketAcceptor if specs[0].role == "acceptor" else fix.SocketInitiator
        if self._log is not None:
            self._engine = cls(app, self._store, self._settings, self._log)
        else:
            self._engine = cls(app, self._store, self._settings)
        self._started = False
        self._polled = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if not self._started:
                _KEEP_ALIVE.append(self)
                self._engine.start()
                self._started = True

    def poll(self) -> None:
        """One non-blocking pass over this engine's sockets on the calling
        thread (the ``poll`` driver); callbacks run inline. Never mixed with
        ``start``."""
        if not self._started:
            _KEEP_ALIVE.append(self)
            self._started = True
            self._polled = True
        self._engine.poll()

    def logout(self, reason: str = "shutting down", timeout_s: float = 5.0) -> bool:
        """Log out every session and wait until none is logged on.

        Returns False if some session was still logged on at the deadline.
        Sessions are also disabled so an initiator does not reconnect.
        """
        for sid in list(self.app.sessions.values()):
            session = fix.Session.lookupSession(sid)
            if session is not None:
                session.logout(reason)
        deadline = time.monotonic() + timeout_s
        if self._polled:
            # No quickfix thread will answer: pump the engine ourselves.
            while self.app.logged_on:
                if time.monotonic() >= deadline:
                    log.warning("%s: sessions still logged on at shutdown: %s", self.name, self.app.logged_on)
                    return False
                self._engine.poll()
            return True
        with self.app.changed:
            while self.app.logged_on:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("%s: sessions still logged on at shutdown: %s", self.name, self.app.logged_on)
                    return False
                self.app.changed.wait(left)
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
        if self.specs[0].role == "acceptor" or self._polled:
            # Polled engines have no threads to stop; acceptors must not be
            # stopped at all (see the module docstring).
            self.logout(timeout_s=timeout_s)
            return
        # Initiator::stop logs out, waits for the answer and unregisters its
        # sessions from quickfix's global registry; logging out here first
        # would disable them and leave them registered, so a new engine for
        # the same SessionID could never log on again.
        try:
            self._engine.stop()
        except Exception:
            log.exception("%s: error while stopping quickfix", self.name)
            return
        # Its threads are joined now, so it is safe to destroy; that also
        # removes its sessions from quickfix's global map, which a later
        # engine for the same SessionID needs (sendToTarget looks there).
        _KEEP_ALIVE.remove(self)
        del self._engine


def hard_exit(code: int) -> None:
    """Leave without interpreter teardown while quickfix threads exist (see
    the module docstring); logs and stdio are flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
