"""Source formats: one module per reader, registered by name in :mod:`pipeline.io.base`.

Units
-----
The store keeps each channel's samples in the unit its ``unit`` coordinate names. The
convention for electrophysiological channels (EEG, EMG, ECG, EOG, iEEG) is volts
(``"V"``, SI, as MNE and BIDS-EMG use): the ``uci-emg``, ``mne`` and ``wfdb`` readers store
volts. Not yet every reader: ``edf`` keeps the unit of the file's header (``"uV"`` for the
eeg-arithmetic data) and ``csv`` the unit its ``units`` option declares; both say which
in ``unit``.

Untidy input
------------
Every reader's samples pass :func:`pipeline.store.write_recording`, which refuses a NaN, an
infinite value or one beyond float32's range with the file, channel and sample index.
Discovery (:func:`pipeline.io._options.list_files`) follows symlinked folders and files and
reports unreadable folders and files instead of dropping them.
"""

from pipeline.exceptions import UnknownFormatError

# Importing the reader modules registers them.
from pipeline.io import bids as _bids  # noqa: F401
from pipeline.io import csv as _csv  # noqa: F401
from pipeline.io import edf as _edf  # noqa: F401
from pipeline.io import mne as _mne  # noqa: F401
from pipeline.io import synthetic as _synthetic  # noqa: F401
from pipeline.io import uci_emg as _uci_emg  # noqa: F401
from pipeline.io import wfdb as _wfdb  # noqa: F401
from pipeline.io.base import (
    READERS,
    Reader,
    RecordingSource,
    SourceFile,
    file_sha256,
    register_reader,
)

__all__ = [
    "READERS",
    "Reader",
    "RecordingSource",
    "SourceFile",
    "file_sha256",
    "get_reader",
    "register_reader",
]


def get_reader(name: str) -> Reader:
    """Return a new reader for format ``name``.

    Raises
    ------
    UnknownFormatError
        If no reader is registered under ``name``; the message lists the known formats.
    """
    if name not in READERS:
        known = ", ".join(sorted(READERS))
        msg = f"unknown format {name!r}: expected one of {known}"
        raise UnknownFormatError(msg)
    return READERS[name]()
