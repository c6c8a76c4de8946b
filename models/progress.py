"""A tiny text progress bar for long training and data-generation runs.

``Progress(total, label)`` writes to stderr. On a terminal it redraws one
line in place (at most ten times a second) with done/total, percent, rate
and ETA; anywhere else (a log file, CI, a pipe) it stays quiet until
``close()``, which prints one final summary line. No dependencies; the
clock is injectable so tests need not sleep.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

__all__ = ["Progress", "format_count", "format_duration"]

_BAR_WIDTH = 24
_REDRAW_S = 0.1


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``; hours when needed; ``"?"`` when unknown."""
    if seconds != seconds or seconds < 0 or seconds == float("inf"):  # NaN, negative or infinite
        return "?"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def format_count(x: float) -> str:
    """Short human count: ``950``, ``12.3k``, ``4.10M``."""
    ax = abs(x)
    if ax >= 1e9:
        return f"{x / 1e9:.2f}G"
    if ax >= 1e6:
        return f"{x / 1e6:.2f}M"
    if ax >= 1e4:
        return f"{x / 1e3:.1f}k"
    if ax >= 100 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.1f}"


class Progress:
    """``with Progress(n, "train") as p: ... p.update(k)``.

    ``update(n, note=...)`` adds ``n`` to the done count; ``note`` is a short
    free text shown after the bar (e.g. the current validation loss).
    ``enabled=False`` silences it completely (the final line too).
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        unit: str = "it",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.unit = unit
        self.done = 0
        self.note = ""
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._clock = clock
        self._start = clock()
        self._last_draw = float("-inf")
        self._closed = False
        isatty = getattr(self._stream, "isatty", None)
        self._tty = bool(isatty()) if callable(isatty) else False
        self._width = 0  # length of the last line drawn, to blank leftovers

    # ------------------------------------------------------------------ api
    def update(self, n: int = 1, *, note: str | None = None) -> None:
        if self._closed:
            return
        self.done += n
        if note is not None:
            self.note = note
        if not (self._enabled and self._tty):
            return
        now = self._clock()
        if now - self._last_draw >= _REDRAW_S or self.done >= self.total:
            self._last_draw = now
            self._draw(self.line(now))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._enabled:
            return
        text = self.final_line(self._clock())
        if self._tty:
            pad = " " * max(self._width - len(text), 0)
            self._stream.write(f"\r{text}{pad}\n")
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ rendering
    def line(self, now: float) -> str:
        """The in-place line: ``label [#####-----] 120/500 24.0% 1.2k it/s ETA 0:03 note``."""
        elapsed = max(now - self._start, 0.0)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        frac = min(self.done / self.total, 1.0) if self.total else 1.0
        fill = round(frac * _BAR_WIDTH)
        bar = "#" * fill + "-" * (_BAR_WIDTH - fill)
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        parts = [
            f"{self.label} [{bar}]" if self.label else f"[{bar}]",
            f"{self.done}/{self.total}",
            f"{100.0 * frac:5.1f}%",
            f"{format_count(rate)} {self.unit}/s",
            f"ETA {format_duration(max(eta, 0.0)) if eta == eta else '?'}",
        ]
        if self.note:
            parts.append(self.note)
        return " ".join(parts)

    def final_line(self, now: float) -> str:
        """``label: 500/500 (100.0%) in 0:04, 125 it/s note``."""
        elapsed = max(now - self._start, 0.0)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        head = f"{self.label}: " if self.label else ""
        text = (
            f"{head}{self.done}/{self.total} ({pct:.1f}%) in {format_duration(elapsed)}, "
            f"{format_count(rate)} {self.unit}/s"
        )
        return f"{text} {self.note}" if self.note else text

    def _draw(self, text: str) -> None:
        pad = " " * max(self._width - len(text), 0)
        self._width = len(text)
        self._stream.write(f"\r{text}{pad}")
        self._stream.flush()
