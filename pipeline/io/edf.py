"""Reader ``edf``: EDF, EDF+ (continuous) and BDF/BDF+ files, read with pyedflib.

Streaming
---------
``blocks()`` reads ``block_samples`` samples of every selected channel at a time with
``pyedflib.EdfReader.readSignal(chn, start, n)`` (physical values, cast to float32), so a
file larger than memory never has to fit in RAM. Voltages are stored in volts
(:mod:`pipeline.io._units`): a header's ``uV``/``mV`` is converted, and kept as the
channel's ``source_unit``.

Channels
--------
The channel type comes from the label's first word: ``EEG``, ``ECG``/``EKG``, ``EMG``,
``EOG``, ``RESP``, ``ACC``, ``MISC`` (case-insensitive). A label without such a prefix is
``eeg`` if it is a 10-20/10-10 electrode name (PhysioNet's dot padding, ``Fc5.``,
ignored), ``emg``/``ecg``/``eog`` if it is a numbered label such as ``EMG0`` (BIDS-EMG),
else ``misc``. A channel whose electrodes are
all reference sites (``A1``, ``A2``, ``M1``, ``M2``, ``REF``; e.g. ``EEG A2-A1``, the
ear-to-ear derivation) is typed ``ref``, not ``eeg``: it carries no scalp signal, so EEG
feature sets should not pick it up by default. The channel name is the label without its
type prefix (``EEG Fp1`` -> ``Fp1``, ``ECG ECG`` -> ``ECG``) unless that would make two
names equal, in which case the full labels of those channels are kept. The original labels,
prefilter and transducer strings are kept per channel (``channel_attrs``: the store's
``original_label``, ``prefilter`` and ``transducer`` coordinates along ``channel``).

Sampling rates
--------------
Channels with different sampling rates are never mixed silently: such a file is refused
with the rate of every channel, unless ``channels=[...]`` (names or labels) or ``rate=``
selects channels that share one rate, or ``resample=<Hz>`` brings every selected channel to
that rate with :func:`scipy.signal.resample_poly` (anti-aliased polyphase; each channel is
resampled whole, so the recording is held in memory as float32 while it is written).
A plain EDF/BDF carrying an ``EDF Annotations`` signal keeps its annotations as events.
A BDF ``Status`` channel is not stored as signal: its trigger codes become events (one per
change, see :func:`_status_events`; ``status_events=False`` keeps it as a ``misc`` channel).
An EDF+D/BDF+D (discontinuous) file is read if its data records are contiguous (each
record's onset, in the ``EDF Annotations`` signal, is the previous one's plus the record
duration: :mod:`pipeline.io._edfplus_d`, as pyedflib opens no EDF+D file); one with a gap
is refused with the record index and its onset in seconds, since its samples do not lie on
one uniform grid.

Identifiers and labels
----------------------
``pattern`` (a regex with named groups ``subject``, ``session``, ``run``) must match the whole
file stem; without it the subject is the stem with non-alphanumeric characters removed.
``label_from`` names a group whose value is the per-recording label, mapped through
``label_map`` if given. ``metadata`` is a CSV table of per-subject values, matched on its
``metadata_key`` column (default: the first column) either exactly or by the digits of the
key (``"Subject00"`` matches subject ``"00"``); its other columns are joined as snake_case
JSON-safe values into ``SourceFile.extra["metadata"]`` and the recording's attributes.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyedflib

from pipeline._fs import jsonable
from pipeline.exceptions import InputError, SpecError
from pipeline.io._edfplus_d import ContiguousEdf, tal_annotations
from pipeline.io._options import (
    check_options,
    check_unique_ids,
    compile_pattern,
    list_files,
    match_entities,
    snake_case,
)
from pipeline.io._units import store_units
from pipeline.io.base import RecordingSource, SourceFile, register_reader

__all__ = ["EdfReader", "channel_name_and_type", "read_raw_header"]

logger = logging.getLogger(__name__)

SUFFIXES = (".edf", ".bdf")
BLOCK_SAMPLES = 1 << 20
TYPE_PREFIXES = {
    "eeg": "eeg",
    "ecg": "ecg",
    "ekg": "ecg",
    "emg": "emg",
    "eog": "eog",
    "resp": "resp",
    "acc": "acc",
    "misc": "misc",
}
REFERENCE_SITES = {"a1", "a2", "m1", "m2", "ref"}
_NUMBERED = re.compile(r"(EMG|ECG|EKG|EOG)[_-]?\d+", re.IGNORECASE)
_ELECTRODE = re.compile(r"(?:N|Fp|AF|F|FT|FC|T|TP|C|CP|P|PO|O|I|A|M)(?:z|\d{1,2})", re.IGNORECASE)
RESERVED_ATTRS = {
    "recording",
    "subject",
    "session",
    "run",
    "modality",
    "sampling_rate",
    "units",
    "channel_types",
    "start_time",
    "label",
    "source",
    "sha256",
    "reader",
    "reader_version",
    "pipeline_version",
}


def read_raw_header(path: Path) -> dict[str, Any]:
    """Parse the fixed EDF/BDF header and check the file size against it.

    Returns
    -------
    dict
        ``bdf`` (bool), ``reserved`` (``"EDF+C"``...), ``n_records``, ``record_duration``,
        ``labels`` (list of str), ``samples_per_record`` (list of int).

    Raises
    ------
    InputError
        If the file is empty, not an EDF/BDF file, or shorter than its header declares
        (truncated).
    """
    size = path.stat().st_size
    if size == 0:
        msg = f"{path}: empty file: expected an EDF/BDF header, found 0 bytes"
        raise InputError(msg, path=str(path))
    with open(path, "rb") as f:
        fixed = f.read(256)
        if len(fixed) < 256:
            msg = f"{path}: truncated header: expected at least 256 bytes, found {len(fixed)}"
            raise InputError(msg, path=str(path))
        bdf = fixed[:8] == b"\xffBIOSEMI"
        if not bdf and fixed[:8] != b"0       ":
            msg = (
                f"{path}: not an EDF or BDF file: expected the version field '0       ' "
                f"or '\\xffBIOSEMI', found {fixed[:8]!r}"
            )
            raise InputError(msg, path=str(path))
        try:
            header_bytes = int(fixed[184:192])
            n_records = int(fixed[236:244])
            record_duration = float(fixed[244:252])
            ns = int(fixed[252:256])
        except ValueError as exc:
            msg = f"{path}: malformed EDF/BDF header field: {exc}"
            raise InputError(msg, path=str(path)) from exc
        signal_header = f.read(ns * 256)
    if len(signal_header) < ns * 256:
        msg = (
            f"{path}: truncated header: {ns} signals need {256 + ns * 256} header bytes, "
            f"found {size}"
        )
        raise InputError(msg, path=str(path))

    def field(offset: int, width: int) -> list[str]:
        start = offset * ns
        return [
            signal_header[start + i * width : start + (i + 1) * width].decode("latin-1").strip()
            for i in range(ns)
        ]

    labels = field(0, 16)
    samples_per_record = [int(v) for v in field(16 + 80 + 8 * 5 + 80, 8)]
    bytes_per_sample = 3 if bdf else 2
    record_bytes = sum(samples_per_record) * bytes_per_sample
    if n_records >= 0 and record_bytes > 0:
        expected = header_bytes + n_records * record_bytes
        if size < expected:
            complete = (size - header_bytes) // record_bytes
            msg = (
                f"{path}: truncated file: the header declares {n_records} data records "
                f"({expected} bytes), found {size} bytes ({max(complete, 0)} complete records)"
            )
            raise InputError(msg, path=str(path))
        if size > expected:
            # pyedflib would read the declared records and drop the rest without a word.
            extra = size - expected
            msg = (
                f"{path}: the header declares {n_records} data records ({expected} bytes) but "
                f"the file has {size} bytes: {extra // record_bytes} more complete record(s) "
                f"and {extra % record_bytes} byte(s) after them; expected the record count "
                "to match the file's length (a writer that did not update the header?)"
            )
            raise InputError(msg, path=str(path))
    return {
        "bdf": bdf,
        "reserved": fixed[192:236].decode("latin-1").strip(),
        "n_records": n_records,
        "record_duration": record_duration,
        "labels": labels,
        "samples_per_record": samples_per_record,
    }


def channel_name_and_type(label: str) -> tuple[str, str]:
    """Return ``(name without type prefix, channel type)`` of an EDF signal label.

    Examples: ``"EEG Fp1"`` -> ``("Fp1", "eeg")``, ``"EEG A2-A1"`` -> ``("A2-A1", "ref")``,
    ``"ECG ECG"`` -> ``("ECG", "ecg")``, ``"Cz"`` -> ``("Cz", "eeg")``.
    """
    label = label.strip()
    first, _, rest = label.partition(" ")
    kind = TYPE_PREFIXES.get(first.lower())
    numbered = _NUMBERED.fullmatch(label)
    if kind is None and numbered is not None:  # BIDS-EMG style "EMG0", "ECG_2"
        return label, TYPE_PREFIXES[numbered.group(1).lower()]
    name = rest.strip() if kind is not None and rest.strip() else label
    # PhysioNet pads labels with dots to four characters ("Fc5.", "Iz.."): not part of the site.
    electrodes = [e.rstrip(".") for e in re.split(r"[-:/]", name) if e.rstrip(".")]
    if electrodes and all(e.lower() in REFERENCE_SITES for e in electrodes):
        return name, "ref" if kind in (None, "eeg") else kind
    if kind is None:
        kind = "eeg" if electrodes and all(_ELECTRODE.fullmatch(e) for e in electrodes) else "misc"
    return name, kind


def _channel_names(labels: Sequence[str]) -> tuple[list[str], list[str]]:
    pairs = [channel_name_and_type(label) for label in labels]
    names = [n for n, _ in pairs]
    counts = Counter(names)
    names = [n if counts[n] == 1 else label for n, label in zip(names, labels, strict=True)]
    duplicates = {n for n, c in Counter(names).items() if c > 1}
    if duplicates:
        # Renamed as MNE renames them ("F1-Ref-0", "F1-Ref-1"), so that both readers of a
        # file give the same names; the original labels stay in ``original_label``.
        seen: Counter[str] = Counter()
        renamed = []
        for n in names:
            if n in duplicates:
                renamed.append(f"{n}-{seen[n]}")
                seen[n] += 1
            else:
                renamed.append(n)
        logger.warning("duplicate channel labels %s renamed %s", sorted(duplicates), renamed)
        names = renamed
    return names, [t for _, t in pairs]


def _normalise_unit(unit: str) -> str:
    unit = unit.strip()
    return unit.replace("µ", "u").replace("μ", "u")


class _MetadataTable:
    """A per-subject metadata table matched on one key column."""

    def __init__(self, path: Path, key: str | None) -> None:
        path = Path(path)
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            msg = f"metadata table {str(path)!r} cannot be read as CSV: {exc}"
            raise InputError(msg, path=str(path)) from exc
        if table.empty:
            msg = f"metadata table {str(path)!r} has no rows: expected one row per subject"
            raise InputError(msg, path=str(path))
        key = table.columns[0] if key is None else key
        if key not in table.columns:
            msg = (
                f"metadata table {str(path)!r}: key column {key!r} not found; "
                f"columns are {list(table.columns)!r}"
            )
            raise SpecError(msg)
        self.path, self.key = path, key
        keys = table[key].astype(str).str.strip()
        self._exact = dict(zip(keys, range(len(table)), strict=True))
        self._digits: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            digits = "".join(re.findall(r"\d", k))
            if digits:
                self._digits.setdefault(digits, []).append(i)
        columns = [c for c in table.columns if c != key]
        names = [snake_case(str(c)) for c in columns]
        names = [f"metadata_{n}" if n in RESERVED_ATTRS else n for n in names]
        self._rows = [
            {
                n: jsonable(table[c].iloc[i], default=str)
                for n, c in zip(names, columns, strict=True)
            }
            for i in range(len(table))
        ]

    def lookup(self, subject: str, file: Path) -> dict[str, Any]:
        """Return the metadata of ``subject``; raise InputError if it has no unique row."""
        if subject in self._exact:
            return dict(self._rows[self._exact[subject]])
        rows = self._digits.get(subject, []) if subject.isdigit() else []
        if len(rows) == 1:
            return dict(self._rows[rows[0]])
        if len(rows) > 1:
            msg = (
                f"{file}: subject {subject!r} matches {len(rows)} rows of metadata table "
                f"{str(self.path)!r} (column {self.key!r}); expected exactly one"
            )
            raise InputError(msg, path=str(file))
        msg = (
            f"{file}: subject {subject!r} not found in metadata table {str(self.path)!r} "
            f"(column {self.key!r}, matched by full value or by its digits)"
        )
        raise InputError(msg, path=str(file))


def _open(path: Path) -> pyedflib.EdfReader | ContiguousEdf:
    with open(path, "rb") as f:
        reserved = f.read(197)[192:197]
    if reserved in (b"EDF+D", b"BDF+D"):
        # pyedflib refuses every EDF+D file; one with contiguous records is read from its
        # bytes, one with a gap is refused naming it (ContiguousEdf).
        return ContiguousEdf(path)
    try:
        return pyedflib.EdfReader(str(path))
    except OSError as exc:
        msg = f"{path}: pyedflib cannot read this file as EDF/BDF: {exc}"
        raise InputError(msg, path=str(path)) from exc


@register_reader("edf")
class EdfReader:
    """Read EDF, EDF+ and BDF files (see the module docstring for the options)."""

    name = "edf"
    # 2.0: voltages in volts (1.0 kept the header's unit, uV for most EEG), so that a store
    # ingested by 1.0 is re-ingested rather than mixing the two scales.
    version = "2.0"

    def discover(self, source: Path, **options: Any) -> list[SourceFile]:
        """List the ``.edf``/``.bdf`` files of ``source`` with their ids, labels, metadata.

        Parameters
        ----------
        source : Path
            A file, or a folder searched recursively.
        **options
            ``pattern``, ``label_from``, ``label_map``, ``metadata``, ``metadata_key`` (and
            the read options ``channels``, ``rate``, ``block_samples``, accepted and unused).

        Returns
        -------
        list of SourceFile
            Sorted by path; ``extra`` holds ``label`` (str or None) and ``metadata`` (dict).
        """
        check_options(self.name, options)
        pattern = compile_pattern(options.get("pattern"), self.name)
        label_from = options.get("label_from")
        label_map = options.get("label_map")
        if label_from is not None and (pattern is None or label_from not in pattern.groupindex):
            groups = sorted(pattern.groupindex) if pattern is not None else []
            msg = (
                f"reader 'edf': option 'label_from' {label_from!r} must name a group of "
                f"'pattern'; the pattern's groups are {groups!r}"
            )
            raise SpecError(msg)
        if label_map is not None and label_from is None:
            msg = "reader 'edf': option 'label_map' needs 'label_from' (the group it maps)"
            raise SpecError(msg)
        if label_map is not None:
            label_map = {str(k): str(v) for k, v in dict(label_map).items()}
        table = None
        if options.get("metadata") is not None:
            table = _MetadataTable(Path(options["metadata"]), options.get("metadata_key"))
        elif options.get("metadata_key") is not None:
            msg = "reader 'edf': option 'metadata_key' needs 'metadata' (the table's path)"
            raise SpecError(msg)

        paths = list_files(Path(source), [f"*{x}" for x in SUFFIXES], self.name)
        if not paths:
            msg = f"{source}: no .edf or .bdf files found"
            raise InputError(msg, path=str(source))

        files = []
        for path in paths:
            groups = match_entities(path, pattern)
            label = None
            if label_from is not None:
                value = groups.get(label_from)
                if label_map is None:
                    label = value
                elif value in label_map:
                    label = label_map[value]
                else:
                    msg = (
                        f"{path}: group {label_from!r} is {value!r}, which 'label_map' does "
                        f"not map; expected one of {sorted(label_map)!r}"
                    )
                    raise InputError(msg, path=str(path))
            subject = str(groups["subject"])
            metadata = table.lookup(subject, path) if table is not None else {}
            files.append(
                SourceFile(
                    path=path,
                    subject=subject,
                    session=groups.get("session"),
                    run=groups.get("run"),
                    extra={"label": label, "metadata": metadata},
                )
            )
        check_unique_ids(files)
        return files

    def read(self, file: SourceFile, **options: Any) -> RecordingSource:
        """Open one file and return its metadata, events and a block iterator.

        Options ``channels`` (list of names or labels), ``rate`` (Hz) select channels;
        ``block_samples`` (default 2**20) sets the block length. The discover options are
        accepted and unused.

        Raises
        ------
        InputError
            Empty, truncated or non-EDF file; EDF+D with a gap between records; several
            sampling rates without a selection; unknown channel; a selection with several
            rates.
        """
        check_options(self.name, options)
        path = Path(file.path)
        raw = read_raw_header(path)
        block_samples = int(options.get("block_samples") or BLOCK_SAMPLES)
        if block_samples <= 0:
            msg = f"reader 'edf': option 'block_samples' must be positive, found {block_samples!r}"
            raise SpecError(msg)
        reader = _open(path)
        try:
            labels = [s.strip() for s in reader.getSignalLabels()]
            try:
                names, types = _channel_names(labels)
            except InputError as exc:
                raise InputError(f"{path}: {exc}", path=str(path)) from exc
            rates = [float(r) for r in reader.getSampleFrequencies()]
            target = options.get("resample")
            select_options = {k: v for k, v in options.items() if target is None or k != "rate"}
            # pyedflib hands a plain EDF/BDF's annotation signal over as a signal.
            tal = [i for i, label in enumerate(labels) if label == "EDF Annotations"]
            legacy_events = _tal_events(reader, tal[0]) if tal else None
            keep = [i for i in range(len(labels)) if i not in tal]
            chosen = self._select(
                path,
                [labels[i] for i in keep],
                [names[i] for i in keep],
                [rates[i] for i in keep],
                select_options,
                target is None,
            )
            selected = [keep[k] for k in chosen]
            status_events = None
            if raw["bdf"] and options.get("status_events", True):
                status = [i for i in selected if labels[i].lower() == "status"]
                if status and len(status) < len(selected):
                    status_events = _status_events(reader, status[0], rates[status[0]])
                    selected = [i for i in selected if i != status[0]]
            headers = [reader.getSignalHeader(i) for i in selected]
            n_per_channel = reader.getNSamples()
            n_samples = int(n_per_channel[selected[0]])
            ratios: list[tuple[int, int]] = []
            if target is not None:
                n_samples, ratios = _resampling(path, float(target), selected, rates, n_per_channel)
            start_time = reader.getStartdatetime().isoformat()
            onsets, durations, descriptions = reader.readAnnotations()
            filetype = int(reader.filetype)
            equipment = str(reader.getEquipment()).strip()
        finally:
            reader.close()

        events = None
        if len(onsets):
            durations = np.asarray(durations, dtype=np.float64)
            events = pd.DataFrame(
                {
                    "onset": np.asarray(onsets, dtype=np.float64),
                    # EDF+ writes -1 (pyedflib) or nothing for "duration unspecified".
                    "duration": np.where(durations < 0, np.nan, durations),
                    "description": [str(d) for d in descriptions],
                }
            )
        extra = [f for f in (status_events, legacy_events) if f is not None and len(f)]
        if extra:
            frames = [f for f in (events, *extra) if f is not None]
            events = pd.concat(frames, ignore_index=True).sort_values("onset", kind="stable")
            events = events.reset_index(drop=True)
        source_units = [_normalise_unit(str(h.get("dimension", ""))) for h in headers]
        units, factors = store_units(source_units)
        channel_types = [types[i] for i in selected]
        counts = Counter(channel_types)
        modality = max(counts, key=lambda t: (counts[t], -channel_types.index(t)))
        metadata = dict(file.extra.get("metadata") or {})
        attrs: dict[str, Any] = {
            "file_type": {0: "EDF", 1: "EDF+", 2: "BDF", 3: "BDF+"}.get(filetype, "EDF"),
            "equipment": equipment,
            "record_duration": raw["record_duration"],
        }
        if len(selected) != len(labels):
            attrs["dropped_channels"] = [names[i] for i in range(len(labels)) if i not in selected]
        attrs.update(metadata)

        def resampled() -> Iterator[np.ndarray]:
            from scipy.signal import resample_poly

            edf = _open(path)
            try:
                out = np.empty((n_samples, len(selected)), dtype=np.float32)
                for j, (chn, (up, down)) in enumerate(zip(selected, ratios, strict=True)):
                    x = edf.readSignal(chn) * factors[j]
                    out[:, j] = x if up == down else resample_poly(x, up, down)[:n_samples]
            finally:
                edf.close()
            for start in range(0, n_samples, block_samples):
                yield out[start : start + block_samples]

        def blocks() -> Iterator[np.ndarray]:
            if ratios:
                yield from resampled()
                return
            edf = _open(path)
            try:
                for start in range(0, n_samples, block_samples):
                    n = min(block_samples, n_samples - start)
                    out = np.empty((n, len(selected)), dtype=np.float32)
                    for j, chn in enumerate(selected):
                        # Scaled in float64, then cast: MNE's volts within float32 rounding.
                        out[:, j] = edf.readSignal(chn, start, n) * factors[j]
                    yield out
            finally:
                edf.close()

        if ratios:
            attrs["resampling"] = (
                f"scipy.signal.resample_poly to {float(target):g} Hz (anti-aliased polyphase)"
            )
            attrs["original_rates"] = [rates[i] for i in selected]
        return RecordingSource(
            n_samples=n_samples,
            sampling_rate=float(target) if ratios else rates[selected[0]],
            channels=[names[i] for i in selected],
            units=units,
            channel_types=channel_types,
            modality=modality,
            blocks=blocks,
            labels=None,
            label_names={},
            label=file.extra.get("label"),
            events=events,
            start_time=start_time,
            attrs=attrs,
            channel_attrs={
                "original_label": [labels[i] for i in selected],
                "source_unit": source_units,
                "prefilter": [str(h.get("prefilter", "")).strip() for h in headers],
                "transducer": [str(h.get("transducer", "")).strip() for h in headers],
            },
        )

    @staticmethod
    def _select(
        path: Path,
        labels: list[str],
        names: list[str],
        rates: list[float],
        options: Mapping[str, Any],
        one_rate: bool = True,
    ) -> list[int]:
        """Return the indices of the channels to read, all at one rate if ``one_rate``."""
        if not labels:
            msg = f"{path}: no signals in the file (only annotations?): expected >= 1 signal"
            raise InputError(msg, path=str(path))
        selected = list(range(len(labels)))
        wanted = options.get("channels")
        if wanted is not None:
            if isinstance(wanted, str):
                wanted = [wanted]
            index = {label: i for i, label in enumerate(labels)}
            index.update({n: i for i, n in enumerate(names)})
            missing = [w for w in wanted if w not in index]
            if missing:
                msg = (
                    f"{path}: option 'channels' names {missing!r}, not in the file; "
                    f"channels are {names!r}"
                )
                raise InputError(msg, path=str(path))
            selected = [index[w] for w in wanted]
        rate = options.get("rate")
        if rate is not None:
            selected = [i for i in selected if math.isclose(rates[i], float(rate))]
            if not selected:
                found = sorted(set(rates))
                msg = f"{path}: option 'rate' is {rate!r} Hz; no channel has it (rates: {found!r})"
                raise InputError(msg, path=str(path))
        if one_rate and len({rates[i] for i in selected}) > 1:
            per_channel = ", ".join(f"{names[i]}={rates[i]:g} Hz" for i in selected)
            msg = (
                f"{path}: channels have different sampling rates ({per_channel}); expected "
                "one rate: select channels of one rate with option 'channels=[...]' or 'rate=', "
                "or resample them all with 'resample=<Hz>'"
            )
            raise InputError(msg, path=str(path))
        return selected


def _resampling(
    path: Path, target: float, selected: list[int], rates: list[float], n_per: Sequence[int]
) -> tuple[int, list[tuple[int, int]]]:
    """Return ``(samples at target, (up, down) per selected channel)`` for resample_poly."""
    from fractions import Fraction

    if not target > 0:
        msg = f"reader 'edf': option 'resample' must be > 0 Hz, found {target!r}"
        raise SpecError(msg)
    ratios = []
    lengths = set()
    for i in selected:
        ratio = Fraction(target).limit_denominator(10**6) / Fraction(rates[i]).limit_denominator(
            10**6
        )
        if ratio.numerator > 10**4 or ratio.denominator > 10**4:
            msg = (
                f"{path}: option 'resample' {target:g} Hz is not a small rational multiple of "
                f"channel rate {rates[i]:g} Hz (ratio {ratio}); pick a rate both divide"
            )
            raise InputError(msg, path=str(path))
        ratios.append((ratio.numerator, ratio.denominator))
        lengths.add(int(n_per[i]) * ratio.numerator // ratio.denominator)
    return min(lengths), ratios


def _status_events(reader: pyedflib.EdfReader, chn: int, rate: float) -> pd.DataFrame:
    """Return the events of a BDF ``Status`` channel: one per change of its trigger code.

    The trigger code is the low 16 bits of the 24-bit digital value (BioSemi puts device
    status in the high byte); an event starts where the code changes to a value other than
    0, with duration 0 and the code as description, as ``mne.find_events(raw,
    consecutive=True, initial_event=True, shortest_event=1)`` finds them.
    """
    codes = reader.readSignal(chn, digital=True).astype(np.int64) & 0xFFFF
    starts = np.flatnonzero(np.diff(codes, prepend=0) != 0)
    starts = starts[codes[starts] != 0]
    return pd.DataFrame(
        {
            "onset": starts / rate,
            "duration": np.zeros(len(starts)),
            "description": [str(int(c)) for c in codes[starts]],
        }
    )


def _tal_events(reader: pyedflib.EdfReader, chn: int) -> pd.DataFrame:
    """Return the annotations of a plain EDF's ``EDF Annotations`` signal (EDF+ TALs).

    Each data record's bytes hold time-stamped annotation lists ``+onset[\x15duration]\x14
    text\x14...\x00``; the first of every record only keeps time (no text) and is skipped.
    """
    raw = reader.readSignal(chn, digital=True).astype("<i2").tobytes()
    onsets, durations, texts = tal_annotations(raw)
    return pd.DataFrame({"onset": onsets, "duration": durations, "description": texts})
