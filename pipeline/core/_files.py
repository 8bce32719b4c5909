"""Small file facts shared by the layers: a file's sha256, hashed once per process per version.

Model files are hundreds of MB (half a second of hashing each), and every encode fingerprints its model:
``prefetch_sha256`` starts the hash in a background thread when the model is loaded (hashlib releases the
GIL, so it runs beside the load on another core), and ``file_sha256`` waits for that one instead of hashing
again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

_lock = threading.Lock()
_hashes: dict[tuple[str, int, int], Future] = {}  # (real path, size, mtime) -> its sha256
_executor: ThreadPoolExecutor | None = None


def _future(path: str | os.PathLike) -> Future:
    global _executor
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (real, stat.st_size, stat.st_mtime_ns)  # a file that changes is hashed again
    with _lock:
        future = _hashes.get(key)
        if future is None:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="densevid-pool-sha256")
            future = _hashes[key] = _executor.submit(_sha256_of_file, real)
        return future


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, once per process per file version (real path, size, mtime)."""
    return _future(path).result()


def prefetch_sha256(path: str | os.PathLike) -> None:
    """Start hashing ``path`` in the background (``file_sha256`` then waits for it); errors surface there."""
    try:
        _future(path)
    except OSError:
        pass  # file_sha256 reports it when asked


def _sha256_of_file(real_path: str) -> str:
    digest = hashlib.sha256()
    with open(real_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
