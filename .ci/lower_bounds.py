"""Print the project's declared lower bounds as exact pins, one ``name==version`` a line.

Reads ``[project].dependencies`` of ``pyproject.toml``, so the pins CI installs are the bounds
the package declares and cannot drift from them. A dependency without a ``>=`` bound is an
error: every requirement must say the oldest release it works with.

    python .ci/lower_bounds.py [pyproject.toml] > constraints.txt
    pip install -c constraints.txt ".[dev]"
"""

from __future__ import annotations

import re
import sys
import tomllib
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


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "pyproject.toml"
    print("\n".join(lower_bound_pins(path)))
