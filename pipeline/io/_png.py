"""PNG: one RGB image as lossless PNG bytes with tEXt chunks, written atomically; tEXt read back.

PNGs are encoded with PyAV's png encoder (rgb24); the fingerprint goes into a ``tEXt`` chunk right
after the header, where ``read_png_text`` finds it without decoding the image.
"""

from __future__ import annotations

import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from ..core import OutputError, os_reason
from ._atomic import Partial, check_file_target
from ._naming import FINGERPRINT_TAG
from ._video import _as_uint8_array

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bytes(image_rgb: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """One uint8 [H, W, 3] RGB image as lossless PNG bytes (rgb24), with ``text`` as tEXt chunks."""
    arr = np.ascontiguousarray(image_rgb)
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = arr.shape[1], arr.shape[0], "rgb24"
    ctx.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
    frame.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(bytes(p) for p in ctx.encode(None))
    if not text:
        return data
    # tEXt chunks go right after IHDR (signature 8 bytes, IHDR chunk 4 + 4 + 13 + 4 bytes)
    ihdr_end = len(_PNG_SIGNATURE) + 25
    chunks = b"".join(_png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
                      for key, value in text.items())
    return data[:ihdr_end] + chunks + data[ihdr_end:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def read_png_text(path: str | os.PathLike) -> dict[str, str]:
    """The tEXt chunks before the image data of a PNG file ({} when it has none or is no PNG)."""
    found: dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            if f.read(8) != _PNG_SIGNATURE:
                return found
            while True:
                header = f.read(8)
                if len(header) < 8:
                    return found
                length, kind = struct.unpack(">I", header[:4])[0], header[4:]
                if kind in (b"IDAT", b"IEND"):
                    return found
                payload = f.read(length)
                f.read(4)  # crc
                if kind == b"tEXt" and b"\0" in payload:
                    key, _, value = payload.partition(b"\0")
                    found[key.decode("latin-1")] = value.decode("latin-1")
    except OSError:
        return found


def write_png(path: str | os.PathLike, image_rgb, overwrite: bool = False, fingerprint: str | None = None) -> Path:
    """Write one uint8 [H, W, 3] RGB image as PNG, atomically, with the same rules as VideoWriter;
    ``fingerprint`` goes into a tEXt chunk."""
    path = Path(path)
    arr = _as_uint8_array(image_rgb)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3], got {list(arr.shape)}")
    check_file_target(path, overwrite)
    partial = Partial(path, overwrite=overwrite)
    try:
        data = png_bytes(arr, {FINGERPRINT_TAG: fingerprint} if fingerprint is not None else None)
        with open(partial.path, "wb") as f:
            f.write(data)
    except (av.error.FFmpegError, OSError) as err:
        partial.discard()
        raise OutputError(f"cannot write {path}: {os_reason(err)}") from None
    except BaseException:
        partial.discard()
        raise
    return partial.commit()
