"""Decoding: probe a video/image file and iterate over its frames as upright uint8 RGB batches.

Only the io package imports PyAV.

Conventions
-----------
Every frame goes through the same steps, in this order, so that what comes out is the picture a
player shows, at one size, with increasing timestamps:

1. ``rgb24`` whatever the source pixel format (yuv420p, yuv444p, yuv420p10le, gray, rgb24,
   rgba/yuva420p ...). Alpha is dropped (not composited).
2. Square pixels (videos only). A stream with a sample aspect ratio (SAR) other than 1:1 is shown
   by players at its display aspect ratio: an H.264 of 360x480 storage with SAR 2:1 plays as
   720x480 landscape. The frame is resampled to that display size here, so ``VideoInfo.width`` /
   ``height``, the ``--size``/``--fit``/``--crop-box`` framing (in display pixels), the model and
   every output see display geometry and need no SAR of their own; the hint has square pixels and
   lines up with the source in any player, which is not true of a SAR tag that some players, most
   editors and OpenCV ignore (the ComfyUI node and its OpenCV resize operate on what they are
   handed, so they get square pixels too). Rule: the width becomes ``width * SAR`` rounded to
   the nearest integer (half up) and the height stays, as FFmpeg's ``scale=iw*sar:ih`` and
   players at 100 % do; nearest, not even, because nothing downstream needs an even width (the
   model resizes the short side anyway, the H.264 writer pads an odd side by 1 px) and nearest
   keeps the aspect error under half a pixel. OpenCV INTER_CUBIC when the width grows,
   INTER_AREA when it shrinks: the node's own rule for enlarging/shrinking, and rows stay
   exact (a 1:1 vertical scale). The SAR is FFmpeg's guess for the stream
   (``VideoStream.sample_aspect_ratio`` = ``av_guess_sample_aspect_ratio``: the container's, e.g.
   MP4 ``pasp`` or Matroska display size, else the codec's, e.g. the H.264 VUI); measured with
   PyAV 18, ``VideoFrame`` has no ``sample_aspect_ratio``, so one SAR holds for the whole stream.
   A SAR beyond 1:4..4:1 is taken for damaged metadata and ignored, with a warning (no real
   format comes near it, and a damaged one can blow a frame up to gigabytes). Still images keep their
   stored pixels: browsers and image viewers ignore PNG ``pHYs`` and JPEG density.
3. Upright. The display matrix (container side data, which FFmpeg's decoder attaches to every
   frame as ``DISPLAYMATRIX`` frame side data; PyAV exposes it as ``VideoFrame.rotation``, the
   counter-clockwise angle in degrees) is applied with ``np.rot90`` so frames come out upright,
   as a player shows them. Angles are rounded to the nearest multiple of 90; flips in the matrix
   (rare, e.g. front cameras) are NOT applied. After step 2, as a player does (the matrix is
   defined on the displayed picture).
4. One size. A frame whose (display, upright) size differs from the first frame's (screen
   recordings, rotated phone clips, recordings joined end to end) is resized to the first frame's
   size with OpenCV (INTER_AREA when shrinking, INTER_CUBIC when enlarging), keeping its aspect
   ratio: centred on black bars (letterbox or pillarbox) when its aspect ratio differs by more
   than a pixel, as a player shows it in a window of the first size. FFmpeg's own pipeline scales
   such frames to the output size too, but stretched. One warning names the first such frame and
   the sizes.

Timestamps: every frame keeps its exact ``pts`` in the stream's ``time_base`` while they increase.
If a frame has no pts, its ``dts`` is used; if it has neither, a pts is synthesized as the previous
frame's pts plus one frame duration (from the frame's duration, else the stream's average rate,
else 1 tick). Timestamps that go backwards or repeat (measured: ``cat a.ts b.ts`` of two 20-frame
H.264 recordings decodes frame 19 at 0.84 s and frame 20 at 0.08 s, the second part starting again
where the first started) are made monotonic, with one warning: a frame whose pts is not after its
predecessor's (corrected) pts is placed one nominal frame (1 / the average rate, else the last
step between frames) after it; the frames after it keep that shift while their own pts are not
after their predecessor's, so a restarted segment keeps its own spacing (the ffmpeg command line
corrects an MPEG-TS timestamp discontinuity with a lasting offset too), and a frame whose own pts
is after its predecessor's keeps it, so a single bad timestamp moves one frame only.
``--fps`` and the outputs see the corrected times.

Damage: FFmpeg decodes what it can, and so does densevid: a
packet the demuxer flags corrupt goes to the decoder all the same (measured: at the junction of
two MPEG-TS recordings joined with ``cat``, the MPEG-TS demuxer flags one packet of the first part
corrupt, and all 40 frames still decode bit-exact), a packet the decoder rejects is skipped, a
demuxer error ends the input as FFmpeg's does; each kind is counted into one warning line. Only
an input from which no frame decodes fails.

Still images (PNG/JPEG/WebP) decode as one frame through the same functions.
"""

from __future__ import annotations

import math
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

# What a damaged packet, a decoder error or a demuxer error does: "warn" keeps every frame that
# decodes and counts the damage into one warning line per kind; "raise" stops with an InputError.

# A sample aspect ratio beyond this (or its inverse) is damaged metadata: real formats stay within
# 1:2..3:1 (DV 10:11 and 40:33, HDV 4:3, anamorphic 2:1, half-D1 16:9 32:11), and a fuzzed 255:1
# would make one 4K frame 6 GB.
_MAX_SAR = 4


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # the display size: square pixels (see ``sample_aspect_ratio``), upright (after ``rotation``)
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
    # of the stored pixels; frames are resampled to square pixels, so width/height are the display size
    sample_aspect_ratio: Fraction = Fraction(1)
    duration: float | None = None  # seconds, from the stream's header, else the container's; None when unknown

    @property
    def estimated_frames(self) -> int | None:
        """The header's frame count, else duration x average rate (e.g. Matroska has no count): for progress
        bars, never for deciding what to encode."""
        if self.frame_count is not None or self.duration is None or not self.fps:
            return self.frame_count
        return max(1, round(self.duration * self.fps))


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


def _sample_aspect_ratio(path: Path, stream, is_image: bool) -> tuple[Fraction, str | None]:
    """The SAR the frames are resampled by (1: square pixels), and a warning when the stream's is ignored."""
    if is_image:
        return Fraction(1), None
    sar = stream.sample_aspect_ratio  # av_guess_sample_aspect_ratio: the container's, else the codec's
    sar = Fraction(sar) if sar else Fraction(0)  # None (0/0) or 0/1: unknown, i.e. square
    if sar <= 0 or sar == 1:
        return Fraction(1), None
    if not Fraction(1, _MAX_SAR) <= sar <= _MAX_SAR:
        return Fraction(1), (f"{path}: sample aspect ratio {sar.numerator}:{sar.denominator} is implausible "
                             f"(damaged metadata?); ignored, pixels taken as square")
    return sar, None


def _display_width(width: int, sar: Fraction) -> int:
    """Stored width -> width in square pixels: width * SAR, nearest, halves up (see the module docstring)."""
    return max(1, math.floor(width * sar + Fraction(1, 2)))


def _display_hw(frame, sar: Fraction) -> tuple[int, int]:
    """(height, width) of a decoded frame as shown: square pixels, upright."""
    h, w = frame.height, _display_width(frame.width, sar)
    return (w, h) if _rotation_of(frame) in (90, 270) else (h, w)


def _to_display_rgb(frame, sar: Fraction) -> np.ndarray:
    """A decoded frame as uint8 RGB [h, w, 3], square pixels, upright (steps 1-3 of the module docstring)."""
    arr = frame.to_ndarray(format="rgb24")  # [h, w, 3] uint8; handles any pix_fmt / bit depth
    if sar != 1:
        width = _display_width(arr.shape[1], sar)
        if width != arr.shape[1]:
            import cv2

            interpolation = cv2.INTER_CUBIC if width > arr.shape[1] else cv2.INTER_AREA
            arr = cv2.resize(np.ascontiguousarray(arr), (width, arr.shape[0]), interpolation=interpolation)
    k = _rotation_of(frame) // 90
    if k:
        arr = np.ascontiguousarray(np.rot90(arr, k=k))  # np.rot90: counter-clockwise, like the matrix
    return arr


def _fit_into(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``arr`` at size ``hw`` keeping its aspect ratio (step 4 of the module docstring): OpenCV INTER_AREA
    when shrinking, INTER_CUBIC when enlarging, centred on black when the aspect ratios differ by more
    than a pixel (a bar of one pixel would only be a seam; the stretch that avoids it is under a pixel)."""
    import cv2

    out_h, out_w = hw
    h, w = arr.shape[:2]
    scale = min(Fraction(out_h, h), Fraction(out_w, w))
    new_h = min(out_h, max(1, math.floor(h * scale + Fraction(1, 2))))
    new_w = min(out_w, max(1, math.floor(w * scale + Fraction(1, 2))))
    if out_h - new_h <= 1 and out_w - new_w <= 1:
        new_h, new_w = out_h, out_w
    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    resized = cv2.resize(np.ascontiguousarray(arr), (new_w, new_h), interpolation=interpolation)
    if (new_h, new_w) == (out_h, out_w):
        return resized
    out = np.zeros((out_h, out_w, 3), np.uint8)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


class _Timeline:
    """Strictly increasing pts (the rule in the module docstring), and what it took, for the warning."""

    def __init__(self, step: int | None) -> None:
        self.step = step  # one nominal frame in ticks (1 / the average rate); None when the rate is unknown
        self.prev: int | None = None
        self.offset = 0  # added to the frames' own pts since the last jump back
        self.gap: int | None = None  # the last step between two frames
        self.jumps = 0
        self.moved = 0
        self.first_jump: tuple[int, int, int] | None = None  # frame index, its own pts, its predecessor's pts

    def place(self, own: int | None, duration: int, index: int) -> int:
        prev = self.prev
        if prev is None:
            pts = 0 if own is None else own
        elif own is None:  # no timestamp at all: one frame after the previous one
            pts = prev + (duration or self.step or 1)
        elif own > prev:
            pts, self.offset = own, 0
        elif own + self.offset > prev:  # after a jump back: the segment keeps its spacing
            pts = own + self.offset
        else:
            pts = prev + (self.step or self.gap or duration or 1)
            self.offset = pts - own
            self.jumps += 1
            self.first_jump = self.first_jump or (index, own, prev)
        self.moved += own is not None and pts != own
        if prev is not None:
            self.gap = pts - prev
        self.prev = pts
        return pts

    def warning(self, path: Path, time_base: Fraction) -> str | None:
        if not self.jumps:
            return None
        index, own, prev = self.first_jump
        more = f" and {self.jumps - 1} more place{'s' if self.jumps > 2 else ''}" if self.jumps > 1 else ""
        step = self.step or self.gap or 1
        return (f"{path}: timestamps go backwards or repeat at frame {index} (at {float(own * time_base):.3f} s, "
                f"the frame before at {float(prev * time_base):.3f} s){more}; made monotonic, each out-of-order frame "
                f"one nominal frame ({float(step * time_base):.3f} s) after its predecessor "
                f"({self.moved} frame{'s' * (self.moved > 1)} moved)")


@dataclass
class _Damage:
    """What went wrong while reading, counted for the warnings."""

    flagged: int = 0  # packets the demuxer flagged corrupt (decoded all the same)
    flagged_at: float | None = None  # stream time of the first, seconds
    rejected: int = 0  # packets the decoder rejected (skipped)
    # frames that came out before the first rejection: with frame threading an error surfaces a few
    # packets late (measured: a damaged PNG packet 5 of a MOV fails at packet 7's decode call), but
    # the frames out by then are exactly those before it
    rejected_after: int = 0
    rejected_reason: str = ""
    ended: str | None = None  # a demuxer error that ended the input
    last: str | None = None  # "flagged"/"rejected": the last packet with data was damaged (a cut file's tail)

    def flag(self, packet, time_base: Fraction | None) -> None:
        ts = packet.pts if packet.pts is not None else packet.dts
        self.flagged += 1
        if self.flagged == 1:
            self.flagged_at = float(ts * time_base) if ts is not None and time_base else None

    def reject(self, n_frames: int, reason: str) -> None:
        self.rejected += 1
        if self.rejected == 1:
            self.rejected_after, self.rejected_reason = n_frames, reason

    def any(self) -> bool:
        return bool(self.flagged or self.rejected or self.ended)

    def forget_last(self) -> None:
        """The damaged last packet is the cut a truncation warning already reports."""
        if self.last == "flagged":
            self.flagged -= 1
        elif self.last == "rejected":
            self.rejected -= 1
        self.last = None

    def warnings(self, path: Path, n_frames: int) -> list[str]:
        out = []
        if self.flagged:
            n = self.flagged
            at = f"first at {self.flagged_at:.2f} s, " if self.flagged_at is not None else ""
            out.append(f"{path}: {n} damaged packet{'s' * (n > 1)} ({at}flagged by the demuxer); "
                       f"{'they' if n > 1 else 'it'} decoded all the same and the frames were kept")
        if self.rejected:
            n = self.rejected
            out.append(f"{path}: the decoder rejected {n} packet{'s' * (n > 1)} (the first after "
                       f"{self.rejected_after} frames: {self.rejected_reason}); skipped, the other frames were kept")
        if self.ended:
            out.append(f"{path}: reading stopped at a demuxer error ({self.ended}); "
                       f"encoded the {n_frames} frames that decoded")
        return out


# --- public API ------------------------------------------------------------------------------------


def probe_video(path: str | os.PathLike, stream_index: int | None = None) -> VideoInfo:
    """Describe the video stream of ``path``; raise ``InputError`` (one line) if it is unusable.

    Decodes up to the first frame that decodes (to read the rotation, which FFmpeg exposes per
    frame, and to make sure the stream really decodes); packets the decoder rejects before it are
    skipped, as ``iter_frame_batches`` does.
    """
    path = Path(path)
    with _open(path) as container:
        stream = _select_stream(container, path, stream_index)
        stream.thread_type = "AUTO"
        first = error = None
        try:
            for packet in container.demux(stream):
                try:
                    frames = stream.decode(packet)
                except av.error.FFmpegError as err:
                    error = error or err
                    continue
                if frames:
                    first = frames[0]
                    break
        except av.error.FFmpegError as err:  # the demuxer's
            error = error or err
        if first is None:
            if error is not None:
                raise InputError(f"cannot decode the video stream of {path}: {os_reason(error)}")
            raise InputError(f"the video stream of {path} has no decodable frames")
        is_image = _is_image(container, stream)
        sar, _ = _sample_aspect_ratio(path, stream, is_image)
        h, w = _display_hw(first, sar)
        frames = int(stream.frames or 0)
        frame_count = 1 if is_image and frames <= 1 else (frames or None)
        fps = stream.average_rate
        fps = Fraction(fps) if fps and not is_image else None  # image demuxers report a nominal 25
        tb = stream.time_base or first.time_base or Fraction(1, 1)
        return VideoInfo(
            path=path, width=w, height=h, frame_count=frame_count, fps=fps,
            time_base=Fraction(tb), rotation=_rotation_of(first), codec=stream.codec_context.name,
            pix_fmt=first.format.name if first.format else None, is_image=is_image,
            stream_index=stream.index, has_audio=bool(container.streams.audio), sample_aspect_ratio=sar,
            duration=_duration(container, stream),
        )


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration is not None else None


def iter_frame_batches(
    path: str | os.PathLike,
    batch_size: int,
    stream_index: int | None = None,
    warnings_out: list[str] | None = None,
) -> Iterator[FrameBatch]:
    """Yield the frames of ``path`` in order as ``FrameBatch``es of at most ``batch_size`` frames.

    Frames are square-pixel, upright and all of the first frame's size, with strictly increasing
    pts (see the module docstring). Holds at most one batch of decoded frames at a time.

    Damaged packets, decoder and demuxer errors keep every frame that decodes, and each kind is one
    counted warning; an input from which no frame decodes raises ``InputError``.

    A streamable file (MKV, MPEG-TS, MP4 with its index first) cut short decodes up to the cut: its
    frames are kept, and when the end of the file is detectably missing (see ``_truncation_warning``)
    a one-line warning with the frame count is appended to ``warnings_out`` after the last batch,
    as are the warnings above (a resized frame size, corrected timestamps, an implausible SAR).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    path = Path(path)
    with _open(path) as container:
        stream = _select_stream(container, path, stream_index)
        stream.thread_type = "AUTO"
        time_base = Fraction(stream.time_base) if stream.time_base else None
        rate = stream.average_rate
        is_image = _is_image(container, stream)
        sar, sar_warning = _sample_aspect_ratio(path, stream, is_image)
        damage = _Damage()

        arrays: list[np.ndarray] = []
        pts_list: list[int] = []
        n_done = 0  # frames decoded (yielded or pending)
        timeline: _Timeline | None = None
        last_duration = 0
        first_pts: int | None = None
        first_hw: tuple[int, int] | None = None
        resized = 0  # frames of another size than the first
        first_resized: tuple[int, tuple[int, int]] | None = None

        def flush() -> FrameBatch:
            start = n_done - len(arrays)
            batch = FrameBatch(torch.from_numpy(np.stack(arrays)), tuple(pts_list), time_base, start)
            arrays.clear()
            pts_list.clear()
            return batch

        def decoded_frames():
            # Demux and decode packet by packet: with frame threading (thread_type AUTO) FFmpeg
            # does not report a truncated packet as a decode error, but the demuxer flags it
            # corrupt (measured on a truncated MP4: the flagged packet's frame never comes out,
            # the frames before it do), so both signals are checked.
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    return
                except av.error.FFmpegError as err:
                    damage.ended = os_reason(err)  # FFmpeg ends the input here too; drain the decoder
                    try:
                        yield from stream.decode(None)
                    except av.error.FFmpegError:
                        pass
                    return
                try:
                    out = stream.decode(packet)
                    bad = "flagged" if packet.is_corrupt else None
                except av.error.FFmpegError as err:
                    out, bad = (), "rejected"
                    damage.reject(n_done, os_reason(err))
                if bad == "flagged":
                    damage.flag(packet, time_base)
                if packet.size:  # not the empty packets that flush the decoder at the end
                    damage.last = bad
                yield from out

        for frame in decoded_frames():
            if time_base is None:
                time_base = Fraction(frame.time_base) if frame.time_base else Fraction(1, 1)
            if timeline is None:
                timeline = _Timeline(max(1, round(1 / (Fraction(rate) * time_base))) if rate else None)
            last_duration = int(frame.duration or 0)
            own = frame.pts if frame.pts is not None else frame.dts
            pts = timeline.place(None if own is None else int(own), last_duration, n_done)
            first_pts = pts if first_pts is None else first_pts
            arr = _to_display_rgb(frame, sar)
            if first_hw is None:
                first_hw = arr.shape[:2]
            elif arr.shape[:2] != first_hw:  # one output video has one size
                resized += 1
                first_resized = first_resized or (n_done, arr.shape[:2])
                arr = _fit_into(arr, first_hw)
            arrays.append(arr)
            pts_list.append(pts)
            n_done += 1
            if len(arrays) >= batch_size:
                yield flush()
        if arrays:
            yield flush()
        if not n_done and damage.any():  # nothing decodes: nothing to keep
            detail = damage.ended or damage.rejected_reason or "incomplete or damaged packets"
            raise InputError(f"{path} is corrupt or truncated: no frame decodes ({detail})")
        if warnings_out is None or not n_done:
            return
        found = [sar_warning] if sar_warning else []
        if first_resized is not None:
            index, (h, w) = first_resized
            size = f"{first_hw[1]}x{first_hw[0]}"
            found.append(f"{path}: the frame size changes at frame {index} ({size} -> {w}x{h}); {resized} "
                         f"frame{'s' * (resized > 1)} of another size resized to {size} keeping their aspect ratio "
                         f"(OpenCV INTER_AREA/INTER_CUBIC, black bars where it differs)")
        found.append(timeline.warning(path, time_base))
        if not is_image:
            end_pts = timeline.prev + (last_duration or timeline.step or 0)
            truncated = _truncation_warning(path, container, stream, n_done, first_pts, end_pts, time_base, rate)
            # one line for one cut: its damaged last packet or the demuxer error it ended on is part of it
            if truncated and damage.last:
                damage.forget_last()
                truncated += "; its last packet is incomplete"
            if truncated and damage.ended:
                truncated += f"; reading stopped at a demuxer error ({damage.ended})"
                damage.ended = None
            found.append(truncated)
        found.extend(damage.warnings(path, n_done))
        warnings_out.extend(w for w in found if w)
        # No "decoded fewer frames than stream.frames" check: for MP4 that count includes samples
        # an edit list discards, so it would reject valid files. Measured: a truncated MP4 (moov
        # first) yields a corrupt last packet whose frame never decodes (-> the header-duration
        # warning); one without faststart fails to open; a truncated MKV just ends early (the
        # demuxer drops the incomplete block silently).
