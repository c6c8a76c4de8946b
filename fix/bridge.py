"""The quickfix Application that every FIX component here is built on.

quickfix calls these methods on its own socket threads. Two rules:
- a callback copies what it needs out of the ``quickfix.Message`` right away
  (the object is reused by quickfix once the callback returns) and hands a
  plain value to whoever owns the state, never the message itself;
- a callback never lets an exception escape: one escaping an admin callback
  kills the process. They are caught, logged and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import quickfix as fix

from fix.settings import session_key

log = logging.getLogger("sor.fix")

MessageHandler = Callable[[fix.Message, str], None]
SessionHandler = Callable[[str, bool], None]
ErrorHandler = Callable[[str], None]


def _ignore_error(callback: str) -> None:
    pass


class BridgeApplication(fix.Application):  # type: ignore[misc]
    """Routes quickfix callbacks to plain Python handlers, safely.

    ``on_message(msg, session_key)`` runs on the quickfix thread and must
    only decode; ``on_session(session_key, up)`` likewise.
    """

    def __init__(
        self,
        name: str,
        on_message: MessageHandler,
        on_session: SessionHandler | None = None,
        on_error: ErrorHandler = _ignore_error,
        on_admin: MessageHandler | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self._on_message = on_message
        self._on_session = on_session
        self._on_error = on_error
        self._on_admin = on_admin
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        self.sessions: dict[str, fix.SessionID] = {}
        self.logged_on: set[str] = set()
        self.last_session_event_s = time.monotonic()

    def _fail(self, callback: str, exc: BaseException) -> None:
        try:
            self._on_error(callback)
            log.exception("%s: exception in quickfix %s callback: %s", self.name, callback, exc)
        except BaseException:
            pass

    def session_id(self, key: str) -> fix.SessionID | None:
        return self.sessions.get(key)

    # -- quickfix callbacks ------------------------------------------------

    def onCreate(self, sid: fix.SessionID) -> None:  # noqa: N802 - quickfix's name
        try:
            # Keep our own copy: the argument is only valid during the call.
            own = fix.SessionID(sid.getBeginString().getValue(), sid.getSenderCompID().getValue(),
                                sid.getTargetCompID().getValue())
            with self._lock:
                self.sessions[session_key(own)] = own
        except BaseException as e:
            self._fail("onCreate", e)

    def onLogon(self, sid: fix.SessionID) -> None:  # noqa: N802
        try:
            self._session_changed(sid, True)
        except BaseException as e:
            self._fail("onLogon", e)

    def onLogout(self, sid: fix.SessionID) -> None:  # noqa: N802
        try:
            self._session_changed(sid, False)
        except BaseException as e:
            self._fail("onLogout", e)

    def _session_changed(self, sid: fix.SessionID, up: bool) -> None:
        """Logon or logout: the set of logged-on sessions, waiters woken, a
        log line (a logout only for a session that was logged on) and the
        ``on_session`` callback."""
        key = session_key(sid)
        with self._lock:
            was = key in self.logged_on
            if up:
                self.logged_on.add(key)
            else:
                self.logged_on.discard(key)
            self.last_session_event_s = time.monotonic()
            self.changed.notify_all()
        if up:
            log.info("%s: logon %s", self.name, key)
        elif was:
            log.info("%s: logout %s", self.name, key)
        if self._on_session is not None:
            self._on_session(key, up)

    def toAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:  # noqa: N802
        pass

    def fromAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:  # noqa: N802
        if self._on_admin is None:
            return
        try:
            self._on_admin(message, session_key(sid))
        except BaseException as e:
            self._fail("fromAdmin", e)

    def toApp(self, message: fix.Message, sid: fix.SessionID) -> None:  # noqa: N802
        pass

    def fromApp(self, message: fix.Message, sid: fix.SessionID) -> None:  # noqa: N802
        try:
            self._on_message(message, session_key(sid))
        except BaseException as e:
            self._fail("fromApp", e)


def send(message: fix.Message, sid: fix.SessionID) -> bool:
    """Hand a message to quickfix; False when the session is unknown.

    A message for a session that is not logged on is stored and goes out
    through the resend on the next logon, as FIX intends.
    """
    try:
        return bool(fix.Session.sendToTarget(message, sid))
    except fix.SessionNotFound:
        return False
