"""The store's unit convention: voltages in volts, whatever unit the source wrote.

Private: a reader whose source states a voltage in a multiple of the volt (``"mV"``,
``"uV"``, ``"µV"``, ``"nV"``) asks :func:`to_store_unit` for the factor that brings its
samples to volts and the unit string to store (``"V"``). Other units are kept as written.
"""

from __future__ import annotations

__all__ = ["VOLT_FACTORS", "to_store_unit"]

VOLT_FACTORS = {"v": 1.0, "mv": 1e-3, "uv": 1e-6, "nv": 1e-9}


def to_store_unit(unit: str) -> tuple[str, float]:
    """Return ``(unit to store, factor to multiply the samples by)`` for a source unit.

    Examples: ``"mV"`` -> ``("V", 1e-3)``, ``"µV"`` -> ``("V", 1e-6)``, ``"mmHg"`` ->
    ``("mmHg", 1.0)``.
    """
    key = unit.strip().replace("µ", "u").replace("μ", "u").lower()
    if key in VOLT_FACTORS:
        return "V", VOLT_FACTORS[key]
    return unit.strip(), 1.0
