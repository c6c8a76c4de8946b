"""The progress bar of long training and data-generation runs, on tqdm.

``Progress(total, label)`` writes to stderr. On a terminal it is tqdm's live
bar (done/total, percent, rate, ETA, redrawn at most ten times a second);
anywhere else (a log file, CI, a pipe) it stays quiet until ``close()``,
which prints one final summary line: a log gets the outcome, not hundreds of
carriage-return redraws. This wrapper is the one place that makes that
choice, so every bar of the training pipeline behaves the same.
"""

from __future__ import annotations

import math
import sys
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

__all__ = ["Progress"]

_REDRAW_S = 0.1
_SUMMARY = "{desc}{n_fmt}/{total_fmt} ({percentage:.1f}%) in {elapsed}, {rate_fmt}{postfix}"
"""The closing line off a terminal, e.g. ``train: 500/500 (100.0%) in 00:04, 125.00rows/s``."""
_SCALE_FROM = 10_000
"""Counts this large read better as ``1.20M`` than as seven digits; small ones stay exact."""


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


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
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._label = label
        self._live = _isatty(self._stream)
        total = max(int(total), 0)
        # Off a terminal tqdm still counts and times, but an infinite delay
        # keeps it from ever drawing; close() prints the summary from its figures.
        self._bar = tqdm(
            total=total,
            desc=label or None,
            unit=unit,
            unit_scale=total >= _SCALE_FROM,
            file=self._stream,
            disable=not enabled,
            leave=True,
            mininterval=_REDRAW_S if self._live else math.inf,
            delay=0.0 if self._live else math.inf,
        )
        self._closed = False

    def update(self, n: int = 1, *, note: str | None = None) -> None:
        if self._closed:
            return
        if note is not None:
            self._bar.set_postfix_str(note, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        summary = None
        if not self._bar.disable and not self._live:
            figures = dict(self._bar.format_dict)
            figures.update(bar_format=_SUMMARY, prefix=f"{self._label}: " if self._label else "")
            summary = tqdm.format_meter(**figures)
        self._bar.close()
        if summary is not None:
            self._stream.write(summary + "\n")
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
