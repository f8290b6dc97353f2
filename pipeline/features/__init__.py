"""Window features: a registry of named features and fused Numba block kernels.

``make_block_function(specs, sampling_rate)`` returns ``func(block, length, step)`` mapping a
block ``(n_samples, n_channels)`` to ``(n_windows, n_channels, n_features)``; see
`pipeline.features.registry` for the exact definition of every feature.
"""

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.features.registry import (
    EEG_BANDS,
    FEATURES,
    FeatureInfo,
    FeatureSpec,
    feature_names,
)

# The block functions are imported on first use (PEP 562): a task check needs the registry,
# not the Numba kernels and scipy.signal that computing imports.
_EXPORTS = {
    "BlockFunction": "pipeline.features.compute",
    "compute_features": "pipeline.features.compute",
    "make_block_function": "pipeline.features.compute",
}

if TYPE_CHECKING:  # the static view of the same names
    from pipeline.features.compute import BlockFunction, compute_features, make_block_function


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'pipeline.features' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "EEG_BANDS",
    "FEATURES",
    "BlockFunction",
    "FeatureInfo",
    "FeatureSpec",
    "compute_features",
    "feature_names",
    "make_block_function",
]
