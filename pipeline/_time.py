"""The time coordinate of a recording: seconds from its first sample, computed, never read.

``time[i] = i / sampling_rate``. The store writes these values (so that
``xarray.open_zarr`` and other Zarr clients see the coordinate) and
:meth:`pipeline.store.Cohort.recording` indexes them with a :class:`SampleTimeIndex`, which
computes them from the rate: opening a recording reads no time value and holds none in
memory (a pandas index of a 10 h recording at 2 kHz would hold 576 MB), while label
selection works as with a pandas index (``ds.sel(time=slice(0, 1.0))``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from xarray import Variable
from xarray.core.indexing import IndexSelResult
from xarray.indexes import CoordinateTransform, CoordinateTransformIndex, Index, PandasIndex

__all__ = ["TIME_ATTRS", "SampleTimeIndex", "sample_times", "time_coordinate"]

TIME_ATTRS = {"units": "s", "long_name": "time from the recording start"}


def sample_times(start: int, stop: int, sampling_rate: float) -> np.ndarray:
    """Return the times in seconds of samples ``start .. stop - 1``: ``i / sampling_rate``.

    The one formula of the ``time`` coordinate: the writer stores it and
    :class:`SampleTimeIndex` computes it, so that both give the same float64 values.

    Returns
    -------
    numpy.ndarray of shape (stop - start,), float64
    """
    return np.arange(start, stop, dtype=np.float64) / float(sampling_rate)


class _SampleTimes(CoordinateTransform):
    """Sample position -> seconds: ``(offset + i) / sampling_rate``."""

    def __init__(self, offset: int, size: int, sampling_rate: float) -> None:
        super().__init__(["time"], {"time": int(size)}, dtype=np.dtype(np.float64))
        self.offset = int(offset)
        self.sampling_rate = float(sampling_rate)

    @property
    def size(self) -> int:
        return self.dim_size["time"]

    def forward(self, dim_positions: dict[str, Any]) -> dict[Hashable, Any]:
        positions = np.asarray(dim_positions["time"])
        return {"time": (self.offset + positions) / self.sampling_rate}

    def reverse(self, coord_labels: dict[Hashable, Any]) -> dict[str, Any]:
        labels = np.asarray(coord_labels["time"], dtype=np.float64)
        return {"time": labels * self.sampling_rate - self.offset}

    def equals(self, other: CoordinateTransform, **kwargs: Any) -> bool:
        return isinstance(other, _SampleTimes) and (
            other.offset,
            other.size,
            other.sampling_rate,
        ) == (self.offset, self.size, self.sampling_rate)

    def first_at_or_after(self, t: float, strict: bool = False) -> int:
        """Return the first position whose time is >= ``t`` (> ``t`` if ``strict``)."""
        if not np.isfinite(t):
            return 0 if t < 0 else self.size

        def before(i: int) -> bool:  # sample i comes before the bound
            value = (self.offset + i) / self.sampling_rate
            return value <= t if strict else value < t

        # The estimate is within one sample of the answer; the loops make it exact.
        i = min(max(math.floor(t * self.sampling_rate) - self.offset, 0), self.size)
        while i > 0 and not before(i - 1):
            i -= 1
        while i < self.size and before(i):
            i += 1
        return i


class SampleTimeIndex(CoordinateTransformIndex):
    """The ``time`` index of a recording, computed from the sampling rate, never stored.

    ``time[i] = i / sampling_rate`` seconds (:func:`sample_times`). Nothing is read or held
    in memory per sample, so opening a recording of any length costs no ``time`` read, and
    label selection works as with a pandas index: ``ds.sel(time=slice(0, 1.0))`` returns
    the samples at 0 <= t <= 1 s (both ends included, as xarray's label slices do);
    ``ds.sel(time=t)`` needs the exact time of a sample, or ``method="nearest"``.
    A contiguous ``isel`` keeps this index; any other selection materialises a pandas index
    of the selected times only.
    """

    transform: _SampleTimes

    @classmethod
    def from_rate(cls, n_samples: int, sampling_rate: float, offset: int = 0) -> SampleTimeIndex:
        """Return the index of ``n_samples`` samples at ``sampling_rate`` Hz."""
        return cls(_SampleTimes(offset, n_samples, sampling_rate))

    def isel(self, indexers: Mapping[Any, Any]) -> Index | None:
        idx = indexers["time"]
        t = self.transform
        if isinstance(idx, slice):
            picked = range(t.size)[idx]
            if picked.step == 1:
                return type(self).from_rate(len(picked), t.sampling_rate, t.offset + picked.start)
            idx = np.arange(picked.start, picked.stop, picked.step)
        if isinstance(idx, Variable):
            if idx.ndim != 1:
                return None
            dim, idx = idx.dims[0], idx.values
        else:
            dim = "time"
        if np.ndim(idx) == 0:
            return None
        values = t.forward({"time": np.asarray(idx)})["time"]
        return PandasIndex(pd.Index(values, name="time"), dim, coord_dtype=values.dtype)

    def sel(
        self, labels: dict[Any, Any], method: str | None = None, tolerance: Any = None
    ) -> IndexSelResult:
        label = labels["time"]
        t = self.transform
        if method is None and isinstance(label, slice) and label.step is None:
            start = 0 if label.start is None else t.first_at_or_after(float(label.start))
            stop = t.size if label.stop is None else t.first_at_or_after(float(label.stop), True)
            return IndexSelResult({"time": slice(start, max(start, stop))})
        if isinstance(label, slice):
            msg = (
                f"time: a label slice takes neither a step nor a method, found {label!r} "
                f"with method={method!r}; select with isel() for a stride"
            )
            raise KeyError(msg)
        values = np.asarray(getattr(label, "values", label), dtype=np.float64)
        pos = np.rint(t.reverse({"time": values})["time"])
        inside = (pos >= 0) & (pos < t.size)
        pos = np.clip(pos, 0, max(t.size - 1, 0)).astype(np.int64)
        got = t.forward({"time": pos})["time"]
        if method is None:
            found = inside & (got == values)
        elif method == "nearest":
            found = np.abs(got - values) <= (np.inf if tolerance is None else tolerance)
        else:
            msg = f"time: expected method None or 'nearest', found {method!r}"
            raise ValueError(msg)
        if t.size == 0 or not np.all(found):
            missing = values[~found] if values.ndim else values
            msg = f"time: no sample at {missing.tolist()!r} s (use method='nearest')"
            raise KeyError(msg)
        if isinstance(label, Variable | xr.DataArray):
            return IndexSelResult({"time": Variable(label.dims, pos)})
        return IndexSelResult({"time": pos if pos.ndim else int(pos)})

    def equals(self, other: Index, **kwargs: Any) -> bool:
        if isinstance(other, SampleTimeIndex):
            return self.transform.equals(other.transform)
        return isinstance(other, PandasIndex) and other.index.equals(self.to_pandas_index())

    @classmethod
    def concat(
        cls,
        indexes: Sequence[SampleTimeIndex],
        dim: Hashable,
        positions: Iterable[Iterable[int]] | None = None,
    ) -> Index:
        """Concatenate along ``time``: consecutive pieces of one grid stay a SampleTimeIndex."""
        parts = [i.transform for i in indexes]
        consecutive = (
            positions is None
            and len({p.sampling_rate for p in parts}) == 1
            and all(b.offset == a.offset + a.size for a, b in itertools.pairwise(parts))
        )
        if parts and consecutive:
            first = parts[0]
            return cls.from_rate(sum(p.size for p in parts), first.sampling_rate, first.offset)
        pandas = [PandasIndex(i.to_pandas_index(), dim) for i in indexes]
        return PandasIndex.concat(pandas, dim, positions)

    def join(self, other: Index, how: str = "inner") -> Index:
        """Join two time indexes (alignment): equal ones are kept, others go through pandas."""
        if self.equals(other):
            return self
        return _as_pandas(self).join(_as_pandas(other), how=how)

    def reindex_like(
        self, other: Index, method: str | None = None, tolerance: Any = None
    ) -> dict[Hashable, Any]:
        """Return the positions of ``other``'s times in this index (alignment)."""
        return _as_pandas(self).reindex_like(_as_pandas(other), method, tolerance)

    def to_pandas_index(self) -> pd.Index:
        """Return the times as a pandas index (materialises every sample's time)."""
        values = self.transform.forward({"time": np.arange(self.transform.size)})["time"]
        return pd.Index(values, name="time")

    def __repr__(self) -> str:
        t = self.transform
        return (
            f"SampleTimeIndex(n={t.size}, sampling_rate={t.sampling_rate:g}, "
            f"start={t.offset / t.sampling_rate:g} s)"
        )

    def _repr_inline_(self, max_width: int) -> str:
        t = self.transform
        return f"SampleTimeIndex (n={t.size}, fs={t.sampling_rate:g} Hz)"


def _as_pandas(index: Index) -> PandasIndex:
    if isinstance(index, SampleTimeIndex):
        return PandasIndex(index.to_pandas_index(), "time")
    if not isinstance(index, PandasIndex):
        msg = f"time: cannot align a SampleTimeIndex with a {type(index).__name__}"
        raise TypeError(msg)
    return index


def time_coordinate(n_samples: int, sampling_rate: float) -> xr.Coordinates:
    """Return the ``time`` coordinate of a recording: seconds from its first sample.

    Parameters
    ----------
    n_samples : int
        Samples along ``time``.
    sampling_rate : float
        Hz.

    Returns
    -------
    xarray.Coordinates
        ``time`` (time) float64 with attributes ``units="s"`` and ``long_name``, indexed by
        a :class:`SampleTimeIndex` (no value is stored in memory).
    """
    index = SampleTimeIndex.from_rate(n_samples, sampling_rate)
    variables = index.create_variables()
    variables["time"].attrs.update(TIME_ATTRS)
    return xr.Coordinates(variables, indexes={"time": index})
