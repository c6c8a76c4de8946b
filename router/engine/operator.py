"""What the operator has put in force on the engine: kill switches by scope,
venues taken out of routing, and the record of each operator action.

Plain state, owned by ``Engine`` (changed only by ``KillSwitchEngaged``,
``KillSwitchReleased`` and ``VenueEnableChanged``, on the engine's thread),
so a replay or a restore from the journal rebuilds it as it was: a kill
switch stays in force across a restart until an operator releases it.
"""

from __future__ import annotations

from collections import deque

import msgspec

from router.domain.events import KillScope

ACTIONS_KEPT = 200
"""Operator actions remembered for the admin API's status (the journal keeps them all)."""


class Halt(msgspec.Struct, frozen=True, kw_only=True):
    """A kill switch in force."""

    scope_kind: KillScope
    scope: str
    who: str
    reason: str
    since_ns: int

    @property
    def name(self) -> str:
        return scope_name(self.scope_kind, self.scope)

    def describe(self) -> str:
        """How a reject or a cancel report names it."""
        why = f": {self.reason}" if self.reason else ""
        return f"kill switch ({self.name}) by {self.who}{why}"


class VenueOff(msgspec.Struct, frozen=True, kw_only=True):
    """A venue an operator took out of routing."""

    venue: str
    who: str
    reason: str
    since_ns: int


class OperatorAction(msgspec.Struct, frozen=True, kw_only=True):
    """What one operator event did, as the admin API answers it."""

    ts_ns: int
    who: str
    action: str
    """kill, resume, venue_disable, venue_enable"""
    scope: str
    ok: bool
    text: str
    parents_canceled: int = 0
    child_cancels_sent: int = 0


def scope_name(kind: str, scope: str) -> str:
    return "all" if kind == "all" else f"{kind} {scope}"


class Controls:
    def __init__(self) -> None:
        self.kills: dict[tuple[str, str], Halt] = {}
        self.disabled: dict[str, VenueOff] = {}
        self.actions: deque[OperatorAction] = deque(maxlen=ACTIONS_KEPT)
        self.seq = 0
        """Operator actions applied so far (``actions[-1]`` is number ``seq``)."""

    def record(self, action: OperatorAction) -> OperatorAction:
        self.actions.append(action)
        self.seq += 1
        return action

    def blocking(self, symbol: str, session: str) -> Halt | None:
        """The kill switch that refuses a new parent of ``session`` in
        ``symbol``, if any (venue kills refuse venues, not parents)."""
        k = self.kills
        return k.get(("all", "")) or k.get(("symbol", symbol)) or k.get(("session", session))

    def blocked_venues(self) -> set[str]:
        """Venues no new child may go to: disabled, or under a venue kill."""
        out = set(self.disabled)
        out.update(scope for kind, scope in self.kills if kind == "venue")
        return out

    def counts(self) -> dict[str, int]:
        """Kill switches in force by scope kind."""
        out = {"all": 0, "symbol": 0, "session": 0, "venue": 0}
        for kind, _ in self.kills:
            out[kind] += 1
        return out
