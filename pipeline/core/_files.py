"""Small file facts shared by the layers: a file's sha256, hashed once per process per version."""

from __future__ import annotations

import functools
import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, cached per (real path, size, mtime): a model file is hashed once per
    process, and again only when it changes."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    return _sha256_of_file(real, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_of_file(real_path: str, size: int, mtime_ns: int) -> str:  # size, mtime: part of the cache key
    digest = hashlib.sha256()
    with open(real_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
