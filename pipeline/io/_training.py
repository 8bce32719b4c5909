"""Extra outputs for training data: a directory of numbered PNGs (--frames) and an IUV .npz (--iuv).

Both follow the VideoWriter's rules (``_atomic.Partial``): an existing target is refused without
``overwrite``, everything is written under a locked hidden name beside the target, flushed to disk and
moved into place only when complete, and an exception (or ``abort()``) removes the temporary files.

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
import shutil
import zipfile
from pathlib import Path

import numpy as np

from ..core import OutputError, os_reason
from ._atomic import AtomicOutput, Partial, check_dir_target, check_file_target
from ._naming import FINGERPRINT_TAG
from ._png import png_bytes, read_png_text

PNG_DIGITS = 6
IUV_SUFFIXES = (".npz",)


class FramesDirWriter(AtomicOutput):
    """Numbered lossless RGB PNGs ``000000.png``, ``000001.png`` ... in a directory, written atomically."""

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, fingerprint: str | None = None) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.fingerprint = fingerprint
        self._text = {FINGERPRINT_TAG: fingerprint} if fingerprint is not None else None
        check_dir_target(self.path, overwrite)
        self.count = 0
        self._partial = Partial(self.path, directory=True, overwrite=overwrite)
        self._closed = False

    def write(self, frames_rgb: np.ndarray) -> None:
        try:
            for image in frames_rgb:
                (self._partial.path / f"{self.count:0{PNG_DIGITS}d}.png").write_bytes(png_bytes(image, self._text))
                self.count += 1
        except OSError as err:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {os_reason(err)}") from None

    def close(self) -> Path:
        if self._closed:
            return self.path
        self._closed = True
        return self._partial.commit()

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._partial.discard()


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
        check_file_target(self.path, overwrite, IUV_SUFFIXES, "IUV output")
        self.height, self.width = int(height), int(width)
        self.overwrite = overwrite
        self.fingerprint = fingerprint
        self.count = 0
        self._pts: list[float] = []
        self._partial = Partial(self.path, overwrite=overwrite)  # the .npz being assembled
        # the raw frames, removed with the partial (also by remove_stale_partials after a killed run)
        self._parts = self._partial.path.with_name(self._partial.path.name + ".d")
        try:
            self._parts.mkdir()
            self._files = {name: open(self._parts / f"{name}.raw", "wb") for name in ("I", "U", "V")}
        except OSError as err:
            self._partial.discard()
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
            with open(self._partial.path, "wb") as f:
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
        return self._partial.commit()

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
        self._partial.discard()

