"""Window features: a registry of named features and fused Numba block kernels.

``make_block_function(specs, sampling_rate)`` returns ``func(block, length, step)`` mapping a
block ``(n_samples, n_channels)`` to ``(n_windows, n_channels, n_features)``; see
`pipeline.features.registry` for the exact definition of every feature.
"""

from typing import TYPE_CHECKING

from pipeline._lazy import lazy_exports
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


__getattr__, __dir__ = lazy_exports("pipeline.features", _EXPORTS, globals())


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
