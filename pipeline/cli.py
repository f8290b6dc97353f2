"""The ``cohort`` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from pipeline.exceptions import CohortError, IngestError

log = logging.getLogger("pipeline")


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        msg = f"reader option {text!r}: expected KEY=VALUE (VALUE is read as YAML)"
        raise argparse.ArgumentTypeError(msg)
    key, value = text.split("=", 1)
    return key.strip().replace("-", "_"), yaml.safe_load(value)


def _parse_label_map(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(","):
        if "=" not in item:
            msg = f"--label-map {text!r}: expected VALUE=LABEL pairs, e.g. 1=rest,2=task"
            raise argparse.ArgumentTypeError(msg)
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@contextlib.contextmanager
def cluster_client(profile: str | None, workers: int | None = None) -> Iterator[Any]:
    """Start (or connect to) the cluster named by ``profile`` and print its dashboard link."""
    from pipeline.cluster import connect, load_profile, with_workers

    with connect(with_workers(load_profile(profile), workers)) as client:
        link = getattr(client, "dashboard_link", None)
        if link:
            print(f"Dask dashboard: {link}", file=sys.stderr)
        yield client


def format_index(index: Any) -> str:
    """Return the cohort index as a human-readable table with a summary line."""
    import pandas as pd

    if index.empty:
        return "empty cohort store (0 recordings)"
    table = pd.DataFrame(
        {
            "recording": index["recording"],
            "subject": index["subject"],
            "session": index["session"].fillna("-"),
            "run": index["run"].fillna("-"),
            "modality": index["modality"],
            "duration_s": index["duration"].round(1),
            "rate_hz": index["sampling_rate"],
            "channels": index["n_channels"],
            "labels": [",".join(map(str, v)) for v in index["labels"]],
        }
    )
    rates = ", ".join(f"{r:g} Hz" for r in sorted(index["sampling_rate"].unique()))
    labels = sorted({str(x) for v in index["labels"] for x in v})
    chans = sorted({tuple(c) for c in index["channels"]})
    summary = (
        f"{index['subject'].nunique()} subjects, {len(index)} recordings, "
        f"{index['duration'].sum() / 60:.1f} min in total, "
        f"{len(chans)} channel set(s) of {', '.join(str(len(c)) for c in chans)} channels, "
        f"{rates}; labels: {', '.join(labels) or 'none'}"
    )
    return table.to_string(index=False) + "\n\n" + summary


def cmd_ingest(args: argparse.Namespace) -> int:
    from pipeline.ingest import ingest

    options = dict(args.option or [])
    keys = ("pattern", "label_from", "label_map", "metadata", "metadata_key")
    for key in (*keys, "datatype", "task", "subjects"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    with cluster_client(args.cluster, args.workers) as client:
        try:
            result = ingest(
                args.source,
                args.format,
                args.out,
                on_error=args.on_error,
                chunk_samples=args.chunk_samples,
                allow_mixed_channels=args.allow_mixed_channels,
                client=client,
                **options,
            )
        except IngestError as exc:
            result = getattr(exc, "result", None)
            if result is not None:
                print(f"ingest: {result.summary()}")
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"ingest: {result.summary()}")
    print(f"store: {Path(args.out).resolve()}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from pipeline.store import open_cohort

    cohort = open_cohort(args.store)
    print(f"cohort store {Path(args.store).resolve()}  (fingerprint {cohort.fingerprint[:16]})")
    print(format_index(cohort.index))
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from pipeline.check import check_cohort, load_checked_task
    from pipeline.store import open_cohort
    from pipeline.table import run_features

    spec, table_spec = load_checked_task(args.spec)  # the loader of cohort run, before a cluster
    check_cohort(spec, str(Path(args.spec)), open_cohort(args.store).index)
    with cluster_client(args.cluster, args.workers):
        out = run_features(
            args.store,
            table_spec,
            args.out,
            recordings=args.recording or None,
            overwrite=args.overwrite,
        )
    print(f"feature table: {Path(out).resolve()}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.learn import load_bundle
    from pipeline.predict import predict_recordings, write_predictions

    bundle = load_bundle(args.bundle)
    with cluster_client(args.cluster, args.workers):
        frame = predict_recordings(bundle, args.store, args.recording)
    path = write_predictions(frame, args.out)
    n_rec = frame["recording"].nunique()
    print(f"predictions: {len(frame)} windows of {n_rec} recording(s) -> {path.resolve()}")
    meta = frame.attrs.get("predict", {})
    policy = meta.get("label_policy", {})
    left_out = sum(r["windows_dropped"] or 0 for r in meta.get("recordings", {}).values())
    print(
        f"scored the windows validation scored (mixed windows: {policy.get('mixed')}, "
        f"excluded labels: {policy.get('exclude')}); {left_out} window(s) left out; "
        "what was scored is in the predictions' metadata"
    )
    known = frame["label"].isin(bundle.classes)
    if known.any():
        acc = (frame.loc[known, "label"] == frame.loc[known, "prediction"]).mean()
        print(
            f"accuracy on the {known.sum()} windows labelled with one of the model's "
            f"classes: {acc:.3f}"
        )
    return 0


def _print_run(summary: Any) -> None:
    print()
    print(summary.table())
    print()
    if summary.metrics:
        figures = ", ".join(f"{k} {v:.3f}" for k, v in summary.metrics.items())
        print(f"validation: {figures}")
    latest = summary.out / "latest"
    print(f"cohort store: {summary.store}")
    print(f"report:       {latest / 'report.html'}  (and report.json)")
    print(f"model bundle: {latest / 'model.skops'}")
    print(f"dask report:  {latest / 'dask-report.html'}")
    print(f"done in {summary.seconds:.1f} s")


def _on_cluster(client: Any) -> None:
    link = getattr(client, "dashboard_link", None)
    if link:
        print(f"Dask dashboard: {link}", flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.stages import run_task

    out = Path(args.out) if args.out else Path("runs") / Path(args.task).stem
    summary = run_task(
        args.task,
        out,
        cluster=args.cluster,
        progress=not args.no_progress,
        on_cluster=_on_cluster,
        workers=args.workers,
    )
    _print_run(summary)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from importlib.resources import as_file

    from pipeline._data import demo_task

    args.out = args.out or "demo-out"
    # the demo task ships inside the package: a real file for as long as the run lasts
    with as_file(demo_task()) as task:
        args.task = str(task)
        return cmd_run(args)


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.cache import StageCache, format_status

    if not (Path(args.out) / "runs").is_dir():
        msg = f"{args.out}: expected an output folder of cohort run (with runs/); found none"
        raise CohortError(msg)
    cache = StageCache(args.out)
    print(format_status(cache.status()))
    runs = cache.runs()
    if runs:
        last = runs[-1]
        wall = last.get("wall_s")
        took = (
            f"{wall:.1f} s" if wall is not None else f"pid {last.get('pid')} on {last.get('host')}"
        )
        line = f"\nlast run {last['id']}: {last['status']}, {len(last.get('stages', []))} stages"
        print(f"{line}, {took}" + (f"; {last['error']}" if last.get("error") else ""))
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from pipeline.cache import StageCache

    cache = StageCache(args.out)
    if args.keep_runs is not None:
        runs = sorted(cache.runs_dir.glob("*.json"))
        old = runs[: max(0, len(runs) - args.keep_runs)]
        for path in old:
            if not args.dry_run:
                path.unlink()
        print(f"{'would drop' if args.dry_run else 'dropped'} {len(old)} old run manifest(s)")
        if args.dry_run:  # what clean would remove once those manifests are gone
            keep = {
                s["key"]
                for r in runs[len(old) :]
                for s in json.loads(r.read_text()).get("stages", [])
            }
            removed = cache.clean(keep, dry_run=True)
            print(f"would remove {len(removed)} stage output(s)")
            return 0
    removed = cache.clean(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} stage output(s) not referenced by any run")
    for key in removed:
        print(f"  {key}")
    return 0


def _version() -> str:
    from pipeline import __version__

    return __version__


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a positive number of worker processes, e.g. 4; found {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        "-w",
        type=_positive,
        metavar="N",
        help="worker processes of the local cluster (default: one per core), e.g. -w 2",
    )


def output_error(exc: OSError, out: str | None = None) -> str:
    """Return one line for an output that cannot be written: the path, why, the free space.

    Parameters
    ----------
    exc : OSError
        With ``errno`` ENOSPC, EDQUOT or EROFS.
    out : str, optional
        The command's output folder, named when the error carries no file name.
    """
    import shutil

    path = Path(exc.filename or out or ".")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
        free = f"{usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:.1f} MiB"
    except OSError:
        free = "free space unknown"
    return (
        f"cannot write {str(path)!r}: {exc.strerror or exc} ({free} at {str(probe)!r}); "
        "free some space or make it writable, or choose another --out"
    )


#: One example per subcommand, shown at the end of its ``--help``.
EXAMPLES = {
    "ingest": "cohort ingest ../data/emg-gestures --format uci-emg --out emg.zarr",
    "info": "cohort info emg.zarr",
    "features": "cohort features emg.zarr --spec tasks/emg_gestures.yaml --out emg-features",
    "run": "cohort run tasks/emg_gestures.yaml --out runs/emg --workers 2",
    "demo": "cohort demo --out demo-out",
    "predict": "cohort predict runs/emg/latest/model.skops --store new.zarr --out pred.csv",
    "status": "cohort status runs/emg",
    "clean": "cohort clean runs/emg --keep-runs 1 --dry-run",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``cohort`` command."""
    parser = argparse.ArgumentParser(
        prog="cohort",
        description="Multi-subject biomedical recordings to validated, deployable models.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("--version", action="version", version=f"cohort {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="ingest source files into a cohort store")
    p.add_argument("source", help="file or folder to ingest ('demo' for the synthetic demo)")
    p.add_argument(
        "--format",
        "-f",
        required=True,
        help="reader: uci-emg, edf, mne, bids (-O datatype=eeg), wfdb, csv, synthetic",
    )
    p.add_argument("--out", "-o", required=True, help="cohort store (created if missing)")
    p.add_argument("--pattern", help=r"file-name regex, e.g. 'Subject(?P<subject>\d+)_(?P<run>\d)'")
    p.add_argument("--label-from", help="pattern group giving a per-recording label, e.g. run")
    p.add_argument("--label-map", type=_parse_label_map, help="e.g. 1=rest,2=task")
    p.add_argument("--metadata", help="per-subject table (CSV) joined to the recordings")
    p.add_argument("--metadata-key", help="column of the metadata table naming the subject")
    p.add_argument("--datatype", help="bids: the datatype to read (eeg, emg, ieeg)")
    p.add_argument("--task", help="bids: only this task, e.g. rest")
    p.add_argument(
        "--subjects",
        type=lambda s: [v.strip() for v in s.split(",") if v.strip()],
        help="bids: only these subjects, comma-separated labels without 'sub-', e.g. 01,02",
    )
    p.add_argument(
        "--option",
        "-O",
        action="append",
        type=_parse_option,
        metavar="KEY=VALUE",
        help="other reader option (repeatable), VALUE parsed as YAML",
    )
    p.add_argument("--chunk-samples", type=int, help="chunk length along time (samples)")
    p.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="stop at the first bad file (default) or skip bad files",
    )
    p.add_argument(
        "--allow-mixed-channels",
        action="store_true",
        help="accept recordings whose channels differ from the cohort's",
    )
    p.add_argument(
        "--cluster",
        help="cluster profile: YAML file, shipped name (local, slurm, pbs) or tcp://host:port",
    )
    _add_workers(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("info", help="print a cohort store's index")
    p.add_argument("store", help="cohort store (folder written by cohort ingest or run)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("features", help="compute a cohort's feature table (Parquet)")
    p.add_argument("store", help="cohort store")
    p.add_argument(
        "--spec", required=True, help="task spec (YAML, as for cohort run): its features"
    )
    p.add_argument(
        "--out", "-o", required=True, help="output folder: one Parquet file per recording"
    )
    p.add_argument("--recording", action="append", help="only this recording (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing table")
    p.add_argument(
        "--cluster",
        help="cluster profile: YAML file, shipped name (local, slurm, pbs) or tcp://host:port",
    )
    _add_workers(p)
    p.set_defaults(func=cmd_features)

    for name, helptext, func in (
        ("run", "run a task: ingest, features, fit/validate, report (cached stages)", cmd_run),
        ("demo", "run the whole pipeline on the built-in synthetic demo cohort", cmd_demo),
    ):
        p = sub.add_parser(name, help=helptext)
        if name == "run":
            p.add_argument("task", help="task spec (YAML), e.g. tasks/emg_gestures.yaml")
        p.add_argument(
            "--cluster",
            help="cluster profile: YAML file, shipped name (local, slurm, pbs) "
            "or tcp://host:port (default: a local cluster)",
        )
        p.add_argument("--out", help="output folder (default runs/<task> or demo-out)")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        _add_workers(p)
        p.set_defaults(func=func)

    p = sub.add_parser("predict", help="apply a model bundle to recordings of a store")
    p.add_argument("bundle", help="model bundle (.skops) written by cohort run")
    p.add_argument("--store", required=True, help="cohort store holding the recordings")
    p.add_argument("--recording", action="append", help="recording id (repeatable; default all)")
    p.add_argument("--out", "-o", required=True, help="predictions file (.csv or .parquet)")
    p.add_argument(
        "--cluster",
        help="cluster profile: YAML file, shipped name (local, slurm, pbs) or tcp://host:port",
    )
    _add_workers(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("status", help="list a run folder's stages, keys and timings")
    p.add_argument("out", help="output folder of cohort run")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("clean", help="remove stage outputs no run manifest references")
    p.add_argument("out", help="output folder of cohort run")
    p.add_argument(
        "--keep-runs",
        type=int,
        metavar="N",
        help="first drop all but the N most recent run manifests",
    )
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.set_defaults(func=cmd_clean)
    for name, subparser in sub.choices.items():
        subparser.epilog = f"example:\n  {EXAMPLES[name]}"
        subparser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cohort`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        import dask

        # distributed sets its loggers' levels from this config when it is first imported
        # "distributed.sizeof": the comm layer estimates each message's size to decide
        # whether to serialise it off the event loop; on a deeply nested graph message the
        # estimate hits Python's recursion limit and it offloads anyway (the safe choice):
        # its warning says nothing is wrong, twice per run. Through the config, so that
        # the worker processes (which get this process's config) stay quiet too.
        quiet = {"distributed": "warning", "distributed.sizeof": "error"}
        dask.config.set({"logging": quiet | {"bokeh": "error", "tornado": "error"}})
        logging.getLogger("distributed").setLevel(logging.WARNING)
        logging.getLogger("distributed.sizeof").setLevel(logging.ERROR)
    try:
        return int(args.func(args) or 0)
    except CohortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        from pipeline._fs import OUTPUT_ERRNOS

        if exc.errno not in OUTPUT_ERRNOS:
            raise
        print(f"error: {output_error(exc, getattr(args, 'out', None))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
