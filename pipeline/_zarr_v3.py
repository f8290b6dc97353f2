"""Write Zarr v3 groups and arrays straight to a directory, as ``xarray.Dataset.to_zarr`` does.

Ingestion writes many small recordings. Through ``to_zarr``, xarray and zarr-python cost
about 50 ms per recording in metadata round trips (one synchronised call into zarr's event
loop per attribute update, per array creation, per chunk), several times the cost of parsing
the file. This module writes the same files directly: a ``zarr.json`` per node and one file
per chunk, encoded with the same codecs (``bytes`` little-endian or ``vlen-utf8``, then
``zstd`` level 0 without checksum), the same fill values and the same xarray attributes
(``_FillValue``, ``coordinates``). Chunks equal to the fill value are not written and edge
chunks are padded with it, as zarr-python does. ``tests/test_zarr_v3.py`` checks that the
files are identical to what ``to_zarr`` writes for the same Dataset.

Only what the cohort store needs is supported: numeric arrays (float, int) chunked along
their first axis, and small one-dimensional string arrays written as one chunk.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numcodecs import Zstd
from numcodecs.vlen import VLenUTF8

__all__ = ["ArrayWriter", "write_group", "write_strings"]

_ZSTD = Zstd(level=0, checksum=False)
_VLEN = VLenUTF8()
_CODECS_NUMERIC = [
    {"name": "bytes", "configuration": {"endian": "little"}},
    {"name": "zstd", "configuration": {"level": 0, "checksum": False}},
]
_CODECS_STRING = [
    {"name": "vlen-utf8", "configuration": {}},
    {"name": "zstd", "configuration": {"level": 0, "checksum": False}},
]
# xarray's CF encoding of a NaN fill value: the float64 NaN, base64-encoded.
NAN_FILL_ATTR = base64.standard_b64encode(np.float64(np.nan).tobytes()).decode()


def _dump(path: Path, meta: dict[str, Any]) -> None:
    # Compact JSON (zarr-python indents): the indenting encoder is pure Python and cost more
    # than the rest of a small recording's metadata.
    (path / "zarr.json").write_text(json.dumps(meta, allow_nan=True))


def write_group(path: Path, attributes: dict[str, Any]) -> None:
    """Create the directory ``path`` as a Zarr v3 group with ``attributes``.

    Parameters
    ----------
    path : Path
        The group's directory (created; its parent must exist).
    attributes : dict
        JSON-serialisable group attributes.
    """
    path.mkdir()
    _dump(path, {"attributes": attributes, "zarr_format": 3, "node_type": "group"})


def _array_meta(
    shape: Sequence[int],
    data_type: str,
    chunks: Sequence[int],
    fill_value: Any,
    codecs: list[dict[str, Any]],
    dims: Sequence[str],
    attributes: dict[str, Any],
) -> dict[str, Any]:
    return {
        "shape": [int(s) for s in shape],
        "data_type": data_type,
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": [int(c) for c in chunks]},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill_value,
        "codecs": codecs,
        "attributes": attributes,
        "dimension_names": list(dims),
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


class ArrayWriter:
    """A numeric Zarr v3 array chunked along its first axis, written chunk by chunk.

    Parameters
    ----------
    path : Path
        The array's directory (created).
    shape : tuple of int
        Full shape.
    dtype : numpy dtype
        A float or integer dtype.
    chunk : int
        Chunk length along the first axis (other axes are not chunked).
    dims : sequence of str
        Dimension names (xarray's dimensions).
    attributes : dict, optional
        Extra array attributes (e.g. xarray's ``coordinates``). Float arrays get xarray's
        ``_FillValue`` (NaN) attribute.
    """

    def __init__(
        self,
        path: Path,
        shape: Sequence[int],
        dtype: Any,
        chunk: int,
        dims: Sequence[str],
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.chunk = int(chunk)
        attrs = dict(attributes or {})
        if self.dtype.kind == "f":
            self.fill: Any = np.nan
            fill_json: Any = "NaN"
            attrs["_FillValue"] = NAN_FILL_ATTR
        elif self.dtype.kind in "iu":
            self.fill = 0
            fill_json = 0
        else:
            msg = f"ArrayWriter: expected a float or integer dtype, found {self.dtype}"
            raise TypeError(msg)
        path.mkdir()
        chunks = (self.chunk, *self.shape[1:])
        _dump(
            path,
            _array_meta(
                self.shape, self.dtype.name, chunks, fill_json, _CODECS_NUMERIC, dims, attrs
            ),
        )

    @property
    def n_chunks(self) -> int:
        """Number of chunks along the first axis."""
        return -(-self.shape[0] // self.chunk)

    def write_chunk(self, k: int, data: np.ndarray) -> None:
        """Write chunk ``k``: ``data`` holds its rows (fewer than ``chunk`` only at the end).

        Parameters
        ----------
        k : int
            Chunk number along the first axis.
        data : numpy.ndarray
            Rows ``k * chunk`` up to the end of the chunk or of the array.
        """
        expected = min(self.chunk, self.shape[0] - k * self.chunk)
        if not 0 <= k < self.n_chunks or data.shape != (expected, *self.shape[1:]):
            msg = (
                f"{self.path}: chunk {k} expected shape {(expected, *self.shape[1:])}, "
                f"found {data.shape}"
            )
            raise ValueError(msg)
        if len(data) < self.chunk:  # edge chunk: padded to the full chunk with the fill value
            full = np.full((self.chunk, *self.shape[1:]), self.fill, dtype=self.dtype)
            full[: len(data)] = data
            data = full
        else:
            data = np.ascontiguousarray(data, dtype=self.dtype)
        if self._is_fill(data):
            return  # zarr-python does not store a chunk equal to the fill value
        name = "/".join(["c", str(k)] + ["0"] * (len(self.shape) - 1))
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_ZSTD.encode(data))

    def _is_fill(self, data: np.ndarray) -> bool:
        if self.dtype.kind == "f":
            return bool(np.isnan(data).all())
        return not data.any()

    def write(self, data: np.ndarray) -> None:
        """Write the whole array from ``data`` (shape ``self.shape``), chunk by chunk."""
        for k in range(self.n_chunks):
            self.write_chunk(k, data[k * self.chunk : (k + 1) * self.chunk])


def write_strings(
    path: Path, values: Sequence[str], dims: Sequence[str], attributes: dict[str, Any] | None = None
) -> None:
    """Write a small one-dimensional string array (one chunk), as xarray writes object strings.

    Parameters
    ----------
    path : Path
        The array's directory (created).
    values : sequence of str
        The strings.
    dims : sequence of str
        Its one dimension name.
    attributes : dict, optional
        Array attributes.
    """
    arr = np.array([str(v) for v in values], dtype=object)
    path.mkdir()
    n = len(arr)
    _dump(
        path,
        _array_meta((n,), "string", (max(n, 1),), "", _CODECS_STRING, dims, attributes or {}),
    )
    if n and any(arr):  # an all-empty chunk equals the fill value and is not stored
        (path / "c").mkdir()
        (path / "c" / "0").write_bytes(_ZSTD.encode(_VLEN.encode(arr)))
