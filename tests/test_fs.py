"""Tests of pipeline._fs: what atomic writes flush to disk, and when."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pipeline._fs as fs


@pytest.fixture
def flushed(monkeypatch) -> list[tuple[int, int]]:
    """Record the (device, inode) of every ``os.fsync`` made through pipeline._fs."""
    calls: list[tuple[int, int]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        calls.append((st.st_dev, st.st_ino))
        real(fd)

    monkeypatch.setattr(fs.os, "fsync", fsync)
    return calls


def _ino(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def test_atomic_path_flushes_file_then_folder(tmp_path, flushed):
    target = tmp_path / "sub" / "a.bin"
    with fs.atomic_path(target) as tmp:
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    # the file (same inode after the rename), then its folder
    assert flushed == [_ino(target), _ino(target.parent)]


def test_atomic_path_without_fsync_renames_but_does_not_flush(tmp_path, flushed):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with fs.atomic_path(target, fsync=False) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert flushed == []
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temporary left


def test_atomic_path_failure_keeps_the_old_file(tmp_path, flushed):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer failed"), fs.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    assert flushed == []


def test_fsync_paths_flushes_every_file_and_each_folder_once(tmp_path, flushed):
    files = [tmp_path / "x" / f"{i}.bin" for i in range(3)] + [tmp_path / "y" / "3.bin"]
    for f in files:
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"0")
    fs.fsync_paths(files)
    expected = [_ino(f) for f in files] + [_ino(tmp_path / "x"), _ino(tmp_path / "y")]
    assert flushed == expected


def test_fsync_paths_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        fs.fsync_paths([tmp_path / "missing.bin"])
