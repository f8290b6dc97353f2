"""Exceptions raised by Cohort Pipeline.

Every error message says where (file, line, key), what was expected and what came in.
Add new exception classes at the end of this file.
"""

from __future__ import annotations


class CohortError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(CohortError, ValueError):
    """A source file cannot be read as the format it was declared to be."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class UnknownFormatError(CohortError, KeyError):
    """No reader is registered under the requested format name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class StoreError(CohortError):
    """The cohort store is missing, malformed or inconsistent."""


class IngestError(CohortError):
    """One or more files failed to ingest (raised after ``on_error='skip'`` runs)."""

    def __init__(self, message: str, failures: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class SpecError(CohortError, ValueError):
    """A task spec, feature spec or cluster profile is invalid."""


class LeakageError(CohortError, ValueError):
    """A validation scheme would let test windows or statistics reach training."""


class BundleError(CohortError):
    """A model bundle cannot be loaded, or does not match the input it is given."""


class WindowError(CohortError, ValueError):
    """A window plan is invalid, or a block function returned the wrong shape."""


class PreprocessingError(CohortError, ValueError):
    """A preprocessing step cannot be applied to a recording (e.g. it is too short)."""


class ClusterError(CohortError):
    """A Dask cluster could not be started or reached, or its workers did not arrive."""


class CacheError(CohortError):
    """The stage cache is malformed, or a stage key cannot be computed from its parameters."""


class RecordingNotFoundError(CohortError, KeyError):
    """The cohort store holds no recording of the requested id.

    Attributes
    ----------
    recording : str or None
        The id asked for.
    closest : list of str
        The store's closest ids (``difflib``), best first; the message names them.
    """

    def __init__(
        self, message: str, *, recording: str | None = None, closest: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.recording = recording
        self.closest = list(closest or [])

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])
