"""Reader ``bids``: a BIDS dataset in, one recording per data file of one datatype.

The work is mne-bids': :func:`mne_bids.find_matching_paths` lists the data files of
``datatype`` (``eeg``, ``emg`` as in BIDS-EMG, ``ieeg``; options ``task``, ``subjects``,
``sessions`` narrow it), and :func:`mne_bids.read_raw_bids` opens each with ``preload=False``,
applying its ``*_channels.tsv`` (types, units, ``status``), ``*_events.tsv`` (as annotations:
onset, duration, ``trial_type`` or ``value`` as description) and sidecar JSON (line
frequency). The signal then goes through the ``mne`` reader's path
(:func:`pipeline.io.mne.source_from_raw`): blocks, SI units (volts), stim channels as
events.

- Every entity (``sub``, ``ses``, ``task``, ``acq``, ``run``, ``recording``) is in the
  recording id (``sub-01_ses-1_task-rest_run-1``) and in the attributes.
- Bad channels (``status`` ``bad`` in ``*_channels.tsv``) are left out and listed in the
  ``excluded_channels`` attribute; ``keep_bad=True`` keeps them.
- ``participants.tsv`` (tab-separated) is joined on ``participant_id``: its other columns
  become the recording's metadata (snake_case keys; ``n/a`` is None).
- The sidecar's ``PowerLineFrequency`` and ``<Datatype>Reference`` are attributes
  (``line_frequency``, ``reference``).
- An empty or placeholder data file (0 samples, as in bids-examples' ``eeg_*`` datasets) is
  refused with the file named.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.exceptions import InputError, SpecError
from pipeline.io._options import check_options, check_unique_ids, snake_case
from pipeline.io.base import RecordingSource, SourceFile, register_reader
from pipeline.io.mne import source_from_raw

__all__ = ["DATATYPES", "BidsReader"]

logger = logging.getLogger(__name__)

DATATYPES = ("eeg", "emg", "ieeg")
EXTENSIONS = (".vhdr", ".edf", ".bdf", ".set", ".fif", ".eeg", ".mef", ".nwb")
RESERVED = {"recording", "subject", "session", "run", "task", "acquisition", "modality"}


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [str(value)] if isinstance(value, str | int) else [str(v) for v in value]


def _participants(root: Path) -> dict[str, dict[str, Any]]:
    path = root / "participants.tsv"
    if not path.exists():
        return {}
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "participant_id" not in table.columns:
        msg = (
            f"{path}: expected a 'participant_id' column (BIDS), found columns "
            f"{list(table.columns)!r}"
        )
        raise InputError(msg, path=str(path))
    out: dict[str, dict[str, Any]] = {}
    for row in table.to_dict("records"):
        pid = str(row.pop("participant_id")).removeprefix("sub-")
        meta: dict[str, Any] = {}
        for key, value in row.items():
            name = snake_case(str(key))
            name = f"participant_{name}" if name in RESERVED else name
            meta[name] = None if value in ("n/a", "") else _number_or_text(value)
        out[pid] = meta
    return out


def _number_or_text(value: str) -> Any:
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value else number


@register_reader("bids")
class BidsReader:
    """Read a BIDS dataset with mne-bids (see the module docstring for the options)."""

    name = "bids"
    version = "1.0"

    def discover(self, source: Path, **options: Any) -> list[SourceFile]:
        """List the data files of one datatype under a BIDS root, with every entity.

        Raises
        ------
        SpecError
            No or an unsupported ``datatype``.
        InputError
            ``source`` is not a BIDS root (no ``dataset_description.json``), or no data
            file matches (the message lists the datatypes present).
        """
        import mne_bids

        check_options(self.name, options)
        root = Path(source)
        if not (root / "dataset_description.json").is_file():
            msg = (
                f"{root}: not a BIDS root: expected a dataset_description.json in it "
                "(give the dataset's top folder)"
            )
            raise InputError(msg, path=str(root))
        datatype = options.get("datatype")
        if datatype not in DATATYPES:
            found = sorted(mne_bids.get_datatypes(root))
            msg = (
                f"reader 'bids': option 'datatype' is {datatype!r}; expected one of "
                f"{list(DATATYPES)} (datatypes in {root}: {found})"
            )
            raise SpecError(msg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            paths = mne_bids.find_matching_paths(
                root,
                subjects=_as_list(options.get("subjects")),
                sessions=_as_list(options.get("sessions")),
                tasks=_as_list(options.get("task")),
                datatypes=datatype,
                suffixes=datatype,
                extensions=list(EXTENSIONS),
            )
        # BrainVision's .eeg is a data file next to its .vhdr header, not a recording.
        headers = {p.fpath.with_suffix("") for p in paths if p.extension == ".vhdr"}
        paths = [
            p for p in paths if not (p.extension == ".eeg" and p.fpath.with_suffix("") in headers)
        ]
        paths = [p for p in paths if "sourcedata" not in p.fpath.relative_to(root).parts]
        if not paths:
            found = sorted(mne_bids.get_datatypes(root))
            msg = (
                f"{root}: no {datatype} data files match (task={options.get('task')!r}, "
                f"subjects={options.get('subjects')!r}); datatypes present: {found}"
            )
            raise InputError(msg, path=str(root))
        participants = _participants(root)
        files = []
        for bp in sorted(paths, key=lambda p: str(p.fpath)):
            files.append(
                SourceFile(
                    path=bp.fpath,
                    subject=bp.subject,
                    session=bp.session,
                    run=str(int(bp.run)) if bp.run is not None else None,
                    task=bp.task,
                    acquisition=bp.acquisition,
                    recording=bp.recording,
                    extra={
                        "bids_root": str(root),
                        "datatype": datatype,
                        "metadata": dict(participants.get(bp.subject, {})),
                    },
                )
            )
        check_unique_ids(files)
        return files

    def read(self, file: SourceFile, **options: Any) -> RecordingSource:
        """Open one BIDS data file with ``mne_bids.read_raw_bids`` and return its source.

        Raises
        ------
        InputError
            A file mne-bids cannot read (the reason given), or one with no samples.
        """
        check_options(self.name, options)
        path = Path(file.path)
        root = Path(file.extra["bids_root"])
        datatype = file.extra["datatype"]

        def open_bids() -> Any:
            import mne_bids

            bp = mne_bids.get_bids_path_from_fname(path)
            bp.update(root=root, datatype=datatype)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    raw = mne_bids.read_raw_bids(bp, verbose="error")
            except Exception as exc:  # mne-bids and MNE raise many types
                msg = f"{path}: mne_bids.read_raw_bids cannot read it: {type(exc).__name__}: {exc}"
                raise InputError(msg, path=str(path)) from exc
            if raw.n_times == 0:
                msg = (
                    f"{path}: no samples: expected a recording, found an empty or "
                    "placeholder data file (0 samples)"
                )
                raise InputError(msg, path=str(path))
            return raw

        raw = open_bids()
        exclude = [] if options.get("keep_bad") else list(raw.info["bads"])
        read_options = {
            k: v for k, v in options.items() if k in ("channels", "stim_events", "block_samples")
        }
        src = source_from_raw(raw, path, file, read_options, open_bids, exclude=exclude)
        entities = {
            "task": file.task,
            "acquisition": file.acquisition,
            "bids_recording": file.recording,
            "datatype": datatype,
        }
        src.attrs.update({k: v for k, v in entities.items() if v is not None})
        src.attrs.update(_sidecar(path, datatype))
        src.attrs.update(file.extra.get("metadata") or {})
        src.modality = datatype if datatype in src.channel_types else src.modality
        return src


def _sidecar(path: Path, datatype: str) -> dict[str, Any]:
    """Return the sidecar JSON fields that shape a recording's processing."""
    sidecar = path.with_name(path.name[: -len(path.suffix)]).with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{sidecar}: cannot be read as JSON: {exc}"
        raise InputError(msg, path=str(sidecar)) from exc
    out: dict[str, Any] = {}
    for key, name in (
        ("PowerLineFrequency", "line_frequency"),
        (f"{datatype.upper()}Reference", "reference"),
        ("iEEGReference", "reference"),
        ("EMGPlacementScheme", "placement_scheme"),
    ):
        value = meta.get(key)
        if value is not None and value != "n/a":
            out[name] = value
    return out
