"""The /metrics text exposition, formatted in steps on the engine's thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import Metric


class _OneFamily:
    """A registry of one already collected family, for ``generate_latest``."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return (self.family,)


class _Scrape:
    """One wanted exposition: set ``done`` once ``body`` is there (None: failed)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.body: bytes | None = None


class StepwiseExposition:
    """The text exposition of a registry, formatted in small steps by the
    thread that owns the engine.

    A scrape formats ~330 samples, about 3 ms of Python, and whichever
    thread does it holds the GIL meanwhile. On prometheus-client's HTTP
    thread that stalls the engine in 0.5 ms slices for the whole scrape
    (p99 tick-to-route 1.8 -> 3.4 ms with a 1 Hz scraper, see README,
    Benchmark). Here the HTTP thread only asks and waits, GIL released;
    the engine's thread calls ``step`` when it has nothing else to do, and
    each step formats one metric family (tens of us). If nothing steps for
    ``timeout_s`` (a wedged engine), the HTTP thread formats the scrape
    itself, so metrics stay readable when they are needed most.
    """

    def __init__(self, registry: CollectorRegistry, timeout_s: float = 1.0,
                 wake: Callable[[], None] | None = None, on_fallback: Callable[[], None] | None = None) -> None:
        self.registry = registry
        self.on_fallback = on_fallback
        self.timeout_s = timeout_s
        self.wake = wake
        """Called on the HTTP thread when a scrape is wanted (the threaded
        driver schedules steps on the loop with it)."""
        self._lock = threading.Lock()
        self._scrape: _Scrape | None = None
        self._families: Iterator[Metric] | None = None
        self._parts: list[bytes] = []
        self.fallbacks = 0
        """Scrapes the HTTP thread formatted itself (nothing stepped in time, or a step failed)."""
        self._server: ThreadingHTTPServer | None = None

    @property
    def wanted(self) -> bool:
        return self._scrape is not None

    def request(self) -> bytes:
        """HTTP thread: the exposition, formatted by ``step`` (or here, on timeout)."""
        with self._lock:
            scrape = self._scrape
            if scrape is None:
                scrape = self._scrape = _Scrape()
        if self.wake is not None:
            self.wake()
        if scrape.done.wait(self.timeout_s) and scrape.body is not None:
            return scrape.body
        self.fallbacks += 1
        if self.on_fallback is not None:
            self.on_fallback()
        return generate_latest(self.registry)

    def step(self) -> bool:
        """Engine thread: format one family of a wanted scrape; True while
        there is more to do."""
        scrape = self._scrape
        if scrape is None:
            return False
        try:
            if self._families is None:
                self._families = iter(self.registry.collect())
                self._parts = []
            family = next(self._families, None)
            if family is not None:
                self._parts.append(generate_latest(_OneFamily(family)))
                return True
            body: bytes | None = b"".join(self._parts)
        except Exception:
            self._finish(scrape, None)  # the waiting scrape formats it itself
            raise
        self._finish(scrape, body)
        return False

    def _finish(self, scrape: _Scrape, body: bytes | None) -> None:
        self._families = None
        self._parts = []
        scrape.body = body
        with self._lock:
            self._scrape = None
        scrape.done.set()

    def serve(self, host: str, port: int) -> None:
        exposition = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = exposition.request()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
