"""Window plans and the explicit-halo machinery that makes windowing chunk-exact.

Window *k* of a recording covers samples ``[k * step, k * step + length)``. The functions
here compute every window exactly once, whatever the chunking of the signal along time:
each output block holds the windows whose *start* falls in one input chunk, and its task
gathers the samples those windows need from that chunk and as many following chunks as
necessary (an explicit halo built from slices of the following chunks). Nothing is
rechunked along time, so chunks shorter than a window are handled without the silent
rechunking that ``dask.array.map_overlap`` performs when the depth exceeds a chunk (checked
with dask 2026.8: depth 250 over chunks of 100 samples gives chunks of 300 and 400), and
the graph holds one task per non-empty output block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from pipeline.exceptions import WindowError
from pipeline.spec.errors import parse
from pipeline.spec.windows import WindowPlanSpec

if TYPE_CHECKING:  # imported where arrays are built: a window plan alone needs none of it
    import dask.array as da

__all__ = [
    "BlockFunction",
    "WindowPlan",
    "map_ranges",
    "map_windows",
    "n_windows",
    "window_starts",
]

log = logging.getLogger(__name__)

#: ``func(block, length, step) -> (n_windows, n_channels, n_features)``
BlockFunction = Callable[[np.ndarray, int, int], np.ndarray]

# A length in seconds must be this close (in samples) to an integer to be accepted.
_SAMPLE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class WindowPlan:
    """Length and step of the analysis windows, in samples or in seconds.

    Window *k* covers samples ``[k * step, k * step + length)``; only windows that fit
    entirely in the recording are produced.

    Parameters
    ----------
    length : float
        Window length, > 0 (an integer when ``unit="samples"``).
    step : float
        Distance between consecutive window starts, > 0. ``step > length`` is allowed
        (windows with gaps between them).
    unit : {"samples", "seconds"}
        Unit of ``length`` and ``step``.

    Examples
    --------
    >>> WindowPlan(0.2, 0.05, unit="seconds").in_samples(1000.0)
    (200, 50)
    """

    length: float
    step: float
    unit: Literal["samples", "seconds"] = "samples"

    def __post_init__(self) -> None:
        spec = parse(WindowPlanSpec, self.to_dict(), "WindowPlan", error=WindowError)
        for key in ("length", "step"):  # numeric strings (YAML's 1e-3) become numbers
            if not isinstance(getattr(self, key), int | float | np.number):
                object.__setattr__(self, key, getattr(spec, key))

    def in_samples(self, sampling_rate: float) -> tuple[int, int]:
        """Return ``(length, step)`` in samples at ``sampling_rate`` Hz.

        Raises
        ------
        WindowError
            If a length in seconds is not an integer number of samples (within 1e-6 sample).
        """
        if self.unit == "samples":
            return int(self.length), int(self.step)
        if not sampling_rate > 0:
            msg = (
                f"WindowPlan.in_samples: expected a positive sampling rate, found {sampling_rate!r}"
            )
            raise WindowError(msg)
        out = []
        for key in ("length", "step"):
            seconds = float(getattr(self, key))
            exact = seconds * sampling_rate
            n = round(exact)
            if abs(exact - n) > _SAMPLE_TOLERANCE or n < 1:
                suggestion = max(n, 1)
                msg = (
                    f"WindowPlan: {key} {seconds!r} s at {sampling_rate!r} Hz is {exact!r} "
                    f"samples, expected an integer number of samples (>= 1); use e.g. "
                    f"{suggestion / sampling_rate!r} s ({suggestion} samples) or give the "
                    f"plan in samples"
                )
                raise WindowError(msg)
            out.append(n)
        return out[0], out[1]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        return {"length": self.length, "step": self.step, "unit": self.unit}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowPlan:
        """Build a plan from ``{"length": ..., "step": ..., "unit": ...}``."""
        spec = parse(WindowPlanSpec, data, "WindowPlan", error=WindowError)
        return cls(data["length"], data["step"], spec.unit)


def n_windows(n_samples: int, length: int, step: int) -> int:
    """Return the number of whole windows ``[k*step, k*step+length)`` in ``n_samples``."""
    if length < 1 or step < 1:
        msg = f"n_windows: expected length >= 1 and step >= 1, found {length!r} and {step!r}"
        raise WindowError(msg)
    return max(0, (n_samples - length) // step + 1)


def window_starts(n_samples: int, length: int, step: int) -> np.ndarray:
    """Return the start sample of every window, shape ``(n_windows,)`` int64."""
    return np.arange(n_windows(n_samples, length, step), dtype=np.int64) * step


class _Bound:
    """``func`` with trailing arguments bound; opaque to dask (a tuple could read as a task)."""

    def __init__(self, func: Callable[..., Any], args: tuple) -> None:
        self.func = func
        self.args = args

    def __call__(self, data: np.ndarray) -> np.ndarray:
        return self.func(data, *self.args)


def _gather(blocks: Sequence[np.ndarray], offset: int, size: int, func: _Bound) -> np.ndarray:
    """Concatenate ``blocks`` along axis 0, take ``size`` rows from ``offset``, apply func."""
    if len(blocks) == 1:
        data = blocks[0][offset : offset + size]
    else:
        data = np.concatenate(blocks, axis=0)[offset : offset + size]
    return func(data)


def _drop_empty_chunks(x: da.Array) -> da.Array:
    chunks = tuple(c for c in x.chunks[0] if c > 0)
    if len(chunks) != len(x.chunks[0]) and chunks:
        x = x.rechunk({0: chunks})
    return x


def map_ranges(
    x: da.Array,
    ranges: Sequence[tuple[int, int]],
    out_chunks: Sequence[int],
    func: Callable[..., np.ndarray],
    *,
    dtype: Any,
    trailing_shape: tuple[int, ...],
    args: Sequence[tuple] | None = None,
    name: str = "map-ranges",
) -> da.Array:
    """Build an array whose block *i* is ``func(x[lo_i:hi_i], *args[i])``.

    The general explicit-halo primitive: each output block reads an arbitrary contiguous
    range of samples along axis 0, gathered from as many input chunks as it spans, with
    no rechunking. One task per output block.

    Parameters
    ----------
    x : dask.array.Array of shape (n_samples, ...)
        Input; the non-time axes must be single chunks (they are rechunked if not).
    ranges : sequence of (int, int)
        ``(lo, hi)`` sample range read by each output block, ``0 <= lo <= hi <= n_samples``.
    out_chunks : sequence of int
        Number of rows (axis 0) each output block returns.
    func : callable
        ``func(block, *extra) -> ndarray of shape (out_chunks[i], *trailing_shape)``.
    dtype : dtype
        Output dtype.
    trailing_shape : tuple of int
        Shape of the output beyond axis 0.
    args : sequence of tuple, optional
        Extra positional arguments per output block.
    name : str
        Prefix of the output key name.

    Returns
    -------
    dask.array.Array of shape (sum(out_chunks), *trailing_shape)
    """
    import dask.array as da

    if len(ranges) != len(out_chunks):
        msg = f"map_ranges: {len(ranges)} ranges but {len(out_chunks)} output chunks"
        raise WindowError(msg)
    if args is None:
        args = [()] * len(ranges)
    if x.ndim > 1 and any(len(c) != 1 for c in x.chunks[1:]):
        x = x.rechunk({i: -1 for i in range(1, x.ndim)})
    x = _drop_empty_chunks(x)
    n = x.shape[0]
    bounds = np.cumsum((0, *x.chunks[0]))
    tail = (0,) * (x.ndim - 1)
    out_tail = (0,) * len(trailing_shape)
    token = tokenize(x, list(ranges), list(out_chunks), func, list(args), trailing_shape)
    out_name = f"{name}-{token}"
    dsk: dict = {}
    for i, (lo, hi) in enumerate(ranges):
        if not 0 <= lo <= hi <= n:
            msg = f"map_ranges: range {i} is ({lo}, {hi}), expected 0 <= lo <= hi <= {n}"
            raise WindowError(msg)
        first = int(np.searchsorted(bounds, lo, side="right")) - 1
        last = int(np.searchsorted(bounds, max(hi - 1, lo), side="right")) - 1
        first = min(first, len(x.chunks[0]) - 1)
        last = min(max(last, first), len(x.chunks[0]) - 1)
        keys = [(x.name, j, *tail) for j in range(first, last + 1)]
        offset = int(lo - bounds[first])
        bound = _Bound(func, tuple(args[i]))
        dsk[(out_name, i, *out_tail)] = (_gather, keys, offset, int(hi - lo), bound)
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=[x])
    chunks = (tuple(int(c) for c in out_chunks), *((int(s),) for s in trailing_shape))
    return da.Array(graph, out_name, chunks=chunks, dtype=dtype)


def _checked_block(
    block: np.ndarray,
    func: BlockFunction,
    length: int,
    step: int,
    expected: tuple[int, int, int],
    dtype: np.dtype,
) -> np.ndarray:
    out = np.asarray(func(block, length, step))
    if out.shape != expected:
        msg = (
            f"map_windows: block function {getattr(func, '__name__', func)!r} returned shape "
            f"{out.shape!r} for a block of shape {block.shape!r} (length={length}, "
            f"step={step}); expected {expected!r} (n_windows, n_channels, n_features)"
        )
        raise WindowError(msg)
    return out.astype(dtype, copy=False)


def window_blocks(chunks: Sequence[int], length: int, step: int) -> list[tuple[int, int]]:
    """Return ``(k0, k1)`` window-index ranges, one per chunk holding a window start.

    Window *k* belongs to the chunk that contains its start sample ``k * step``; chunks
    where no window starts are skipped.
    """
    n = int(sum(chunks))
    total = n_windows(n, length, step)
    out = []
    lo = 0
    for c in chunks:
        hi = lo + int(c)
        k0 = -(-lo // step)
        k1 = min(total, -(-hi // step))
        if k1 > k0:
            out.append((k0, k1))
        lo = hi
    return out


def map_windows(
    x: da.Array,
    length: int,
    step: int,
    func: BlockFunction,
    n_features: int,
    dtype: Any = np.float64,
) -> da.Array:
    """Apply a block function to every window of a (time, channel) dask array.

    Each window is computed exactly once whatever the chunking of ``x`` along time,
    including chunks shorter than a window and windows straddling several chunks.

    Parameters
    ----------
    x : dask.array.Array of shape (n_samples, n_channels)
        Signal, dims ("time", "channel"). The channel axis is rechunked to one chunk.
    length, step : int
        Window length and step in samples (``step > length`` allowed).
    func : callable
        ``func(block, length, step)`` with ``block`` of shape ``(m, n_channels)`` returning
        ``(n_windows(m, length, step), n_channels, n_features)``: the windows starting at
        ``0, step, ...`` of the block.
    n_features : int
        Features per channel returned by ``func``.
    dtype : dtype, default float64
        Output dtype.

    Returns
    -------
    dask.array.Array of shape (n_windows, n_channels, n_features)
        One output block per input chunk in which at least one window starts.

    Raises
    ------
    WindowError
        If ``x`` is not 2-D, or (at compute time) ``func`` returns the wrong shape.
    """
    if x.ndim != 2:
        msg = f"map_windows: expected a 2-D (time, channel) array, found shape {x.shape!r}"
        raise WindowError(msg)
    n, n_channels = x.shape
    total = n_windows(n, length, step)
    dtype = np.dtype(dtype)
    if total == 0:
        import dask.array as da

        return da.zeros((0, n_channels, n_features), dtype=dtype)
    x = _drop_empty_chunks(x.rechunk({1: -1}) if len(x.chunks[1]) != 1 else x)
    blocks = window_blocks(x.chunks[0], length, step)
    ranges = [(k0 * step, (k1 - 1) * step + length) for k0, k1 in blocks]
    out_chunks = [k1 - k0 for k0, k1 in blocks]
    args = [(func, length, step, (k1 - k0, n_channels, n_features), dtype) for k0, k1 in blocks]
    return map_ranges(
        x,
        ranges,
        out_chunks,
        _checked_block,
        dtype=dtype,
        trailing_shape=(n_channels, n_features),
        args=args,
        name="map-windows",
    )
