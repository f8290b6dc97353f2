"""Print the project's declared lower bounds as exact pins, one ``name==version`` a line.

Reads ``[project].dependencies`` of ``pyproject.toml``, so the pins CI installs are the bounds
the package declares and cannot drift from them. A dependency without a ``>=`` bound is an
error: every requirement must say the oldest release it works with.

    python .ci/lower_bounds.py > constraints.txt
    pip install -c constraints.txt ".[dev]"
    python .ci/lower_bounds.py --check      # exit 1 unless each pin is what is installed
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# name, optional [extras], then a ">=" bound among the specifiers (", <3" may follow)
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
_LOWER = re.compile(r">=\s*([0-9][^,;\s]*)")


def lower_bound_pins(pyproject: Path) -> list[str]:
    """Return ``name==version`` for every runtime dependency of ``pyproject``, in its order.

    Raises
    ------
    SystemExit
        If a dependency has no ``>=`` lower bound (the message names it and the file).
    """
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = []
    for dep in deps:
        match = _REQUIREMENT.match(dep.split(";")[0])
        lower = _LOWER.search(match.group(3)) if match else None
        if match is None or lower is None:
            message = (
                f"{pyproject}: dependency {dep!r} has no lower bound; expected "
                f"'name>=version' so CI can install the oldest supported release"
            )
            raise SystemExit(message)
        pins.append(f"{match.group(1)}=={lower.group(1)}")
    return pins


def _release(text: str) -> tuple[int, ...]:
    """Return the release numbers of a version, zero-padded: ``"2.0"`` -> ``(2, 0, 0)``."""
    numbers = [int(p) for p in re.match(r"\d+(?:\.\d+)*", text).group(0).split(".")]
    return tuple(numbers + [0] * (3 - len(numbers)))


def mismatches(pins: list[str]) -> list[str]:
    """Return one line per pin that is not the installed version (or is not installed)."""
    wrong = []
    for pin in pins:
        name, want = pin.split("==")
        try:
            got = version(name)
        except PackageNotFoundError:
            got = "nothing"
        if got == "nothing" or _release(got) != _release(want):
            wrong.append(f"{name}: pinned {want}, installed {got}")
    return wrong


if __name__ == "__main__":
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    if sys.argv[1:] == ["--check"]:
        wrong = mismatches(lower_bound_pins(pyproject))
        if wrong:
            sys.exit("lower bounds not installed exactly:\n  " + "\n  ".join(wrong))
        print("lower bounds installed exactly")
    else:
        print("\n".join(lower_bound_pins(pyproject)))
