"""Source formats: one module per reader, registered by name in :mod:`pipeline.io.base`."""

from pipeline.io.base import (
    READERS,
    Reader,
    RecordingSource,
    SourceFile,
    file_sha256,
    get_reader,
    register_reader,
)

# Importing the reader modules registers them.
from pipeline.io import csv as _csv  # noqa: E402,F401
from pipeline.io import edf as _edf  # noqa: E402,F401
from pipeline.io import synthetic as _synthetic  # noqa: E402,F401
from pipeline.io import uci_emg as _uci_emg  # noqa: E402,F401

__all__ = [
    "READERS",
    "Reader",
    "RecordingSource",
    "SourceFile",
    "file_sha256",
    "get_reader",
    "register_reader",
]
