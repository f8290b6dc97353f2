"""Write and read Zarr v3 recordings directly, in the layout ``xarray.Dataset.to_zarr`` uses.

Ingestion writes many small recordings. Through ``to_zarr``, xarray and zarr-python cost
about 60 ms per recording in metadata round trips (one synchronised call into zarr's event
loop per attribute update, per array creation, per chunk), several times the cost of parsing
the file. This module writes the same nodes directly: a ``zarr.json`` per node (the same
metadata, as compact JSON) and one file per chunk, encoded with the same codecs (``bytes``
little-endian or ``vlen-utf8``, then ``zstd`` level 0 without checksum, or ``blosc`` LZ4 with
byte shuffle for the time axis), the same fill values
and the same xarray attributes (``_FillValue``, ``coordinates``). Chunks equal to the fill
value are not written and edge chunks are padded with it, as zarr-python does.
``tests/test_zarr_v3.py`` checks, file by file, that the metadata equals and the chunks are
byte-identical to what ``to_zarr`` writes for the same Dataset.

:func:`read_dataset` opens such a recording as a lazy Dataset from its metadata (the same
Dataset ``xarray.open_zarr`` returns), and declines anything in another layout.

Only what the cohort store needs is supported: numeric arrays (float, int) chunked along
their first axis, and small one-dimensional string arrays written as one chunk.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numcodecs import Blosc, Zstd
from numcodecs.vlen import VLenUTF8

__all__ = ["ArrayWriter", "read_dataset", "read_strings", "write_group", "write_strings"]

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
# For arrays as regular as a time axis: byte shuffle then LZ4 keeps a float64 grid to ~1.4 %
# of its size at ~1 GB/s, where zstd alone keeps 14 % at ~0.5 GB/s (2**18 samples of i/fs).
BLOSC_LZ4 = {"cname": "lz4", "clevel": 5, "shuffle": "shuffle", "blocksize": 0}


def _blosc(typesize: int) -> tuple[Blosc, list[dict[str, Any]]]:
    codec = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE, blocksize=0, typesize=typesize)
    config = {"typesize": typesize, **BLOSC_LZ4}
    return codec, [_CODECS_NUMERIC[0], {"name": "blosc", "configuration": config}]


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
    compressor : {"zstd", "blosc-lz4"}, default "zstd"
        ``"blosc-lz4"`` (byte shuffle, LZ4 level 5; what ``zarr.codecs.BloscCodec(cname="lz4",
        clevel=5, shuffle="shuffle")`` writes) for smooth arrays such as a time axis.
    """

    def __init__(
        self,
        path: Path,
        shape: Sequence[int],
        dtype: Any,
        chunk: int,
        dims: Sequence[str],
        attributes: dict[str, Any] | None = None,
        compressor: str = "zstd",
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
        codecs = _CODECS_NUMERIC
        self._codec: Any = _ZSTD
        if compressor == "blosc-lz4":
            self._codec, codecs = _blosc(self.dtype.itemsize)
        elif compressor != "zstd":
            msg = f"ArrayWriter: expected compressor 'zstd' or 'blosc-lz4', found {compressor!r}"
            raise ValueError(msg)
        path.mkdir()
        chunks = (self.chunk, *self.shape[1:])
        meta = _array_meta(self.shape, self.dtype.name, chunks, fill_json, codecs, dims, attrs)
        _dump(path, meta)

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
        # zarr hands the codec the chunk's bytes (the "bytes" codec's output)
        target.write_bytes(self._codec.encode(data.reshape(-1).view(np.uint8)))

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


# ----------------------------------------------------------------------------- reading

_NUMERIC_TYPES = {"float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16"}


def _readable(meta: dict[str, Any]) -> bool:
    """Whether an array's metadata is the layout this module writes (else read it with zarr)."""
    try:
        chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
        shape = meta["shape"]
        codecs = meta["codecs"]
        return (
            meta.get("zarr_format") == 3
            and meta.get("node_type") == "array"
            and meta["chunk_grid"]["name"] == "regular"
            and meta["chunk_key_encoding"]
            == {"name": "default", "configuration": {"separator": "/"}}
            and not meta.get("storage_transformers")
            and len(shape) >= 1
            and list(chunks[1:]) == list(shape[1:])
            and (
                (meta["data_type"] in _NUMERIC_TYPES and codecs == _CODECS_NUMERIC)
                or (meta["data_type"] == "string" and codecs == _CODECS_STRING and len(shape) == 1)
            )
        )
    except (KeyError, TypeError, IndexError):
        return False


def read_chunk(path: str, k: int, rows: int, dtype: str, tail: tuple[int, ...]) -> np.ndarray:
    """Return rows ``k * chunk`` ... of a numeric array written in this layout.

    Parameters
    ----------
    path : str
        The chunk's file (``<array>/c/<k>[/0...]``); a missing file is the fill value.
    k : int
        Chunk number (only used in error messages).
    rows : int
        Rows of this chunk inside the array (the edge chunk is cut to them).
    dtype : str
        The array's ``data_type``.
    tail : tuple of int
        Shape of the other axes.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        fill = np.nan if np.dtype(dtype).kind == "f" else 0
        return np.full((rows, *tail), fill, dtype=dtype)
    data = np.frombuffer(_ZSTD.decode(raw), dtype=np.dtype(dtype).newbyteorder("<"))
    width = int(np.prod(tail, dtype=np.int64))
    if data.size % max(width, 1) or data.size // max(width, 1) < rows:
        msg = f"{path}: chunk {k} holds {data.size} values, expected at least {rows} x {tail}"
        raise ValueError(msg)
    return data.reshape(-1, *tail)[:rows].astype(dtype, copy=False)


def read_strings(path: Path) -> np.ndarray:
    """Return a one-dimensional string array written by :func:`write_strings`.

    Parameters
    ----------
    path : Path
        The array's directory.

    Returns
    -------
    numpy.ndarray of shape (n,), StringDType

    Raises
    ------
    ValueError
        If the array is not in the layout :func:`write_strings` writes.
    """
    meta = json.loads((path / "zarr.json").read_text())
    if not _readable(meta) or meta["data_type"] != "string":
        found = meta.get("data_type")
        msg = f"{path}: expected a one-chunk vlen-utf8 string array, found {found!r}"
        raise ValueError(msg)
    return _read_strings(path, meta)


def _read_strings(path: Path, meta: dict[str, Any]) -> np.ndarray:
    n = int(meta["shape"][0])
    chunk = path / "c" / "0"
    if n == 0 or not chunk.exists():
        return np.array([""] * n, dtype=np.dtypes.StringDType())
    values = _VLEN.decode(_ZSTD.decode(chunk.read_bytes()))
    return np.asarray(values[:n], dtype=np.dtypes.StringDType())


def read_dataset(path: Path, token: str, skip: Collection[str] = (), coords: Any = None) -> Any:
    """Open a recording written by this module as a lazy xarray Dataset, or return None.

    Reads only metadata (one ``zarr.json`` per node) and the small one-dimensional arrays
    without a ``time`` dimension; arrays along ``time`` become dask arrays with one task per
    chunk. The result equals ``xarray.open_zarr(path)`` with its per-channel coordinates
    loaded, less the ``skip`` arrays (``tests/test_zarr_v3.py``). Returns None when any node
    is not in the layout this module writes, so that the caller falls back to xarray.

    Parameters
    ----------
    path : Path
        The recording's group directory.
    token : str
        Identifies the recording's content (names the dask arrays).
    skip : collection of str
        Arrays left out (the store computes its ``time`` coordinate instead of reading it).
    coords : xarray.Coordinates, optional
        Coordinates (with their indexes) added as the Dataset is built, cheaper than
        ``assign_coords`` afterwards; None is returned if their sizes disagree with the
        arrays'.
    """
    import dask.array as da
    import xarray as xr

    group = json.loads((path / "zarr.json").read_text())
    if group.get("node_type") != "group" or group.get("zarr_format") != 3:
        return None
    metas = {}
    for member in sorted(p for p in path.iterdir() if p.is_dir()):
        meta_file = member / "zarr.json"
        if member.name in skip or not meta_file.exists():
            continue
        meta = json.loads(meta_file.read_text())
        if not _readable(meta):
            return None
        metas[member.name] = meta
    variables: dict[str, Any] = {}
    coord_names: set[str] = set()
    for name, meta in metas.items():
        dims = tuple(meta.get("dimension_names") or ())
        shape = tuple(int(s) for s in meta["shape"])
        attrs = dict(meta.get("attributes") or {})
        coord_names.update((attrs.pop("coordinates", None) or "").split())
        fill = attrs.pop("_FillValue", None)
        if fill not in (None, NAN_FILL_ATTR):
            return None  # a fill value that would need masking: let xarray decode it
        if len(dims) != len(shape):
            return None
        if meta["data_type"] == "string":
            data: Any = _read_strings(path / name, meta)
        else:
            dtype = meta["data_type"]
            chunk = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
            n_chunks = -(-shape[0] // chunk) if shape[0] else 0
            tail = shape[1:]
            rows = [min(chunk, shape[0] - k * chunk) for k in range(n_chunks)]
            files = [
                str(path / name / "/".join(["c", str(k)] + ["0"] * len(tail)))
                for k in range(n_chunks)
            ]
            if "time" not in dims:  # small (events): read now
                parts = [
                    read_chunk(f, k, r, dtype, tail)
                    for k, (f, r) in enumerate(zip(files, rows, strict=True))
                ]
                data = np.concatenate(parts) if parts else np.zeros(shape, dtype=dtype)
            else:
                # The same recording in two stores (or chunked differently) must not share
                # dask keys: the path and the layout are part of the name.
                ident = json.dumps([token, str(path.resolve()), name, shape, chunk, dtype])
                key = f"{name}-{hashlib.sha256(ident.encode()).hexdigest()[:32]}"
                graph = {
                    (key, k) + (0,) * len(tail): (read_chunk, f, k, r, dtype, tail)
                    for k, (f, r) in enumerate(zip(files, rows, strict=True))
                }
                chunks = (tuple(rows) or (0,), *((t,) for t in tail))
                data = da.Array(graph, key, chunks, dtype=dtype)
        variables[name] = xr.Variable(dims, data, attrs)
    coord_names.update(
        n
        for n in metas
        if n in {d for m in metas.values() for d in (m.get("dimension_names") or ())}
    )
    coord_vars = {n: v for n, v in variables.items() if n in coord_names}
    data_vars = {n: v for n, v in variables.items() if n not in coord_names}
    if coords is not None:
        sizes = {d: s for v in variables.values() for d, s in v.sizes.items()}
        if any(sizes.get(d, s) != s for d, s in coords.sizes.items()):
            return None
        own = xr.Coordinates(coord_vars)  # default indexes (channel)
        coord_vars = xr.Coordinates(
            {**own.variables, **coords.variables}, indexes={**own.xindexes, **coords.xindexes}
        )
    return xr.Dataset(data_vars, coords=coord_vars, attrs=group.get("attributes") or {})
