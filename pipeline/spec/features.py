"""The parameters of every window feature, as pydantic models (one per feature name).

A feature in a task spec is a name (``mav``) or a mapping with the name and its parameters
(``{name: zc, threshold: 1e-5}``, or ``{name: zc, params: {threshold: 1e-5}}``).
:data:`FeatureItem` validates one against the model of its name, so an unknown name, an unknown
parameter or a bad value is reported with its key path (``features.3.threshold``). The
definitions of the features themselves are in :mod:`pipeline.features.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, create_model
from pydantic import model_validator as _model_validator
from pydantic_core import PydanticCustomError

from pipeline.spec.errors import Strict
from pipeline.spec.types import Integer, Number, to_lower

__all__ = [
    "EEG_BANDS",
    "EMG_BANDS",
    "FB_BANDS",
    "FEATURE_PARAMS",
    "FeatureItem",
    "flatten_feature",
]

#: Classic EEG bands (name, low Hz, high Hz), used by ``eeg_band_power``.
EEG_BANDS: tuple[tuple[str, float, float], ...] = (
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 45.0),
)
#: Default bands of ``band_power`` / ``rel_band_power`` (unnamed, Hz).
EMG_BANDS: tuple[tuple[None, float, float], ...] = (
    (None, 10.0, 50.0),
    (None, 50.0, 100.0),
    (None, 100.0, 200.0),
    (None, 200.0, 500.0),
)
#: Default bands of ``fb_cov`` (the classic bands above delta, as filter-bank tangent-space
#: pipelines use them) and of ``coh`` (all five).
FB_BANDS: tuple[tuple[str, float, float], ...] = EEG_BANDS[1:]
_WINDOWS = ("hann", "hamming", "blackman", "boxcar", "bartlett", "flattop", "nuttall")

Band = tuple[str | None, float, float]


def _as_bands(value: Any) -> Any:
    """Normalise ``[[lo, hi], ...]`` or ``{name: [lo, hi]}`` to ``((name|None, lo, hi), ...)``."""
    expected = "a list of [low, high] pairs in Hz, or a mapping name -> [low, high]"
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        if value and all(isinstance(v, tuple) and len(v) == 3 for v in value):
            return value  # already normalised (a default)
        items = [(None, v) for v in value]
    else:
        raise PydanticCustomError("bands", f"Input should be {expected}")
    if not items:
        raise PydanticCustomError("bands", f"Input should be {expected} (at least one)")
    out = []
    for name, pair in items:
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or any(isinstance(v, bool) for v in pair)
        ):
            raise PydanticCustomError("bands", f"Input should be {expected}")
        out.append((name, pair[0], pair[1]))
    return tuple(out)


def _check_bands(bands: tuple[Band, ...]) -> tuple[Band, ...]:
    for _, lo, hi in bands:
        if not 0.0 <= lo < hi:
            raise PydanticCustomError(
                "bands",
                "Input should have 0 <= low < high in every band, found {pair}",
                {"pair": [lo, hi]},
            )
    return bands


Bands = Annotated[
    tuple[tuple[str | None, Number, Number], ...],
    BeforeValidator(_as_bands),
    AfterValidator(_check_bands),
]


class _NoParams(Strict):
    pass


class _Threshold(Strict):
    threshold: Number = Field(
        0.0, ge=0, description="signal units: the minimum step that counts (see the registry)"
    )


class _Eps(Strict):
    eps: Number = Field(0.0, ge=0, description="signal units: added before the log")


class _LogDetector(Strict):
    # A number is an offset in signal units; "step" is the window's quantisation step, so the
    # default neither returns 0 on a window holding an exact zero sample (most windows of
    # quantised EMG) nor depends on the signal's units. On integer ADC counts it is 1, the
    # offset libemg's LD adds.
    eps: Number | Literal["step"] = Field(
        "step",
        description=(
            "signal units added to |x| before the log, or 'step': the window's "
            "quantisation step, the greatest common divisor of its nonzero |x_i - x_(i-1)|"
        ),
    )

    @_model_validator(mode="after")
    def _eps_sign(self) -> _LogDetector:
        if not isinstance(self.eps, str) and self.eps < 0:
            raise ValueError(f"eps >= 0 or 'step', found {self.eps!r}")
        return self


class _SSC(_Threshold):
    convention: Annotated[Literal["collapsed", "hudgins"], BeforeValidator(to_lower)] = Field(
        "collapsed",
        description=(
            "'collapsed': turning points of the window with repeated values collapsed, "
            "threshold on the larger step (signal units); 'hudgins': samples with "
            "(x_i - x_(i-1)) (x_i - x_(i+1)) >= threshold on the raw samples, threshold in "
            "squared signal units (libemg, Hudgins 1993)"
        ),
    )


class _Var(Strict):
    ddof: Integer = Field(
        0, ge=0, le=1, description="delta degrees of freedom: 0 (libemg, NumPy) or 1 (mne-features)"
    )


class _AR(Strict):
    order: Integer = Field(4, ge=1, description="autoregressive model order p")
    sign: Annotated[Literal["ar", "lpc"], BeforeValidator(to_lower)] = Field(
        "ar",
        description=(
            "'ar': a_k of x_t = sum a_k x_(t-k) + e_t; 'lpc': the prediction-error filter "
            "1 + a_1 z^-1 + ... as MATLAB lpc returns it (the negated coefficients)"
        ),
    )
    demean: StrictBool = Field(
        True, description="remove the window mean first (MATLAB lpc does not: false)"
    )


class _Spectral(Strict):
    window: Annotated[Literal[_WINDOWS], BeforeValidator(to_lower)] = Field(  # type: ignore[valid-type]
        "hann", description="taper applied to each window"
    )
    nfft: Integer | None = Field(None, ge=1, description="FFT length, samples (null: window)")
    detrend: Annotated[Literal["constant", "none"], BeforeValidator(to_lower)] = Field(
        "constant", description="remove the window mean first"
    )
    fmin: Number = Field(0.0, ge=0, description="Hz: lowest frequency of the analysis band")
    fmax: Number | None = Field(None, ge=0, description="Hz: highest frequency (null: Nyquist)")

    @_model_validator(mode="after")
    def _band_order(self) -> _Spectral:
        if self.fmax is not None and self.fmax <= self.fmin:
            raise ValueError(f"fmin < fmax, found fmin={self.fmin!r}, fmax={self.fmax!r}")
        return self


class _EEGSpectral(_Spectral):
    fmin: Number = Field(1.0, ge=0, description="Hz: lowest frequency of the total power")
    fmax: Number | None = Field(45.0, ge=0, description="Hz: highest frequency (null: Nyquist)")


class _Entropy(_Spectral):
    normalize: StrictBool = Field(True, description="divide by log(number of bins)")


class _Bands(_Spectral):
    bands: Bands = Field(EMG_BANDS, description="Hz: bands [low, high), a list or name -> pair")


class _FilterBankCov(Strict):
    bands: Bands = Field(FB_BANDS, description="Hz: bands [low, high), a list or name -> pair")
    estimator: Annotated[Literal["oas", "lw", "empirical"], BeforeValidator(to_lower)] = Field(
        "oas", description="covariance of each band-passed copy: OAS, Ledoit-Wolf or empirical"
    )


class _Coherence(Strict):
    bands: Bands = Field(EEG_BANDS, description="Hz: bands [low, high), a list or name -> pair")
    segment: Number = Field(
        1.0, gt=0, description="seconds: Welch segment inside the window (half overlap, Hann)"
    )


class _GraphicalLasso(Strict):
    # 0.1, not GraphicalLasso's 0.01: at 0.01 the coordinate descent fails on rank-deficient
    # montages (average-referenced EEG: the smallest eigenvalue of the correlation ~1e-9)
    alpha: Number = Field(0.1, gt=0, description="l1 penalty on the correlation matrix")


_PARAMS: dict[str, type[Strict]] = {
    **dict.fromkeys(("mav", "iav", "rms", "wl"), _NoParams),
    "var": _Var,
    **dict.fromkeys(("zc", "wamp"), _Threshold),
    "ssc": _SSC,
    "log": _LogDetector,
    **dict.fromkeys(("hjorth_activity", "hjorth_mobility", "hjorth_complexity"), _NoParams),
    **dict.fromkeys(("skewness", "kurtosis", "excess_kurtosis"), _NoParams),
    "ar": _AR,
    **dict.fromkeys(("mnf", "mdf", "peak_freq"), _Spectral),
    "spectral_entropy": _Entropy,
    **dict.fromkeys(("band_power", "rel_band_power"), _Bands),
    "logvar": _Eps,
    **dict.fromkeys(("cov", "cov_oas", "cov_lw", "corr"), _NoParams),  # pairwise
    "fb_cov": _FilterBankCov,
    "coh": _Coherence,
    "glasso": _GraphicalLasso,
    **dict.fromkeys(("eeg_band_power", "eeg_rel_band_power"), _EEGSpectral),
}

#: The parameter model of every feature, by name: ``name`` plus the parameters.
FEATURE_PARAMS: dict[str, type[Strict]] = {
    name: create_model(  # type: ignore[call-overload]
        f"Feature_{name}", __base__=base, name=(Literal[name], ...)
    )
    for name, base in _PARAMS.items()
}


def flatten_feature(item: Any) -> Any:
    """Return a feature as ``{"name": lower-case name, **params}``.

    ``"mav"``, ``{name: zc, threshold: 1}`` and ``{name: zc, params: {threshold: 1}}`` are
    accepted; anything else is returned unchanged, for the model to report.
    """
    if isinstance(item, str):
        return {"name": item.strip().lower()}
    if isinstance(item, Mapping) and isinstance(item.get("name"), str):
        out = {k: v for k, v in item.items() if k != "params"}
        out["name"] = item["name"].strip().lower()
        params = item.get("params")
        if isinstance(params, Mapping):
            clash = sorted(set(params) & set(out))
            if clash or len(out) > 1:
                raise PydanticCustomError(
                    "feature_params",
                    "parameters either under 'params' or at the top level, not both",
                )
            out.update(params)
        elif params is not None:
            out["params"] = params  # reported as an unknown key
        return out
    return item


#: One feature of a task spec, validated against the model of its name.
FeatureItem = Annotated[
    Union[tuple(FEATURE_PARAMS.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="name"),
    BeforeValidator(flatten_feature),
]
