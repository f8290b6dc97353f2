"""Kernel-level feature benchmark on emg-gestures: this project vs libemg, mne-features, NumPy.

Window 200 samples, step 50, one thread. Feature set: MAV, IAV, RMS, VAR, WL, ZC, SSC (time
domain) and MNF, MDF (spectral). Every implementation gets the same windows of the same
files (windows do not cross files); values are checked to agree before anything is timed.

Run from the repository root::

    .venv/bin/python benchmarks/bench_features.py [--files 12] [--repeats 5]

libemg runs in its own environment, ``.venv-libemg`` (or ``$LIBEMG_PYTHON``); see
benchmarks/README.md, "Environment".

Data: ``$COHORT_DATA/emg-gestures`` (default ``../shared/data``), the first ``--files`` files
in sorted path order. Throughput is input channel-samples (file samples x 8 channels) per
second, best of ``--repeats`` runs, wall clock and CPU time of this single thread.

Ours gets each file as pandas returns it, a Fortran-ordered float64 ``(n_samples, 8)`` array
(the kernels read its channels through a free transposed view); two extra rows time the
store's layout, C-ordered float32 blocks, which costs one channel-major copy per block.
"""

from __future__ import annotations

import single_thread  # noqa: F401  (first: one thread per process)

# isort: split
import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.features import make_block_function

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COHORT_DATA", ROOT.parent / "shared" / "data"))
FS = 1000.0
LENGTH, STEP = 200, 50
NFFT = 256  # libemg zero-pads to the next power of two
TD = ["mav", "iav", "rms", "var", "wl", "zc", "ssc"]
# Aligned with libemg's MNF/MDF: no taper, 256-point FFT, bins below Nyquist. libemg does not
# remove the window mean; we do (detrend="constant"), and check against libemg on mean-removed
# windows (see the README for why the DC bin otherwise differs).
SPECTRAL = [
    {"name": n, "window": "boxcar", "nfft": NFFT, "detrend": "constant", "fmax": 499.0}
    for n in ("mnf", "mdf")
]


def load_libemg():
    """Return libemg's FeatureExtractor, run in libemg's own environment (it pins numpy < 2,
    which this package cannot run on): see ``libemg_process.py`` and benchmarks/README.md."""
    from libemg_process import Libemg

    return Libemg()


def windows(x: np.ndarray) -> np.ndarray:
    """Windows of one file as libemg wants them: (n_windows, n_channels, length)."""
    return np.ascontiguousarray(sliding_window_view(x, LENGTH, axis=0)[::STEP])


# ---- NumPy sliding_window_view implementation, same definitions as ours --------------------
def numpy_td(x: np.ndarray) -> np.ndarray:
    w = sliding_window_view(x, LENGTH, axis=0)[::STEP]
    a = np.abs(w)
    d = np.diff(w, axis=-1)
    left, right = w[..., :-1], w[..., 1:]
    zc = (((left > 0) & (right < 0)) | ((left < 0) & (right > 0))).sum(-1)
    # SSC on runs: a run ends at i where w[i+1] != w[i]; its value is a turning point if it is
    # above/below both the previous run's value and w[i+1].
    chg = d != 0
    idx = np.where(chg, np.arange(1, LENGTH), 0)
    run_start = np.concatenate(
        [np.zeros((*idx.shape[:-1], 1), np.int64), np.maximum.accumulate(idx, axis=-1)], -1
    )[..., :-1]  # start of the run holding sample i, for i < LENGTH - 1
    prev = np.take_along_axis(w, np.maximum(run_start - 1, 0), axis=-1)
    val = w[..., :-1]
    turn = ((val > prev) & (val > right)) | ((val < prev) & (val < right))
    ssc = (chg & (run_start > 0) & turn).sum(-1)
    var = np.var(w, axis=-1)
    return np.stack(
        [a.mean(-1), a.sum(-1), np.sqrt((w * w).mean(-1)), var, np.abs(d).sum(-1), zc, ssc], -1
    )


def numpy_spectral(x: np.ndarray) -> np.ndarray:
    w = sliding_window_view(x, LENGTH, axis=0)[::STEP]
    p = np.abs(np.fft.rfft(w - w.mean(-1, keepdims=True), NFFT, axis=-1)) ** 2
    p = p[..., : NFFT // 2]
    f = np.fft.rfftfreq(NFFT, 1 / FS)[: NFFT // 2]
    tot = p.sum(-1)
    live = np.ptp(w, axis=-1) > 0  # constant windows give 0, as ours
    mnf = np.where(live, (p * f).sum(-1) / np.where(live, tot, 1.0), 0.0)
    mdf = np.where(live, f[np.argmax(np.cumsum(p, -1) >= 0.5 * tot[..., None], axis=-1)], 0.0)
    return np.stack([mnf, mdf], -1)


# ---- mne-features: univariate functions, one window (n_channels, n_times) per call ---------
def mne_td(ws: np.ndarray) -> np.ndarray:
    from mne_features import univariate as u

    out = np.empty((*ws.shape[:2], 5))
    for k in range(ws.shape[0]):
        win = ws[k]
        out[k, :, 0] = u.compute_mean(np.abs(win))  # MAV (IAV = length * MAV)
        out[k, :, 1] = u.compute_rms(win)
        out[k, :, 2] = u.compute_variance(win) * ((LENGTH - 1) / LENGTH)  # ddof=1 -> 0
        out[k, :, 3] = u.compute_line_length(win) * (LENGTH - 1)  # mean |dx| -> sum
        out[k, :, 4] = u.compute_zero_crossings(win)
    return out


def mne_mdf(ws: np.ndarray) -> np.ndarray:
    from mne_features import univariate as u

    out = np.empty(ws.shape[:2])
    for k in range(ws.shape[0]):
        out[k] = u.compute_spect_edge_freq(FS, ws[k], ref_freq=255.0, edge=[0.5], psd_method="fft")
    return out


def best(fn, repeats: int) -> tuple[float, float]:
    """Best wall and CPU seconds of ``repeats`` calls."""
    wall, cpu = math.inf, math.inf
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def check(label: str, got: np.ndarray, ref: np.ndarray, exact: bool = False) -> None:
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    tol = 1e-9 * scale  # running sums: rounding relative to the column's scale
    ok = np.array_equal(got, ref) if exact else np.allclose(got, ref, rtol=1e-9, atol=tol)
    diff = float(np.max(np.abs(got - ref))) if got.size else 0.0
    print(f"  check {label:52s} {'OK' if ok else 'MISMATCH'} "
          f"(max |diff| {diff:.3g}, max |value| {scale:.3g})")  # fmt: skip
    if not ok:
        sys.exit(f"values disagree: {label}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-mne", action="store_true")
    args = ap.parse_args()

    paths = sorted((DATA / "emg-gestures").glob("*/*.txt"))[: args.files]
    if not paths:
        sys.exit(f"no emg-gestures files under {DATA} (set COHORT_DATA)")
    cols = [f"channel{i}" for i in range(1, 9)]
    xs = [pd.read_csv(p, sep="\t", usecols=cols)[cols].to_numpy(np.float64) for p in paths]
    wins = [windows(x) for x in xs]
    ch_samples = sum(x.size for x in xs)
    n_win = sum(w.shape[0] for w in wins)
    print(f"{len(paths)} files ({paths[0].parent.name}/{paths[0].name} .. "
          f"{paths[-1].parent.name}/{paths[-1].name}), {ch_samples / 1e6:.2f} M channel-samples, "
          f"{n_win} windows x 8 channels")  # fmt: skip

    td_fn, td_names = make_block_function(TD, FS)
    sp_fn, _ = make_block_function(SPECTRAL, FS)
    fe = load_libemg()
    lib_td = ["MAV", "IAV", "RMS", "VAR", "WL", "ZC", "SSC"]

    # ---- agreement --------------------------------------------------------------------------
    ours_td = [td_fn(x, LENGTH, STEP) for x in xs]
    ours_sp = [sp_fn(x, LENGTH, STEP) for x in xs]
    print("value checks (all files unless stated):")
    lib = [fe.extract_features(lib_td, w) for w in wins]
    for j, name in enumerate(lib_td[:6]):
        got = np.concatenate([o[..., j] for o in ours_td])
        ref = np.concatenate([d[name] for d in lib]).astype(np.float64)
        check(f"ours vs libemg {name}", got, ref, exact=name == "ZC")
    # libemg's SSC, (x1-x0)(x1-x2) >= 0, counts flat runs; on the window with repeated values
    # removed (our definition) it agrees exactly. Checked on the first file.
    w0 = wins[0]
    ded = np.array(
        [
            [
                fe.getSSCfeat(r[np.r_[True, r[1:] != r[:-1]]][None, None, :], 0.0)[0, 0]
                for r in w0[k]
            ]
            for k in range(w0.shape[0])
        ],
        float,
    )
    check("ours vs libemg SSC on de-duplicated windows (file 1)", ours_td[0][..., 6], ded, True)
    raw = np.concatenate([d["SSC"] for d in lib])
    ours_ssc = np.concatenate([o[..., 6] for o in ours_td])
    print(f"  info  libemg raw SSC mean {raw.mean():.1f} per window vs ours {ours_ssc.mean():.1f}"
          " (flat runs counted by libemg)")  # fmt: skip
    lib_sp = [fe.extract_features(["MNF", "MDF"], w - w.mean(-1, keepdims=True)) for w in wins]
    # Constant windows: ours gives 0 by definition, libemg the spectrum of rounding residue.
    live = np.concatenate([np.ptp(w, axis=-1) > 0 for w in wins])
    print(f"  info  {np.sum(~live)} constant (window, channel) pairs left out of the MNF/MDF "
          "comparisons with libemg")  # fmt: skip
    check("ours vs libemg MNF (mean-removed windows)",
          np.concatenate([o[..., 0] for o in ours_sp])[live],
          np.concatenate([d["MNF"] for d in lib_sp])[live])  # fmt: skip
    mdf_ref = np.concatenate([d["MDF"] for d in lib_sp])[live]
    mdf_got = np.concatenate([o[..., 1] for o in ours_sp])[live]
    same = np.mean(mdf_got == mdf_ref)
    print(f"  check {'ours vs libemg MDF (mean-removed windows)':52s} "
          f"{'OK' if same > 0.999 else 'MISMATCH'} ({same:.5%} identical; libemg takes the "
          "first bin with cumulative power > half, ours >= half)")  # fmt: skip
    np_td = [numpy_td(x) for x in xs]
    for j, name in enumerate(td_names):
        got = np.concatenate([o[..., j] for o in ours_td])
        ref = np.concatenate([t[..., j] for t in np_td])
        check(f"ours vs NumPy {name}", got, ref, exact=name in ("zc", "ssc"))
    npsp = np.concatenate([numpy_spectral(x) for x in xs])
    check("ours vs NumPy MNF", np.concatenate([o[..., 0] for o in ours_sp]), npsp[..., 0])
    check("ours vs NumPy MDF", np.concatenate([o[..., 1] for o in ours_sp]), npsp[..., 1], True)
    if not args.skip_mne:
        m = mne_td(wins[0])
        for j, k in enumerate([0, 2, 3, 4]):
            check(f"ours vs mne-features {td_names[k]} (file 1)", ours_td[0][..., k], m[..., j])
        mdf_fn, _ = make_block_function(
            [{"name": "mdf", "window": "boxcar", "detrend": "constant", "fmax": 255.0}], FS
        )
        check("ours vs mne-features MDF=edge freq 0.5 (file 1)",
              mdf_fn(xs[0], LENGTH, STEP)[..., 0], mne_mdf(wins[0]), True)  # fmt: skip

    # ---- timing -----------------------------------------------------------------------------
    r = args.repeats
    rows = [
        ("ours, time domain (7)", best(lambda: [td_fn(x, LENGTH, STEP) for x in xs], r)),
        ("NumPy sliding_window_view, time domain (7)", best(lambda: [numpy_td(x) for x in xs], r)),
        ("libemg, time domain (7)",
         fe.best_extract(lib_td, wins, max(1, r // 2))),
        ("ours, MNF+MDF", best(lambda: [sp_fn(x, LENGTH, STEP) for x in xs], r)),
        ("NumPy sliding_window_view, MNF+MDF", best(lambda: [numpy_spectral(x) for x in xs], r)),
        ("libemg, MNF+MDF",
         fe.best_extract(["MNF", "MDF"], wins, max(1, r // 2))),
    ]  # fmt: skip
    if not args.skip_mne:
        rows.append(("mne-features, time domain (5 of 7)",
                     best(lambda: [mne_td(w) for w in wins[:2]], 1)))  # fmt: skip
        rows.append(("mne-features, MDF only", best(lambda: [mne_mdf(w) for w in wins[:2]], 1)))
    sub = sum(x.size for x in xs[:2])
    rnd = np.random.default_rng(0).standard_normal(xs[0].shape)
    rows.append(("ours, time domain, file 1 as Gaussian noise (no repeats)",
                 best(lambda: td_fn(rnd, LENGTH, STEP), r)))  # fmt: skip
    xs32 = [np.ascontiguousarray(x, dtype=np.float32) for x in xs]  # the store's layout
    rows.append(("ours, time domain (7), C-ordered float32 blocks",
                 best(lambda: [td_fn(x, LENGTH, STEP) for x in xs32], r)))  # fmt: skip
    rows.append(("ours, MNF+MDF, C-ordered float32 blocks",
                 best(lambda: [sp_fn(x, LENGTH, STEP) for x in xs32], r)))  # fmt: skip
    print("\n| implementation | wall s | M ch-samples/s (wall) | M ch-samples/s (CPU) |")
    print("|---|---:|---:|---:|")
    thr = {}
    for label, (wall, cpu) in rows:
        n = sub if label.startswith("mne") else xs[0].size if "noise" in label else ch_samples
        thr[label] = (n / wall / 1e6, n / cpu / 1e6)
        print(f"| {label} | {wall:.4f} | {thr[label][0]:.1f} | {thr[label][1]:.1f} |")
    td = thr["ours, time domain (7)"]
    sp = thr["ours, MNF+MDF"]
    td32 = thr["ours, time domain (7), C-ordered float32 blocks"]
    sp32 = thr["ours, MNF+MDF, C-ordered float32 blocks"]
    print("\nratios (wall, CPU):")
    for base in ("libemg, time domain (7)", "NumPy sliding_window_view, time domain (7)",
                 "mne-features, time domain (5 of 7)"):  # fmt: skip
        if base in thr:
            print(f"  ours TD / {base}: {td[0] / thr[base][0]:.1f}x, {td[1] / thr[base][1]:.1f}x")
    base = "libemg, time domain (7)"
    print(f"  ours TD (C-ordered float32) / {base}: {td32[0] / thr[base][0]:.1f}x, "
          f"{td32[1] / thr[base][1]:.1f}x")  # fmt: skip
    for base in ("libemg, MNF+MDF", "NumPy sliding_window_view, MNF+MDF", "mne-features, MDF only"):
        if base in thr:
            print(f"  ours MNF+MDF / {base}: {sp[0] / thr[base][0]:.1f}x, "
                  f"{sp[1] / thr[base][1]:.1f}x")  # fmt: skip
    base = "libemg, MNF+MDF"
    print(f"  ours MNF+MDF (C-ordered float32) / {base}: {sp32[0] / thr[base][0]:.1f}x, "
          f"{sp32[1] / thr[base][1]:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
