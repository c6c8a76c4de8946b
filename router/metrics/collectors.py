"""Collectors that read the market rings and venue statistics at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class MarketDataView(Protocol):
    """What the collector reads of router.market.rings.MarketData."""

    venues: tuple[str, ...]
    symbols: tuple[str, ...]
    lit: Any
    book_ts: Any
    bid_px: Any
    ask_px: Any


class MarketDataCollector(Collector):
    """Feed staleness and each venue's mid, read from the rings at scrape
    time: the hot path pays nothing, and a torn read of one number only
    skews one sample of a gauge."""

    def __init__(self, md: MarketDataView, tick_sizes: dict[str, float], clock_ns: Callable[[], int]) -> None:
        self._md = md
        self._ticks = tick_sizes
        self._clock_ns = clock_ns

    def collect(self) -> Iterable[Metric]:
        md = self._md
        now = self._clock_ns()
        stale = GaugeMetricFamily("sor_md_staleness_seconds", "Time since the last book update of a feed",
                                  labels=["venue", "symbol"])
        mid = GaugeMetricFamily("sor_md_mid", "Mid of a venue's book as the router sees it (0: no two-sided book)",
                                labels=["venue", "symbol"])
        for v, venue in enumerate(md.venues):
            if not md.lit[v]:
                continue
            for s, symbol in enumerate(md.symbols):
                ts = int(md.book_ts[v, s])
                stale.add_metric([venue, symbol], (now - ts) / 1e9 if ts else float("inf"))
                bid, ask = int(md.bid_px[v, s, 0]), int(md.ask_px[v, s, 0])
                both = bid > 0 and ask > 0
                mid.add_metric([venue, symbol], (bid + ask) / 2 * self._ticks[symbol] if both else 0.0)
        yield stale
        yield mid


class VenueStatsView(Protocol):
    venues: tuple[str, ...]
    n_buckets: int

    def fill_rate(self, v: int, bucket: int, now_ns: int) -> float: ...

    def markout_bps(self, v: int, horizon_index: int, now_ns: int) -> float: ...


class VenueStatsCollector(Collector):
    """Fill quality by venue from the router's own decayed statistics, read
    at scrape time (their priors show until a venue has history)."""

    HORIZONS = ("1s", "5s")

    def __init__(self, stats: VenueStatsView, clock_ns: Callable[[], int]) -> None:
        self._stats = stats
        self._clock_ns = clock_ns

    def collect(self) -> Iterable[Metric]:
        st = self._stats
        now = self._clock_ns()
        fill = GaugeMetricFamily("sor_venue_fill_rate",
                                 "Decayed mean over our children of filled/qty, by venue and size bucket",
                                 labels=["venue", "bucket"])
        mark = GaugeMetricFamily("sor_venue_markout_bps",
                                 "Decayed mean markout after our fills (negative = adverse selection)",
                                 labels=["venue", "horizon"])
        for v, venue in enumerate(st.venues):
            for b in range(st.n_buckets):
                fill.add_metric([venue, str(b)], st.fill_rate(v, b, now))
            for h, name in enumerate(self.HORIZONS):
                mark.add_metric([venue, name], st.markout_bps(v, h, now))
        yield fill
        yield mark


class CounterCollector(Collector):
    """A counter a component keeps as a plain int (or a dict of ints by
    label value), exported at scrape time so the hot path never calls into
    prometheus-client for it."""

    def __init__(self, name: str, documentation: str, read: Callable[[], int | Mapping[str, int]],
                 label: str | None = None) -> None:
        self._name = name
        self._doc = documentation
        self._read = read
        self._label = label

    def collect(self) -> Iterable[Metric]:
        value = self._read()
        if isinstance(value, Mapping):
            fam = CounterMetricFamily(self._name, self._doc, labels=[self._label or "kind"])
            for k, v in sorted(value.items()):
                fam.add_metric([k], float(v))
        else:
            fam = CounterMetricFamily(self._name, self._doc, value=float(value))
        yield fam


def register_component_counters(registry: CollectorRegistry, ring_dropped: Callable[[], int],
                                feature_resyncs: Callable[[], int], md_decode_errors: Callable[[], int],
                                score_failures: Mapping[str, int] | None) -> None:
    """The counters the hot-path components keep as plain ints, exported."""
    registry.register(CounterCollector(
        "sor_md_ring_dropped", "Book or trade updates the rings refused (level, side, price or size out of range)",
        ring_dropped))
    registry.register(CounterCollector(
        "sor_feature_resyncs", "Feature windows rebuilt from the rings (overrun, lost read position, time going "
        "backwards)", feature_resyncs))
    registry.register(CounterCollector(
        "sor_md_decode_errors", "Market data entries the FIX edge could not decode", md_decode_errors))
    if score_failures is not None:
        failures = score_failures
        registry.register(CounterCollector(
            "sor_model_score_failures", "Scoring runs the model failed, by reason (each order so affected is also "
            "in sor_model_fallbacks)", lambda: failures, label="reason"))
