"""Extra outputs for training data: a directory of numbered PNGs (--frames) and an IUV .npz (--iuv).

Both follow the VideoWriter's rules: an existing target is refused without ``overwrite``,
everything is written under a hidden temporary name beside the target and renamed only when
complete, and an exception (or ``abort()``) removes the temporary files.

IUV file format (``--iuv PATH.npz``, load with ``numpy.load`` alone)::

    I            uint8   [N, H, W]  part index 0..24 (0 = background), equal to the hint's labels
    U, V         float16 [N, H, W]  chart coordinates in [0, 1] of the painting person (0 on background)
    pts_seconds  float64 [N]        presentation time of each frame, as in the hint video
    densevid_fingerprint  str []    what made the file (JSON, see ``_fingerprint``); resume reads it

N, H, W are the hint video's frame count and size. Memory stays bounded: frames are appended to
raw temporary files and the compressed .npz is assembled from memory maps at the end.

Fingerprints: every PNG of a --frames directory carries the run's fingerprint in a tEXt chunk (a
manifest file in the directory would be one more file for trainers that read every file there);
the .npz holds it as the entry ``densevid_fingerprint``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import zipfile
from pathlib import Path

import numpy as np

from ._encode import (
    FINGERPRINT_TAG,
    AtomicOutput,
    _commit,
    _prepare_target,
    _remove,
    check_output_dir,
    png_bytes,
    read_png_text,
)
from ._errors import OutputError, os_reason

PNG_DIGITS = 6


def check_dir_target(path: Path, overwrite: bool) -> None:
    """Refuse a --frames directory early (before any work) when it cannot be created or replaced."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"frames directory {path} exists and is not a directory")
    if path.exists() and not overwrite:
        raise OutputError(f"frames directory {path} already exists; pass --overwrite to replace it")
    check_output_dir(path.parent)


def check_file_target(path: Path, overwrite: bool, suffixes: tuple[str, ...], what: str) -> None:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"{what} must end in {' or '.join(suffixes)}: {path}")
    if path.is_dir():
        raise OutputError(f"{what} path is a directory: {path}")
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} already exists; pass --overwrite to replace it")
    check_output_dir(path.parent)


class FramesDirWriter(AtomicOutput):
    """Numbered lossless RGB PNGs ``000000.png``, ``000001.png`` ... in a directory, written atomically."""

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, fingerprint: str | None = None) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.fingerprint = fingerprint
        self._text = {FINGERPRINT_TAG: fingerprint} if fingerprint is not None else None
        check_dir_target(self.path, overwrite)
        self.count = 0
        self._tmp = self.path.parent / f".{self.path.name}.{secrets.token_hex(4)}.partial"
        try:
            self._tmp.mkdir()
        except OSError as err:
            raise OutputError(f"cannot write to {self.path.parent}: {os_reason(err)}") from None
        self._closed = False

    def write(self, frames_rgb: np.ndarray) -> None:
        try:
            for image in frames_rgb:
                (self._tmp / f"{self.count:0{PNG_DIGITS}d}.png").write_bytes(png_bytes(image, self._text))
                self.count += 1
        except OSError as err:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {os_reason(err)}") from None

    def close(self) -> Path:
        if self._closed:
            return self.path
        self._closed = True
        old = None
        try:
            if self.path.exists():
                if not self.overwrite:
                    raise OutputError(f"frames directory {self.path} already exists; pass --overwrite to replace it")
                old = self.path.parent / f".{self.path.name}.{secrets.token_hex(4)}.old"
                os.rename(self.path, old)
            os.rename(self._tmp, self.path)
        except OutputError:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        except OSError as err:
            shutil.rmtree(self._tmp, ignore_errors=True)
            if old is not None and not self.path.exists():
                os.rename(old, self.path)
            raise OutputError(f"cannot write {self.path}: {os_reason(err)}") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        shutil.rmtree(self._tmp, ignore_errors=True)


def read_frames_fingerprint(path: str | os.PathLike) -> str | None:
    """The fingerprint of a --frames directory: its first PNG's (None without one)."""
    return read_png_text(Path(path) / f"{0:0{PNG_DIGITS}d}.png").get(FINGERPRINT_TAG)


def read_iuv_fingerprint(path: str | os.PathLike) -> str | None:
    """The fingerprint entry of an IUV .npz (None without one, or for a file numpy cannot read)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if FINGERPRINT_TAG not in arrays.files:
                return None
            value = arrays[FINGERPRINT_TAG]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    return str(value) if value.ndim == 0 and value.dtype.kind == "U" else None


class IuvWriter(AtomicOutput):
    """Streams I, U, V frames to raw temporary files; ``close`` assembles the compressed .npz atomically."""

    def __init__(self, path: str | os.PathLike, height: int, width: int, overwrite: bool = False,
                 fingerprint: str | None = None) -> None:
        self.path = Path(path)
        check_file_target(self.path, overwrite, (".npz",), "IUV output")
        self.height, self.width = int(height), int(width)
        self.overwrite = overwrite
        self.fingerprint = fingerprint
        self.count = 0
        self._pts: list[float] = []
        self._tmp = _prepare_target(self.path, overwrite)  # the .npz being assembled
        self._parts = self._tmp.with_name(self._tmp.name + ".d")
        try:
            self._parts.mkdir()
            self._files = {name: open(self._parts / f"{name}.raw", "wb") for name in ("I", "U", "V")}
        except OSError as err:
            _remove(self._tmp)
            shutil.rmtree(self._parts, ignore_errors=True)
            raise OutputError(f"cannot write to {self.path.parent}: {os_reason(err)}") from None
        self._closed = False

    def write(self, labels: np.ndarray, u: np.ndarray, v: np.ndarray, pts_seconds) -> None:
        shape = (len(pts_seconds), self.height, self.width)
        for name, arr, dtype in (("I", labels, np.uint8), ("U", u, np.float16), ("V", v, np.float16)):
            if arr.shape != shape or arr.dtype != dtype:
                raise ValueError(f"{name} must be {np.dtype(dtype).name} {list(shape)}, "
                                 f"got {arr.dtype} {list(arr.shape)}")
        try:
            for name, arr in (("I", labels), ("U", u), ("V", v)):
                np.ascontiguousarray(arr).tofile(self._files[name])
        except OSError as err:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {os_reason(err)}") from None
        self._pts.extend(float(p) for p in pts_seconds)
        self.count += len(pts_seconds)

    def _array(self, name: str, dtype) -> np.ndarray:
        shape = (self.count, self.height, self.width)
        if self.count == 0:
            return np.zeros(shape, dtype)
        return np.memmap(self._parts / f"{name}.raw", dtype=dtype, mode="r", shape=shape)

    def close(self) -> Path:
        if self._closed:
            return self.path
        try:
            for f in self._files.values():
                f.close()
            arrays = {"I": self._array("I", np.uint8), "U": self._array("U", np.float16),
                      "V": self._array("V", np.float16), "pts_seconds": np.asarray(self._pts, np.float64)}
            if self.fingerprint is not None:
                arrays[FINGERPRINT_TAG] = np.asarray(self.fingerprint)  # a 0-d str array: no pickle needed
            with open(self._tmp, "wb") as f:
                np.savez_compressed(f, **arrays)  # writes each array in chunks: memory stays bounded
            del arrays
        except (OSError, zipfile.LargeZipFile) as err:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {os_reason(err)}") from None
        except BaseException:
            self.abort()
            raise
        self._closed = True
        shutil.rmtree(self._parts, ignore_errors=True)
        _commit(self._tmp, self.path, self.overwrite)
        return self.path

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        for f in self._files.values():
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self._parts, ignore_errors=True)
        _remove(self._tmp)

