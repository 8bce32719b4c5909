"""Small file facts shared by the layers: a file's sha256, hashed once per process per version, and for
large files once per machine.

Model files are hundreds of MB (half a second of hashing each), and every encode fingerprints its model:
``prefetch_sha256`` starts the hash in a background thread when the model is loaded (hashlib releases the
GIL, so it runs beside the load on another core), and ``file_sha256`` waits for that one instead of hashing
again. A file of ``CACHE_MIN_BYTES`` or more also has its hash kept on disk, one small file per version
(real path, size, mtime, inode) in ``cache_dir()``, so the next process (a one-frame encode, each task of a
batch array) reads it instead of spending half a second of CPU beside the model. Where the cache cannot be
read or written the file is hashed, as without it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

CACHE_MIN_BYTES = 16 << 20  # below this hashing costs less than it is worth keeping
_HEX64 = re.compile(r"[0-9a-f]{64}")

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


def cache_dir() -> Path:
    """Where densevid keeps what it can recompute: ``DENSEVID_CACHE_DIR``, else ``$XDG_CACHE_HOME/densevid``,
    else ``~/.cache/densevid``."""
    if os.environ.get("DENSEVID_CACHE_DIR"):
        return Path(os.environ["DENSEVID_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "densevid"


def _cache_entry(real_path: str) -> Path | None:
    """The cache file of this version of the file (None for a small file)."""
    stat = os.stat(real_path)
    if stat.st_size < CACHE_MIN_BYTES:
        return None
    version = f"{real_path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}".encode("utf-8", "surrogateescape")
    return cache_dir() / "sha256" / hashlib.sha256(version).hexdigest()


def _sha256_of_file(real_path: str) -> str:
    entry = _cache_entry(real_path)
    if entry is not None:
        try:
            cached = entry.read_text(encoding="ascii").strip()
            if _HEX64.fullmatch(cached):
                return cached
        except (OSError, UnicodeDecodeError):
            pass  # not cached yet, or unreadable: hash it
    digest = hashlib.sha256()
    with open(real_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    hexdigest = digest.hexdigest()
    if entry is not None:
        _store(entry, hexdigest)
    return hexdigest


def _store(entry: Path, hexdigest: str) -> None:
    """Write the cache entry atomically (another process may read or write it at the same time); a cache that
    cannot be written (read-only home, full disk) is no error."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=entry.parent)
        try:
            with os.fdopen(handle, "w", encoding="ascii") as out:
                out.write(hexdigest + "\n")
            os.replace(temporary, entry)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        pass
