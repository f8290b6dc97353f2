"""Model configurations the product ships as task defaults, with the figures behind them.

Figures and the experiments that chose them: ``benchmarks/README.md`` ("Models", from
``benchmarks/bench_model_variants.py``; measured on ``emg-gestures``, leave-one-subject-out,
windows 200 ms / step 50 ms at 1 kHz).
"""

from __future__ import annotations

from typing import Any

EMG_GESTURES_FEATURES: tuple[str, ...] = (
    "mav",
    "wl",
    "zc",
    "ssc",
    "rms",
    "wamp",
    "log",
    "var",
    "iav",
    "ar1",
    "ar2",
    "ar3",
    "ar4",
)
"""Feature kinds (per channel) of the EMG default: Hudgins + WAMP, LOG, VAR, IAV, AR(4)."""

EMG_GESTURES_LOG: tuple[str, ...] = ("mav", "wl", "rms", "var", "iav", "log")
"""Amplitude-like kinds log-transformed before normalisation (gain becomes an offset)."""

EMG_GESTURES_MODEL: dict[str, Any] = {
    "name": "lda",
    "params": {"solver": "lsqr", "shrinkage": "auto"},
    "prep": {
        "features": list(EMG_GESTURES_FEATURES),
        "log": list(EMG_GESTURES_LOG),
        "normalize": "recording",
    },
    "smooth": 10,
}
"""EMG gesture default: shrinkage LDA on log features z-scored per recording, with the
class probabilities averaged over the last 10 windows (causal; 450 ms of extra context)."""

EMG_GESTURES_VALIDATION: dict[str, Any] = {"scheme": "loso"}


def preset(name: str) -> dict[str, Any]:
    """Return a copy of a named model preset (``"emg_gestures"``)."""
    import copy

    from pipeline.exceptions import SpecError

    presets = {"emg_gestures": EMG_GESTURES_MODEL}
    if name not in presets:
        msg = f"model preset {name!r} is unknown; available: {sorted(presets)}"
        raise SpecError(msg)
    return copy.deepcopy(presets[name])
