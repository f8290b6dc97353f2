"""Registry of window features: names, parameters (with defaults and units), output columns.

Definitions (window ``x_0 .. x_{L-1}`` of one channel, ``dx_i = x_i - x_{i-1}``):

EMG time domain (family ``"emg"``)
    ``mav`` mean of ``|x|``; ``iav`` sum of ``|x|``; ``rms`` ``sqrt(mean(x**2))``;
    ``var`` population variance (``ddof=0``, as libemg and mne-features);
    ``wl`` waveform length ``sum |dx_i|`` over the ``L-1`` pairs inside the window;
    ``zc`` zero crossings: pairs with ``x_{i-1} < 0 < x_i`` or ``x_{i-1} > 0 > x_i`` (strict, so
    passing through an exact 0 is not a crossing) and ``|dx_i| >= threshold`` (Hudgins 1993);
    ``ssc`` slope sign changes on the window's sequence with consecutive repeated values
    collapsed, ``y``: interior ``y_j`` with ``y_j > max(y_{j-1}, y_{j+1})`` or
    ``y_j < min(y_{j-1}, y_{j+1})`` and ``max(|y_j - y_{j-1}|, |y_j - y_{j+1}|) >= threshold``
    (Hudgins 1993); a flat-topped peak counts once, a plateau never;
    ``wamp`` Willison amplitude: pairs with ``|dx_i| > threshold`` (strict: a flat pair never
    counts, even at threshold 0);
    ``log`` log detector ``exp(mean(log(|x| + eps)))``, 0 if ``|x| + eps`` is 0 anywhere;
    ``hjorth_activity`` ``var(x)``; ``hjorth_mobility`` ``sqrt(var(dx) / var(x))``;
    ``hjorth_complexity`` ``mobility(dx) / mobility(x)`` (variances with ``ddof=0`` over the
    ``L``, ``L-1`` and ``L-2`` values of ``x``, ``dx`` and the second difference);
    ``skewness`` and ``kurtosis`` (excess), biased moments as ``scipy.stats`` defaults;
    ``ar`` Yule-Walker AR coefficients ``a_1 .. a_p`` of the mean-removed window, model
    ``x_t = a_1 x_{t-1} + ... + a_p x_{t-p} + e_t``, biased autocovariance (divided by ``L``),
    Levinson-Durbin.

Spectral (family ``"spectral"``): a per-window periodogram, as
``scipy.signal.periodogram(x, fs, window, nfft, detrend, scaling="density")``: detrend, taper
with ``window``, FFT of ``nfft`` points (zero padding when ``nfft > L``), one-sided PSD.
``mnf`` ``sum f P / sum P``; ``mdf`` the lowest bin frequency where the cumulative power
reaches half the total; ``peak_freq`` the bin of maximum power; ``spectral_entropy`` Shannon
entropy of ``P / sum P`` (divided by ``log(n_bins)`` when ``normalize``) - all over the bins with
``fmin <= f <= fmax``; ``band_power`` ``sum P df`` over the bins with ``lo <= f < hi``;
``rel_band_power`` band power over the total power in ``[fmin, fmax]``.

EEG (family ``"eeg"``): ``logvar`` ``log(var(x) + eps)``; ``eeg_band_power`` and
``eeg_rel_band_power`` are the band powers of delta (1-4 Hz), theta (4-8), alpha (8-13),
beta (13-30) and gamma (30-45), relative to the total power in 1-45 Hz.

Constant windows (all samples equal) give 0 for every ratio feature (variance, Hjorth mobility
and complexity, skewness, kurtosis, AR coefficients, MNF, MDF, peak frequency, entropy,
relative band powers), never NaN.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pipeline._fs import canonical_json
from pipeline.exceptions import SpecError

__all__ = [
    "EEG_BANDS",
    "FEATURES",
    "FeatureInfo",
    "FeatureSpec",
    "Param",
    "feature_names",
]

EEG_BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 45.0),
)
_EMG_BANDS = ((10.0, 50.0), (50.0, 100.0), (100.0, 200.0), (200.0, 500.0))
_WINDOWS = ("hann", "hamming", "blackman", "boxcar", "bartlett", "flattop", "nuttall")


@dataclass(frozen=True)
class Param:
    """One parameter of a feature: name, default, kind, unit and constraints."""

    name: str
    default: Any
    kind: str  # "float", "int", "str", "bands", "bool"
    unit: str = ""
    doc: str = ""
    minimum: float | None = None
    strict_minimum: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False

    def expected(self) -> str:
        """Describe the accepted values, for error messages."""
        if self.kind == "bands":
            text = "a list of [low, high] pairs in Hz, or a mapping name -> [low, high]"
        elif self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {"float": "a number", "int": "an integer", "bool": "true or false"}.get(
                self.kind, self.kind
            )
            if self.minimum is not None:
                text += f" {'>' if self.strict_minimum else '>='} {self.minimum:g}"
        if self.unit:
            text += f" ({self.unit})"
        if self.nullable:
            text += " or null"
        return text

    def validate(self, feature: str, value: Any) -> Any:
        """Return ``value`` converted to this parameter's kind, or raise `SpecError`."""
        bad = SpecError(
            f"Feature {feature!r}, parameter {self.name!r}: expected {self.expected()}, "
            f"found {value!r}"
        )
        if value is None:
            if self.nullable:
                return None
            raise bad
        if self.kind == "float":
            if isinstance(value, bool):
                raise bad
            try:  # accept numeric strings: YAML reads 1e-5 (no dot) as a string
                value = float(value)
            except (TypeError, ValueError):
                raise bad from None
            if not math.isfinite(value):
                raise bad
        elif self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad
            if isinstance(value, float) and not value.is_integer():
                raise bad
            value = int(value)
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise bad
        elif self.kind == "str":
            if not isinstance(value, str):
                raise bad
            value = value.lower()
        elif self.kind == "bands":
            return _validate_bands(feature, self, value, bad)
        if self.choices is not None and value not in self.choices:
            raise bad
        if self.minimum is not None and (
            value < self.minimum or (self.strict_minimum and value == self.minimum)
        ):
            raise bad
        return value


def _validate_bands(
    feature: str, param: Param, value: Any, bad: SpecError
) -> tuple[tuple[str | None, float, float], ...]:
    """Normalise bands to ``((name or None, low, high), ...)``."""
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(None, v) for v in value]
    else:
        raise bad
    if not items:
        raise bad
    bands = []
    for name, pair in items:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise bad
        try:
            lo, hi = float(pair[0]), float(pair[1])
        except (TypeError, ValueError):
            raise bad from None
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi):
            msg = (
                f"Feature {feature!r}, parameter {param.name!r}: expected 0 <= low < high "
                f"in every band, found {list(pair)!r}"
            )
            raise SpecError(msg)
        bands.append((name, lo, hi))
    return tuple(bands)


def _fmt(v: float) -> str:
    return f"{v:g}"


def _band_names(bands, prefix: str, named_prefix: str) -> list[str]:
    return [
        f"{named_prefix}{name}" if name is not None else f"{prefix}{_fmt(lo)}_{_fmt(hi)}"
        for name, lo, hi in bands
    ]


@dataclass(frozen=True)
class FeatureInfo:
    """A registered feature: its family, kernel group, parameters and output columns."""

    name: str
    family: str
    group: str
    doc: str
    params: tuple[Param, ...] = ()
    columns_of: Callable[[Mapping[str, Any]], list[str]] | None = None

    def columns(self, params: Mapping[str, Any]) -> list[str]:
        """Return the output column names for resolved ``params``."""
        if self.columns_of is None:
            return [self.name]
        return self.columns_of(params)

    def param(self, name: str) -> Param:
        """Return the parameter called ``name``."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


def _thr(unit_doc: str) -> Param:
    return Param("threshold", 0.0, "float", "signal units", unit_doc, minimum=0.0)


def _spectral_params(fmin: float = 0.0, fmax: float | None = None) -> tuple[Param, ...]:
    return (
        Param("window", "hann", "str", "", "taper applied to each window", choices=_WINDOWS),
        Param(
            "nfft",
            None,
            "int",
            "samples",
            "FFT length (null: window length)",
            minimum=1,
            nullable=True,
        ),
        Param(
            "detrend",
            "constant",
            "str",
            "",
            "remove the window mean first",
            choices=("constant", "none"),
        ),
        Param("fmin", fmin, "float", "Hz", "lowest frequency of the analysis band", minimum=0.0),
        Param(
            "fmax",
            fmax,
            "float",
            "Hz",
            "highest frequency of the analysis band (null: Nyquist)",
            minimum=0.0,
            nullable=True,
        ),
    )


def _registry() -> dict[str, FeatureInfo]:
    feats = [
        FeatureInfo("mav", "emg", "td", "mean absolute value"),
        FeatureInfo("iav", "emg", "td", "integral of absolute value"),
        FeatureInfo("rms", "emg", "td", "root mean square"),
        FeatureInfo("var", "emg", "td", "variance (ddof=0)"),
        FeatureInfo("wl", "emg", "td", "waveform length"),
        FeatureInfo(
            "zc", "emg", "td", "zero crossings", (_thr("minimum |dx| of a crossing pair"),)
        ),
        FeatureInfo(
            "ssc",
            "emg",
            "td",
            "slope sign changes (repeated values collapsed)",
            (_thr("minimum slope on one side of the turning point"),),
        ),
        FeatureInfo("wamp", "emg", "td", "Willison amplitude", (_thr("|dx| must exceed this"),)),
        FeatureInfo(
            "log",
            "emg",
            "log",
            "log detector",
            (
                Param(
                    "eps", 0.0, "float", "signal units", "added to |x| before the log", minimum=0.0
                ),
            ),
        ),
        FeatureInfo("hjorth_activity", "emg", "hjorth", "Hjorth activity (variance)"),
        FeatureInfo("hjorth_mobility", "emg", "hjorth", "Hjorth mobility"),
        FeatureInfo("hjorth_complexity", "emg", "hjorth", "Hjorth complexity"),
        FeatureInfo("skewness", "emg", "moments", "skewness (biased)"),
        FeatureInfo("kurtosis", "emg", "moments", "excess kurtosis (biased)"),
        FeatureInfo(
            "ar",
            "emg",
            "ar",
            "Yule-Walker autoregressive coefficients",
            (Param("order", 4, "int", "", "model order p", minimum=1),),
            lambda p: [f"ar{i}" for i in range(1, p["order"] + 1)],
        ),
        FeatureInfo("mnf", "spectral", "spectral", "mean frequency", _spectral_params()),
        FeatureInfo("mdf", "spectral", "spectral", "median frequency", _spectral_params()),
        FeatureInfo(
            "peak_freq", "spectral", "spectral", "frequency of maximum power", _spectral_params()
        ),
        FeatureInfo(
            "spectral_entropy",
            "spectral",
            "spectral",
            "spectral entropy",
            (
                *_spectral_params(),
                Param("normalize", True, "bool", "", "divide by log(number of bins)"),
            ),
        ),
        FeatureInfo(
            "band_power",
            "spectral",
            "spectral",
            "absolute band powers",
            (*_spectral_params(), Param("bands", _EMG_BANDS, "bands", "Hz", "bands [low, high)")),
            lambda p: _band_names(p["bands"], "bp_", ""),
        ),
        FeatureInfo(
            "rel_band_power",
            "spectral",
            "spectral",
            "relative band powers",
            (*_spectral_params(), Param("bands", _EMG_BANDS, "bands", "Hz", "bands [low, high)")),
            lambda p: _band_names(p["bands"], "rbp_", "rel_"),
        ),
        FeatureInfo(
            "logvar",
            "eeg",
            "td",
            "log-variance",
            (
                Param(
                    "eps",
                    0.0,
                    "float",
                    "signal units squared",
                    "added to the variance before the log",
                    minimum=0.0,
                ),
            ),
        ),
        FeatureInfo(
            "eeg_band_power",
            "eeg",
            "spectral",
            "classic EEG band powers",
            _spectral_params(1.0, 45.0),
            lambda p: [b[0] for b in EEG_BANDS],
        ),
        FeatureInfo(
            "eeg_rel_band_power",
            "eeg",
            "spectral",
            "classic EEG band powers relative to the 1-45 Hz power",
            _spectral_params(1.0, 45.0),
            lambda p: [f"rel_{b[0]}" for b in EEG_BANDS],
        ),
    ]
    return {f.name: f for f in feats}


FEATURES: Mapping[str, FeatureInfo] = MappingProxyType(_registry())


def _closest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


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
                f"Unknown feature {self.name!r}{_closest(name, FEATURES)} "
                f"Known features: {', '.join(sorted(FEATURES))}"
            )
            raise SpecError(msg)
        info = FEATURES[name]
        if not isinstance(self.params, Mapping):
            raise SpecError(
                f"Feature {name!r}: expected its parameters as a mapping, found {self.params!r}"
            )
        known = {p.name: p for p in info.params}
        resolved: dict[str, Any] = {}
        for key, value in self.params.items():
            if key not in known:
                options = ", ".join(known) if known else "none"
                msg = (
                    f"Feature {name!r} has no parameter {key!r}{_closest(str(key), known)} "
                    f"Its parameters are: {options}"
                )
                raise SpecError(msg)
            resolved[key] = known[key].validate(name, value)
        for p in info.params:
            if p.name not in resolved:
                resolved[p.name] = p.validate(name, p.default) if p.default is not None else None
        fmin, fmax = resolved.get("fmin"), resolved.get("fmax")
        if fmin is not None and fmax is not None and fmax <= fmin:
            msg = f"Feature {name!r}: expected fmin < fmax, found fmin={fmin!r}, fmax={fmax!r}"
            raise SpecError(msg)
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
            rest = {k: v for k, v in obj.items() if k != "name"}
            if "params" in rest:
                if len(rest) > 1:
                    msg = (
                        f"Feature spec {obj['name']!r}: give parameters either under 'params' "
                        f"or at top level, not both; found {dict(obj)!r}"
                    )
                    raise SpecError(msg)
                return cls(obj["name"], rest["params"] or {})
            return cls(obj["name"], rest)
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
