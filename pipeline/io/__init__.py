"""Source formats: one module per reader, registered by name in :mod:`pipeline.io.base`.

Units
-----
One convention, stated in :mod:`pipeline.io._units`: every reader stores a voltage channel
(EEG, EMG, ECG, EOG, iEEG) in volts (``"V"``, SI, as MNE and BIDS use), whatever multiple
of the volt the source wrote (an EDF header's ``uV``, a CSV's declared ``mV``); the
source's unit stays in the ``source_unit`` channel coordinate where the reader knows it
(``edf``, ``csv``, ``wfdb``). Other units (``mmHg``, ``a.u.``) are stored as written. The
``unit`` coordinate always names the stored unit.

Untidy input
------------
Every reader's samples pass :func:`pipeline.store.write_recording`, which refuses a NaN, an
infinite value or one beyond float32's range with the file, channel and sample index.
Discovery (:func:`pipeline.io._options.list_files`) follows symlinked folders and files and
reports unreadable folders and files instead of dropping them.
"""

from pipeline.exceptions import UnknownFormatError

# The readers register on import; READERS imports a built-in reader's module only when that
# format is first asked for (see ReaderRegistry).
from pipeline.io.base import (
    BUILTIN_READERS,
    READERS,
    Reader,
    RecordingSource,
    SourceFile,
    file_sha256,
    register_reader,
)

__all__ = [
    "BUILTIN_READERS",
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
