"""A file's sha256: once per process per version, and for large files (models) once per machine, on disk."""

from __future__ import annotations

import hashlib
import os

import pytest

import densevid.pipeline.core._files as files
from densevid.pipeline.core import cache_dir, file_sha256


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A private cache directory and no hashes remembered by this process: as a new process starts."""
    monkeypatch.setenv("DENSEVID_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(files, "_hashes", {})
    return tmp_path / "cache" / "sha256"


def _large(path, fill: bytes = b"m"):
    path.write_bytes(fill * files.CACHE_MIN_BYTES)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_large_files_hash_is_kept_and_read_by_the_next_process(tmp_path, fresh, monkeypatch):
    path, expected = _large(tmp_path / "model.pt")
    assert file_sha256(path) == expected
    (entry,) = fresh.iterdir()
    assert entry.read_text().strip() == expected
    # the next process: nothing in memory; it must take the cache's word instead of hashing
    monkeypatch.setattr(files, "_hashes", {})
    entry.write_text("ab" * 32 + "\n")
    assert file_sha256(path) == "ab" * 32


def test_a_changed_file_is_hashed_again(tmp_path, fresh, monkeypatch):
    path, _ = _large(tmp_path / "model.pt")
    file_sha256(path)
    monkeypatch.setattr(files, "_hashes", {})
    path, expected = _large(path, b"n")  # same size: the mtime (and so the key) changes
    os.utime(path, ns=(1, 1))
    assert file_sha256(path) == expected
    assert len(list(fresh.iterdir())) == 2


def test_a_damaged_entry_or_an_unwritable_cache_hashes_the_file(tmp_path, fresh, monkeypatch):
    path, expected = _large(tmp_path / "model.pt")
    file_sha256(path)
    (entry,) = fresh.iterdir()
    entry.write_text("not a hash")
    monkeypatch.setattr(files, "_hashes", {})
    assert file_sha256(path) == expected
    (tmp_path / "file_in_the_way").write_text("")
    monkeypatch.setenv("DENSEVID_CACHE_DIR", str(tmp_path / "file_in_the_way"))
    monkeypatch.setattr(files, "_hashes", {})
    assert file_sha256(path) == expected  # the cache cannot be created: no error


def test_small_files_are_not_cached(tmp_path, fresh):
    path = tmp_path / "small.bin"
    path.write_bytes(b"x" * 1000)
    assert file_sha256(path) == hashlib.sha256(b"x" * 1000).hexdigest()
    assert not fresh.exists()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DENSEVID_CACHE_DIR", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("DENSEVID_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "densevid"
