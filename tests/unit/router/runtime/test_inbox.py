"""LoopInbox: items from other threads reach the loop in order, with one
wake-up per burst."""

from __future__ import annotations

import asyncio
import threading

from router.runtime.inbox import LoopInbox


def test_items_from_threads_arrive_in_order_with_few_wake_ups() -> None:
    loop = asyncio.new_event_loop()
    got: list[tuple[int, int]] = []
    done = asyncio.Event()
    per_thread, threads = 2000, 3

    def handle(item: tuple[int, int]) -> None:
        got.append(item)
        if len(got) == per_thread * threads:
            done.set()

    inbox: LoopInbox[tuple[int, int]] = LoopInbox(loop, handle)
    wake_ups = 0
    real = loop.call_soon_threadsafe

    def counting(*args: object, **kw: object) -> asyncio.Handle:
        nonlocal wake_ups
        wake_ups += 1
        return real(*args, **kw)  # type: ignore[arg-type]

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]

    def producer(t: int) -> None:
        for i in range(per_thread):
            inbox.put((t, i))

    async def main() -> None:
        workers = [threading.Thread(target=producer, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        await asyncio.wait_for(done.wait(), 30)
        for w in workers:
            w.join(10)

    loop.run_until_complete(main())
    loop.close()
    assert sorted(got) == [(t, i) for t in range(threads) for i in range(per_thread)], "nothing lost or doubled"
    for t in range(threads):
        assert [i for tt, i in got if tt == t] == list(range(per_thread)), "each thread's order kept"
    assert wake_ups < per_thread * threads, "bursts share a wake-up"


def test_a_full_inbox_holds_the_producer_back_and_loses_nothing() -> None:
    loop = asyncio.new_event_loop()
    got: list[int] = []
    overflowed = threading.Event()
    overflows: list[int] = []
    n, capacity = 500, 8
    done = asyncio.Event()

    def handle(i: int) -> None:
        if not got:
            # The loop is stalled (as under load) until the producer hits the bound.
            assert overflowed.wait(10)
        got.append(i)
        if len(got) == n:
            done.set()

    def on_overflow() -> None:
        overflows.append(1)
        overflowed.set()

    inbox: LoopInbox[int] = LoopInbox(loop, handle, capacity, on_overflow)
    depths: list[int] = []

    def produce() -> None:
        for i in range(n):
            inbox.put(i)
            depths.append(inbox.depth)

    async def main() -> None:
        t = threading.Thread(target=produce)
        t.start()
        await asyncio.wait_for(done.wait(), 30)
        t.join(10)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert got == list(range(n)), "in order, none dropped"
    assert overflows, "the bound was hit and counted"
    assert max(depths) <= capacity
