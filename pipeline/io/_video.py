"""The hint video writer: rendered RGB frames with their timestamps, into H.264/MP4 or lossless FFV1/MKV.

Atomicity and durability: the file is written as a locked hidden partial beside the output and moved into
place only when complete, flushed to disk first (``_atomic.Partial``). On an exception or ``abort()`` the
partial is removed and an existing output is left untouched. With ``overwrite=False`` an existing output
is refused before anything is written.

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

Fingerprint: the writer takes the fingerprint of the run (see ``_fingerprint``) and stores it as a
container tag (``FINGERPRINT_TAG``; MP4/MOV need ``use_metadata_tags`` for a custom key, Matroska
upper-cases it); ``read_video_fingerprint`` reads it back without decoding anything.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import av.error
import numpy as np
import torch
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

from ..core import OutputError, os_reason
from ._atomic import AtomicOutput, Partial, check_file_target
from ._naming import FINGERPRINT_TAG

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


_MAX_TIMESCALE = 2**31 - 1
_LOSSY_SUFFIXES = (".mp4", ".m4v", ".mov")
_LOSSLESS_SUFFIXES = (".mkv",)


def _as_uint8_array(frames) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {arr.dtype}")
    return arr


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

        check_file_target(self.path, overwrite)
        self._partial = Partial(self.path, overwrite=overwrite)
        try:
            self._open(fps_hint)
        except BaseException:
            self._partial.discard()
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
            self._container = av.open(str(self._partial.path), mode="w", format=fmt, options=copts)
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
        return self._partial.commit()

    def abort(self) -> None:
        """Discard everything written; an existing output stays untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except Exception:  # we are discarding the file anyway
            pass
        self._partial.discard()

    @property
    def temp_path(self) -> Path:
        return self._partial.path

    def __del__(self) -> None:  # never leave a .partial file behind
        if not getattr(self, "_closed", True):
            self.abort()


def read_video_fingerprint(path: str | os.PathLike) -> str | None:
    """The fingerprint ``VideoWriter`` stored in the container of ``path``, or None: no fingerprint, or not a
    file densevid can read (made by another tool)."""
    try:
        with av.open(str(path), mode="r") as container:
            tags = {key.lower(): value for key, value in container.metadata.items()}
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return None
    return tags.get(FINGERPRINT_TAG)
