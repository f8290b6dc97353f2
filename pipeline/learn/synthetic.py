"""Small synthetic feature tables with the structure of real cohorts (tests and examples)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_feature_table(
    n_subjects: int = 6,
    n_sessions: int = 1,
    n_runs: int = 2,
    n_classes: int = 3,
    n_channels: int = 3,
    blocks_per_class: int = 3,
    block_windows: int = 12,
    gap_windows: int = 4,
    subject_gain: float = 1.0,
    noise: float = 0.35,
    drift: float = 0.9,
    seed: int = 0,
) -> pd.DataFrame:
    """Return a feature table of gesture-like blocks with subject-specific gains.

    Every recording alternates class blocks (``block_windows`` windows) with unlabeled gaps
    (``label`` None). Features per channel are ``mav`` (positive, class pattern times a
    per-subject, per-channel gain ``exp(subject_gain * N(0, 1))``) and ``zc`` (class
    dependent); within a recording the noise is autocorrelated in time (AR(1) ``drift``),
    like overlapping windows, so window-level random splits are optimistic.

    Returns
    -------
    pandas.DataFrame of shape (n_windows, 6 + 2 * n_channels)
        Columns ``recording, subject, session, run, start, label`` then
        ``ch<i>__mav``, ``ch<i>__zc``.
    """
    rng = np.random.default_rng(seed)
    classes = [f"c{k}" for k in range(n_classes)]
    pattern = rng.uniform(0.5, 2.0, size=(n_classes, n_channels))
    zc_pattern = rng.uniform(10, 40, size=(n_classes, n_channels))
    frames = []
    for s in range(n_subjects):
        gain = np.exp(subject_gain * rng.normal(size=n_channels))
        for ses in range(n_sessions):
            for r in range(n_runs):
                order = np.repeat(np.arange(n_classes), blocks_per_class)
                rng.shuffle(order)
                labels: list[str | None] = []
                mean = []
                zc = []
                for k in order:
                    labels += [None] * gap_windows + [classes[k]] * block_windows
                    mean += [np.full(n_channels, 0.3)] * gap_windows
                    mean += [pattern[k]] * block_windows
                    zc += [np.full(n_channels, 25.0)] * gap_windows + [
                        zc_pattern[k]
                    ] * block_windows
                n = len(labels)
                eps = np.empty((n, n_channels))
                eps[0] = rng.normal(size=n_channels)
                for i in range(1, n):
                    eps[i] = drift * eps[i - 1] + np.sqrt(1 - drift**2) * rng.normal(
                        size=n_channels
                    )
                mav = np.asarray(mean) * gain * np.exp(noise * eps)
                zcv = np.maximum(np.asarray(zc) + 15 * noise * eps, 0.0)  # counts are >= 0
                df = pd.DataFrame(
                    {
                        "recording": f"sub-{s:02d}_ses-{ses + 1}_run-{r + 1}",
                        "subject": f"sub-{s:02d}",
                        "session": f"ses-{ses + 1}",
                        "run": f"run-{r + 1}",
                        "start": np.arange(n) * 0.05,
                        "label": pd.Series(labels, dtype=object),
                    }
                )
                for c in range(n_channels):
                    df[f"ch{c}__mav"] = mav[:, c]
                    df[f"ch{c}__zc"] = zcv[:, c]
                frames.append(df)
    return pd.concat(frames, ignore_index=True)
