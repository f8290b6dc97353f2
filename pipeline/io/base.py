"""The reader contract and the reader registry.

A reader turns one source file into a :class:`RecordingSource`: metadata plus the signal
as an iterator of blocks, so that a recording larger than memory is written to the store
block by block and never has to fit in RAM.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from pipeline._fs import file_sha256

__all__ = [
    "BUILTIN_READERS",
    "READERS",
    "Reader",
    "RecordingSource",
    "SourceFile",
    "file_sha256",
    "register_reader",
]


@dataclass(frozen=True)
class SourceFile:
    """One file to ingest and the identifiers derived from its path.

    Attributes
    ----------
    path : Path
        The file.
    subject, session, run, task, acquisition, recording : str or None
        BIDS entities without their prefix (``"01"``, not ``"sub-01"``); only the ``bids``
        reader sets task, acquisition and recording.
    extra : dict
        Reader-specific values derived from the path (e.g. a per-recording ``label``) and
        per-subject metadata joined from a table.
    """

    path: Path
    subject: str
    session: str | None = None
    run: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    acquisition: str | None = None
    recording: str | None = None

    @property
    def recording_id(self) -> str:
        """Return the BIDS-style id, e.g. ``sub-01_ses-1_task-rest_run-2``.

        Entities in BIDS order: ``sub``, ``ses``, ``task``, ``acq``, ``run``, ``recording``;
        those that are None are left out.
        """
        parts = [f"sub-{self.subject}"]
        for key, value in (
            ("ses", self.session),
            ("task", self.task),
            ("acq", self.acquisition),
            ("run", self.run),
            ("recording", self.recording),
        ):
            if value is not None:
                parts.append(f"{key}-{value}")
        return "_".join(parts)


@dataclass
class RecordingSource:
    """What a reader returns for one file; the store writer consumes it.

    Attributes
    ----------
    n_samples : int
        Number of samples (rows) on the uniform grid.
    sampling_rate : float
        Hz.
    channels : list of str
        Channel names, in column order of every block.
    units : list of str
        Physical unit per channel (``"V"``, ``"uV"``, ``"mV"``...).
    channel_types : list of str
        Per channel, lower case: ``"emg"``, ``"eeg"``, ``"ecg"``, ``"eog"``, ``"acc"``,
        ``"ref"``, ``"misc"``.
    modality : str
        Dominant modality of the recording (``"emg"``, ``"eeg"``...).
    blocks : callable
        ``blocks()`` returns a fresh iterator of float32 arrays of shape
        ``(n, n_channels)``, consecutive, covering all ``n_samples`` rows in order.
    labels : ndarray of shape (n_samples,) or None
        Per-sample integer class, if the source has one.
    label_names : dict of int to str
        Names of the per-sample classes (may be empty).
    label : str or None
        Per-recording label (e.g. ``"rest"``/``"task"``), broadcast to every window.
    events : DataFrame or None
        Columns ``onset`` (s), ``duration`` (s), ``description`` (str).
    start_time : str or None
        ISO 8601 start of the recording.
    attrs : dict
        Extra JSON-serialisable attributes (resampling method, gaps, filters...).
    channel_attrs : dict of str to list of str
        Per-channel strings, one per channel (e.g. EDF ``prefilter``); the store writes each
        as a coordinate along ``channel``, so that a channel selection keeps them right.
    """

    n_samples: int
    sampling_rate: float
    channels: list[str]
    units: list[str]
    channel_types: list[str]
    modality: str
    blocks: Callable[[], Iterator[np.ndarray]]
    labels: np.ndarray | None = None
    label_names: dict[int, str] = field(default_factory=dict)
    label: str | None = None
    events: pd.DataFrame | None = None
    start_time: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    channel_attrs: dict[str, list[str]] = field(default_factory=dict)


class Reader(Protocol):
    """A source format.

    ``discover`` lists the files of a source (a file or a folder) with their identifiers;
    ``read`` opens one of them. Both raise :class:`pipeline.exceptions.InputError` with a
    message naming the file, the line or field, what was expected and what was found.
    """

    name: str
    version: str

    def discover(self, source: Path, **options: Any) -> list[SourceFile]: ...

    def read(self, file: SourceFile, **options: Any) -> RecordingSource: ...


#: The built-in readers: format name -> the module that registers it on import.
BUILTIN_READERS: dict[str, str] = {
    "bids": "pipeline.io.bids",
    "csv": "pipeline.io.csv",
    "edf": "pipeline.io.edf",
    "mne": "pipeline.io.mne",
    "synthetic": "pipeline.io.synthetic",
    "uci-emg": "pipeline.io.uci_emg",
    "wfdb": "pipeline.io.wfdb",
}


class ReaderRegistry(MutableMapping[str, Callable[[], Reader]]):
    """Reader factories by format name; a built-in reader's module is imported on first use.

    Every name is known (``in``, iteration, the list an unknown format's error shows) without
    importing any reader: a cached rerun or a task check that only names ``uci-emg`` does not
    pay for pyedflib, MNE, scipy.signal and numba, which the other readers import.

    Parameters
    ----------
    modules : mapping of str to str
        Format name -> the module whose import registers it (:data:`BUILTIN_READERS`).
    """

    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)
        self._factories: dict[str, Callable[[], Reader]] = {}

    def __getitem__(self, name: str) -> Callable[[], Reader]:
        if name not in self._factories and name in self._modules:
            importlib.import_module(self._modules[name])
        return self._factories[name]

    def __setitem__(self, name: str, factory: Callable[[], Reader]) -> None:
        self._factories[name] = factory

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._factories.pop(name, None)
        self._modules.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._factories or name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(self._modules) | set(self._factories)))

    def __len__(self) -> int:
        return len(set(self._modules) | set(self._factories))


READERS = ReaderRegistry(BUILTIN_READERS)


def register_reader(name: str) -> Callable[[Callable[[], Reader]], Callable[[], Reader]]:
    """Register a reader factory (usually the reader class) under ``name``."""

    def decorator(factory: Callable[[], Reader]) -> Callable[[], Reader]:
        READERS[name] = factory
        return factory

    return decorator
