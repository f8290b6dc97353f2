"""Reader ``wfdb``: PhysioNet WFDB records (``.hea`` + signal files), read with ``wfdb``.

A record is named by its header: a folder is searched (symlinks followed) for ``*.hea``
files, and a multi-segment record's segment headers are skipped (only single-segment
records with one sampling rate for all signals are read: a multi-frequency record, whose
signals have several samples per frame, is refused with each signal's rate).

Streaming: ``blocks()`` reads ``block_samples`` samples at a time with
``wfdb.rdrecord(sampfrom=, sampto=, physical=True)``, so a record larger than memory is
never loaded. Units follow the store's convention (:mod:`pipeline.io`): a voltage in
``mV``/``uV`` is converted to volts. The channel type is derived from the signal name as
for EDF labels (``"EEG Fpz-Cz"`` -> ``eeg``, ``"ECG"`` -> ``ecg``, else ``misc``).

Annotations (option ``annotations``, the annotator extensions; default every one of
``ANNOTATORS`` present beside the header) become events: onset ``sample / fs``, duration
0, description the annotation symbol, followed by its auxiliary note when it has one
(``"+ (AFIB"``) and prefixed by ``<extension>/`` when several annotators are read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.exceptions import InputError, SpecError
from pipeline.io._options import (
    check_options,
    compile_pattern,
    list_files,
    source_files,
)
from pipeline.io._units import to_store_unit
from pipeline.io.base import RecordingSource, SourceFile, register_reader
from pipeline.io.edf import channel_name_and_type

__all__ = ["ANNOTATORS", "WfdbReader"]

logger = logging.getLogger(__name__)

ANNOTATORS = ("atr", "ann", "qrs", "ecg", "apn", "st", "arousal")
BLOCK_SAMPLES = 1 << 20


def _header(path: Path) -> Any:
    import wfdb

    try:
        return wfdb.rdheader(str(path.with_suffix("")))
    except Exception as exc:  # wfdb raises ValueError, FileNotFoundError, IndexError...
        msg = f"{path}: wfdb cannot read this header: {type(exc).__name__}: {exc}"
        raise InputError(msg, path=str(path)) from exc


@register_reader("wfdb")
class WfdbReader:
    """Read PhysioNet WFDB records (see the module docstring for the options)."""

    name = "wfdb"
    version = "1.0"

    def discover(self, source: Path, **options: Any) -> list[SourceFile]:
        """List the WFDB records (``.hea`` files) of ``source`` with their ids.

        Returns
        -------
        list of SourceFile
            Sorted by path; ``pattern`` as for the other readers.
        """
        check_options(self.name, options)
        pattern = compile_pattern(options.get("pattern"), self.name)
        source = Path(source)
        if source.is_file() and source.suffix.lower() != ".hea":
            source = source.with_suffix(".hea")  # a signal file names its record
        paths = list_files(source, ["*.hea"], self.name)
        if not paths:
            msg = f"{source}: no .hea files found: expected WFDB records (reader 'wfdb')"
            raise InputError(msg, path=str(source))
        return source_files(paths, pattern)

    def read(self, file: SourceFile, **options: Any) -> RecordingSource:
        """Open one record and return its metadata, annotations as events, and blocks.

        Raises
        ------
        InputError
            An unreadable header, a multi-segment or multi-frequency record, a record with
            no signals or samples, a named annotator with no file.
        """
        check_options(self.name, options)
        block_samples = int(options.get("block_samples") or BLOCK_SAMPLES)
        if block_samples <= 0:
            msg = f"reader 'wfdb': option 'block_samples' must be positive, found {block_samples!r}"
            raise SpecError(msg)
        path = Path(file.path)
        head = _header(path)
        if getattr(head, "n_seg", None) is not None:
            msg = f"{path}: multi-segment WFDB record: expected a single-segment record"
            raise InputError(msg, path=str(path))
        names = [str(s) for s in (head.sig_name or [])]
        n_samples = int(head.sig_len or 0)
        if not names or n_samples == 0:
            msg = f"{path}: no signals or no samples ({len(names)} signals, {n_samples} samples)"
            raise InputError(msg, path=str(path))
        spf = [int(k or 1) for k in (head.samps_per_frame or [1] * len(names))]
        if len(set(spf)) > 1:
            rates = ", ".join(f"{n}={head.fs * k:g} Hz" for n, k in zip(names, spf, strict=True))
            msg = f"{path}: signals have different sampling rates ({rates}); expected one rate"
            raise InputError(msg, path=str(path))
        fs = float(head.fs) * spf[0]
        converted = [to_store_unit(str(u)) for u in head.units]
        factors = np.array([f for _, f in converted], dtype=np.float64)
        types = [channel_name_and_type(n)[1] for n in names]
        counts = Counter(types)
        modality = max(counts, key=lambda t: (counts[t], -types.index(t)))
        events = _events(path, fs, options.get("annotations"))
        record = str(path.with_suffix(""))
        start = None
        if head.base_date is not None and head.base_time is not None:
            from datetime import datetime

            start = datetime.combine(head.base_date, head.base_time).isoformat()

        def blocks() -> Iterator[np.ndarray]:
            import wfdb

            for a in range(0, n_samples, block_samples):
                b = min(a + block_samples, n_samples)
                rec = wfdb.rdrecord(record, sampfrom=a, sampto=b, physical=True)
                yield (rec.p_signal * factors).astype(np.float32)

        return RecordingSource(
            n_samples=n_samples,
            sampling_rate=fs,
            channels=names,
            units=[u for u, _ in converted],
            channel_types=types,
            modality=modality,
            blocks=blocks,
            label=file.extra.get("label"),
            events=events,
            start_time=start,
            attrs={"wfdb_units": [str(u) for u in head.units], "comments": list(head.comments)},
            channel_attrs={"source_unit": [str(u) for u in head.units]},
        )


def _events(path: Path, fs: float, annotators: Any) -> pd.DataFrame | None:
    import wfdb

    record = path.with_suffix("")
    if annotators is None:
        annotators = [a for a in ANNOTATORS if record.with_suffix(f".{a}").exists()]
    elif isinstance(annotators, str):
        annotators = [annotators]
    frames = []
    for ext in annotators:
        if not record.with_suffix(f".{ext}").exists():
            msg = f"{path}: option 'annotations' names {ext!r}, but {record}.{ext} does not exist"
            raise InputError(msg, path=str(path))
        try:
            ann = wfdb.rdann(str(record), ext)
        except Exception as exc:
            msg = f"{record}.{ext}: wfdb cannot read this annotation file: {exc}"
            raise InputError(msg, path=str(path)) from exc
        prefix = f"{ext}/" if len(annotators) > 1 else ""
        notes = ann.aux_note or [""] * len(ann.sample)
        desc = [
            f"{prefix}{s}" + (f" {n.strip(chr(0)).strip()}" if n.strip(chr(0)).strip() else "")
            for s, n in zip(ann.symbol, notes, strict=True)
        ]
        frames.append(
            pd.DataFrame(
                {
                    "onset": np.asarray(ann.sample, dtype=np.float64) / fs,
                    "duration": np.zeros(len(desc)),
                    "description": desc,
                }
            )
        )
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True).sort_values("onset", kind="stable")
