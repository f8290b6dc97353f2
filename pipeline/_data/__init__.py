"""Files shipped inside the package: the cluster profiles and the demo task.

They are read with :mod:`importlib.resources`, so a wheel installed anywhere finds them
(``cohort demo``, ``--cluster slurm``) without the repository checkout. This folder holds the
only copy of each file; the checkout's ``cluster/*.yaml`` and ``tasks/demo.yaml`` are symbolic
links to it, so the paths the documentation shows keep working there.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

__all__ = ["cluster_profile", "demo_task", "profile_names"]


def _folder(name: str) -> Traversable:
    return files(__name__) / name


def profile_names() -> list[str]:
    """Return the names of the shipped cluster profiles (``local``, ``pbs``, ``slurm``), sorted."""
    folder = _folder("cluster")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def cluster_profile(name: str) -> Traversable | None:
    """Return the shipped profile ``<name>.yaml``, or None if no profile has that name."""
    if name not in profile_names():
        return None
    return _folder("cluster") / f"{name}.yaml"


def demo_task() -> Traversable:
    """Return the shipped demo task (``tasks/demo.yaml`` in the checkout)."""
    return _folder("tasks") / "demo.yaml"
