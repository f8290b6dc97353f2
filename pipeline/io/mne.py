"""Reader ``mne``: any file :func:`mne.io.read_raw` opens, read in blocks.

Formats
-------
BrainVision (``.vhdr``), EEGLAB (``.set``), GDF, CNT, FIF, Nihon Kohden, EDF/BDF and the
others MNE reads: a folder is searched (symlinks followed) for the suffixes in
``SUFFIXES`` (option ``suffixes`` to change them); a file is read whatever its suffix.
MNE's own rules apply, so values equal ``mne.io.read_raw(path).get_data()`` cast to
float32: an EDF whose channels have several sampling rates is upsampled by MNE to the
highest one (MNE does that exactly only on the whole file, so such a file is loaded
whole if it takes at most ``PRELOAD_BYTES``, and refused with the reason otherwise),
duplicate labels are renamed as MNE renames them.

Streaming
---------
The file is opened with ``preload=False`` and ``blocks()`` calls
``raw.get_data(picks, start, stop)`` for ``block_samples`` samples at a time (default
2**18), so a file larger than memory is never loaded.

Channels, units, events
-----------------------
Channel types are MNE's (``eeg``, ``emg``, ``ecg``, ``eog``, ``misc``, ``seeg``...). MNE
returns SI units, which is the store's convention (:mod:`pipeline.io`): volts for
electrophysiological channels (``"V"``). Stim/trigger channels are not stored as signal:
each becomes events (:func:`mne.find_events`, every change of value, onset at the change,
duration 0, description the new value, prefixed by ``<channel>/`` when the file has
several stim channels); option ``stim_events=False`` keeps them as ``misc`` signal
instead. Annotations become events (onset in seconds from the first sample, duration,
description).

Identifiers
-----------
``pattern`` (named groups ``subject``, ``session``, ``run``) must match the whole file
stem; without it the subject is the stem with non-alphanumeric characters removed.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.exceptions import InputError, SpecError
from pipeline.io._options import (
    check_options,
    check_unique_ids,
    compile_pattern,
    list_files,
    match_entities,
)
from pipeline.io.base import RecordingSource, SourceFile, register_reader

__all__ = ["SUFFIXES", "MneReader", "from_mne", "open_raw", "source_from_raw", "to_mne"]

logger = logging.getLogger(__name__)

# Header files only: a BrainVision .eeg/.vmrk or an EEGLAB .fdt is read through its header.
SUFFIXES = (".vhdr", ".ahdr", ".set", ".gdf", ".cnt", ".fif", ".fif.gz", ".edf", ".bdf")
BLOCK_SAMPLES = 1 << 18
PRELOAD_BYTES = 1 << 30  # the most a mixed-rate file may take in memory (float64, all channels)
# FIFF unit codes (mne.io.constants.FIFF.FIFF_UNIT_*) to the unit strings of the store.
_UNITS = {
    107: "V",
    0: "a.u.",
    -1: "a.u.",
    112: "T",
    201: "T/m",
    1: "m",
    3: "s",
    4: "A",
    5: "K",
    6: "mol",
    101: "Hz",
    103: "Pa",
    109: "Ohm",
    114: "degC",
}
_FIFF_UNITS = {u: k for k, u in _UNITS.items() if k != -1}


def open_raw(path: Path) -> Any:
    """Return ``mne.io.read_raw(path, preload=False)``, refusing a file it cannot read.

    Raises
    ------
    InputError
        If MNE cannot open the file (the message names it and gives MNE's reason), or the
        file holds no channels or no samples (an annotation-only file, an empty
        placeholder).
    """
    import mne

    try:
        with warnings.catch_warnings():
            # MNE warns about header oddities it works around; they are not the user's error.
            warnings.simplefilter("ignore")
            raw = mne.io.read_raw(path, preload=False, verbose="error")
    except Exception as exc:  # MNE raises ValueError, OSError, RuntimeError, KeyError...
        msg = f"{path}: mne.io.read_raw cannot read this file: {type(exc).__name__}: {exc}"
        raise InputError(msg, path=str(path)) from exc
    if not raw.ch_names:
        msg = f"{path}: no signal channels (only annotations?): expected >= 1 channel"
        raise InputError(msg, path=str(path))
    if raw.n_times == 0:
        msg = (
            f"{path}: no samples: expected a recording, found an empty or placeholder data "
            "file (0 samples)"
        )
        raise InputError(msg, path=str(path))
    return raw


def _needs_preload(raw: Any) -> bool:
    """Return True if block reads of ``raw`` would differ from reading it whole.

    MNE reads an EDF/BDF/GDF whose channels have several sampling rates by upsampling the
    slower ones; with ``preload=False`` it does so per read, with edge artefacts
    (mne-tools/mne-python#10635), so blocks would not equal the file read whole. MNE has no
    public way to ask; its warning depends on the read's length, so the samples per record
    of its EDF/GDF readers (``_raw_extras``) decide, and a reader without them never
    resamples.
    """
    extras = getattr(raw, "_raw_extras", None) or [{}]
    n_samps = extras[0].get("n_samps") if isinstance(extras[0], dict) else None
    return n_samps is not None and len({int(k) for k in np.ravel(n_samps)}) > 1


def _annotation_events(raw: Any) -> pd.DataFrame:
    ann = raw.annotations
    onset = np.asarray(ann.onset, dtype=np.float64)
    # With an orig_time the onsets count from the measurement date, whose time is
    # first_time at the first sample; without one they already count from the first sample.
    if ann.orig_time is not None:
        onset = onset - raw.first_time
    return pd.DataFrame(
        {
            "onset": onset,
            "duration": np.asarray(ann.duration, dtype=np.float64),
            "description": [str(d) for d in ann.description],
        }
    )


def _stim_events(raw: Any, stim: list[str]) -> pd.DataFrame:
    import mne

    frames = []
    for name in stim:
        found = mne.find_events(
            raw,
            stim_channel=name,
            consecutive=True,
            shortest_event=1,
            initial_event=True,
            verbose="error",
        )
        found = found[found[:, 2] != 0]  # a return to zero ends an event, it is not one
        prefix = f"{name}/" if len(stim) > 1 else ""
        frames.append(
            pd.DataFrame(
                {
                    "onset": (found[:, 0] - raw.first_samp) / raw.info["sfreq"],
                    "duration": np.zeros(len(found)),
                    "description": [f"{prefix}{int(v)}" for v in found[:, 2]],
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@register_reader("mne")
class MneReader:
    """Read any file MNE reads (see the module docstring for the options)."""

    name = "mne"
    version = "1.0"

    def discover(self, source: Path, **options: Any) -> list[SourceFile]:
        """List the files of ``source`` MNE can read, with their ids.

        Parameters
        ----------
        source : Path
            A file, or a folder searched recursively (symlinks followed).
        **options
            ``pattern``, ``suffixes`` (and the read options, accepted and unused).

        Returns
        -------
        list of SourceFile
            Sorted by path.
        """
        check_options(self.name, options)
        pattern = compile_pattern(options.get("pattern"), self.name)
        suffixes = options.get("suffixes") or SUFFIXES
        if isinstance(suffixes, str):
            suffixes = [suffixes]
        paths = list_files(Path(source), [f"*{s}" for s in suffixes], self.name)
        if not paths:
            msg = f"{source}: no files with suffix {', '.join(suffixes)} found (reader 'mne')"
            raise InputError(msg, path=str(source))
        files = []
        for path in paths:
            g = match_entities(_stem_path(path), pattern)
            files.append(
                SourceFile(path=path, subject=str(g["subject"]), session=g["session"], run=g["run"])
            )
        check_unique_ids(files)
        return files

    def read(self, file: SourceFile, **options: Any) -> RecordingSource:
        """Open one file with MNE and return its metadata, events and a block iterator.

        Options: ``channels`` (names to keep, in that order), ``stim_events`` (default
        True), ``block_samples`` (default 2**18).

        Raises
        ------
        InputError
            A file MNE cannot read, with no channels or no samples; an unknown channel.
        """
        check_options(self.name, options)
        path = Path(file.path)
        return source_from_raw(open_raw(path), path, file, options, lambda: open_raw(path))


def source_from_raw(
    raw: Any,
    path: Path,
    file: SourceFile,
    options: Mapping[str, Any],
    reopen: Callable[[], Any],
    exclude: Sequence[str] = (),
) -> RecordingSource:
    """Return the :class:`RecordingSource` of an MNE ``Raw`` opened with ``preload=False``.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The opened file (metadata only is read from it).
    path : Path
        The file, for messages.
    file : SourceFile
        Its identifiers; ``extra["label"]`` is the per-recording label.
    options : mapping
        ``channels``, ``stim_events``, ``block_samples`` (already checked by the reader).
    reopen : callable
        Returns a fresh ``Raw`` of the same file; each pass over the blocks opens one.
    exclude : sequence of str
        Channels left out unless ``channels`` names them (e.g. BIDS bad channels).
    """
    block_samples = int(options.get("block_samples") or BLOCK_SAMPLES)
    if block_samples <= 0:
        msg = f"option 'block_samples' must be positive, found {block_samples!r}"
        raise SpecError(msg)
    names = list(raw.ch_names)
    types = list(raw.get_channel_types())
    stim_events = bool(options.get("stim_events", True))
    stim = [n for n, t in zip(names, types, strict=True) if t == "stim"] if stim_events else []
    picks = [i for i, n in enumerate(names) if n not in stim and n not in exclude]
    wanted = options.get("channels")
    if wanted is not None:
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        missing = [w for w in wanted if w not in names]
        if missing:
            msg = (
                f"{path}: option 'channels' names {missing!r}, not in the file; "
                f"channels are {names!r}"
            )
            raise InputError(msg, path=str(path))
        picks = [names.index(w) for w in wanted]
    if not picks:
        msg = f"{path}: no signal channels besides stim channels {stim!r}"
        raise InputError(msg, path=str(path))
    chs = raw.info["chs"]
    channel_types = ["misc" if types[i] == "stim" else types[i] for i in picks]
    units = [_unit(chs[i]) for i in picks]
    frames = [f for f in (_annotation_events(raw), _stim_events(raw, stim)) if len(f)]
    events = None
    if frames:
        events = pd.concat(frames, ignore_index=True).sort_values("onset", kind="stable")
        events = events.reset_index(drop=True)
    counts = Counter(channel_types)
    modality = max(counts, key=lambda t: (counts[t], -channel_types.index(t)))
    meas_date = raw.info["meas_date"]
    attrs: dict[str, Any] = {
        "mne_reader": type(raw).__name__,
        "highpass": float(raw.info["highpass"]),
        "lowpass": float(raw.info["lowpass"]),
    }
    if raw.info.get("line_freq") is not None:
        attrs["line_frequency"] = float(raw.info["line_freq"])
    if stim:
        attrs["stim_channels"] = stim
    dropped = [
        names[i]
        for i in range(len(names))
        if i not in picks and names[i] not in stim and names[i] not in exclude
    ]
    if exclude:
        attrs["excluded_channels"] = [n for n in names if n in exclude]
    if dropped:
        attrs["dropped_channels"] = dropped
    n_samples = int(raw.n_times)
    preload = _needs_preload(raw)
    if preload:
        nbytes = n_samples * len(names) * 8
        if nbytes > PRELOAD_BYTES:
            msg = (
                f"{path}: channels have several sampling rates; MNE upsamples them exactly "
                f"only when the whole file is loaded ({nbytes / 2**20:.0f} MiB, above "
                f"the {PRELOAD_BYTES / 2**20:.0f} MiB this reader loads): read it with "
                "reader 'edf' and its 'rate=' or 'channels=' option instead"
            )
            raise InputError(msg, path=str(path))
        attrs["mne_preloaded"] = "mixed sampling rates, upsampled by MNE"

    def blocks() -> Iterator[np.ndarray]:
        # A fresh handle per pass: the store may iterate twice, and a worker process
        # must not share another's file handle.
        r = reopen()
        if preload:
            r.load_data(verbose="error")
        for start in range(0, n_samples, block_samples):
            stop = min(start + block_samples, n_samples)
            yield r.get_data(picks=picks, start=start, stop=stop).T.astype(np.float32)

    return RecordingSource(
        n_samples=n_samples,
        sampling_rate=float(raw.info["sfreq"]),
        channels=[names[i] for i in picks],
        units=units,
        channel_types=channel_types,
        modality=modality,
        blocks=blocks,
        label=file.extra.get("label"),
        events=events,
        start_time=meas_date.isoformat() if meas_date is not None else None,
        attrs=attrs,
    )


def _unit(ch: dict[str, Any]) -> str:
    unit = _UNITS.get(int(ch["unit"]), f"FIFF unit {int(ch['unit'])}")
    if int(ch.get("unit_mul", 0)):  # MNE leaves this 0 for the formats it reads
        unit = f"1e{int(ch['unit_mul'])} {unit}"
    return unit


def _stem_path(path: Path) -> Path:
    """Return ``path`` without a ``.fif.gz``'s double suffix, for entity parsing."""
    name = path.name
    return path.with_name(name[: -len(".gz")]) if name.lower().endswith(".fif.gz") else path


def to_mne(ds: Any) -> Any:
    """Return a recording as an :class:`mne.io.RawArray` (annotations, types, units).

    Parameters
    ----------
    ds : xarray.Dataset
        A recording as :meth:`pipeline.store.Cohort.recording` opens it: ``signal`` with
        dims ``("time", "channel")``, the ``channel_type`` and ``unit`` coordinates, the
        ``sampling_rate`` attribute and, if any, ``event_onset``/``event_duration``/
        ``event_description``.

    Returns
    -------
    mne.io.RawArray
        Data in volts for voltage channels (MNE's convention), loaded into memory: the
        bridge is for a recording that fits, as MNE's own analyses need it loaded.

    Notes
    -----
    A channel type MNE does not know (the ``edf`` reader's ``ref`` and ``acc``) becomes
    ``misc``, logged; every other type, the names, the units and the events round-trip
    through :func:`from_mne`.
    """
    import mne

    from pipeline.io._units import to_store_unit

    names = [str(c) for c in ds["channel"].values]
    types = [str(t) for t in ds["channel_type"].values]
    units = [str(u) for u in ds["unit"].values]
    known = set(mne.io.get_channel_type_constants())
    unknown = sorted({t for t in types if t not in known})
    if unknown:
        logger.info("to_mne: channel type(s) %s unknown to MNE, given as 'misc'", unknown)
        types = [t if t in known else "misc" for t in types]
    factors = np.array([to_store_unit(u)[1] for u in units])
    data = np.asarray(ds["signal"].values, dtype=np.float64) * factors
    info = mne.create_info(names, float(ds.attrs["sampling_rate"]), types, verbose="error")
    for ch, unit in zip(info["chs"], units, strict=True):
        stored = to_store_unit(unit)[0]
        if stored in _FIFF_UNITS:  # else MNE's default for the type stands
            ch["unit"] = _FIFF_UNITS[stored]
    raw = mne.io.RawArray(data.T, info, verbose="error")
    if "event_onset" in ds.variables:
        raw.set_annotations(
            mne.Annotations(
                np.asarray(ds["event_onset"].values, dtype=np.float64),
                np.nan_to_num(np.asarray(ds["event_duration"].values, dtype=np.float64)),
                [str(d) for d in ds["event_description"].values.tolist()],
            )
        )
    return raw


def from_mne(raw: Any, file: SourceFile, **options: Any) -> RecordingSource:
    """Return the :class:`RecordingSource` of an in-memory MNE ``Raw`` (e.g. a RawArray).

    The inverse of :func:`to_mne`: write the result with
    :func:`pipeline.store.write_recording`. Options as for the ``mne`` reader's ``read``.
    """
    check_options("mne", options)
    return source_from_raw(raw, Path(file.path), file, options, lambda: raw)
