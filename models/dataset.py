"""Training rows for the venue models: one row per child order sent.

A row is the feature vector the router saw for that venue when it planned the
child (``router.features``, the same code as in serving) and what became of
the child:

* ``fill_frac``: filled qty / child qty, in [0, 1];
* ``cost_bps``: side-signed cost per FILLED share against the arrival mid,
  fees included (positive = paid); NaN when nothing filled;
* ``markout_bps``: side-signed 1 s markout of its fills (negative = adverse);
  NaN when nothing filled (or when the markout horizon was never reached);
* ``has_fill``: ``fill_frac > 0``;
* ``group``: the routing decision (parent order / waterfall step) the child
  belongs to. Rows of one decision share the market and order columns, so the
  train/validation split is by group, never by row;
* ``venue`` and ``scenario``: names, for summaries and per-venue analysis.

Saved as ``.npz`` (no pickles) with the feature names; ``load`` refuses a file
built with another feature list, since its columns would mean other things.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from router.features.catalogue import FEATURE_NAMES, N_FEATURES, FeatureMismatchError, check_feature_names

__all__ = ["FORMAT_VERSION", "Dataset", "split_by_group"]

FORMAT_VERSION = 1

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
Str = npt.NDArray[np.str_]

_ARRAYS = ("X", "cost_bps", "fill_frac", "markout_bps", "has_fill", "group", "venue", "scenario")


def _as_str_array(a: Any, n: int, name: str) -> Str:
    arr = np.asarray(a)
    if arr.ndim == 0:  # one name for every row
        arr = np.full(n, str(arr))
    if arr.dtype.kind != "U":
        arr = arr.astype(str)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
    return np.ascontiguousarray(arr)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Column arrays of equal length ``n``; validated and made contiguous on construction."""

    X: F32
    cost_bps: F32
    fill_frac: F32
    markout_bps: F32
    has_fill: Bool
    group: I64
    venue: Str
    scenario: Str

    def __post_init__(self) -> None:
        x = np.ascontiguousarray(self.X, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"X: expected shape (n, {N_FEATURES}), got {x.shape}")
        n = x.shape[0]
        if not np.isfinite(x).all():
            bad = sorted({FEATURE_NAMES[j] for j in np.nonzero(~np.isfinite(x))[1]})
            raise ValueError(f"X has non-finite values in {bad}: features must always be finite")
        cols: dict[str, Any] = {"X": x}
        for name, dtype in (
            ("cost_bps", np.float32),
            ("fill_frac", np.float32),
            ("markout_bps", np.float32),
            ("has_fill", np.bool_),
            ("group", np.int64),
        ):
            arr = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            if arr.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
            cols[name] = arr
        cols["venue"] = _as_str_array(self.venue, n, "venue")
        cols["scenario"] = _as_str_array(self.scenario, n, "scenario")

        ff = cols["fill_frac"]
        if not (np.isfinite(ff).all() and (ff >= 0).all() and (ff <= 1).all()):
            raise ValueError("fill_frac must be finite and within [0, 1]")
        hf = cols["has_fill"]
        if not np.array_equal(hf, ff > 0):
            k = int(np.count_nonzero(hf != (ff > 0)))
            raise ValueError(f"has_fill must equal fill_frac > 0 ({k} rows disagree)")
        if np.isfinite(cols["cost_bps"][~hf]).any():
            raise ValueError("cost_bps must be NaN on rows without a fill")
        if np.isfinite(cols["markout_bps"][~hf]).any():
            raise ValueError("markout_bps must be NaN on rows without a fill")
        for name, value in cols.items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_groups(self) -> int:
        return int(np.unique(self.group).size)

    @property
    def cost_mask(self) -> Bool:
        """Rows whose cost is a training target: filled, with a finite cost."""
        return self.has_fill & np.isfinite(self.cost_bps)

    @property
    def markout_mask(self) -> Bool:
        """Rows whose markout is a training target: filled, with a finite markout."""
        return self.has_fill & np.isfinite(self.markout_bps)

    def take(self, index: npt.ArrayLike) -> Dataset:
        """Rows selected by an integer index or a boolean mask."""
        idx = np.asarray(index)
        return Dataset(**{name: getattr(self, name)[idx] for name in _ARRAYS})

    @classmethod
    def empty(cls) -> Dataset:
        return cls(
            X=np.zeros((0, N_FEATURES), np.float32),
            cost_bps=np.zeros(0, np.float32),
            fill_frac=np.zeros(0, np.float32),
            markout_bps=np.zeros(0, np.float32),
            has_fill=np.zeros(0, np.bool_),
            group=np.zeros(0, np.int64),
            venue=np.zeros(0, "U1"),
            scenario=np.zeros(0, "U1"),
        )

    @classmethod
    def concat(cls, parts: Sequence[Dataset], *, disjoint_groups: bool = True) -> Dataset:
        """Stack datasets row-wise.

        With ``disjoint_groups`` (the default) each part's group ids are
        shifted past the previous parts', since separate simulation runs each
        number their decisions from 0 and their rows must not be taken for
        one decision. Pass ``False`` when the parts are chunks of one run
        that share an id space.
        """
        if not parts:
            raise ValueError("concat needs at least one dataset")
        groups: list[I64] = []
        offset = 0
        for p in parts:
            if disjoint_groups and len(p):
                g = p.group - int(p.group.min()) + offset
                offset = int(g.max()) + 1
                groups.append(g)
            else:
                groups.append(p.group)
        return cls(
            X=np.concatenate([p.X for p in parts]),
            cost_bps=np.concatenate([p.cost_bps for p in parts]),
            fill_frac=np.concatenate([p.fill_frac for p in parts]),
            markout_bps=np.concatenate([p.markout_bps for p in parts]),
            has_fill=np.concatenate([p.has_fill for p in parts]),
            group=np.concatenate(groups),
            venue=np.concatenate([p.venue for p in parts]),
            scenario=np.concatenate([p.scenario for p in parts]),
        )

    # ------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        """JSON-ready description for the model manifest."""

        def mean_or_none(a: npt.NDArray[Any]) -> float | None:
            if a.size == 0:
                return None
            v = float(np.mean(a, dtype=np.float64))
            return v if math.isfinite(v) else None

        def counts(a: Str) -> dict[str, int]:
            names, k = np.unique(a, return_counts=True)
            return {str(nm): int(c) for nm, c in zip(names, k)}

        return {
            "rows": len(self),
            "decisions": self.n_groups,
            "filled_rows": int(np.count_nonzero(self.has_fill)),
            "fill_rate": mean_or_none(self.has_fill),
            "mean_fill_frac": mean_or_none(self.fill_frac),
            "mean_cost_bps": mean_or_none(self.cost_bps[self.cost_mask]),
            "mean_markout_bps": mean_or_none(self.markout_bps[self.markout_mask]),
            "venues": counts(self.venue),
            "scenarios": counts(self.scenario),
        }

    # ------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a compressed ``.npz`` (atomically: temp file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                format_version=np.int64(FORMAT_VERSION),
                feature_names=np.array(FEATURE_NAMES),
                **{name: getattr(self, name) for name in _ARRAYS},
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dataset:
        """Read a file written by ``save``; refuses another feature list."""
        with np.load(Path(path), allow_pickle=False) as z:
            if "feature_names" not in z.files:
                raise FeatureMismatchError(f"{path}: no feature_names stored; not a SOR training dataset")
            check_feature_names([str(s) for s in z["feature_names"]], "dataset", str(path),
                                "Build it again: regenerate the dataset with the current router.features.")
            version = int(z["format_version"]) if "format_version" in z.files else -1
            if version != FORMAT_VERSION:
                raise ValueError(f"{path}: dataset format {version}, this build reads {FORMAT_VERSION}")
            missing = [name for name in _ARRAYS if name not in z.files]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}")
            return cls(**{name: z[name] for name in _ARRAYS})


def split_by_group(ds: Dataset, fraction: float, *, seed: int = 0) -> tuple[Dataset, Dataset]:
    """``(rest, held_out)`` with about ``fraction`` of the groups held out.

    Whole groups go to one side, so no decision straddles the split. With at
    least two groups each side gets at least one; deterministic for a seed.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    groups = np.unique(ds.group)
    n_groups = groups.size
    k = round(fraction * n_groups)
    if fraction > 0 and n_groups >= 2:
        k = min(max(k, 1), n_groups - 1)
    rng = np.random.default_rng(seed)
    held = rng.permutation(groups)[:k]
    mask = np.isin(ds.group, held)
    return ds.take(~mask), ds.take(mask)
