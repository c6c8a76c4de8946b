"""A metrics scraper in its own process, as Prometheus would be: one GET of
``/metrics`` every interval until SIGTERM, the body read and dropped.

``sor bench`` starts it for the blocks that measure what scraping costs the
daemon; it runs apart from the bench's own process because that process is
also the sim OMS, whose send stamps a scraper thread would disturb.

    python -m sim.scraper URL [INTERVAL_S]

Prints ``ready`` once started, then at exit one JSON line:
``{"scrapes": n, "errors": n, "bytes": last body size, "max_ms": slowest}``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import urllib.request


def main(argv: list[str]) -> int:
    url = argv[0]
    interval = float(argv[1]) if len(argv) > 1 else 1.0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scrapes = errors = size = 0
    max_ms = 0.0
    print("ready", flush=True)
    next_at = time.monotonic()
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                size = len(r.read())
            scrapes += 1
        except OSError:
            errors += 1
        max_ms = max(max_ms, (time.monotonic() - t0) * 1e3)
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))
    print(json.dumps({"scrapes": scrapes, "errors": errors, "bytes": size, "max_ms": round(max_ms, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
