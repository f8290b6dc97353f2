"""Reader options: one pydantic model per reader, validated by the one formatter.

Every reader checks its keyword options once, at its public boundary, with
:func:`parse_reader_options`, which validates them against the reader's model in
:data:`READER_OPTIONS` through :func:`pipeline.spec.errors.parse`. An unknown option is
named with the closest valid one (``rat`` -> ``did you mean 'rate'?``) and the list of
valid options; a value of the wrong kind is named with what was expected and what was
found. Checks that need the data (a channel name against the file's channels, a ``rate``
against the file's rates, a ``datatype`` against those the BIDS root holds) stay in the
readers, worded the same way.

The models validate; the readers keep reading their options from the mapping they were
given (a compiled ``pattern``, a ``Path`` for ``metadata``), so validation changes no value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.exceptions import SpecError
from pipeline.spec.errors import Strict, key_error, parse
from pipeline.spec.types import Integer, Lower, Number

__all__ = [
    "READER_OPTIONS",
    "BidsOptions",
    "CsvOptions",
    "EdfOptions",
    "MneOptions",
    "SyntheticOptions",
    "UciEmgOptions",
    "WfdbOptions",
    "parse_reader_options",
]

#: A regex with named groups subject/session/run, as a string or compiled.
Pattern = str | re.Pattern[str]
#: One name, or a list of names.
Names = str | list[str]
#: One value for every channel, a list (one per channel) or a ``{channel: value}`` mapping.
PerChannel = str | list[str] | dict[str, str]
#: A positive number of samples per block.
BlockSamples = Annotated[Integer, Field(gt=0, description="samples per streamed block")]
PositiveHz = Annotated[Number, Field(gt=0)]
SubjectIds = str | int | list[str | int]


class _ReaderOptions(Strict):
    # A compiled re.Pattern is a valid ``pattern`` value.
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class _FromFileNames(_ReaderOptions):
    pattern: Pattern | None = Field(
        None, description="regex with named groups subject/session/run, matching the stem"
    )


class EdfOptions(_FromFileNames):
    """Options of reader ``edf`` (see :mod:`pipeline.io.edf`)."""

    label_from: str | None = Field(None, description="group of pattern giving the label")
    label_map: dict[Any, Any] | None = Field(None, description="group value -> label")
    metadata: str | Path | None = Field(None, description="CSV table of per-subject values")
    metadata_key: str | None = Field(None, description="the metadata table's key column")
    channels: Names | None = Field(None, description="channel names or labels to read")
    rate: PositiveHz | None = Field(None, description="Hz: read the channels of this rate")
    resample: PositiveHz | None = Field(None, description="Hz: bring every channel to it")
    status_events: bool = Field(True, description="BDF Status channel as events")
    block_samples: BlockSamples | None = None


class MneOptions(_FromFileNames):
    """Options of reader ``mne`` (see :mod:`pipeline.io.mne`)."""

    channels: Names | None = Field(None, description="channel names to read")
    stim_events: bool = Field(True, description="stim/trigger channels as events")
    block_samples: BlockSamples | None = None
    suffixes: Names | None = Field(None, description="file suffixes to take from a folder")


class BidsOptions(_ReaderOptions):
    """Options of reader ``bids`` (see :mod:`pipeline.io.bids`)."""

    datatype: Lower | None = Field(None, description="eeg, emg or ieeg")
    task: SubjectIds | None = Field(None, description="BIDS task label(s)")
    subjects: SubjectIds | None = Field(None, description="subject label(s)")
    sessions: SubjectIds | None = Field(None, description="session label(s)")
    keep_bad: bool = Field(False, description="keep channels.tsv's bad channels")
    channels: Names | None = Field(None, description="channel names to read")
    stim_events: bool = Field(True, description="stim/trigger channels as events")
    block_samples: BlockSamples | None = None


class WfdbOptions(_FromFileNames):
    """Options of reader ``wfdb`` (see :mod:`pipeline.io.wfdb`)."""

    annotations: Names | None = Field(None, description="annotator extensions (atr, qrs...)")
    block_samples: BlockSamples | None = None


class UciEmgOptions(_ReaderOptions):
    """Options of reader ``uci-emg`` (see :mod:`pipeline.io.uci_emg`)."""

    max_gap_ms: Annotated[Number, Field(gt=0)] = Field(
        1000.0, description="ms: the longest timestamp step accepted"
    )


class CsvOptions(_FromFileNames):
    """Options of reader ``csv`` (see :mod:`pipeline.io.csv`)."""

    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    time_column: str | None = None
    sampling_rate: PositiveHz | None = None
    time_unit: Literal["s", "ms", "us"] = "s"
    time_tolerance: Annotated[Number, Field(ge=0)] = 0.01
    signal_columns: Names | None = None
    label_column: str | None = None
    label_names: dict[Any, Any] | None = Field(None, description="integer code -> name")
    units: PerChannel | None = None
    channel_types: PerChannel | None = None
    modality: Lower | None = None
    glob: str | None = None
    block_size: Annotated[Integer, Field(gt=0)] = 16 << 20
    cache_bytes: Annotated[Integer, Field(ge=0)] = 64 << 20


class SyntheticOptions(_ReaderOptions):
    """Options of reader ``synthetic``; the values are checked by the generator, which
    words its messages per parameter (see :func:`pipeline.io.synthetic.resolve_params`).
    """

    n_subjects: Any = None
    n_runs: Any = None
    duration: Any = None
    modality: Any = None
    sampling_rate: Any = None
    n_channels: Any = None
    n_classes: Any = None
    seed: Any = None
    label_mode: Any = None
    gesture_duration: Any = None
    rest_duration: Any = None
    trial_duration: Any = None
    block_samples: BlockSamples | None = None


READER_OPTIONS: dict[str, type[BaseModel]] = {
    "edf": EdfOptions,
    "mne": MneOptions,
    "bids": BidsOptions,
    "wfdb": WfdbOptions,
    "uci-emg": UciEmgOptions,
    "csv": CsvOptions,
    "synthetic": SyntheticOptions,
}


def parse_reader_options(
    reader: str, options: Mapping[str, Any], source: str | None = None, prefix: str = ""
) -> BaseModel:
    """Validate the keyword options of ``reader``; return them as its model.

    Parameters
    ----------
    reader : str
        A reader name, a key of :data:`READER_OPTIONS`.
    options : mapping of str to any
        The options given to the reader's ``discover``/``read``; None values count as not
        given (a task file's ``rate: null``).
    source : str, optional
        Where the options came from (a task file), first on every line; default
        ``"reader '<name>' options"``.
    prefix : str
        Key path of the options in ``source`` (``data.options``).

    Returns
    -------
    pydantic.BaseModel
        The reader's options model, defaults filled in.

    Raises
    ------
    SpecError
        Naming the reader, the option, what was expected and what was found; for an
        unknown option also the closest valid one and the valid options.
    """
    model = READER_OPTIONS.get(reader)
    if model is None:
        raise key_error("reader options", "reader", f"one of {sorted(READER_OPTIONS)}", reader)
    given = {k: v for k, v in options.items() if v is not None}
    where = f"reader {reader!r} options" if source is None else source
    return parse(model, given, where, prefix, error=SpecError)
