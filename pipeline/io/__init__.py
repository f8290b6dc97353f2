"""Source formats: one module per reader, registered by name in :mod:`pipeline.io.base`."""

from pipeline.exceptions import UnknownFormatError

# Importing the reader modules registers them.
from pipeline.io import csv as _csv  # noqa: F401
from pipeline.io import edf as _edf  # noqa: F401
from pipeline.io import synthetic as _synthetic  # noqa: F401
from pipeline.io import uci_emg as _uci_emg  # noqa: F401
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
