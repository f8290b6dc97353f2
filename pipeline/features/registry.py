"""Registry of window features: names, parameters (with defaults and units), output columns.

Definitions (window ``x_0 .. x_{L-1}`` of one channel, ``dx_i = x_i - x_{i-1}``):

EMG time domain (family ``"emg"``)
    ``mav`` mean of ``|x|``; ``iav`` sum of ``|x|``; ``rms`` ``sqrt(mean(x**2))``;
    ``var`` variance about the window mean, ``sum (x - mean)**2 / (L - ddof)``: ``ddof=0``
    (default) as libemg's VAR (``numpy.var``), ``ddof=1`` as mne-features' ``variance``; the
    MATLAB reference of libemg's tests computes ``mean(x**2)`` instead (no mean removed),
    which is ``rms**2`` here;
    ``wl`` waveform length ``sum |dx_i|`` over the ``L-1`` pairs inside the window;
    ``zc`` zero crossings: pairs with ``x_{i-1} < 0 < x_i`` or ``x_{i-1} > 0 > x_i`` (strict, so
    passing through an exact 0 is not a crossing) and ``|dx_i| >= threshold`` (Hudgins 1993);
    ``ssc`` slope sign changes. ``convention="collapsed"`` (default): on the window's
    sequence with consecutive repeated values collapsed, ``y``: interior ``y_j`` with
    ``y_j > max(y_{j-1}, y_{j+1})`` or ``y_j < min(y_{j-1}, y_{j+1})`` and
    ``max(|y_j - y_{j-1}|, |y_j - y_{j+1}|) >= threshold`` (signal units); a flat-topped
    peak counts once, a plateau never. ``convention="hudgins"``: the interior samples with
    ``(x_i - x_{i-1}) * (x_i - x_{i+1}) >= threshold`` on the raw samples, the threshold in
    squared signal units (Hudgins 1993, libemg and its MATLAB reference); at threshold 0
    every sample of a flat run counts, so quantised data give many more counts;
    ``wamp`` Willison amplitude: pairs with ``|dx_i| > threshold`` (strict: a flat pair never
    counts, even at threshold 0);
    ``log`` log detector ``exp(mean(log(|x| + eps)))``, 0 if ``|x| + eps`` is 0 anywhere;
    ``eps="step"`` (default) is the window's quantisation step, the greatest common divisor
    of its nonzero ``|dx_i|`` (1 on integer ADC counts: libemg's LD, ``log(|x| + 1)``; 1e-5 V
    on 99.99 % of the UCI EMG windows), 0 on a constant window; a number is an offset in
    signal units (``eps=0`` is the textbook ``exp(mean(log|x|))``, 0 on any window holding
    an exact zero sample);
    ``hjorth_activity`` ``var(x)``; ``hjorth_mobility`` ``sqrt(var(dx) / var(x))``;
    ``hjorth_complexity`` ``mobility(dx) / mobility(x)`` (variances with ``ddof=0`` over the
    ``L``, ``L-1`` and ``L-2`` values of ``x``, ``dx`` and the second difference);
    ``skewness`` ``m3 / m2**1.5``, ``kurtosis`` Pearson ``m4 / m2**2`` (3 for a Gaussian; as
    libemg's KURT and mne-features' ``kurtosis``) and ``excess_kurtosis`` ``m4 / m2**2 - 3``
    (``scipy.stats.kurtosis`` default), biased central moments ``m_k = mean((x - mean)**k)``;
    ``ar`` Yule-Walker AR coefficients ``a_1 .. a_p``, model
    ``x_t = a_1 x_{t-1} + ... + a_p x_{t-p} + e_t``, biased autocovariance (divided by ``L``)
    of the mean-removed window (``demean=False``: of the raw window), Levinson-Durbin.
    ``sign="lpc"`` returns ``-a_1 .. -a_p``, the coefficients of the prediction-error filter
    ``1 + c_1 z^-1 + ... + c_p z^-p`` as MATLAB ``lpc`` returns them (``lpc`` uses the raw
    window: ``demean=False, sign="lpc"`` reproduces it); libemg's AR is Burg's estimate in
    the ``lpc`` sign, a different estimator.

Spectral (family ``"spectral"``): a per-window periodogram, as
``scipy.signal.periodogram(x, fs, window, nfft, detrend, scaling="density")``: detrend, taper
with ``window``, FFT of ``nfft`` points (zero padding when ``nfft > L``), one-sided PSD.
``mnf`` ``sum f P / sum P``; ``mdf`` the lowest bin frequency where the cumulative power
reaches half the total; ``peak_freq`` the bin of maximum power; ``spectral_entropy`` Shannon
entropy of ``P / sum P`` in nats (natural log), divided by ``log(n_bins)`` when ``normalize``
(default; then in ``[0, 1]`` and free of the base; mne-features' ``spect_entropy`` is
unnormalised in bits, ``log2``, over the bins above 0 Hz: ours with ``normalize=False`` and
``fmin`` above 0, divided by ``log(2)``) - all over the bins with ``fmin <= f <= fmax``;
``band_power`` ``sum P df`` over the bins with ``lo <= f < hi``;
``rel_band_power`` band power over the total power in ``[fmin, fmax]``.

EEG (family ``"eeg"``): ``logvar`` ``log(var(x) + eps)``; ``eeg_band_power`` and
``eeg_rel_band_power`` are the band powers of delta (1-4 Hz), theta (4-8), alpha (8-13),
beta (13-30) and gamma (30-45), relative to the total power in 1-45 Hz.

Cross-channel (family ``"pairwise"``, defined in :mod:`pipeline.features.covariance`): one
``(n_channels, n_channels)`` matrix per window, stored as its upper triangle: ``cov``,
``cov_oas``, ``cov_lw``, ``corr``; per band, ``fb_cov`` (the covariance of each band-passed
copy, default bands theta/alpha/beta/gamma) and ``coh`` (magnitude-squared coherence);
``glasso`` (graphical-lasso precision of the correlation matrix).

Constant windows (all samples equal) give 0 for every ratio feature (variance, Hjorth mobility
and complexity, skewness, both kurtoses, AR coefficients, MNF, MDF, peak frequency, entropy,
relative band powers), never NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pipeline._fs import canonical_json
from pipeline.exceptions import SpecError
from pipeline.spec.errors import Strict, closest, parse
from pipeline.spec.features import EEG_BANDS, FEATURE_PARAMS, flatten_feature

__all__ = [
    "EEG_BANDS",
    "FEATURES",
    "FeatureInfo",
    "FeatureSpec",
    "feature_names",
    "table_columns",
]


def _fmt(v: float) -> str:
    return f"{v:g}"


def _band_names(bands, prefix: str, named_prefix: str) -> list[str]:
    return [
        f"{named_prefix}{name}" if name is not None else f"{prefix}{_fmt(lo)}_{_fmt(hi)}"
        for name, lo, hi in bands
    ]


@dataclass(frozen=True)
class FeatureInfo:
    """A registered feature: its family, kernel group, output columns and parameter model.

    The parameters (names, defaults, units, constraints) are the pydantic model
    ``pipeline.spec.features.FEATURE_PARAMS[name]``.
    """

    name: str
    family: str
    group: str
    doc: str
    columns_of: Callable[[Mapping[str, Any]], list[str]] | None = None

    @property
    def params_model(self) -> type[Strict]:
        """The pydantic model of this feature's parameters."""
        return FEATURE_PARAMS[self.name]

    @property
    def defaults(self) -> dict[str, Any]:
        """The parameters' default values."""
        return {k: f.default for k, f in self.params_model.model_fields.items() if k != "name"}

    def columns(self, params: Mapping[str, Any]) -> list[str]:
        """Return the output column names for resolved ``params``."""
        if self.columns_of is None:
            return [self.name]
        return self.columns_of(params)


def _registry() -> dict[str, FeatureInfo]:
    feats = [
        FeatureInfo("mav", "emg", "td", "mean absolute value"),
        FeatureInfo("iav", "emg", "td", "integral of absolute value"),
        FeatureInfo("rms", "emg", "td", "root mean square"),
        FeatureInfo("var", "emg", "td", "variance about the window mean (ddof 0 or 1)"),
        FeatureInfo("wl", "emg", "td", "waveform length"),
        FeatureInfo("zc", "emg", "td", "zero crossings"),
        FeatureInfo("ssc", "emg", "td", "slope sign changes (collapsed or Hudgins counts)"),
        FeatureInfo("wamp", "emg", "td", "Willison amplitude"),
        FeatureInfo("log", "emg", "log", "log detector"),
        FeatureInfo("hjorth_activity", "emg", "hjorth", "Hjorth activity (variance)"),
        FeatureInfo("hjorth_mobility", "emg", "hjorth", "Hjorth mobility"),
        FeatureInfo("hjorth_complexity", "emg", "hjorth", "Hjorth complexity"),
        FeatureInfo("skewness", "emg", "moments", "skewness (biased)"),
        FeatureInfo("kurtosis", "emg", "moments", "Pearson kurtosis (biased, 3 if Gaussian)"),
        FeatureInfo("excess_kurtosis", "emg", "moments", "excess kurtosis (biased, Pearson - 3)"),
        FeatureInfo(
            "ar",
            "emg",
            "ar",
            "Yule-Walker autoregressive coefficients",
            lambda p: [f"ar{i}" for i in range(1, p["order"] + 1)],
        ),
        FeatureInfo("mnf", "spectral", "spectral", "mean frequency"),
        FeatureInfo("mdf", "spectral", "spectral", "median frequency"),
        FeatureInfo("peak_freq", "spectral", "spectral", "frequency of maximum power"),
        FeatureInfo("spectral_entropy", "spectral", "spectral", "spectral entropy"),
        FeatureInfo(
            "band_power",
            "spectral",
            "spectral",
            "absolute band powers",
            lambda p: _band_names(p["bands"], "bp_", ""),
        ),
        FeatureInfo(
            "rel_band_power",
            "spectral",
            "spectral",
            "relative band powers",
            lambda p: _band_names(p["bands"], "rbp_", "rel_"),
        ),
        FeatureInfo("logvar", "eeg", "td", "log-variance"),
        FeatureInfo(
            "eeg_band_power",
            "eeg",
            "spectral",
            "classic EEG band powers",
            lambda p: [b[0] for b in EEG_BANDS],
        ),
        FeatureInfo(
            "eeg_rel_band_power",
            "eeg",
            "spectral",
            "classic EEG band powers relative to the 1-45 Hz power",
            lambda p: [f"rel_{b[0]}" for b in EEG_BANDS],
        ),
        # cross-channel (pipeline.features.covariance): one matrix per window
        FeatureInfo("cov", "pairwise", "pairwise", "spatial covariance (empirical, ddof 0)"),
        FeatureInfo("cov_oas", "pairwise", "pairwise", "spatial covariance, OAS shrinkage"),
        FeatureInfo("cov_lw", "pairwise", "pairwise", "spatial covariance, Ledoit-Wolf"),
        FeatureInfo("corr", "pairwise", "pairwise", "Pearson correlation between channels"),
        FeatureInfo(
            "fb_cov",
            "pairwise",
            "pairwise",
            "filter-bank spatial covariance, one matrix per band",
            lambda p: _band_names(p["bands"], "fbcov_", "fbcov_"),
        ),
        FeatureInfo(
            "coh",
            "pairwise",
            "pairwise",
            "magnitude-squared coherence between channels, per band",
            lambda p: _band_names(p["bands"], "coh_", "coh_"),
        ),
        FeatureInfo("glasso", "pairwise", "pairwise", "graphical-lasso precision (sparse)"),
    ]
    return {f.name: f for f in feats}


FEATURES: Mapping[str, FeatureInfo] = MappingProxyType(_registry())


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        if value and isinstance(value[0], tuple) and len(value[0]) == 3:  # bands
            if all(b[0] is not None for b in value):
                return {b[0]: [b[1], b[2]] for b in value}
            return [[b[1], b[2]] for b in value]
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True, eq=False)
class FeatureSpec:
    """A feature name and its parameters, validated and completed with the defaults.

    Parameters
    ----------
    name : str
        A name in `FEATURES` (case-insensitive).
    params : mapping, optional
        Parameter values; missing ones take the registry defaults.

    Raises
    ------
    SpecError
        Unknown feature or parameter (naming the closest match), or an invalid value.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise SpecError(f"Feature name: expected a string, found {self.name!r}")
        name = self.name.strip().lower()
        if name not in FEATURES:
            msg = (
                f"Unknown feature {self.name!r}{closest(name, FEATURES)} "
                f"Known features: {', '.join(sorted(FEATURES))}"
            )
            raise SpecError(msg)
        if not isinstance(self.params, Mapping):
            raise SpecError(
                f"Feature {name!r}: expected its parameters as a mapping, found {self.params!r}"
            )
        model = parse(FEATURE_PARAMS[name], {**self.params, "name": name}, f"feature {name!r}")
        resolved = model.model_dump(exclude={"name"})
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", MappingProxyType(resolved))

    @classmethod
    def coerce(cls, obj: FeatureSpec | Mapping[str, Any] | str) -> FeatureSpec:
        """Build a spec from a name, a mapping or a spec.

        Mappings are ``{"name": "zc", "threshold": 1e-5}`` or
        ``{"name": "zc", "params": {"threshold": 1e-5}}``.
        """
        if isinstance(obj, FeatureSpec):
            return obj
        if isinstance(obj, str):
            return cls(obj)
        if isinstance(obj, Mapping):
            if "name" not in obj:
                raise SpecError(f"Feature spec: expected a 'name' key, found {dict(obj)!r}")
            try:
                flat = dict(flatten_feature(obj))
            except ValueError as exc:  # PydanticCustomError
                msg = f"Feature spec {obj['name']!r}: give {exc}; found {dict(obj)!r}"
                raise SpecError(msg) from None
            return cls(flat.pop("name"), flat)
        msg = f"Feature spec: expected a name, a mapping or a FeatureSpec, found {obj!r}"
        raise SpecError(msg)

    @property
    def info(self) -> FeatureInfo:
        """The registry entry of this feature."""
        return FEATURES[self.name]

    def columns(self) -> list[str]:
        """Return this feature's output column names."""
        return self.info.columns(self.params)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable ``{"name": ..., "params": {...}}``."""
        return {"name": self.name, "params": {k: _jsonable(v) for k, v in self.params.items()}}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureSpec):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(canonical_json(self.to_dict()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_jsonable(v)!r}" for k, v in self.params.items())
        return f"FeatureSpec({self.name!r}{', ' if args else ''}{args})"


def feature_names(specs: list[FeatureSpec | Mapping[str, Any] | str]) -> list[str]:
    """Return the ordered output column names of ``specs`` (raising on duplicates)."""
    names: list[str] = []
    owner: dict[str, FeatureSpec] = {}
    for obj in specs:
        spec = FeatureSpec.coerce(obj)
        for col in spec.columns():
            if col in owner:
                msg = (
                    f"Output column {col!r} is produced by both {owner[col]!r} and {spec!r}; "
                    "keep one of them (use named bands to rename band powers)"
                )
                raise SpecError(msg)
            owner[col] = spec
            names.append(col)
    return names


def table_columns(channels: list[str], names: list[str]) -> tuple[list[str], list[int] | None]:
    """Return the table's feature columns for a block function's ``names``: the one place
    that knows a feature's column layout.

    Parameters
    ----------
    channels : list of str
        The ``n_channels`` channels, in block order.
    names : list of str
        The block function's ``n_features`` names; a pairwise feature ``f`` gives
        ``f~0 .. f~(n_channels - 1)`` (slot ``j`` of channel ``i`` holds the pair ``(i, j)``).

    Returns
    -------
    columns : list of str
        ``<channel>__<feature>`` for per-channel features and ``<ch_i>:<ch_j>__<feature>``
        for the upper triangle ``j >= i`` of a pairwise one, in channel-major order.
    keep : list of int or None
        Indices into a window's flattened ``(n_channels * n_features)`` values giving
        ``columns`` (None when every value is kept).
    """
    columns: list[str] = []
    keep: list[int] = []
    for i, ch in enumerate(channels):
        for f, name in enumerate(names):
            base, sep, slot = name.partition("~")
            if not sep:
                columns.append(f"{ch}__{name}")
            elif int(slot) >= i:
                columns.append(f"{ch}:{channels[int(slot)]}__{base}")
            else:
                continue
            keep.append(i * len(names) + f)
    return columns, (None if len(keep) == len(channels) * len(names) else keep)
