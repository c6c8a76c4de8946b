"""Market data on the wire: what a sim venue publishes is what the router
decodes, entry for entry, and applying it reproduces the venue's book."""

from __future__ import annotations

import quickfix as fix

from fix.codec import Ticks
from fix.mdcodec import MdDecoder, subscription_request
from router.domain.types import OrdType, Side, TimeInForce
from sim.book import LitBook
from sim.mdfeed import MdPublisher


def _capture() -> tuple[list[str], MdPublisher]:
    sent: list[str] = []
    pub = MdPublisher({"AAPL": Ticks("0.01")}, lambda m: sent.append(m.toString()), depth=5)
    return sent, pub


def _book(levels: list[tuple[Side, int, int]]) -> LitBook:
    b = LitBook()
    for i, (side, px, qty) in enumerate(levels):
        b.submit(f"o{i}", "bg", side, qty, OrdType.LIMIT, px, TimeInForce.DAY, 0)
    return b


def _apply(book: dict[int, dict[int, tuple[int, int]]], entries: tuple) -> None:
    """Reference receiver: level overwrite, delete shifts deeper levels up."""
    for e in entries:
        if e.kind == 2:
            continue
        side = book[e.kind]
        if e.action == "2":
            keys = sorted(side)
            shifted = {k - 1 if k > e.level else k: v for k, v in side.items() if k != e.level}
            side.clear()
            side.update(shifted)
            assert all(k in keys for k in side)
        else:
            side[e.level] = (e.px_ticks, e.size)


DECODER = MdDecoder({"AAPL": 0.01}, clock_ns=lambda: 7)


def test_snapshot_round_trip() -> None:
    sent, pub = _capture()
    book = _book([(Side.BUY, 18999, 300), (Side.BUY, 18998, 200), (Side.SELL, 19001, 100)])
    assert pub.subscribe("r1", ["AAPL", "NOPE"], {"AAPL": book}) == ["NOPE"]
    upd = DECODER.decode(sent[-1], "LIT1")
    assert (upd.snapshot, upd.symbol, upd.venue, upd.recv_ns) == (True, "AAPL", "LIT1", 7)
    got = [(e.kind, e.level, e.px_ticks, e.size) for e in upd.entries]
    assert got == [(0, 0, 18999, 300), (0, 1, 18998, 200), (1, 0, 19001, 100)]


def test_incremental_changes_and_deletes_rebuild_the_book() -> None:
    sent, pub = _capture()
    book = _book([(Side.BUY, 18999, 300), (Side.BUY, 18998, 200), (Side.BUY, 18997, 100),
                  (Side.SELL, 19001, 100), (Side.SELL, 19002, 100)])
    pub.subscribe("r1", ["AAPL"], {"AAPL": book})
    mirror: dict[int, dict[int, tuple[int, int]]] = {0: {}, 1: {}}
    _apply(mirror, DECODER.decode(sent[-1], "LIT1").entries)
    # A sell sweeps two bid levels: levels change and the book gets shorter.
    book.submit("agg", "x", Side.SELL, 450, OrdType.MARKET, None, TimeInForce.IOC, 1)
    pub.publish_books({"AAPL": book})
    upd = DECODER.decode(sent[-1], "LIT1")
    assert not upd.snapshot
    assert any(e.action == "2" for e in upd.entries)
    _apply(mirror, upd.entries)
    assert [mirror[0][k] for k in sorted(mirror[0])] == book.depth(Side.BUY, 5)
    assert [mirror[1][k] for k in sorted(mirror[1])] == book.depth(Side.SELL, 5)
    # Nothing changed: nothing is sent.
    n = len(sent)
    pub.publish_books({"AAPL": book})
    assert len(sent) == n


def test_trade_entry_carries_the_aggressor() -> None:
    sent, pub = _capture()
    pub.subscribe("r1", ["AAPL"], {"AAPL": LitBook()})
    pub.publish_trade("AAPL", 19001, 250, Side.SELL)
    (e,) = DECODER.decode(sent[-1], "LIT1").entries
    assert (e.kind, e.px_ticks, e.size, e.aggressor, e.symbol) == (2, 19001, 250, -1, "AAPL")


def test_reject_and_garbage_are_answers_not_exceptions() -> None:
    sent, pub = _capture()
    pub.reject("r9", "dark venue")
    assert DECODER.decode(sent[-1], "DARK1").rejected
    for px in ("abc", "nan", "NaN", "inf", "-inf"):
        raw = f"8=FIX.4.4\x0135=X\x01268=1\x01279=1\x01269=0\x0155=AAPL\x01270={px}\x01271=5\x011023=1\x01"
        bad = DECODER.decode(raw, "LIT1")
        assert bad.entries[0].level == -1, px  # marked unreadable; the router drops and counts it
    raw = "8=FIX.4.4\x0135=X\x01268=1\x01279=1\x01269=0\x0155=AAPL\x01270=190\x01271=nan\x011023=1\x01"
    assert DECODER.decode(raw, "LIT1").entries[0].level == -1


def test_subscription_request_lists_symbols_and_entry_types() -> None:
    m = subscription_request("LIT1-md-1", ["AAPL", "MSFT"], 5)
    raw = m.toString().replace("\x01", "|")
    assert "35=V" in raw and "262=LIT1-md-1" in raw and "263=1" in raw and "264=5" in raw
    assert raw.count("269=") == 3 and "55=AAPL" in raw and "55=MSFT" in raw
    assert isinstance(m, fix.Message)
