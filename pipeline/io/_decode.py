"""Decoding: probe a video/image file and iterate over its frames as upright uint8 RGB batches.

Only the io package imports PyAV.

Conventions
-----------
* Frames are converted to ``rgb24`` whatever the source pixel format (yuv420p, yuv444p,
  yuv420p10le, gray, rgb24, rgba/yuva420p ...). Alpha is dropped (not composited).
* Rotation: the display matrix (container side data, which FFmpeg's decoder attaches to every
  frame as ``DISPLAYMATRIX`` frame side data; PyAV exposes it as ``VideoFrame.rotation``, the
  counter-clockwise angle in degrees) is applied with ``np.rot90`` so frames come out upright,
  as a player shows them. Angles are rounded to the nearest multiple of 90; flips in the matrix
  (rare, e.g. front cameras) are NOT applied.
* Timestamps: every frame keeps its exact ``pts`` in the stream's ``time_base``. If a frame has
  no pts, its ``dts`` is used; if it has neither, a pts is synthesized as the previous frame's pts
  plus one frame duration (from the frame's duration, else the stream's average rate, else 1
  tick). Pts are never modified otherwise.
* Still images (PNG/JPEG/WebP) decode as one frame through the same functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
import torch

from ..core import FrameBatch, InputError, os_reason

# Demuxers that read a single still picture.
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe", "jpegxl_pipe"}

_ON_CORRUPT = ("raise",)  # a damaged packet or decode error; a clean early end is a warning instead


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # upright, i.e. after applying ``rotation``
    height: int
    frame_count: int | None  # from the container header when it has one; None when unknown
    fps: Fraction | None  # average frame rate
    time_base: Fraction
    rotation: int  # 0/90/180/270: counter-clockwise degrees applied to the coded frames
    codec: str
    pix_fmt: str | None
    is_image: bool
    stream_index: int = 0
    has_audio: bool = False  # the file has an audio stream (densevid's outputs carry none)


# --- helpers ---------------------------------------------------------------------------------------


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, not a video or image file: {path}")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InputError(f"cannot read input {path}: {os_reason(err)}") from None
    if size == 0:
        raise InputError(f"input is an empty file (0 bytes): {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"input is not readable (permission denied): {path}")


def _open(path: Path) -> av.container.InputContainer:
    _check_path(path)
    try:
        return av.open(str(path), mode="r")
    except av.error.InvalidDataError:
        raise InputError(f"not a readable video or image file (unknown format, or damaged): {path}") from None
    except (av.error.FFmpegError, OSError) as err:
        raise InputError(f"cannot open input {path}: {os_reason(err)}") from None


def _select_stream(container, path: Path, stream_index: int | None):
    videos = list(container.streams.video)
    if stream_index is not None:
        for s in videos:
            if s.index == stream_index:
                return s
        raise InputError(f"stream {stream_index} of {path} is not a video stream "
                         f"(video streams: {[s.index for s in videos] or 'none'})")
    if not videos:
        raise InputError(f"no video stream in {path} (audio-only or data file?)")
    # Cover art / thumbnails are "attached pictures": use them only if nothing else is there.
    real = [s for s in videos if not (s.disposition & av.stream.Disposition.attached_pic)] or videos
    for s in real:
        if s.disposition & av.stream.Disposition.default:
            return s
    return real[0]


def _rotation_of(frame) -> int:
    """Counter-clockwise display rotation of a decoded frame, as 0/90/180/270."""
    try:
        deg = frame.rotation  # PyAV >= 14: from the frame's DISPLAYMATRIX side data, 0 if absent
    except AttributeError:  # pragma: no cover - old PyAV
        return 0
    if not deg or deg != deg:  # 0 or NaN
        return 0
    return (int(round(deg / 90.0)) * 90) % 360


def _to_rgb_upright(frame) -> np.ndarray:
    arr = frame.to_ndarray(format="rgb24")  # [h, w, 3] uint8; handles any pix_fmt / bit depth
    k = _rotation_of(frame) // 90
    if k:
        arr = np.ascontiguousarray(np.rot90(arr, k=k))  # np.rot90: counter-clockwise, like the matrix
    return arr


def _is_image(container, stream) -> bool:
    return container.format.name in _IMAGE_FORMATS or bool(stream.disposition & av.stream.Disposition.still_image)


def _truncation_warning(path: Path, container, stream, n_frames: int, first_pts: int, end_pts: int,
                        time_base: Fraction, rate) -> str | None:
    """A one-line warning when a cleanly ending stream is evidently the front of a cut file.

    Measured with PyAV 18: a cut MKV/MPEG-TS raises nothing and flags no packet corrupt. Two
    signals remain, used only where they cannot fire on whole files:
    * MKV/MP4 headers declare the duration up front (stream duration, or the container's when the
      file has a single stream: with audio, the container duration is the longest stream's), so
      frames that end well before it (more than two frames and 0.1 s) mean the tail is gone.
    * MPEG-TS is a sequence of 188-byte packets and has no header duration (FFmpeg estimates it
      from the file's last timestamps), but a file cut at a random byte is, 187 times in 188,
      not a whole number of packets.
    """
    frame_seconds = float(1 / Fraction(rate)) if rate else 0.0
    decoded_seconds = float((end_pts - first_pts) * time_base)
    declared_seconds = None
    if stream.duration and stream.time_base:
        declared_seconds = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:
        declared_seconds = container.duration / 1_000_000  # AV_TIME_BASE
    if declared_seconds is not None and declared_seconds - decoded_seconds > max(2 * frame_seconds, 0.1):
        missing = (f", about {round((declared_seconds - decoded_seconds) / frame_seconds)} frames missing"
                   if frame_seconds else "")
        return (f"{path} looks truncated: its header declares {declared_seconds:.2f} s of video but the frames "
                f"end after {decoded_seconds:.2f} s; encoded the {n_frames} frames that decoded{missing}")
    if container.format.name == "mpegts":
        size = path.stat().st_size
        if size % 188:
            return (f"{path} looks truncated: {size} bytes is not a whole number of 188-byte MPEG-TS packets; "
                    f"encoded the {n_frames} frames that decoded")
    return None


# --- public API ------------------------------------------------------------------------------------


def probe_video(path: str | os.PathLike, stream_index: int | None = None) -> VideoInfo:
    """Describe the video stream of ``path``; raise ``InputError`` (one line) if it is unusable.

    Decodes the first frame (to read the rotation, which FFmpeg exposes per frame, and to make
    sure the stream really decodes).
    """
    path = Path(path)
    with _open(path) as container:
        stream = _select_stream(container, path, stream_index)
        stream.thread_type = "AUTO"
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.error.FFmpegError as err:
            raise InputError(f"cannot decode the video stream of {path}: {os_reason(err)}") from None
        if first is None:
            raise InputError(f"the video stream of {path} has no decodable frames")
        rotation = _rotation_of(first)
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        is_image = _is_image(container, stream)
        frames = int(stream.frames or 0)
        frame_count = 1 if is_image and frames <= 1 else (frames or None)
        fps = stream.average_rate
        fps = Fraction(fps) if fps and not is_image else None  # image demuxers report a nominal 25
        tb = stream.time_base or first.time_base or Fraction(1, 1)
        return VideoInfo(
            path=path, width=w, height=h, frame_count=frame_count, fps=fps,
            time_base=Fraction(tb), rotation=rotation, codec=stream.codec_context.name,
            pix_fmt=first.format.name if first.format else None, is_image=is_image,
            stream_index=stream.index, has_audio=bool(container.streams.audio),
        )


def iter_frame_batches(
    path: str | os.PathLike,
    batch_size: int,
    stream_index: int | None = None,
    on_corrupt: str = "raise",
    warnings_out: list[str] | None = None,
) -> Iterator[FrameBatch]:
    """Yield the frames of ``path`` in order as ``FrameBatch``es of at most ``batch_size`` frames.

    Holds at most one batch of decoded frames at a time. A decoding error mid-stream (truncated
    or corrupt file) raises ``InputError`` with the number of frames decoded so far
    (``on_corrupt="raise"``, the only policy for now; batches already yielded stay valid).

    A streamable file (MKV, MPEG-TS) cut short decodes cleanly up to the cut: its frames are
    kept, and when the end of the file is detectably missing (see ``_truncation_warning``) a
    one-line warning with the frame count is appended to ``warnings_out`` after the last batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if on_corrupt not in _ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {_ON_CORRUPT}, got {on_corrupt!r}")
    path = Path(path)
    with _open(path) as container:
        stream = _select_stream(container, path, stream_index)
        stream.thread_type = "AUTO"
        time_base = Fraction(stream.time_base) if stream.time_base else None
        rate = stream.average_rate

        arrays: list[np.ndarray] = []
        pts_list: list[int] = []
        n_done = 0  # frames decoded (yielded or pending)
        last_pts: int | None = None
        last_duration = 0
        first_pts: int | None = None
        first_shape: tuple[int, ...] | None = None

        def flush() -> FrameBatch:
            start = n_done - len(arrays)
            batch = FrameBatch(torch.from_numpy(np.stack(arrays)), tuple(pts_list), time_base, start)
            arrays.clear()
            pts_list.clear()
            return batch

        def corrupt(detail: str) -> InputError:
            return InputError(f"{path} is corrupt or truncated: decoding failed after {n_done} frames ({detail})")

        def decoded_frames():
            # Demux and decode packet by packet: with frame threading (thread_type AUTO) FFmpeg
            # does not report a truncated packet as a decode error, but the demuxer flags it
            # corrupt (measured on a truncated MP4), so both signals are checked.
            for packet in container.demux(stream):
                if packet.is_corrupt:
                    raise corrupt("incomplete or damaged packet")
                try:
                    out = stream.decode(packet)
                except av.error.FFmpegError as err:
                    raise corrupt(os_reason(err)) from None
                yield from out

        frames = decoded_frames()
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.FFmpegError as err:  # demuxer errors
                raise corrupt(os_reason(err)) from None
            if time_base is None:
                time_base = Fraction(frame.time_base) if frame.time_base else Fraction(1, 1)
            pts = frame.pts if frame.pts is not None else frame.dts
            if pts is None:  # synthesize: previous pts + one frame duration
                if last_pts is None:
                    pts = 0
                elif frame.duration:
                    pts = last_pts + int(frame.duration)
                elif rate:
                    pts = last_pts + max(1, round(1 / (Fraction(rate) * time_base)))
                else:
                    pts = last_pts + 1
            last_pts = int(pts)
            last_duration = int(frame.duration or 0)
            first_pts = last_pts if first_pts is None else first_pts
            arr = _to_rgb_upright(frame)
            if first_shape is None:
                first_shape = arr.shape
            elif arr.shape != first_shape:  # one output video has one size
                raise InputError(f"{path}: the frame size changes at frame {n_done} "
                                 f"({first_shape[1]}x{first_shape[0]} -> {arr.shape[1]}x{arr.shape[0]}); not supported")
            arrays.append(arr)
            pts_list.append(last_pts)
            n_done += 1
            if len(arrays) >= batch_size:
                yield flush()
        if arrays:
            yield flush()
        if warnings_out is not None and n_done and not _is_image(container, stream):
            end_pts = last_pts + (last_duration or (round(1 / (Fraction(rate) * time_base)) if rate else 0))
            warning = _truncation_warning(path, container, stream, n_done, first_pts, end_pts, time_base, rate)
            if warning:
                warnings_out.append(warning)
        # No "decoded fewer frames than stream.frames" check: for MP4 that count includes samples
        # an edit list discards, so it would reject valid files. Measured: a truncated MP4 (moov
        # first) yields a corrupt packet (-> InputError above); one without faststart fails to
        # open; a truncated MKV just ends early (the demuxer drops the incomplete block silently).
