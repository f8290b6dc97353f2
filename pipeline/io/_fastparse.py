"""A Numba fast path for the simple numeric tab-separated rows of the ``uci-emg`` archive.

``parse_rows`` handles exactly one shape of line: ``int`` then ``n_float`` plain decimal
numbers then ``int``, tab-separated, ``\\n``-terminated. Numbers are converted exactly (the
Clinger fast path: an integer mantissa below 2**53 times or divided by an exact power of ten
up to 10**22 is one correctly rounded IEEE operation, hence bit-identical to ``strtod`` and
to pyarrow). Anything else (another separator, a ``\\r``, a long mantissa, a large exponent,
a bad field, a missing final newline) makes it return a failure status, and the caller falls
back to :mod:`pyarrow.csv`, which parses the general case or locates the error.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["parse_rows", "parse_rows_reference"]

_POW10 = np.array([10.0**k for k in range(23)])
_MAX_MANTISSA = 2**53


@njit(cache=True, nogil=True)
def _parse_rows(
    buf: np.ndarray, start: int, n_rows: int, n_float: int, pow10: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    first = np.empty(n_rows, dtype=np.int64)
    values = np.empty((n_rows, n_float), dtype=np.float64)
    last = np.empty(n_rows, dtype=np.int64)
    pos = start
    size = buf.size
    for row in range(n_rows):
        for field in range(n_float + 2):
            sep = 9 if field < n_float + 1 else 10  # tab, or newline after the last field
            neg = False
            if pos < size and (buf[pos] == 45 or buf[pos] == 43):  # '-' '+'
                neg = buf[pos] == 45
                pos += 1
            mantissa = 0
            digits = 0
            exp10 = 0
            while pos < size and 48 <= buf[pos] <= 57:
                if mantissa < _MAX_MANTISSA:
                    mantissa = mantissa * 10 + (buf[pos] - 48)
                else:
                    return first, values, last, row + 1
                digits += 1
                pos += 1
            is_int = field == 0 or field == n_float + 1
            if not is_int:
                if pos < size and buf[pos] == 46:  # '.'
                    pos += 1
                    while pos < size and 48 <= buf[pos] <= 57:
                        if mantissa < _MAX_MANTISSA:
                            mantissa = mantissa * 10 + (buf[pos] - 48)
                        else:
                            return first, values, last, row + 1
                        exp10 -= 1
                        digits += 1
                        pos += 1
                if digits > 0 and pos < size and (buf[pos] == 101 or buf[pos] == 69):  # e E
                    pos += 1
                    eneg = False
                    if pos < size and (buf[pos] == 45 or buf[pos] == 43):
                        eneg = buf[pos] == 45
                        pos += 1
                    e = 0
                    edigits = 0
                    while pos < size and 48 <= buf[pos] <= 57 and edigits < 4:
                        e = e * 10 + (buf[pos] - 48)
                        edigits += 1
                        pos += 1
                    if edigits == 0:
                        return first, values, last, row + 1
                    exp10 += -e if eneg else e
            if digits == 0 or pos >= size or buf[pos] != sep:
                return first, values, last, row + 1
            pos += 1
            if is_int:
                v = -mantissa if neg else mantissa
                if field == 0:
                    first[row] = v
                else:
                    last[row] = v
            else:
                if mantissa > _MAX_MANTISSA or exp10 > 22 or exp10 < -22:
                    return first, values, last, row + 1
                x = float(mantissa)
                x = x * pow10[exp10] if exp10 >= 0 else x / pow10[-exp10]
                values[row, field - 1] = -x if neg else x
    if pos != size:
        return first, values, last, n_rows + 1
    return first, values, last, 0


def parse_rows(data: bytes, n_float: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Parse the data rows of ``data`` (the whole file, header line included).

    Parameters
    ----------
    data : bytes
        File content; line 1 (the header) is skipped.
    n_float : int
        Number of float fields between the leading and trailing integer fields.

    Returns
    -------
    (first, values, last) or None
        ``first`` int64 of shape (n_rows,), ``values`` float64 of shape (n_rows, n_float),
        ``last`` int64 of shape (n_rows,); None if any line is not of the simple shape (the
        caller then uses the general parser).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    header_end = data.find(b"\n")
    if header_end < 0 or not data.endswith(b"\n"):
        return None
    n_rows = int(np.count_nonzero(buf == 10)) - 1
    first, values, last, status = _parse_rows(buf, header_end + 1, n_rows, n_float, _POW10)
    return None if status else (first, values, last)


def parse_rows_reference(data: bytes, n_float: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return what :func:`parse_rows` returns, parsed with Python's ``int``/``float``."""
    lines = data.decode().split("\n")[1:-1]
    rows = [line.split("\t") for line in lines]
    first = np.array([int(r[0]) for r in rows], dtype=np.int64)
    values = np.array([[float(v) for v in r[1 : 1 + n_float]] for r in rows], dtype=np.float64)
    last = np.array([int(r[-1]) for r in rows], dtype=np.int64)
    return first, values.reshape(len(rows), n_float), last


@njit(cache=True, nogil=True)
def _resample(
    time_ms: np.ndarray, values: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = time_ms[-1] - time_ms[0] + 1
    n_channels = values.shape[1]
    signal = np.empty((n, n_channels), dtype=np.float32)
    labels = np.empty(n, dtype=np.int16)
    g = 0
    for k in range(time_ms.size - 1):
        step = time_ms[k + 1] - time_ms[k]
        for c in range(n_channels):
            signal[g, c] = values[k, c]
        labels[g] = classes[k]
        for j in range(1, step):
            w = j / step
            for c in range(n_channels):
                v0 = values[k, c]
                signal[g + j, c] = v0 + w * (values[k + 1, c] - v0)
            labels[g + j] = classes[k]
        g += step
    last = time_ms.size - 1
    for c in range(n_channels):
        signal[g, c] = values[last, c]
    labels[g] = classes[last]
    return signal, labels


def resample_rows(
    time_ms: np.ndarray, values: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Numba version of :func:`pipeline.io.uci_emg.resample_uniform` (same contract).

    ``time_ms`` must be strictly increasing int64; ``values`` float64 of shape (n, c).
    """
    return _resample(
        np.ascontiguousarray(time_ms, dtype=np.int64),
        np.ascontiguousarray(values, dtype=np.float64),
        np.ascontiguousarray(classes, dtype=np.int64),
    )
