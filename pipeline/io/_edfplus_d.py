"""EDF+D/BDF+D files whose data records are contiguous, read without pyedflib.

pyedflib (EDFlib) refuses every discontinuous file, and MNE reads one as if it were
continuous, whatever its gaps. An EDF+D file whose records follow each other without a gap
holds the same samples as an EDF+C one: :func:`check_contiguous` decides that from the
onset of every data record (the first time-keeping TAL of the ``EDF Annotations`` signal),
and :class:`ContiguousEdf` reads such a file straight from its bytes (a memory map, so a
file larger than memory never has to fit) behind the part of ``pyedflib.EdfReader``'s
interface that :mod:`pipeline.io.edf` uses. A gap is refused with the record index and
its onset in seconds.

Physical values are computed as EDFlib computes them: ``(digital + offset) * bitvalue``
with ``bitvalue = (physical_max - physical_min) / (digital_max - digital_min)`` and
``offset = physical_max / bitvalue - digital_max``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.exceptions import InputError

__all__ = ["ContiguousEdf", "check_contiguous"]

ANNOTATIONS = "EDF Annotations"
BDF_ANNOTATIONS = "BDF Annotations"


def _fields(header: bytes, ns: int, offset: int, width: int) -> list[str]:
    start = 256 + offset * ns
    return [
        header[start + i * width : start + (i + 1) * width].decode("latin-1").strip()
        for i in range(ns)
    ]


class ContiguousEdf:
    """Read an EDF+D/BDF+D file with contiguous records (pyedflib's reader interface).

    Parameters
    ----------
    path : Path
        The file; :func:`pipeline.io.edf.read_raw_header` has checked its size.

    Raises
    ------
    InputError
        If the file has no annotation signal (an EDF+D file must have one, it holds the
        record onsets) or its records are not contiguous (:func:`check_contiguous`).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            fixed = f.read(256)
            ns = int(fixed[252:256])
            header = fixed + f.read(ns * 256)
        self.bdf = fixed[:8] == b"\xffBIOSEMI"
        self.filetype = 3 if self.bdf else 1  # pyedflib's BDF+ / EDF+
        self._header_bytes = int(fixed[184:192])
        self._n_records = int(fixed[236:244])
        self.record_duration = float(fixed[244:252])
        self._fixed = fixed
        labels = _fields(header, ns, 0, 16)
        transducer = _fields(header, ns, 16, 80)
        dimension = _fields(header, ns, 96, 8)
        pmin = [float(v) for v in _fields(header, ns, 104, 8)]
        pmax = [float(v) for v in _fields(header, ns, 112, 8)]
        dmin = [int(v) for v in _fields(header, ns, 120, 8)]
        dmax = [int(v) for v in _fields(header, ns, 128, 8)]
        prefilter = _fields(header, ns, 136, 80)
        spr = [int(v) for v in _fields(header, ns, 216, 8)]
        self._width = 3 if self.bdf else 2
        self._spr = spr
        self._start = np.concatenate([[0], np.cumsum(spr)[:-1]]).astype(int)
        self._record_samples = int(sum(spr))
        annotation = [i for i, lab in enumerate(labels) if lab in (ANNOTATIONS, BDF_ANNOTATIONS)]
        if not annotation:
            msg = (
                f"{self.path}: discontinuous file ({fixed[192:197].decode('latin-1')}) without "
                f"an {ANNOTATIONS!r} signal: expected one, as it holds each record's onset"
            )
            raise InputError(msg, path=str(self.path))
        self._annotation = annotation
        self._signals = [i for i in range(ns) if i not in annotation]
        self._labels = labels
        self._headers = [
            {
                "label": labels[i],
                "dimension": dimension[i],
                "transducer": transducer[i],
                "prefilter": prefilter[i],
                "physical_min": pmin[i],
                "physical_max": pmax[i],
                "digital_min": dmin[i],
                "digital_max": dmax[i],
            }
            for i in range(ns)
        ]
        bitvalue = [(pmax[i] - pmin[i]) / (dmax[i] - dmin[i]) for i in range(ns)]
        self._bitvalue = bitvalue
        self._offset = [pmax[i] / bitvalue[i] - dmax[i] for i in range(ns)]
        self._data = np.memmap(
            self.path,
            dtype=np.uint8,
            mode="r",
            offset=self._header_bytes,
            shape=(self._n_records, self._record_samples * self._width),
        )
        tals = [self._tal_bytes(i) for i in annotation]
        self._onsets = check_contiguous(self.path, tals[0], self.record_duration)
        self._annotations = _annotations(tals)

    # -- the pyedflib.EdfReader interface used by the edf reader
    def getSignalLabels(self) -> list[str]:
        return [self._labels[i] for i in self._signals]

    def getSampleFrequencies(self) -> list[float]:
        return [self._spr[i] / self.record_duration for i in self._signals]

    def getSignalHeader(self, chn: int) -> dict[str, Any]:
        return dict(self._headers[self._signals[chn]])

    def getNSamples(self) -> np.ndarray:
        return np.array([self._spr[i] * self._n_records for i in self._signals])

    def getStartdatetime(self) -> dt.datetime:
        day, month, year = (int(v) for v in self._fixed[168:176].decode("latin-1").split("."))
        hour, minute, second = (int(v) for v in self._fixed[176:184].decode("latin-1").split("."))
        year += 1900 if year >= 85 else 2000  # the EDF spec's clipping date
        start = dt.datetime(year, month, day, hour, minute, second)
        return start + dt.timedelta(seconds=float(self._onsets[0]))

    def getEquipment(self) -> str:
        parts = self._fixed[88:168].decode("latin-1").split()
        return parts[4].replace("_", " ") if len(parts) > 4 else ""

    def readAnnotations(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        onsets, durations, texts = self._annotations
        return onsets - self._onsets[0], durations, texts

    def readSignal(
        self, chn: int, start: int = 0, n: int | None = None, digital: bool = False
    ) -> np.ndarray:
        """Return samples ``start:start + n`` of signal ``chn``, physical unless ``digital``."""
        i = self._signals[chn]
        spr = self._spr[i]
        total = spr * self._n_records
        n = total - start if n is None else min(n, total - start)
        first, last = start // spr, (start + n - 1) // spr + 1
        a = self._start[i] * self._width
        raw = np.asarray(self._data[first:last, a : a + spr * self._width]).reshape(-1)
        values = self._decode(raw)[start - first * spr : start - first * spr + n]
        if digital:
            return values.astype(np.float64)
        return (values + self._offset[i]) * self._bitvalue[i]

    def close(self) -> None:
        self._data = None  # type: ignore[assignment]

    def __enter__(self) -> ContiguousEdf:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- private
    def _decode(self, raw: np.ndarray) -> np.ndarray:
        if not self.bdf:
            return raw.view("<i2").astype(np.int64)
        b = raw.reshape(-1, 3).astype(np.int64)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(v >= 1 << 23, v - (1 << 24), v)

    def _tal_bytes(self, i: int) -> list[bytes]:
        a = self._start[i] * self._width
        block = np.asarray(self._data[:, a : a + self._spr[i] * self._width])
        return [bytes(row) for row in block]


def _record_onset(path: Path, record: int, tal: bytes) -> float:
    head = tal.split(b"\x14", 1)[0]
    try:
        return float(head.partition(b"\x15")[0])
    except ValueError:
        msg = (
            f"{path}: data record {record}: expected a time-keeping annotation "
            f"('+<onset>\\x14\\x14') first in the {ANNOTATIONS!r} signal, found {tal[:20]!r}"
        )
        raise InputError(msg, path=str(path)) from None


def check_contiguous(path: Path, records: list[bytes], record_duration: float) -> np.ndarray:
    """Return the onset (s) of every data record; raise if one does not follow the last.

    Parameters
    ----------
    path : Path
        The file, for the message.
    records : list of bytes
        The annotation signal's bytes of each data record.
    record_duration : float
        Seconds per data record (the header's).

    Returns
    -------
    ndarray of shape (n_records,)

    Raises
    ------
    InputError
        At the first gap (or overlap): names the record index, its onset and the onset a
        contiguous record would have, in seconds.
    """
    onsets = np.array([_record_onset(path, k, r) for k, r in enumerate(records)])
    expected = onsets[0] + record_duration * np.arange(len(onsets))
    # Onsets are written in decimal text: a microsecond is far below any sample period.
    bad = np.flatnonzero(np.abs(onsets - expected) > 1e-6)
    if bad.size:
        k = int(bad[0])
        gap = onsets[k] - (onsets[k - 1] + record_duration)
        msg = (
            f"{path}: discontinuous recording: data record {k} starts at {onsets[k]:g} s, "
            f"expected {onsets[k - 1] + record_duration:g} s (record {k - 1} at "
            f"{onsets[k - 1]:g} s + {record_duration:g} s): a "
            f"{'gap' if gap > 0 else 'overlap'} of {abs(gap):g} s ({bad.size} record(s) "
            "off the contiguous grid); expected contiguous records: split the file at the gap"
        )
        raise InputError(msg, path=str(path))
    return onsets


def tal_annotations(raw: bytes) -> tuple[list[float], list[float], list[str]]:
    """Return the onsets, durations (NaN if unspecified) and texts of every TAL with text.

    ``raw`` is an ``EDF Annotations`` signal's bytes: time-stamped annotation lists
    ``+onset[\x15duration]\x14text\x14...\x00``; a record's first TAL only keeps time (no
    text) and is skipped. The one parser of TALs, for EDF+C (:mod:`pipeline.io.edf`) and
    EDF+D files.
    """
    onsets: list[float] = []
    durations: list[float] = []
    texts: list[str] = []
    for tal in raw.split(b"\x00"):
        head, _, rest = tal.partition(b"\x14")
        if not head or not rest:
            continue
        onset, _, duration = head.partition(b"\x15")
        for text in rest.split(b"\x14"):
            text_s = text.decode("utf-8", errors="replace").strip()
            if text_s:
                onsets.append(float(onset))
                durations.append(float(duration) if duration else np.nan)
                texts.append(text_s)
    return onsets, durations, texts


def _annotations(signals: list[list[bytes]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return the onsets, durations (NaN if unspecified) and texts of every TAL with text."""
    onsets, durations, texts = [], [], []
    for records in signals:
        for record in records:
            o, d, t = tal_annotations(record)
            onsets += o
            durations += d
            texts += t
    return np.array(onsets, dtype=np.float64), np.array(durations, dtype=np.float64), texts
