"""Store-to-Parquet benchmark on emg-gestures: the whole feature path against libemg in memory.

Window 200 samples, step 50, one thread per process. Feature set: MAV, IAV, RMS, VAR, WL, ZC,
SSC, MNF, MDF (the spectral pair aligned with libemg: no taper, 256-point FFT, bins below
Nyquist, window mean removed; see ``bench_features.py``).

- this project: ``feature_table`` + ``write_feature_table`` from the Zarr cohort store (ingested
  once beforehand with the ``uci-emg`` reader, so on the reader's 1 kHz grid) to Parquet, on a
  local cluster of one worker process with one thread (``pipeline.cluster.make_cluster``,
  the cluster ``cohort features`` starts), after a warm-up run (Numba cache
  and imports warm). Timed: opening the store, building the graph, reading and decompressing
  the chunks, windows, features, window labels, building the frames, writing Parquet with
  metadata, committing by rename and flushing the files to disk. Each timed run writes a new
  folder, as ``cohort run``'s feature stages write new files (the previous run's folder is
  removed first, untimed); ``--overwrite`` writes over the previous run's files instead
  (``cohort features --overwrite``), where on ext4 each rename onto an existing file also
  starts the new file's writeback.
- libemg: ``FeatureExtractor.extract_features`` on the same windows of the same signals,
  already in memory as ``(n_windows, n_channels, length)`` arrays (loading and windowing are
  not timed).

The values are checked first: the Parquet table read back against libemg (every file) and
against the NumPy ``sliding_window_view`` references of ``bench_features.py``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_store_to_parquet.py [--repeats 3]
    .venv/bin/python benchmarks/bench_store_to_parquet.py --profile   # where the CPU goes

``--profile`` runs the timed path once more in this process under cProfile, with dask's
synchronous scheduler (no cluster: the client's and the worker's work in one profile), and
prints its CPU time and the 25 costliest functions; nothing else is run.

Data: ``$COHORT_DATA/emg-gestures`` (default ``../shared/data``), all files. The store goes
to ``--store`` (default ``../bench-data/emg-gestures.zarr`` beside the checkout, outside it);
it is ingested if missing. Throughput is input channel-samples (store samples x 8 channels)
per second per core.
"""

from __future__ import annotations

import single_thread  # noqa: F401  (first: one thread per process)

# isort: split
import argparse
import datetime
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_features as bf

from pipeline.labels import LabelPolicy
from pipeline.store import open_cohort
from pipeline.table import FeatureTableSpec, read_feature_table, write_feature_table
from pipeline.windows import WindowPlan

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("COHORT_DATA", ROOT.parent / "shared" / "data"))
FS, LENGTH, STEP = bf.FS, bf.LENGTH, bf.STEP
FEATURES = [
    "mav",
    "iav",
    "rms",
    "var",
    "wl",
    {"name": "zc", "threshold": 0.0},
    {"name": "ssc", "threshold": 0.0},
    *bf.SPECTRAL,
]
NAMES = ["mav", "iav", "rms", "var", "wl", "zc", "ssc", "mnf", "mdf"]
LIBEMG = ["MAV", "IAV", "RMS", "VAR", "WL", "ZC", "SSC", "MNF", "MDF"]


def make_spec() -> FeatureTableSpec:
    """Return the benchmark's feature-table spec (every window kept)."""
    return FeatureTableSpec(
        window=WindowPlan(LENGTH, STEP, "samples"),
        features=tuple(FEATURES),
        labels=LabelPolicy(mode="majority", mixed="keep"),
    )


def ingest_store(store: Path) -> None:
    """Ingest emg-gestures into ``store`` (one worker, one thread)."""
    from pipeline.cluster import make_cluster
    from pipeline.ingest import ingest

    cluster, client = make_cluster({"local": {"n-workers": 1, "dashboard-address": ":0"}})
    with cluster, client:
        result = ingest(DATA / "emg-gestures", "uci-emg", store, client=client, progress=False)
    print(f"ingested {DATA / 'emg-gestures'} -> {store}: {result.summary()}")


def load_signals(store: Path) -> tuple[list[str], list[np.ndarray]]:
    """Return recording ids and their signals (n_samples, 8) float32, read from the store."""
    cohort = open_cohort(store)
    rids = list(cohort.recording_ids)
    return rids, [np.asarray(cohort.recording(r)["signal"].values) for r in rids]


def _cpu_seconds() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def run_pipeline(store: Path, out: Path, spec: FeatureTableSpec) -> None:
    """The timed path: store -> feature table -> Parquet (on the current client)."""
    cohort = open_cohort(store)
    write_feature_table(cohort, spec, out, overwrite=True)


def _graph_seconds(store: Path, out: Path, spec: FeatureTableSpec) -> float:
    """Return the client CPU seconds of opening the store and building the write graph."""
    from pipeline.table import table_writes

    c0 = _cpu_seconds()
    table_writes(open_cohort(store), spec, out)
    return _cpu_seconds() - c0


def time_pipeline(
    store: Path, out: Path, repeats: int, overwrite: bool = False
) -> tuple[list[tuple[float, float, float]], float]:
    """Return ``(wall, client CPU, worker CPU)`` seconds of each timed run (after a warm-up)
    and the best client CPU seconds of building the graph alone (part of the client's)."""
    from pipeline.cluster import make_cluster

    spec = make_spec()
    runs = []
    # The local cluster the product starts (cluster/local.yaml's settings), one worker.
    profile = {"local": {"n-workers": 1, "threads-per-worker": 1, "dashboard-address": ":0"}}
    cluster, client = make_cluster(profile)
    with cluster, client:
        run_pipeline(store, out, spec)  # warm-up: imports, Numba cache, page cache
        graph = min(_graph_seconds(store, out, spec) for _ in range(3))
        for _ in range(repeats):
            if not overwrite:
                shutil.rmtree(out, ignore_errors=True)
            w_cpu0 = sum(client.run(_cpu_seconds).values())
            c_cpu0 = _cpu_seconds()
            t0 = time.perf_counter()
            run_pipeline(store, out, spec)
            wall = time.perf_counter() - t0
            c_cpu = _cpu_seconds() - c_cpu0
            w_cpu = sum(client.run(_cpu_seconds).values()) - w_cpu0
            runs.append((wall, c_cpu, w_cpu))
    return runs, graph


def libemg_windows(x: np.ndarray) -> np.ndarray:
    """Return the windows of ``x`` for libemg, all-zero (window, channel) rows replaced.

    libemg's MDF raises IndexError on a window of zero total power (5 of the 488k
    (window, channel) pairs here); a stand-in ramp of the same length keeps the timing run
    going and costs the same as any other row.
    """
    w = bf.windows(x)
    w[~w.any(axis=-1)] = np.linspace(-1e-5, 1e-5, LENGTH, dtype=w.dtype)
    return w


def time_libemg(fe, wins: list[np.ndarray], repeats: int) -> tuple[float, float]:
    """Return the best wall and CPU seconds of libemg's 9 features on every window (timed in
    libemg's own process, see ``libemg_process.py``)."""
    return fe.best_extract(LIBEMG, wins, repeats)


def check_values(out: Path, rids: list[str], xs: list[np.ndarray], fe, ssc_files: int) -> None:
    """Check the Parquet table against libemg and the NumPy references; exit on mismatch."""
    ddf, meta = read_feature_table(out)
    table = ddf.compute()
    print(
        f"table: {len(table)} rows x {table.shape[1]} columns, "
        f"{table['recording'].nunique()} recordings; metadata keys {sorted(meta)}"
    )
    ours = []
    for rid, x in zip(rids, xs, strict=True):
        rows = table[table["recording"] == rid]
        nw = (x.shape[0] - LENGTH) // STEP + 1
        starts = rows["start"].to_numpy()
        if len(rows) != nw or not np.allclose(starts, np.arange(nw) * STEP / FS):
            sys.exit(f"{rid}: expected {nw} windows in time order, found {len(rows)}")
        cols = [f"channel{c}__{n}" for c in range(1, 9) for n in NAMES]
        ours.append(rows[cols].to_numpy().reshape(nw, 8, len(NAMES)))
    x64 = [x.astype(np.float64) for x in xs]
    wins = [bf.windows(x) for x in x64]
    print("value checks, the Parquet table against (all files unless stated):")
    lib = [fe.extract_features(LIBEMG[:6], w) for w in wins]
    for j, name in enumerate(LIBEMG[:6]):
        bf.check(
            f"libemg {name}",
            np.concatenate([o[..., j] for o in ours]),
            np.concatenate([d[name] for d in lib]).astype(np.float64),
            exact=name == "ZC",
        )
    # SSC: libemg's (x1-x0)(x1-x2) >= 0 counts flat runs (89% of the raw rows repeat the
    # previous one); ours collapses repeated values first. On de-duplicated windows they agree.
    got, ref = [], []
    for o, w in zip(ours[:ssc_files], wins[:ssc_files], strict=True):
        got.append(o[..., 6])
        ref.append(
            np.array(
                [
                    [
                        fe.getSSCfeat(r[np.r_[True, r[1:] != r[:-1]]][None, None, :], 0.0)[0, 0]
                        for r in w[k]
                    ]
                    for k in range(w.shape[0])
                ],
                float,
            )
        )
    bf.check(
        f"libemg SSC on de-duplicated windows ({ssc_files} files)",
        np.concatenate(got),
        np.concatenate(ref),
        exact=True,
    )
    raw = np.concatenate([fe.getSSCfeat(w, 0.0) for w in wins])
    print(
        f"  info  libemg raw SSC mean {raw.mean():.1f} per window vs ours "
        f"{np.concatenate([o[..., 6] for o in ours]).mean():.1f} (flat runs counted)"
    )
    # Constant windows: ours gives 0 by definition; libemg divides by a zero total power (its
    # MDF then raises), so they get a stand-in ramp here and are left out of the comparison.
    live = np.concatenate([np.ptp(w, axis=-1) > 0 for w in wins])
    lib_sp = []
    for w in wins:
        centred = w - w.mean(-1, keepdims=True)
        centred[np.ptp(w, axis=-1) == 0] = np.linspace(-1.0, 1.0, LENGTH)
        lib_sp.append(fe.extract_features(["MNF", "MDF"], centred))
    print(
        f"  info  {np.sum(~live)} constant (window, channel) pairs left out of MNF/MDF vs "
        "libemg (ours 0 by definition)"
    )
    bf.check(
        "libemg MNF (mean-removed windows)",
        np.concatenate([o[..., 7] for o in ours])[live],
        np.concatenate([d["MNF"] for d in lib_sp])[live],
    )
    same = np.mean(
        np.concatenate([o[..., 8] for o in ours])[live]
        == np.concatenate([d["MDF"] for d in lib_sp])[live]
    )
    print(
        f"  check {'libemg MDF (mean-removed windows)':52s} "
        f"{'OK' if same > 0.999 else 'MISMATCH'} ({same:.5%} identical; libemg takes the "
        "first bin with cumulative power > half, ours >= half)"
    )
    if same <= 0.999:
        sys.exit("values disagree: libemg MDF")
    td = [bf.numpy_td(x) for x in x64]
    sp = [bf.numpy_spectral(x) for x in x64]
    for j, name in enumerate(NAMES):
        ref = np.concatenate(
            [t[..., j] if j < 7 else s[..., j - 7] for t, s in zip(td, sp, strict=False)]
        )
        bf.check(
            f"NumPy {name}",
            np.concatenate([o[..., j] for o in ours]),
            ref,
            exact=name in ("zc", "ssc", "mdf"),
        )


def profile_pipeline(store: Path, out: Path, overwrite: bool = False) -> None:
    """Print the CPU time and cProfile's costliest functions of one in-process run."""
    import cProfile
    import pstats

    import dask

    spec = make_spec()
    with dask.config.set(scheduler="synchronous"):
        run_pipeline(store, out, spec)  # warm-up: imports, Numba cache, page cache
        if not overwrite:
            shutil.rmtree(out, ignore_errors=True)  # a new folder, as in the timed runs
        profiler = cProfile.Profile()
        cpu0 = time.process_time()
        profiler.enable()
        run_pipeline(store, out, spec)
        profiler.disable()
        cpu = time.process_time() - cpu0
    shutil.rmtree(out, ignore_errors=True)
    print(f"in-process store -> Parquet (synchronous scheduler): CPU {cpu:.3f} s")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=ROOT.parent / "bench-data" / "emg-gestures.zarr")
    ap.add_argument(
        "--reingest",
        action="store_true",
        help="delete --store and ingest it again (e.g. after a store format change)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="profile one in-process run only")
    ap.add_argument("--libemg-repeats", type=int, default=2)
    ap.add_argument(
        "--overwrite",
        action="store_true",
        help="write each timed run over the previous run's files (default: a new folder)",
    )
    ap.add_argument(
        "--ssc-files",
        type=int,
        default=51,
        help="files on which SSC is checked against libemg window by window",
    )
    args = ap.parse_args()
    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')}  load "
        f"{os.getloadavg()[0]:.2f}  {' '.join(sys.argv)}"
    )

    if args.reingest:
        shutil.rmtree(args.store, ignore_errors=True)
    if not args.store.exists():
        ingest_store(args.store)
    rids, xs = load_signals(args.store)
    ch_samples = sum(x.size for x in xs)
    n_win = sum((x.shape[0] - LENGTH) // STEP + 1 for x in xs)
    print(
        f"store {args.store}: {len(rids)} recordings, {ch_samples / 1e6:.2f} M channel-samples,"
        f" {n_win} windows x 8 channels x {len(NAMES)} features"
    )

    out = args.store.parent / "emg-gestures-features.parquet"
    if args.profile:
        profile_pipeline(args.store, out, args.overwrite)
        return
    fe = bf.load_libemg()
    try:
        runs, graph = time_pipeline(args.store, out, args.repeats, args.overwrite)
        check_values(out, rids, xs, fe, args.ssc_files)
    finally:
        shutil.rmtree(out, ignore_errors=True)

    x64 = [libemg_windows(x.astype(np.float64)) for x in xs]
    x32 = [libemg_windows(x) for x in xs]
    lib64 = time_libemg(fe, x64, args.libemg_repeats)
    lib32 = time_libemg(fe, x32, args.libemg_repeats)
    lib_wall, lib_cpu, lib_dtype = min(((*lib64, "float64"), (*lib32, "float32")))

    wall = min(r[0] for r in runs)
    cpu = min(r[1] + r[2] for r in runs)
    print("\n| path | wall s | CPU s | M ch-samples/s per core (wall) | (CPU) |")
    print("|---|---:|---:|---:|---:|")
    for label, w, c in [
        ("this project: Zarr store -> Parquet, 1 worker x 1 thread", wall, cpu),
        (f"libemg FeatureExtractor, in memory ({lib_dtype} windows)", lib_wall, lib_cpu),
    ]:
        print(
            f"| {label} | {w:.3f} | {c:.3f} | {ch_samples / w / 1e6:.1f} | "
            f"{ch_samples / c / 1e6:.1f} |"
        )
    print(
        "\nruns (wall, client CPU, worker CPU) s: "
        + ", ".join(f"({w:.3f}, {c:.3f}, {k:.3f})" for w, c, k in runs)
    )
    print(
        f"client CPU of opening the store and building the graph alone: {graph:.3f} s (best "
        f"of 3); output {'written over the previous run' if args.overwrite else 'a new folder'}"
    )
    print(
        f"libemg float64 windows: wall {lib64[0]:.3f} s, CPU {lib64[1]:.3f} s; "
        f"float32: wall {lib32[0]:.3f} s, CPU {lib32[1]:.3f} s"
    )
    print(
        f"ratio store->Parquet vs libemg in memory: {lib_wall / wall:.1f}x (wall), "
        f"{lib_cpu / cpu:.1f}x (CPU)  [issue 14 item 7: >= 15x, and >= 70 M ch-samples/s per core]"
    )


if __name__ == "__main__":
    main()
