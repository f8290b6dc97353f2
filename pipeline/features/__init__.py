"""Window features: a registry of named features and fused Numba block kernels.

``make_block_function(specs, sampling_rate)`` returns ``func(block, length, step)`` mapping a
block ``(n_samples, n_channels)`` to ``(n_windows, n_channels, n_features)``; see
`pipeline.features.registry` for the exact definition of every feature.
"""

from pipeline.features.compute import BlockFunction, compute_features, make_block_function
from pipeline.features.registry import (
    EEG_BANDS,
    FEATURES,
    FeatureInfo,
    FeatureSpec,
    feature_names,
)

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
