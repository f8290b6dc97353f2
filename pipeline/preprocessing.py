"""Lazy, chunk-aware preprocessing of (time, channel) signals.

Every operation returns a new dask array without computing anything, and works on any
chunking along time through the explicit halo of :func:`pipeline.windows.map_ranges`
(never ``map_overlap``, which rechunks silently when the halo exceeds a chunk):

- IIR filters (Butterworth band/high/low-pass, notch) in second-order sections. Zero-phase
  (``sosfiltfilt``) by default; causal (``sosfilt``) on request. Each chunk is filtered
  with a halo of ``filter_halo(sos, tol)`` samples, the time after which the filter's
  impulse response has shed all but ``tol`` of its L1 mass, so that the result matches
  filtering the whole recording in one piece (the test bound, in float64:
  ``max |chunked - whole| <= 1e-6 * max |x|`` for the default ``tol = 1e-9``). The causal
  filter uses a left halo (zero initial state ``halo`` samples before the chunk), which
  keeps chunks independent and parallel; the first chunk is exact.
- Polyphase resampling (``scipy.signal.resample_poly``): exact to float rounding, since
  its FIR filter has finite support and each block starts on a multiple of ``down``.
- Common-average reference of EEG channels, channel selection, rectification, envelope.

:func:`apply_preprocessing` applies a list of steps (dicts) to a recording Dataset, after
validating them all with :func:`validate_steps`.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.exceptions import PreprocessingError
from pipeline.spec.errors import key_error, parse_list
from pipeline.spec.preprocess import FREQUENCY_KEYS, STEP_MODELS, Step
from pipeline.windows import map_ranges

# dask.array and scipy.signal are imported where signals are processed: validating a task's
# steps (the task check, an unchanged rerun) needs neither
if TYPE_CHECKING:
    import dask.array as da
    import xarray as xr

__all__ = [
    "KNOWN_OPS",
    "apply_preprocessing",
    "common_average",
    "design_filter",
    "envelope",
    "filter_halo",
    "filter_signal",
    "rectify",
    "resample",
    "resample_labels",
    "resample_ratio",
    "validate_steps",
]

log = logging.getLogger(__name__)

#: Relative L1 tail of the impulse response left out of the halo.
HALO_TOLERANCE = 1e-9
_MAX_RATIO_TERM = 1000


# ----------------------------------------------------------------------------- filters


def design_filter(step: dict[str, Any], sampling_rate: float) -> np.ndarray:
    """Return the second-order sections of a validated filter step.

    Parameters
    ----------
    step : dict
        A validated ``bandpass``, ``highpass``, ``lowpass``, ``notch`` or ``envelope`` step.
    sampling_rate : float
        Hz.

    Returns
    -------
    ndarray of shape (n_sections, 6)
    """
    import scipy.signal as sps

    op = step["op"]
    fs = float(sampling_rate)
    if op == "bandpass":
        return sps.butter(
            step["order"], [step["low"], step["high"]], btype="bandpass", fs=fs, output="sos"
        )
    if op == "highpass":
        return sps.butter(step["order"], step["cutoff"], btype="highpass", fs=fs, output="sos")
    if op in ("lowpass", "envelope"):
        return sps.butter(step["order"], step["cutoff"], btype="lowpass", fs=fs, output="sos")
    if op == "notch":
        sections = []
        for k in range(1, step["harmonics"] + 1):
            f0 = step["freq"] * k
            if f0 >= fs / 2:
                break
            b, a = sps.iirnotch(f0, step["quality"], fs=fs)
            sections.append(sps.tf2sos(b, a))
        return np.concatenate(sections, axis=0)
    msg = f"design_filter: step op {op!r} is not a filter"
    raise PreprocessingError(msg)


def filter_halo(sos: np.ndarray, tol: float = HALO_TOLERANCE, cap: int | None = None) -> int:
    """Return the halo (samples) after which the impulse response holds < ``tol`` of its mass.

    The smallest ``d`` with ``sum(|h[d:]|) <= tol * sum(|h|)``, where ``h`` is the impulse
    response of ``sos``, plus the ``sosfiltfilt`` edge padding; at most ``cap``.

    Parameters
    ----------
    sos : ndarray of shape (n_sections, 6)
    tol : float
        Relative L1 mass of the response left outside the halo.
    cap : int, optional
        Upper bound (the recording length: a halo longer than the recording is pointless).
    """
    import scipy.signal as sps

    n = 1024
    limit = cap if cap is not None else 1 << 26
    while True:
        impulse = np.zeros(n)
        impulse[0] = 1.0
        h = np.abs(sps.sosfilt(sos, impulse))
        tail = np.cumsum(h[::-1])[::-1]  # tail[d] = sum(h[d:])
        total = tail[0]
        # the response beyond n is bounded by the last stretch: require it to be tiny too
        if tail[-n // 8] <= tol * total * 1e-3 or n >= limit:
            below = np.nonzero(tail <= tol * total)[0]
            d = int(below[0]) if below.size else n
            break
        n *= 2
    d += _padlen(sos) + 1
    return min(d, cap) if cap is not None else d


def _padlen(sos: np.ndarray) -> int:
    # scipy.signal.sosfiltfilt's default edge padding
    n_sections = sos.shape[0]
    ntaps = 2 * n_sections + 1
    ntaps -= min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * ntaps


def _filtfilt_block(block: np.ndarray, sos: np.ndarray, keep: int, length: int) -> np.ndarray:
    import scipy.signal as sps

    if block.shape[0] <= _padlen(sos):
        msg = (
            f"zero-phase filter needs more than {_padlen(sos)} samples, found a recording of "
            f"{block.shape[0]}; use a lower order or a causal filter (zero_phase: false)"
        )
        raise PreprocessingError(msg)
    y = sps.sosfiltfilt(sos, block.astype(np.float64, copy=False), axis=0)
    return y[keep : keep + length].astype(block.dtype, copy=False)


def _sosfilt_block(block: np.ndarray, sos: np.ndarray, keep: int, length: int) -> np.ndarray:
    import scipy.signal as sps

    y = sps.sosfilt(sos, block.astype(np.float64, copy=False), axis=0)
    return y[keep : keep + length].astype(block.dtype, copy=False)


def filter_signal(
    x: da.Array, sos: np.ndarray, *, zero_phase: bool = True, tol: float = HALO_TOLERANCE
) -> da.Array:
    """Filter a (time, channel) dask array along time, chunk by chunk with a halo.

    Parameters
    ----------
    x : dask.array.Array of shape (n_samples, n_channels)
        Floating-point signal, dims ("time", "channel"); output has the same chunks/dtype.
    sos : ndarray of shape (n_sections, 6)
        Second-order sections.
    zero_phase : bool, default True
        ``sosfiltfilt`` (forward-backward, halo on both sides) or causal ``sosfilt``
        (halo on the left, zero initial state).
    tol : float
        Halo tolerance, see :func:`filter_halo`. With the default, the result matches the
        whole-recording ``sosfiltfilt``/``sosfilt`` to ``1e-6 * max|x|`` (tested).

    Returns
    -------
    dask.array.Array of shape (n_samples, n_channels)
    """
    n = x.shape[0]
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    halo = filter_halo(sos, tol, cap=max(n, 1))
    bounds = np.cumsum((0, *x.chunks[0]))
    ranges, args = [], []
    for lo, hi in itertools.pairwise(bounds):
        start = max(0, int(lo) - halo)
        stop = min(n, int(hi) + halo) if zero_phase else int(hi)
        ranges.append((start, stop))
        args.append((sos, int(lo) - start, int(hi - lo)))
    func = _filtfilt_block if zero_phase else _sosfilt_block
    return map_ranges(
        x,
        ranges,
        list(x.chunks[0]),
        func,
        dtype=x.dtype,
        trailing_shape=x.shape[1:],
        args=args,
        name="sosfiltfilt" if zero_phase else "sosfilt",
    )


def rectify(x: da.Array) -> da.Array:
    """Return ``|x|``, same shape and chunks."""
    import dask.array as da

    return da.absolute(x)


def envelope(
    x: da.Array, sampling_rate: float, cutoff: float, order: int = 4, *, zero_phase: bool = True
) -> da.Array:
    """Return the linear envelope: rectification then a Butterworth low-pass at ``cutoff`` Hz."""
    sos = design_filter({"op": "lowpass", "cutoff": cutoff, "order": order}, sampling_rate)
    return filter_signal(rectify(x), sos, zero_phase=zero_phase)


def common_average(x: da.Array, channel_types: Sequence[str]) -> da.Array:
    """Subtract the mean of the EEG channels from each EEG channel; others are untouched.

    Parameters
    ----------
    x : dask.array.Array of shape (n_samples, n_channels)
    channel_types : sequence of str, length n_channels

    Raises
    ------
    PreprocessingError
        If no channel has type ``"eeg"``.
    """
    eeg = np.array([t == "eeg" for t in channel_types])
    if eeg.size != x.shape[1]:
        msg = f"common_average: {eeg.size} channel types for {x.shape[1]} channels"
        raise PreprocessingError(msg)
    if not eeg.any():
        msg = (
            f"common average reference needs channels of type 'eeg', found types "
            f"{sorted(set(channel_types))!r}; select EEG channels or drop the 'car' step"
        )
        raise PreprocessingError(msg)

    def car(block: np.ndarray) -> np.ndarray:
        out = block.copy()
        out[:, eeg] -= block[:, eeg].mean(axis=1, keepdims=True)
        return out

    if len(x.chunks[1]) != 1:
        x = x.rechunk({1: -1})
    return x.map_blocks(car, dtype=x.dtype)


# -------------------------------------------------------------------------- resampling


def resample_ratio(sampling_rate: float, target: float) -> tuple[int, int]:
    """Return ``(up, down)`` coprime with ``target / sampling_rate == up / down``.

    Raises
    ------
    PreprocessingError
        If the ratio needs terms above 1000 (e.g. 1000 Hz to 999.7 Hz).
    """
    ratio = Fraction(target).limit_denominator(10**6) / Fraction(sampling_rate).limit_denominator(
        10**6
    )
    if ratio.numerator > _MAX_RATIO_TERM or ratio.denominator > _MAX_RATIO_TERM:
        msg = (
            f"resample: {sampling_rate!r} Hz to {target!r} Hz needs the ratio "
            f"{ratio.numerator}/{ratio.denominator}, expected terms <= {_MAX_RATIO_TERM}; "
            f"choose a target rate with a simpler ratio to the source rate"
        )
        raise PreprocessingError(msg)
    return ratio.numerator, ratio.denominator


def _resample_block(block: np.ndarray, up: int, down: int, skip: int, size: int) -> np.ndarray:
    import scipy.signal as sps

    y = sps.resample_poly(block.astype(np.float64, copy=False), up, down, axis=0)
    return y[skip : skip + size].astype(block.dtype, copy=False)


def _output_bounds(chunks: Sequence[int], up: int, down: int) -> np.ndarray:
    bounds = np.cumsum((0, *chunks))
    out = -((-bounds * up) // down)  # ceil(b * up / down); last = resample_poly's length
    return np.unique(out)


def resample(x: da.Array, up: int, down: int) -> da.Array:
    """Resample along time by ``up / down`` with ``scipy.signal.resample_poly``.

    Exact (to float rounding) against ``resample_poly`` on the whole recording, for any
    chunking: each output chunk reads a block that starts on a multiple of ``down`` with
    a halo covering the FIR filter's support. Output chunk *i* holds the output samples
    ``[ceil(b_i * up / down), ceil(b_{i+1} * up / down))`` for input chunk bounds ``b``.

    Parameters
    ----------
    x : dask.array.Array of shape (n_samples, n_channels)
    up, down : int
        Coprime factors, see :func:`resample_ratio`.

    Returns
    -------
    dask.array.Array of shape (ceil(n_samples * up / down), n_channels)
    """
    n = x.shape[0]
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    half_len = 10 * max(up, down)  # resample_poly's default filter half-length
    halo = (2 * half_len + 2 * down) // up + 2
    out_bounds = _output_bounds(x.chunks[0], up, down)
    ranges, sizes, args = [], [], []
    for j0, j1 in itertools.pairwise(out_bounds):
        first_in = (int(j0) * down) // up - halo
        start = max(0, (first_in // down) * down)
        stop = min(n, -((-int(j1) * down) // up) + halo)
        ranges.append((start, stop))
        sizes.append(int(j1 - j0))
        args.append((up, down, int(j0) - start * up // down, int(j1 - j0)))
    return map_ranges(
        x,
        ranges,
        sizes,
        _resample_block,
        dtype=x.dtype,
        trailing_shape=x.shape[1:],
        args=args,
        name="resample-poly",
    )


def _nearest_index(j: np.ndarray, up: int, down: int) -> np.ndarray:
    # round(j * down / up) with halves up, in integers
    return (2 * j * down + up) // (2 * up)


def resample_labels(labels: da.Array, up: int, down: int, out_chunks: Sequence[int]) -> da.Array:
    """Resample per-sample labels by nearest sample: output *j* takes input ``round(j*down/up)``.

    Parameters
    ----------
    labels : dask.array.Array of shape (n_samples,)
    up, down : int
    out_chunks : sequence of int
        Chunks of the resampled signal (the output gets the same); indices beyond the
        input are clipped to its last sample.

    Returns
    -------
    dask.array.Array of shape (sum(out_chunks),)
    """
    n = labels.shape[0]
    out_bounds = np.cumsum((0, *out_chunks))
    ranges, sizes, args = [], [], []
    for j0, j1 in itertools.pairwise(out_bounds):
        idx = np.minimum(_nearest_index(np.array([j0, j1 - 1]), up, down), n - 1)
        ranges.append((int(idx[0]), int(idx[1]) + 1))
        sizes.append(int(j1 - j0))
        args.append((up, down, int(j0), int(j1), n))
    return map_ranges(
        labels,
        ranges,
        sizes,
        _take_nearest,
        dtype=labels.dtype,
        trailing_shape=(),
        args=args,
        name="resample-nearest",
    )


def _take_nearest(block: np.ndarray, up: int, down: int, j0: int, j1: int, n: int) -> np.ndarray:
    idx = np.minimum(_nearest_index(np.arange(j0, j1), up, down), n - 1)
    return block[idx - idx[0]]


# -------------------------------------------------------------------- step validation


#: The known ops, each with its pydantic model (:mod:`pipeline.spec.preprocess`).
KNOWN_OPS = STEP_MODELS


def validate_steps(
    steps: Sequence[dict[str, Any]],
    sampling_rate: float | None = None,
    *,
    source: str = "preprocessing",
    prefix: str = "preprocess",
) -> list[dict[str, Any]]:
    """Validate preprocessing steps and return them with defaults filled in.

    Each step is validated against the pydantic model of its op
    (:mod:`pipeline.spec.preprocess`); with the sampling rate known, frequencies are also
    checked against the Nyquist frequency (tracking resampling steps) and resampling ratios
    against what polyphase resampling can do.

    Parameters
    ----------
    steps : sequence of dict
        E.g. ``[{"op": "bandpass", "low": 20, "high": 450, "order": 4}]``.
    sampling_rate : float, optional
        Hz, of the recording the steps are applied to.
    source, prefix : str
        Where the steps come from (a task file) and their key path in it, for the errors.

    Returns
    -------
    list of dict
        Normalised steps (every key present, numbers as float or int).

    Raises
    ------
    SpecError
        Naming the source, the key path (``preprocess.1.high``), what was expected and what
        was found; unknown ops list the known ops and the closest match.
    """
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence):
        raise key_error(source, prefix, "a list of steps", steps)
    parsed = parse_list(Step, list(steps), source, prefix)
    fs = float(sampling_rate) if sampling_rate is not None else None
    out = []
    for i, model in enumerate(parsed):
        norm = model.model_dump()
        op = norm["op"]
        if fs is not None:
            nyquist = fs / 2
            for key in FREQUENCY_KEYS.get(op, ()):
                if norm[key] >= nyquist:
                    expected = f"a frequency below the Nyquist frequency {nyquist!r} Hz"
                    raise key_error(source, f"{prefix}.{i}.{key}", expected, steps[i][key])
            if op == "resample":
                try:
                    resample_ratio(fs, norm["rate"])
                except PreprocessingError as exc:
                    raise key_error(
                        source, f"{prefix}.{i}.rate", f"a practical ratio ({exc})", norm["rate"]
                    ) from None
        if op == "resample":
            fs = norm["rate"]
        out.append(norm)
    return out


# ----------------------------------------------------------------------- on a Dataset


def _select(ds: xr.Dataset, step: dict[str, Any], where: str) -> xr.Dataset:
    names = [str(c) for c in ds["channel"].values]
    types = [str(t) for t in ds["channel_type"].values] if "channel_type" in ds else []
    chosen: list[int] = []
    if step["channels"]:
        missing = [c for c in step["channels"] if c not in names]
        if missing:
            msg = f"{where} ('select'): channel(s) {missing!r} not in the recording {names!r}"
            raise PreprocessingError(msg)
        chosen = [names.index(c) for c in step["channels"]]
    if step["types"]:
        by_type = [i for i, t in enumerate(types) if t in step["types"]]
        chosen = [i for i in chosen if i in by_type] if step["channels"] else by_type
    if not chosen:
        msg = (
            f"{where} ('select'): no channel left, selecting channels {step['channels']!r} "
            f"and types {step['types']!r} among {list(zip(names, types, strict=False))!r}"
        )
        raise PreprocessingError(msg)
    out = ds.isel(channel=chosen)
    for attr in ("units", "channel_types"):
        value = ds.attrs.get(attr)
        if isinstance(value, list) and len(value) == len(names):
            out.attrs[attr] = [value[i] for i in chosen]
    return out


def _with_signal(ds: xr.Dataset, signal: da.Array) -> xr.Dataset:
    out = ds.copy()
    out["signal"] = (("time", "channel"), signal)
    return out


def apply_preprocessing(ds: xr.Dataset, steps: Sequence[dict[str, Any]]) -> xr.Dataset:
    """Apply preprocessing steps to a recording, lazily.

    Parameters
    ----------
    ds : xarray.Dataset
        A recording as returned by ``Cohort.recording``: ``signal (time, channel)``, coords
        ``channel``/``channel_type``, ``attrs["sampling_rate"]``, optional ``label (time)``.
    steps : sequence of dict
        Validated against the recording's sampling rate first (:func:`validate_steps`).

    Returns
    -------
    xarray.Dataset
        With a new lazy ``signal``, channel coords after selection, ``sampling_rate``
        updated by resampling (labels resampled by nearest sample), and
        ``attrs["preprocessing"]`` the JSON of the normalised steps applied so far.

    Raises
    ------
    SpecError
        For an invalid step (see :func:`validate_steps`).
    PreprocessingError
        If a valid step cannot be applied to this recording (unknown channel, no EEG
        channel for ``car``, recording too short for a zero-phase filter).
    """
    import dask.array as da

    fs = float(ds.attrs["sampling_rate"])
    steps = validate_steps(steps, fs)
    signal = ds["signal"].data
    if not isinstance(signal, da.Array):
        ds = ds.copy()
        ds["signal"] = ds["signal"].chunk({"time": -1})
    out = ds
    for i, step in enumerate(steps):
        where = f"preprocessing step {i}"
        op = step["op"]
        x = out["signal"].data
        if op in ("bandpass", "highpass", "lowpass", "notch"):
            out = _with_signal(
                out, filter_signal(x, design_filter(step, fs), zero_phase=step["zero_phase"])
            )
        elif op == "envelope":
            out = _with_signal(
                out, envelope(x, fs, step["cutoff"], step["order"], zero_phase=step["zero_phase"])
            )
        elif op == "rectify":
            out = _with_signal(out, rectify(x))
        elif op == "car":
            types = [str(t) for t in out["channel_type"].values]
            try:
                out = _with_signal(out, common_average(x, types))
            except PreprocessingError as exc:
                raise PreprocessingError(f"{where} ('car'): {exc}") from None
        elif op == "select":
            out = _select(out, step, where)
        elif op == "resample":
            out = _resample_dataset(out, fs, step["rate"])
            fs = step["rate"]
        log.debug("%s: %s applied", where, op)
    out.attrs["sampling_rate"] = fs
    previous = json.loads(ds.attrs.get("preprocessing", "[]"))
    out.attrs["preprocessing"] = json.dumps(previous + steps)
    return out


def _resample_dataset(ds: xr.Dataset, fs: float, target: float) -> xr.Dataset:
    import dask.array as da

    from pipeline.store import time_coordinate

    up, down = resample_ratio(fs, target)
    signal = resample(ds["signal"].data, up, down)
    has_label = "label" in ds.variables
    label = ds["label"] if has_label else None
    out = ds.drop_vars([v for v in ("signal", "label", "time") if v in ds.variables])
    out["signal"] = (("time", "channel"), signal)
    if "time" in ds.coords:  # seconds from the first sample, on the new grid
        out = out.assign_coords(time_coordinate(signal.shape[0], float(target)))
    if label is not None:
        data = label.data if isinstance(label.data, da.Array) else da.from_array(label.values)
        resampled = resample_labels(data, up, down, signal.chunks[0])
        out["label"] = (("time",), resampled, label.attrs)
    out.attrs["sampling_rate"] = float(target)
    out.attrs["resampled_from"] = fs
    return out
