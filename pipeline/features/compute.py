"""Fused block functions: turn feature specs into one callable over a block of samples."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.signal

from pipeline.exceptions import SpecError
from pipeline.features import _kernels as K
from pipeline.features.covariance import pairwise_call
from pipeline.features.registry import EEG_BANDS, FeatureSpec, feature_names

__all__ = ["BlockFunction", "compute_features", "make_block_function"]

logger = logging.getLogger(__name__)

BlockFunction = Callable[[np.ndarray, int, int], np.ndarray]
SpecLike = FeatureSpec | Mapping[str, Any] | str

_TD_SLOTS = {
    "mav": K.TD_MAV, "iav": K.TD_IAV, "rms": K.TD_RMS, "var": K.TD_VAR, "wl": K.TD_WL,
    "zc": K.TD_ZC, "ssc": K.TD_SSC, "wamp": K.TD_WAMP, "logvar": K.TD_LOGVAR,
}  # fmt: skip
_HJ_SLOTS = {
    "hjorth_activity": K.HJ_ACTIVITY,
    "hjorth_mobility": K.HJ_MOBILITY,
    "hjorth_complexity": K.HJ_COMPLEXITY,
}
_MO_SLOTS = {"skewness": K.MO_SKEW, "kurtosis": K.MO_KURT, "excess_kurtosis": K.MO_XKURT}
_SP_SLOTS = {"mnf": K.SP_MNF, "mdf": K.SP_MDF, "peak_freq": K.SP_PEAK,
             "spectral_entropy": K.SP_ENTROPY}  # fmt: skip
_BATCH_BYTES = 2**20  # complex spectra per numpy FFT batch: stays in cache
_scratch = threading.local()  # per-thread channel-major copy of the current block
_SCRATCH_MAX = 2**23  # floats (64 MiB): larger blocks get a transient copy


@dataclass
class _SpectralGroup:
    """Spectral features sharing one periodogram (same window, nfft, detrend, fmin, fmax)."""

    window: str
    nfft: int | None
    detrend: str
    fmin: float
    fmax: float | None
    normalize_entropy: bool = True
    cols: np.ndarray = field(default_factory=lambda: np.full(K.N_SP, -1, np.int64))
    bands: list[tuple[float, float]] = field(default_factory=list)
    band_cols: list[int] = field(default_factory=list)
    rel_cols: list[int] = field(default_factory=list)

    def add_band(self, lo: float, hi: float, col: int, relative: bool) -> None:
        if (lo, hi) not in self.bands:
            self.bands.append((lo, hi))
            self.band_cols.append(-1)
            self.rel_cols.append(-1)
        i = self.bands.index((lo, hi))
        (self.rel_cols if relative else self.band_cols)[i] = col


def _plan(
    specs: list[FeatureSpec], fs: float, n_channels: int | None = None
) -> tuple[list[Callable], list[str], dict]:
    names = feature_names(specs)
    # a pairwise feature takes one slot per channel (pipeline.features.covariance)
    pairwise = {c for s in specs if s.info.family == "pairwise" for c in s.columns()}
    names = [
        f"{n}~{j}" if j is not None else n
        for n in names
        for j in (range(n_channels or 0) if n in pairwise else [None])
    ]
    if n_channels is None and any(s.info.family == "pairwise" for s in specs):
        raise SpecError(
            "Pairwise features (cov, cov_oas, cov_lw, corr): expected n_channels for the "
            "block function, found None"
        )
    calls: list[Callable] = []
    td_cols = np.full(K.N_TD, -1, np.int64)
    td_par = {"zc": 0.0, "ssc": 0.0, "wamp": 0.0, "logvar": 0.0, "var_ddof": 0}
    hj_cols = np.full(K.N_HJ, -1, np.int64)
    mo_cols = np.full(K.N_MO, -1, np.int64)
    groups: dict[tuple, _SpectralGroup] = {}
    limits = {"min_length": 1}
    col = 0
    for spec in specs:
        p = spec.params
        ncols = len(spec.columns())
        group = spec.info.group
        if group == "pairwise":
            calls.append(pairwise_call(spec.name, p, fs, col))
            ncols = int(n_channels or 0) * ncols
        elif spec.name == "ssc" and p["convention"] == "hudgins":
            calls.append(_bind(K._td_ssc_hudgins, float(p["threshold"]), col))
            limits["min_length"] = max(limits["min_length"], 3)
        elif group == "td":
            td_cols[_TD_SLOTS[spec.name]] = col
            if spec.name in ("zc", "ssc", "wamp"):
                td_par[spec.name] = p["threshold"]
            elif spec.name == "logvar":
                td_par["logvar"] = p["eps"]
            elif spec.name == "var":
                td_par["var_ddof"] = int(p["ddof"])
                limits["min_length"] = max(limits["min_length"], int(p["ddof"]) + 1)
        elif group == "hjorth":
            hj_cols[_HJ_SLOTS[spec.name]] = col
            limits["min_length"] = max(limits["min_length"], 3)
        elif group == "moments":
            mo_cols[_MO_SLOTS[spec.name]] = col
        elif group == "log":
            step_eps = p["eps"] == "step"
            calls.append(_bind(K._td_log, 0.0 if step_eps else float(p["eps"]), step_eps, col))
        elif group == "ar":
            lpc = p["sign"] == "lpc"
            calls.append(_bind(K._td_ar, int(p["order"]), bool(p["demean"]), lpc, col))
            limits["min_length"] = max(limits["min_length"], int(p["order"]) + 1)
        elif group == "spectral":
            key = (p["window"], p["nfft"], p["detrend"], p["fmin"], p["fmax"])
            if p.get("normalize") is not None:
                key = (*key, p["normalize"])
            grp = groups.get(key)
            if grp is None:
                grp = groups[key] = _SpectralGroup(*key[:5])
                if p.get("normalize") is not None:
                    grp.normalize_entropy = bool(p["normalize"])
            fmax = fs / 2 if p["fmax"] is None else p["fmax"]
            if "bands" in p:
                bands = [(lo, hi) for _, lo, hi in p["bands"]]
            elif spec.name.startswith("eeg_"):
                bands = [(lo, hi) for _, lo, hi in EEG_BANDS]
            else:
                bands = []
            if spec.name in _SP_SLOTS:
                grp.cols[_SP_SLOTS[spec.name]] = col
            else:
                relative = spec.name in ("rel_band_power", "eeg_rel_band_power")
                for j, (lo, hi) in enumerate(bands):
                    grp.add_band(lo, hi, col + j, relative)
            for lo, hi in [(p["fmin"], fmax), *bands]:
                if lo > fs / 2 or (hi > fs / 2 and not math.isclose(hi, fs / 2)):
                    msg = (
                        f"Feature {spec.name!r}: frequency range [{lo:g}, {hi:g}] Hz exceeds "
                        f"the Nyquist frequency {fs / 2:g} Hz of sampling_rate={fs!r}"
                    )
                    raise SpecError(msg)
        col += ncols
    if (td_cols >= 0).any():
        calls.insert(0, _bind(K._td_basic, td_par["zc"], td_par["ssc"], td_par["wamp"],
                              td_par["logvar"], td_par["var_ddof"], td_cols,
                              channel_major=True))  # fmt: skip
    if (hj_cols >= 0).any():
        calls.append(_bind(K._td_hjorth, hj_cols))
    if (mo_cols >= 0).any():
        calls.append(_bind(K._td_moments, mo_cols))
    for grp in groups.values():
        calls.append(_SpectralCall(grp, fs))
    return calls, names, limits


def _bind(kernel: Callable, *args: Any, channel_major: bool = False) -> Callable:
    """Bind a kernel's parameters; it gets the channel-major copy if ``channel_major``."""

    def call(x: np.ndarray, xt: np.ndarray, length: int, step: int, out: np.ndarray) -> None:
        kernel(xt if channel_major else x, length, step, *args, out)

    call.__name__ = kernel.__name__
    call.channel_major = channel_major
    return call


class _SpectralCall:
    """Periodograms of batches of windows (numpy.fft) then fused statistics (Numba)."""

    def __init__(self, grp: _SpectralGroup, fs: float) -> None:
        self.grp = grp
        self.fs = fs
        self._cache: dict[int, tuple] = {}

    def _setup(self, length: int) -> tuple:
        if length in self._cache:
            return self._cache[length]
        g = self.grp
        nfft = length if g.nfft is None else g.nfft
        if nfft < length:
            msg = f"Spectral features: expected nfft >= window length {length}, found {nfft!r}"
            raise SpecError(msg)
        taper = scipy.signal.get_window(g.window, length).astype(np.float64)
        freqs = np.fft.rfftfreq(nfft, 1.0 / self.fs)
        scale = np.full(freqs.shape, 1.0 / (self.fs * np.sum(taper**2)))
        if nfft % 2 == 0:
            scale[1:-1] *= 2.0
        else:
            scale[1:] *= 2.0
        fmax = self.fs / 2 if g.fmax is None else g.fmax
        kmin = int(np.searchsorted(freqs, g.fmin, "left"))
        kmax = int(np.searchsorted(freqs, fmax, "right")) - 1
        if kmax < kmin:
            msg = (
                f"Spectral features: no frequency bin in [{g.fmin:g}, {fmax:g}] Hz with "
                f"nfft={nfft} at {self.fs:g} Hz; use longer windows or a larger nfft"
            )
            raise SpecError(msg)
        lo = np.array([np.searchsorted(freqs, b[0], "left") for b in g.bands], np.int64)
        hi = np.array([np.searchsorted(freqs, b[1], "left") for b in g.bands], np.int64)
        setup = (
            nfft, taper, freqs, scale, kmin, kmax, lo, hi,
            np.array(g.band_cols, np.int64), np.array(g.rel_cols, np.int64),
        )  # fmt: skip
        self._cache[length] = setup
        return setup

    channel_major = True

    def __call__(
        self, x: np.ndarray, xt: np.ndarray, length: int, step: int, out: np.ndarray
    ) -> None:
        nw = out.shape[0]
        if nw == 0:
            return
        nfft, taper, freqs, scale, kmin, kmax, lo, hi, band_cols, rel_cols = self._setup(length)
        constant = np.empty((nw, x.shape[1]), np.bool_)  # filled with the windows
        df = self.fs / nfft
        detrend = self.grp.detrend == "constant"
        nch = x.shape[1]
        nbins = nfft // 2 + 1
        batch = min(nw, max(1, _BATCH_BYTES // (16 * nch * nbins)))
        seg = np.zeros((nch, batch, nfft))  # the zero padding beyond `length` stays zero
        spec_buf = np.empty((nch, batch, nbins), np.complex128)
        for w0 in range(0, nw, batch):
            nb = min(batch, nw - w0)
            K._fill_windows(xt, w0, nb, length, step, detrend, taper, seg, constant)
            spec = spec_buf[:, :nb]
            np.fft.rfft(seg[:, :nb], axis=-1, out=spec)
            K._spectral_stats(
                spec, w0, scale, freqs, kmin, kmax, lo, hi, df, self.grp.normalize_entropy,
                constant, self.grp.cols, band_cols, rel_cols, out,
            )  # fmt: skip


def _check_window(length: int, step: int, min_length: int) -> None:
    for name, value in (("length", length), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise SpecError(f"Window {name}: expected an integer >= 1 sample, found {value!r}")
    if length < min_length:
        msg = (
            f"Window length: expected at least {min_length} samples for the requested "
            "features (Hjorth and Hudgins SSC need 3, AR of order p needs p + 1, var with "
            f"ddof=1 needs 2), found {length!r}"
        )
        raise SpecError(msg)


def _as_block(block: np.ndarray) -> np.ndarray:
    """Return ``block`` as a 2-D float32 or float64 array, without copying when it is one
    (the kernels accept any memory layout)."""
    x = np.asarray(block)
    if x.ndim != 2:
        msg = f"Block: expected a 2-D array (n_samples, n_channels), found shape {x.shape!r}"
        raise SpecError(msg)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x


def _channel_major(x: np.ndarray, m: int) -> np.ndarray:
    """Return ``x`` as a float64 C-contiguous (n_channels, >= m) array: the transposed view
    of a Fortran-ordered float64 block, else a copy of its first ``m`` samples (one pass).

    The kernels read only the first ``m`` samples (those of whole windows). Copies of up to
    `_SCRATCH_MAX` floats live in a per-thread scratch buffer reused from block to block:
    allocating and freeing a fresh multi-MiB array per block costs as much as the copy itself
    in page faults. The result is only valid until the next call in the same thread.
    """
    if x.dtype == np.float64 and x.flags.f_contiguous:
        return x.T
    size = x.shape[1] * m
    if size > _SCRATCH_MAX:
        xt = np.empty((x.shape[1], m))
    else:
        buf = getattr(_scratch, "buf", None)
        if buf is None or buf.size < size:
            buf = _scratch.buf = np.empty(size)
        xt = buf[:size].reshape(x.shape[1], m)
    K.channel_major(x, xt)
    return xt


def make_block_function(
    specs: Sequence[SpecLike], sampling_rate: float, n_channels: int | None = None
) -> tuple[BlockFunction, list[str]]:
    """Return the fused block function of ``specs`` and its ordered output feature names.

    Parameters
    ----------
    specs : sequence of FeatureSpec, mapping or str
        Features to compute, e.g. ``["mav", {"name": "zc", "threshold": 1e-5}]``.
    sampling_rate : float
        Sampling rate of the blocks, in Hz (used by the spectral features).
    n_channels : int, optional
        Channels of the blocks; required by the pairwise features (``cov_oas`` ...), which
        give ``n_channels`` slots ``<name>~<j>`` each (see ``registry.table_columns``).

    Returns
    -------
    func : callable
        ``func(block, length, step) -> ndarray of shape (n_windows, n_channels, n_features)``
        (float64) for ``block`` of shape ``(n_samples, n_channels)`` (float32 or float64),
        window *k* covering samples ``[k*step, k*step + length)`` and
        ``n_windows = max(0, (n_samples - length) // step + 1)``.
    names : list of str
        ``n_features`` names, in the order of the last axis.

    Raises
    ------
    SpecError
        Invalid specs, duplicate output columns, bands above the Nyquist frequency.
    """
    if isinstance(specs, str | Mapping | FeatureSpec) or not isinstance(specs, Sequence):
        raise SpecError(f"Feature specs: expected a list of feature specs, found {specs!r}")
    parsed = [FeatureSpec.coerce(s) for s in specs]
    if not parsed:
        raise SpecError("Feature specs: expected at least one feature, found an empty list")
    fs = sampling_rate
    if isinstance(fs, bool) or not isinstance(fs, int | float) or not (0 < fs < math.inf):
        raise SpecError(f"sampling_rate: expected a positive number of Hz, found {fs!r}")
    calls, names, limits = _plan(parsed, float(fs), n_channels)
    nfeat = len(names)
    need_xt = any(getattr(call, "channel_major", False) for call in calls)

    def block_function(block: np.ndarray, length: int, step: int) -> np.ndarray:
        _check_window(length, step, limits["min_length"])
        x = _as_block(block)
        if n_channels is not None and x.shape[1] != n_channels:
            msg = f"Block: expected {n_channels} channels, found shape {x.shape!r}"
            raise SpecError(msg)
        length, step = int(length), int(step)
        nw = K.n_windows(x.shape[0], length, step)
        out = np.empty((nw, x.shape[1], nfeat), np.float64)
        if nw:
            xt = _channel_major(x, (nw - 1) * step + length) if need_xt else x
            for call in calls:
                call(x, xt, length, step, out)
        return out

    block_function.__doc__ = f"Compute features {names} on every window of a block."
    logger.debug("block function for %s: %d kernel calls", names, len(calls))
    return block_function, names


def compute_features(
    block: np.ndarray,
    length: int,
    step: int,
    specs: Sequence[SpecLike],
    sampling_rate: float,
) -> np.ndarray:
    """Compute features on all windows of an in-memory block.

    Parameters
    ----------
    block : ndarray of shape (n_samples, n_channels)
    length, step : int
        Window length and step in samples.
    specs : sequence of FeatureSpec, mapping or str
    sampling_rate : float
        In Hz.

    Returns
    -------
    ndarray of shape (n_windows, n_channels, n_features)
        float64, features in the order of ``make_block_function(specs, sampling_rate)[1]``.
    """
    func, _ = make_block_function(specs, sampling_rate)
    return func(block, length, step)
