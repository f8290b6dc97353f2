"""Cohort Pipeline: multi-subject biomedical recordings to validated, deployable models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cohort-pipeline")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
