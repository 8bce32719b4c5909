"""Outputs that appear whole or not at all, survive a power loss, and leave nothing behind.

Every writer works on a ``Partial``: a hidden file (or directory) beside its output, named by
``partial_name``, created exclusively and **locked** (``flock``) for as long as its writer lives. When
the writer is done it ``commit``s: the data is flushed to disk (``fsync`` of the file, or of every file of
a directory and the directory), the partial is moved onto the final name (a hard link, so a file that
appeared meanwhile is not clobbered, unless ``overwrite``), and the parent directory is ``fsync``-ed so the
rename itself is durable: a power loss right after a run cannot leave an empty file under the final name.
On an error or ``discard`` the partial is removed and an existing output is left untouched.

A run killed with SIGKILL (a pre-empted spot worker, the OOM killer) cannot remove its partial, but the
kernel drops its lock: ``remove_stale_partials`` (called by every writer before it starts) removes the
partials of the same output that nobody holds any more, and never one that a live run is still writing.
Where ``fcntl`` is missing (Windows) partials are not locked and stale ones are left alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

from ..core import OutputError, os_reason
from ._naming import PARTIAL_TOKEN_HEX, partial_name, partial_pattern

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

# a partial younger than this is left alone even when unlocked: its writer may be between creating and
# locking it (microseconds), and a clock step must not make a live file look stale
STALE_AFTER_SECONDS = 2.0


def exists_message(path: Path, what: str = "output") -> str:
    """The one wording for an output that exists: "<what> <path> already exists; pass --overwrite ..."."""
    return f"{what} {path} already exists; pass --overwrite to replace it"


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (the same inode: symlinks and hard links count); False when
    either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_dir(directory: Path) -> None:
    """The one check of the directory an output goes into: it exists, is a directory, is writable."""
    if not directory.exists():
        raise OutputError(f"output directory {directory} does not exist")
    if not directory.is_dir():
        raise OutputError(f"output directory {directory} does not exist: a file is in its place, not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {directory} is not writable")


def check_file_target(path: Path, overwrite: bool, suffixes: tuple[str, ...] | None = None,
                      what: str = "output") -> None:
    """Refuse a file output early (before any work): a wrong suffix (when ``suffixes`` is given), a directory in
    its place, an existing file without ``overwrite``, or an unusable directory."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise OutputError(f"{what} must end in {' or '.join(suffixes)}: {path}")
    if path.is_dir():
        raise OutputError(f"{what} path is a directory: {path}")
    if path.exists() and not overwrite:
        raise OutputError(exists_message(path))
    check_output_dir(path.parent)


def check_dir_target(path: Path, overwrite: bool, what: str = "frames directory") -> None:
    """Refuse a directory output (--frames DIR) early when it cannot be created or replaced."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} exists and is not a directory")
    if path.exists() and not overwrite:
        raise OutputError(exists_message(path, what))
    check_output_dir(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    is_dir = path.is_dir()
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if is_dir else 0))
    try:
        os.fsync(fd)
    except OSError:
        if not is_dir:  # some file systems cannot fsync a directory: nothing more to do there
            raise
    finally:
        os.close(fd)


def _lock(fd: int) -> bool:
    """Take the partial's lock (non-blocking); False when another process holds it."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _remove_tree_or_file(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class Partial:
    """A locked hidden file (``directory=False``) or directory beside ``final``, for one writer.

    ``path`` is where the writer writes. Exactly one of ``commit`` / ``discard`` ends it.
    """

    def __init__(self, final: Path, directory: bool = False, overwrite: bool = False) -> None:
        self.final = Path(final)
        self.directory = directory
        self.overwrite = overwrite
        self.path: Path | None = None
        self._fd: int | None = None
        parent = self.final.parent
        check_output_dir(parent)
        remove_stale_partials(self.final)
        for _ in range(10):
            path = parent / partial_name(self.final, secrets.token_hex(PARTIAL_TOKEN_HEX // 2))
            try:
                if directory:
                    os.mkdir(path)
                    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
                else:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
            except FileExistsError:
                continue
            except OSError as err:
                raise OutputError(f"cannot write to {parent}: {os_reason(err)}") from None
            _lock(fd)  # a fresh name: nobody else holds it
            self.path, self._fd = path, fd
            return
        raise OutputError(f"cannot create a temporary file in {parent}")  # pragma: no cover

    @property
    def open(self) -> bool:
        return self._fd is not None

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None

    def commit(self) -> Path:
        """Flush the partial to disk, move it onto the final name, make the rename durable; return the final path."""
        try:
            self._flush()
            if self.directory:
                self._move_directory()
            else:
                self._move_file()
            fsync_path(self.final.parent)
        except OutputError:
            self.discard()
            raise
        except OSError as err:
            self.discard()
            raise OutputError(f"cannot write {self.final}: {os_reason(err)}") from None
        self._release()
        return self.final

    def _flush(self) -> None:
        if self.directory:
            for entry in sorted(self.path.iterdir()):
                if entry.is_file():
                    fsync_path(entry)
        fsync_path(self.path)

    def _move_file(self) -> None:
        if self.overwrite:
            os.replace(self.path, self.final)
            return
        try:
            os.link(self.path, self.final)  # atomic, and never clobbers a file that appeared meanwhile
        except FileExistsError:
            raise OutputError(exists_message(self.final)) from None
        except OSError:  # a file system without hard links
            if self.final.exists():
                raise OutputError(exists_message(self.final)) from None
            os.replace(self.path, self.final)
            return
        os.unlink(self.path)

    def _move_directory(self) -> None:
        old = None
        if self.final.exists():
            if not self.overwrite:
                raise OutputError(exists_message(self.final, "frames directory"))  # only --frames writes a directory
            old = self.final.parent / f".{self.final.name}.{secrets.token_hex(4)}.old"
            os.rename(self.final, old)
        try:
            os.rename(self.path, self.final)
        except OSError:
            if old is not None and not self.final.exists():
                os.rename(old, self.final)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Remove what was written (an existing output stays untouched)."""
        if self.path is not None and self.path.exists():
            _remove_tree_or_file(self.path)
        self._release()


def remove_stale_partials(final: Path, min_age_seconds: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove the partials of ``final`` that no live writer holds (left by a killed run); return them.

    A partial is stale when its lock can be taken and it is older than ``min_age_seconds`` (0 for a caller
    that knows its writer is dead, as Ray's driver knows of a dead actor). Its companion ``<partial>.d``
    (the IUV writer's raw frames) goes with it.
    """
    if fcntl is None:  # pragma: no cover - without locks a live partial cannot be told from a stale one
        return []
    pattern = partial_pattern(final)
    try:
        entries = [entry for entry in os.scandir(final.parent) if pattern.fullmatch(entry.name)]
    except OSError:
        return []
    removed = []
    for entry in entries:
        path = Path(entry.path)
        try:
            fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if entry.is_dir() else 0))
        except OSError:
            continue
        try:
            if not _lock(fd) or time.time() - os.fstat(fd).st_mtime < min_age_seconds:
                continue
            if os.fstat(fd).st_ino != os.stat(path).st_ino:  # replaced meanwhile: not the file we locked
                continue
            for companion in (path.with_name(path.name + ".d"),):
                if companion.exists():
                    _remove_tree_or_file(companion)
            _remove_tree_or_file(path)
            removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


class AtomicOutput:
    """The writers' shared protocol: ``close()`` moves the finished output into place, ``abort()`` removes
    what was written; as a context manager, success closes and an exception aborts."""

    def close(self) -> Path:  # pragma: no cover - every writer defines it
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - every writer defines it
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
