"""Every ClOrdID an OMS session used today, in a fixed-size table.

Duplicate detection must remember every ClOrdID of the day (orders and
cancels), and a cancel for an order that finished long ago deserves "too
late to cancel", not "unknown order". Keeping the finished orders
themselves for that grows without bound (a parent, its children, their
ExecID sets: several kB each), so the engine releases them and keeps only
this: per ClOrdID, a 64-bit hash of (session, ClOrdID), the order's sequence
number (its OrderID is rebuilt from it) and its final OrdStatus, 17 bytes
in preallocated numpy arrays. Memory is fixed at start-up, so resident
memory stops growing once the table's pages are touched.

Hand-written (open addressing, linear probing) because no well-kept library
offers a compact int64 hash map for Python that is faster than a dict per
probe and this small; a dict of tuples would cost ~250 bytes an entry.

Two ClOrdIDs whose hashes collide read as one: the second is refused as a
duplicate (a safe refusal, never a lost or merged order), about once in
1e7 days at a million ClOrdIDs a day. Python's string hash is seeded per
process, which is enough: the table lives in one process and recovery
rebuilds it from the journal.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("sor.engine")

EMPTY = 0
LIVE = 1
"""Status byte of an order still in the engine's maps (look it up there)."""


class ClOrdIdTable:
    def __init__(self, capacity: int) -> None:
        size = 1
        while size < 2 * max(capacity, 8):
            size *= 2
        self._alloc(size)
        self.capacity = capacity

    def _alloc(self, size: int) -> None:
        self._mask = size - 1
        self._keys = np.zeros(size, dtype=np.int64)
        self._seqs = np.zeros(size, dtype=np.int64)
        self._status = np.zeros(size, dtype=np.uint8)
        # Scalar access through memoryviews: ~4x cheaper than numpy item access.
        self._k: memoryview[int] = self._keys.data.cast("B").cast("q")
        self._q: memoryview[int] = self._seqs.data.cast("B").cast("q")
        self._st: memoryview[int] = self._status.data.cast("B")
        self.size = 0

    @staticmethod
    def key(session: str, cl_ord_id: str) -> int:
        h = hash((session, cl_ord_id))
        return h if h != EMPTY else 1

    def _slot(self, h: int) -> int:
        k, mask = self._k, self._mask
        i = h & mask
        while True:
            x = k[i]
            if x in (h, EMPTY):
                return i
            i = (i + 1) & mask

    def __contains__(self, h: int) -> bool:
        return self._k[self._slot(h)] == h

    def get(self, h: int) -> tuple[int, int] | None:
        """(sequence number, status byte) of a ClOrdID, None if never seen."""
        i = self._slot(h)
        if self._k[i] != h:
            return None
        return self._q[i], self._st[i]

    def add(self, h: int, seq: int, status: int) -> None:
        """Record a ClOrdID, or overwrite its entry (seq 0: not an order, e.g.
        a cancel's own id)."""
        i = self._slot(h)
        if self._k[i] == h:
            self._q[i] = seq
            self._st[i] = status
        else:
            self._put(i, h, seq, status)

    def insert_new(self, h: int, seq: int, status: int) -> bool:
        """Record ``h`` unless it is already there, in one probe (the engine's
        per-order path); False when it was (a duplicate)."""
        i = self._slot(h)
        if self._k[i] == h:
            return False
        self._put(i, h, seq, status)
        return True

    def _put(self, i: int, h: int, seq: int, status: int) -> None:
        """Fill empty slot ``i`` (found for ``h``) with a new entry."""
        if 2 * (self.size + 1) > self._mask + 1:
            self._grow()
            i = self._slot(h)
        self._k[i] = h
        self._q[i] = seq
        self._st[i] = status
        self.size += 1

    def set_status(self, h: int, status: int) -> None:
        i = self._slot(h)
        if self._k[i] == h:
            self._st[i] = status

    def _grow(self) -> None:
        # Half full: probes would lengthen. A day busier than configured
        # pays one rehash here rather than failing; say so.
        keys, seqs, status = self._keys, self._seqs, self._status
        log.warning("ClOrdID table half full at %d entries (planned for %d a day): doubling it",
                    self.size, self.capacity)
        self._alloc(2 * (self._mask + 1))
        for j in np.flatnonzero(keys):
            self.add(int(keys[j]), int(seqs[j]), int(status[j]))
