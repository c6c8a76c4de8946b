"""Value types shared by the router core, the FIX edge and the simulator.

Everything here is plain data: enums whose values are the FIX wire values (so
the edge converts with ``Enum(value)`` and nothing else), and frozen msgspec
structs for the events the engine consumes and the commands it emits.
Prices are integer ticks and quantities integer shares inside the core;
decimals exist only at the FIX edge.
"""

from __future__ import annotations

import enum

import msgspec


class Side(enum.Enum):
    BUY = "1"
    SELL = "2"

    @property
    def sign(self) -> int:
        """+1 for buys, -1 for sells: the direction a price move hurts."""
        return 1 if self is Side.BUY else -1


class OrdType(enum.Enum):
    MARKET = "1"
    LIMIT = "2"


class TimeInForce(enum.Enum):
    DAY = "0"
    IOC = "3"


class Urgency(enum.Enum):
    """How soon the OMS wants a parent done: custom tag SorUrgency(7003),
    whose wire values these are (the codec reads them case-insensitively).
    Absent, a parent sent with TimeInForce(59) = 3 (IOC) is HIGH, any other
    NORMAL. HIGH never rests in the dark (its pools get IOC slices only);
    LOW lets dark-first's pools rest twice as long; NORMAL is the planners'
    default behaviour."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class OrdStatus(enum.Enum):
    """FIX OrdStatus(39) values; also the states of both order machines."""

    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    CANCELED = "4"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    PENDING_NEW = "A"
    EXPIRED = "C"
    PENDING_REPLACE = "E"


class ExecType(enum.Enum):
    NEW = "0"
    CANCELED = "4"
    REPLACED = "5"
    PENDING_REPLACE = "E"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    TRADE = "F"
    EXPIRED = "C"
    ORDER_STATUS = "I"
    """The answer to an OrderStatusRequest (35=H): the venue's own view of
    the order (OrdStatus, CumQty, AvgPx), no execution of its own."""


class VenueKind(enum.Enum):
    LIT = "lit"
    DARK = "dark"


class Msg(msgspec.Struct, frozen=True, kw_only=True):
    pass


class Instrument(Msg, frozen=True, kw_only=True):
    """What the FIX edge needs to turn wire decimals into ticks and lots."""

    symbol: str
    tick_size: str
    lot_size: int
    max_order_qty: int


# OrdRejReason(103) values used by the router (FIX 4.4).
class OrdRejReason(enum.IntEnum):
    BROKER_OPTION = 0
    UNKNOWN_SYMBOL = 1
    EXCHANGE_CLOSED = 2
    ORDER_EXCEEDS_LIMIT = 3
    DUPLICATE_ORDER = 6
    UNSUPPORTED_ORDER_CHARACTERISTIC = 11
    INCORRECT_QUANTITY = 13
    INVALID_PRICE_INCREMENT = 18
    OTHER = 99


# CxlRejReason(102) values (FIX 4.4).
class CxlRejReason(enum.IntEnum):
    TOO_LATE_TO_CANCEL = 0
    UNKNOWN_ORDER = 1
    ALREADY_PENDING = 3
    DUPLICATE_CLORDID = 6
    OTHER = 99


TERMINAL_STATUSES = frozenset({OrdStatus.FILLED, OrdStatus.CANCELED, OrdStatus.REJECTED, OrdStatus.EXPIRED})
