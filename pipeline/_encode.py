"""Encoding: write rendered RGB frames to a video (or a PNG) atomically.

Only this module and ``_decode`` import PyAV.

Atomicity: everything is written to a hidden temporary file next to the output
(``.<name>.<random>.partial<ext>``) that is renamed onto the final path only when the file is
complete. On an exception or ``abort()`` the temporary file is removed and an existing output is
left untouched. With ``overwrite=False`` an existing output is refused before anything is
written (and the final rename uses a hard link, so a file that appears meanwhile is not clobbered).

Timestamps: the output stream gets the input's ``time_base`` and every frame its input ``pts``,
so frame count, (variable) frame rate and a non-zero start survive. What the muxers do (measured
with PyAV 18 / FFmpeg 8):

* MP4 (mov muxer): the track timescale becomes the time_base denominator, doubled until it is
  >= 10000 (1/25 -> 1/12800, 1001/30000 -> 1/30000, 1/90000 stays); pts are rescaled exactly.
  A non-zero start is stored as an edit list in the *movie* timescale (default 1000, which
  rounded e.g. 100/12800 s to 90/12800 s), so we set ``movie_timescale`` to the time_base
  denominator: decoded pts in seconds then equal the input's exactly.
* MKV (matroska muxer): always 1/1000 (millisecond timestamps). Pts are rounded to the nearest
  millisecond, so the decoded output agrees with the input within 0.5 ms, exactly only when the
  input timestamps are whole milliseconds (e.g. 1/25 s frames).

Colour: H.264 frames are converted from RGB with the BT.601 matrix into limited-range yuv420p
(what swscale did implicitly before, and what decoders assume for untagged video) and the stream
says so: matrix smpte170m (BT.601), range tv, and, for the RGB side, the colormaps' sRGB: BT.709
primaries, sRGB transfer. A player that honours the tags (browsers do; Chromium guesses BT.709
for untagged video of some sizes) shows the colormap colours; one that ignores them defaults to
BT.601 and does too. BT.709 conversion would have pleased the tag-aware players only.

Fingerprint: each writer takes the fingerprint of the run (see ``_fingerprint``) and stores it
with the output: a container tag (``FINGERPRINT_TAG``; MP4/MOV need ``use_metadata_tags`` for a
custom key, Matroska upper-cases it), a PNG ``tEXt`` chunk. ``read_fingerprint`` reads it back
without decoding anything.
"""

from __future__ import annotations

import os
import secrets
import struct
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import av.error
import numpy as np
import torch
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

from ._errors import OutputError, os_reason
from ._inputs import output_name

# Lossy default. crf 18 is visually lossless for x264 and keeps the hint's flat colour regions and
# edges clean; preset "fast" is ~2x faster than "medium" for a few % more bits, which is the
# right trade for a preprocessing tool whose encode runs next to model inference on the CPU.
X264_CRF = 18
X264_PRESET = "fast"

# Lossless: FFV1 with an RGB pixel format, so decoding gives back the rendered RGB bit for bit
# (a YUV format would round-trip through a colour conversion). bgr0 = packed RGB for FFV1.
FFV1_PIX_FMT = "bgr0"

# The colour description of H.264 outputs (see the module docstring). AVCOL_SPC_SMPTE170M has no
# PyAV enum (reformatter.Colorspace is swscale's numbering, where ITU601 is 5).
H264_MATRIX = Colorspace.ITU601  # the conversion
H264_COLORSPACE_TAG = 6  # AVCOL_SPC_SMPTE170M: the BT.601 matrix
H264_RANGE = ColorRange.MPEG  # limited range
H264_PRIMARIES = ColorPrimaries.BT709  # sRGB's primaries
H264_TRANSFER = ColorTrc.IEC61966_2_1  # sRGB

FINGERPRINT_TAG = "densevid_fingerprint"  # container tag, PNG tEXt keyword, .npz entry
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_MAX_TIMESCALE = 2**31 - 1
_LOSSY_SUFFIXES = (".mp4", ".m4v", ".mov")
_LOSSLESS_SUFFIXES = (".mkv",)


def default_output_path(input_path: str | os.PathLike, lossless: bool = False, image: bool = False) -> Path:
    """``<stem>_densepose.mp4`` / ``.mkv`` (lossless) / ``.png`` (image input), next to the input."""
    path = Path(input_path)
    return path.with_name(output_name(path.name, lossless, image))


def check_output_dir(directory: Path) -> None:
    """The one check of the directory an output goes into: it exists, is a directory, is writable."""
    if not directory.exists():
        raise OutputError(f"output directory {directory} does not exist")
    if not directory.is_dir():
        raise OutputError(f"output directory {directory} does not exist: a file is in its place, not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {directory} is not writable")


def _prepare_target(path: Path, overwrite: bool) -> Path:
    """Check the output path and create the (empty, exclusive) temporary file; return its path."""
    if path.is_dir():
        raise OutputError(f"output path is a directory: {path}")
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} already exists; pass --overwrite to replace it")
    parent = path.parent
    check_output_dir(parent)
    for _ in range(10):
        tmp = parent / f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        except FileExistsError:
            continue
        except OSError as err:
            raise OutputError(f"cannot write to {parent}: {os_reason(err)}") from None
        os.close(fd)
        return tmp
    raise OutputError(f"cannot create a temporary file in {parent}")  # pragma: no cover


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    try:
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # atomic and never clobbers a file that appeared meanwhile
        except FileExistsError:
            raise OutputError(f"output {path} already exists; pass --overwrite to replace it") from None
        except OSError:  # file system without hard links
            if path.exists():
                raise OutputError(f"output {path} already exists; pass --overwrite to replace it") from None
            os.replace(tmp, path)
            return
        os.unlink(tmp)
    except OutputError:
        _remove(tmp)
        raise
    except OSError as err:
        _remove(tmp)
        raise OutputError(f"cannot write {path}: {os_reason(err)}") from None


def _remove(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def _as_uint8_array(frames) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {arr.dtype}")
    return arr


class AtomicOutput:
    """The writers' shared protocol: ``close()`` renames the finished output into place,
    ``abort()`` removes what was written; as a context manager, success closes and an exception aborts."""

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


class VideoWriter(AtomicOutput):
    """Context manager writing RGB frames with their input timestamps.

    Default: H.264 (libx264, crf 18) yuv420p in MP4 with ``+faststart`` (browser-playable).
    yuv420p needs even dimensions: an odd width/height is padded by replicating the last
    column/row, so the output is at most 1 px wider/taller than the frames.
    ``lossless=True``: FFV1 ``bgr0`` in Matroska, any size, bit-exact RGB.

    The container follows ``lossless``; the path's suffix must match it (.mp4/.m4v/.mov for
    H.264, .mkv for FFV1), else ``OutputError``: a Matroska file named .mp4 would confuse players.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        time_base: Fraction,
        fps_hint: Fraction | None = None,
        lossless: bool = False,
        overwrite: bool = False,
        fingerprint: str | None = None,
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"bad frame size {width}x{height}")
        self.path = Path(path)
        allowed = _LOSSLESS_SUFFIXES if lossless else _LOSSY_SUFFIXES
        if self.path.suffix.lower() not in allowed:
            kind = "lossless (FFV1)" if lossless else "H.264"
            raise OutputError(f"{kind} output must end in {' or '.join(allowed)}: {self.path}")
        self.width, self.height = int(width), int(height)
        self.time_base = Fraction(time_base)
        self.lossless = lossless
        self.overwrite = overwrite
        self.fingerprint = fingerprint
        self.frames_written = 0
        self._last_pts: int | None = None
        self._closed = True  # until the temporary file and the container exist
        if lossless:
            self.coded_width, self.coded_height = self.width, self.height
        else:
            self.coded_width, self.coded_height = self.width + self.width % 2, self.height + self.height % 2

        self._tmp = _prepare_target(self.path, overwrite)
        try:
            self._open(fps_hint)
        except BaseException:
            _remove(self._tmp)
            raise
        self._closed = False

    def _open(self, fps_hint: Fraction | None) -> None:
        tb = self.time_base
        if self.lossless:
            fmt, codec, pix_fmt, copts, sopts = "matroska", "ffv1", FFV1_PIX_FMT, {}, {"level": "3", "slicecrc": "1"}
        else:
            timescale = str(min(tb.denominator, _MAX_TIMESCALE))
            fmt = "mov" if self.path.suffix.lower() == ".mov" else "mp4"
            codec, pix_fmt = "libx264", "yuv420p"
            copts = {"movflags": "+faststart+use_metadata_tags", "movie_timescale": timescale}
            sopts = {"crf": str(X264_CRF), "preset": X264_PRESET}
        try:
            self._container = av.open(str(self._tmp), mode="w", format=fmt, options=copts)
            if self.fingerprint is not None:
                self._container.metadata[FINGERPRINT_TAG] = self.fingerprint
            # rate: a hint for rate control / the header's nominal rate; timestamps come from pts.
            stream = self._container.add_stream(codec, rate=Fraction(fps_hint) if fps_hint else None, options=sopts)
            stream.width, stream.height, stream.pix_fmt = self.coded_width, self.coded_height, pix_fmt
            stream.time_base = tb
            stream.codec_context.time_base = tb  # encoder works in input ticks; PyAV derives dts
            stream.thread_type = "AUTO"
            if not self.lossless:  # the encoder writes these into the H.264 stream (VUI) and the muxer into the MP4
                context = stream.codec_context
                context.colorspace, context.color_range = H264_COLORSPACE_TAG, H264_RANGE
                context.color_primaries, context.color_trc = H264_PRIMARIES, H264_TRANSFER
            self._stream = stream
        except (av.error.FFmpegError, OSError) as err:
            raise OutputError(f"cannot write {self.path}: {os_reason(err)}") from None

    # -- writing --------------------------------------------------------------------------------

    def write(self, frames_rgb, pts: Sequence[int]) -> None:
        """Encode ``frames_rgb`` (uint8 [B, height, width, 3], tensor or ndarray) with ``pts``.

        Pts are in the writer's ``time_base`` and must increase; a non-increasing pts (only
        broken inputs have them) is bumped to previous + 1 tick so the muxer accepts it.
        """
        if self._closed:
            raise RuntimeError("write() on a closed VideoWriter")
        arr = _as_uint8_array(frames_rgb)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"frames must be [B, {self.height}, {self.width}, 3], got {list(arr.shape)}")
        if len(pts) != arr.shape[0]:
            raise ValueError(f"got {len(pts)} pts for {arr.shape[0]} frames")
        if (self.coded_height, self.coded_width) != (self.height, self.width):
            pad_h, pad_w = self.coded_height - self.height, self.coded_width - self.width
            arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        try:
            for img, p in zip(arr, pts):
                p = int(p)
                if self._last_pts is not None and p <= self._last_pts:
                    p = self._last_pts + 1
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                if not self.lossless:  # explicitly, not left to the encoder's implicit conversion
                    frame = frame.reformat(format="yuv420p", dst_colorspace=H264_MATRIX, dst_color_range=H264_RANGE)
                frame.pts = p
                frame.time_base = self.time_base
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
                self._last_pts = p
                self.frames_written += 1
        except (av.error.FFmpegError, OSError) as err:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {os_reason(err)}") from None

    def close(self) -> Path:
        """Flush, close and move the file to its final path. Returns the final path."""
        if self._closed:
            return self.path
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except (av.error.FFmpegError, OSError) as err:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {os_reason(err)}") from None
        self._closed = True
        _commit(self._tmp, self.path, self.overwrite)
        return self.path

    def abort(self) -> None:
        """Discard everything written; an existing output stays untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - we are discarding the file anyway
            pass
        _remove(self._tmp)

    @property
    def temp_path(self) -> Path:
        return self._tmp

    def __del__(self) -> None:  # never leave a .partial file behind
        if not getattr(self, "_closed", True):
            self.abort()


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


def read_fingerprint(path: str | os.PathLike) -> str | None:
    """The fingerprint a writer of this module stored in ``path`` (a video or a PNG), or None:
    no fingerprint, or not a file densevid can read (made by another tool)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return read_png_text(path).get(FINGERPRINT_TAG)
    try:
        with av.open(str(path), mode="r") as container:
            tags = {key.lower(): value for key, value in container.metadata.items()}
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return None
    return tags.get(FINGERPRINT_TAG)


def write_png(path: str | os.PathLike, image_rgb, overwrite: bool = False, fingerprint: str | None = None) -> Path:
    """Write one uint8 [H, W, 3] RGB image as PNG, atomically, with the same rules as VideoWriter;
    ``fingerprint`` goes into a tEXt chunk."""
    path = Path(path)
    arr = _as_uint8_array(image_rgb)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3], got {list(arr.shape)}")
    tmp = _prepare_target(path, overwrite)
    try:
        data = png_bytes(arr, {FINGERPRINT_TAG: fingerprint} if fingerprint is not None else None)
        with open(tmp, "wb") as f:
            f.write(data)
    except (av.error.FFmpegError, OSError) as err:
        _remove(tmp)
        raise OutputError(f"cannot write {path}: {os_reason(err)}") from None
    except BaseException:
        _remove(tmp)
        raise
    _commit(tmp, path, overwrite)
    return path
