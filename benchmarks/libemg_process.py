"""libemg in its own environment, driven from the benchmarks through a pipe.

libemg pins ``numpy < 2``, which this package cannot run on, so it lives in a virtualenv of
its own (benchmarks/README.md, "Environment"): ``$LIBEMG_PYTHON``, default
``.venv-libemg/bin/python`` at the repository root. :class:`Libemg` starts this file there as
a worker and forwards ``FeatureExtractor`` calls to it; windows and results cross the pipe in
``.npy`` format, which both NumPy versions read. Timings are taken inside the worker, so the
transfer is never counted against libemg.

The worker half of this file imports only NumPy and libemg's ``feature_extractor.py`` (not
the package ``__init__``, which needs pygame, serial devices...).
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETUP = (
    "python3 -m venv .venv-libemg && .venv-libemg/bin/pip install --no-deps libemg==2.0.3 && "
    ".venv-libemg/bin/pip install 'numpy<2' scipy scikit-learn matplotlib librosa PyWavelets"
)


def _write(stream: IO[bytes], header: dict[str, Any], arrays: list[np.ndarray]) -> None:
    # np.save into memory first: NumPy's tofile/fromfile need a seekable file, not a pipe
    blobs = []
    for a in arrays:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
        blobs.append(buf.getvalue())
    stream.write(json.dumps({**header, "sizes": [len(b) for b in blobs]}).encode() + b"\n")
    for b in blobs:
        stream.write(b)
    stream.flush()


def _read(stream: IO[bytes]) -> tuple[dict[str, Any], list[np.ndarray]]:
    line = stream.readline()
    if not line:
        raise EOFError("libemg worker closed the pipe")
    header = json.loads(line)
    arrays = [
        np.load(io.BytesIO(stream.read(size)), allow_pickle=False) for size in header["sizes"]
    ]
    return header, arrays


class Libemg:
    """``FeatureExtractor`` of libemg, run by a worker in libemg's own virtualenv.

    Parameters
    ----------
    python : str or path, optional
        The libemg environment's interpreter; default ``$LIBEMG_PYTHON``, else
        ``.venv-libemg/bin/python`` at the repository root.
    """

    def __init__(self, python: str | os.PathLike[str] | None = None) -> None:
        default = ROOT / ".venv-libemg" / "bin" / "python"
        exe = Path(python or os.environ.get("LIBEMG_PYTHON") or default)
        if not exe.exists():
            sys.exit(
                f"libemg's environment not found: {exe} does not exist. Create it from the "
                f"repository root ({SETUP}) or set LIBEMG_PYTHON to its python "
                "(benchmarks/README.md, 'Environment')"
            )
        self._proc = subprocess.Popen(
            [str(exe), str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def _call(self, op: str, arrays: list[np.ndarray], **params: Any) -> tuple[dict, list]:
        _write(self._proc.stdin, {"op": op, **params}, arrays)
        header, out = _read(self._proc.stdout)
        if "error" in header:
            raise RuntimeError(f"libemg worker: {header['error']}")
        return header, out

    def extract_features(self, names: list[str], windows: np.ndarray) -> dict[str, np.ndarray]:
        """Return libemg's ``extract_features(names, windows)``: name -> (n_windows, n_channels)."""
        header, out = self._call("extract", [windows], names=list(names))
        return dict(zip(header["names"], out, strict=True))

    def getSSCfeat(self, windows: np.ndarray, threshold: float) -> np.ndarray:
        """Return libemg's ``getSSCfeat(windows, threshold)``."""
        return self._call("ssc", [windows], threshold=float(threshold))[1][0]

    def best_extract(
        self, names: list[str], windows: list[np.ndarray], repeats: int
    ) -> tuple[float, float]:
        """Return the best wall and CPU seconds of ``extract_features(names, w)`` over ``windows``.

        Timed inside the worker (``time.perf_counter`` / ``time.process_time``, best of
        ``repeats``), as the benchmarks time their own implementations.
        """
        header, _ = self._call("time", windows, names=list(names), repeats=int(repeats))
        return header["wall"], header["cpu"]

    def close(self) -> None:
        """Stop the worker."""
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=60)

    def __del__(self) -> None:
        self.close()


# ----------------------------------------------------------------------------- the worker


def _feature_extractor() -> Any:
    """Import libemg's FeatureExtractor without the package ``__init__``."""
    spec = importlib.util.find_spec("libemg")
    if spec is None:
        sys.exit(f"libemg is not installed in {sys.prefix}: {SETUP}")
    path = Path(spec.submodule_search_locations[0]) / "feature_extractor.py"
    mod_spec = importlib.util.spec_from_file_location("libemg_feature_extractor", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.FeatureExtractor()


def _serve() -> None:
    fe = _feature_extractor()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            req, arrays = _read(stdin)
        except EOFError:
            return
        try:
            if req["op"] == "extract":
                feats = fe.extract_features(req["names"], arrays[0])
                _write(stdout, {"names": list(feats)}, list(feats.values()))
            elif req["op"] == "ssc":
                _write(stdout, {}, [np.asarray(fe.getSSCfeat(arrays[0], req["threshold"]))])
            elif req["op"] == "time":
                wall, cpu = math.inf, math.inf
                for _ in range(req["repeats"]):
                    w0, c0 = time.perf_counter(), time.process_time()
                    for w in arrays:
                        fe.extract_features(req["names"], w)
                    wall = min(wall, time.perf_counter() - w0)
                    cpu = min(cpu, time.process_time() - c0)
                _write(stdout, {"wall": wall, "cpu": cpu}, [])
            else:
                _write(stdout, {"error": f"unknown op {req['op']!r}"}, [])
        except Exception as exc:  # reported to the benchmark, which raises it
            _write(stdout, {"error": f"{type(exc).__name__}: {exc}"}, [])


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _serve()
