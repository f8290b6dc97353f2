"""The store's unit convention, stated once: every voltage is stored in volts.

Every reader stores the same unit for the same kind of channel: a channel whose source
states a voltage in a multiple of the volt (``"V"``, ``"mV"``, ``"uV"``, ``"µV"``,
``"nV"``) is stored in volts (``"V"``, SI, as MNE and BIDS use), its samples multiplied by
the factor in float64 before the cast to float32, so that they agree with
``mne.io.read_raw`` within float32 rounding. The unit the source wrote stays in the
channel attributes (``source_unit`` along ``channel``) where a reader knows it. Any other
unit (``"mmHg"``, ``"g"``, ``"a.u."``) is stored as written: it has no volt to convert to.

Private: a reader asks :func:`to_store_unit` (one unit) or :func:`store_units` (every
channel) for the factors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["STORE_VOLT", "VOLT_FACTORS", "store_units", "to_store_unit"]

STORE_VOLT = "V"
VOLT_FACTORS = {"v": 1.0, "mv": 1e-3, "uv": 1e-6, "nv": 1e-9}


def to_store_unit(unit: str) -> tuple[str, float]:
    """Return ``(unit to store, factor to multiply the samples by)`` for a source unit.

    Examples: ``"mV"`` -> ``("V", 1e-3)``, ``"µV"`` -> ``("V", 1e-6)``, ``"mmHg"`` ->
    ``("mmHg", 1.0)``.
    """
    key = unit.strip().replace("µ", "u").replace("μ", "u").lower()
    if key in VOLT_FACTORS:
        return STORE_VOLT, VOLT_FACTORS[key]
    return unit.strip(), 1.0


def store_units(units: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Return the stored units and the per-channel factors of a recording's source units.

    Parameters
    ----------
    units : sequence of str
        The unit of each channel as the source states it.

    Returns
    -------
    stored : list of str
        Unit per channel in the store's convention.
    factors : ndarray of shape (n_channels,), float64
        What each channel's samples are multiplied by (1.0 where nothing changes).
    """
    pairs = [to_store_unit(str(u)) for u in units]
    return [u for u, _ in pairs], np.array([f for _, f in pairs], dtype=np.float64)
