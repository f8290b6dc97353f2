"""Preprocessing steps as pydantic models, one per ``op`` (a discriminated union).

A step is a mapping with its ``op`` and parameters, e.g. ``{op: bandpass, low: 20, high: 450}``.
:data:`Step` validates one against the model of its op; missing parameters take the defaults.
Checks that need the recording (frequencies below Nyquist, a resampling ratio that is
practical) are made by :func:`pipeline.preprocessing.validate_steps` once the rate is known.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, StrictBool, model_validator

from pipeline.spec.errors import Strict
from pipeline.spec.types import Integer, Number, StrList

__all__ = ["FREQUENCY_KEYS", "STEP_MODELS", "SignalSection", "Step"]

Frequency = Annotated[Number, Field(gt=0, description="Hz")]
Order = Annotated[Integer, Field(ge=1, le=12, description="Butterworth order")]
ZeroPhase = Annotated[
    StrictBool, Field(description="filter forwards and backwards (sosfiltfilt); false: causal")
]

#: The keys of each op that are frequencies (checked against Nyquist once the rate is known).
FREQUENCY_KEYS: dict[str, tuple[str, ...]] = {
    "bandpass": ("low", "high"),
    "highpass": ("cutoff",),
    "lowpass": ("cutoff",),
    "envelope": ("cutoff",),
    "notch": ("freq",),
}


class Bandpass(Strict):
    """Butterworth band-pass between ``low`` and ``high`` Hz."""

    op: Literal["bandpass"]
    low: Frequency
    high: Frequency
    order: Order = 4
    zero_phase: ZeroPhase = True

    @model_validator(mode="after")
    def _low_below_high(self) -> Bandpass:
        if self.low >= self.high:
            raise ValueError(f"low < high, found low={self.low!r}, high={self.high!r}")
        return self


class _CutoffFilter(Strict):
    cutoff: Frequency
    order: Order = 4
    zero_phase: ZeroPhase = True


class Highpass(_CutoffFilter):
    """Butterworth high-pass above ``cutoff`` Hz."""

    op: Literal["highpass"]


class Lowpass(_CutoffFilter):
    """Butterworth low-pass below ``cutoff`` Hz."""

    op: Literal["lowpass"]


class Envelope(_CutoffFilter):
    """Rectify, then low-pass below ``cutoff`` Hz (the linear envelope of EMG)."""

    op: Literal["envelope"]


class Notch(Strict):
    """IIR notch at ``freq`` Hz and its first ``harmonics`` multiples below Nyquist."""

    op: Literal["notch"]
    freq: Frequency
    quality: Annotated[Number, Field(ge=0.1, le=1e4, description="quality factor Q")] = 30.0
    harmonics: Annotated[Integer, Field(ge=1, le=50)] = 1
    zero_phase: ZeroPhase = True


class Resample(Strict):
    """Polyphase resampling to ``rate`` Hz."""

    op: Literal["resample"]
    rate: Annotated[Number, Field(ge=1e-3, le=1e7, description="Hz")]


class Car(Strict):
    """Common-average reference of the EEG channels."""

    op: Literal["car"]


class Rectify(Strict):
    """Absolute value."""

    op: Literal["rectify"]


class Select(Strict):
    """Keep the named channels (in this order) and/or the channels of the given types."""

    op: Literal["select"]
    channels: StrList | None = None
    types: StrList | None = None

    @model_validator(mode="after")
    def _something(self) -> Select:
        if not self.channels and not self.types:
            raise ValueError("key 'channels' or 'types'")
        return self


STEP_MODELS: dict[str, type[Strict]] = {
    m.model_fields["op"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (Bandpass, Highpass, Lowpass, Notch, Resample, Car, Select, Rectify, Envelope)
}

#: One preprocessing step, validated against the model of its ``op``.
Step = Annotated[
    Union[tuple(STEP_MODELS.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="op"),
]


class SignalSection(Strict):
    """The channel selection and preprocessing that precede the windows of a feature table."""

    preprocess: list[Step] = Field(default_factory=list)  # type: ignore[valid-type]
    channels: StrList | None = Field(default=None, description="channels to keep, in order")
    channel_types: StrList | None = Field(default=None, description="e.g. [eeg]")
