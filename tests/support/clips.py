"""Generate test media with PyAV, so tests need no files outside the repository.

Lossless clips (``ffv1`` with an RGB pix_fmt such as ``bgr0``/``gbrp``, or ``png`` in mkv/mov)
decode back to exactly the frames given and are the ground truth for round-trip tests.

Rotation metadata: PyAV 18 can write a display matrix (``VideoStream.set_display_rotation``,
counter-clockwise degrees, the same convention ``VideoFrame.rotation`` reads back); ``make_clip``
passes ``rotation`` to it. Measured to survive in mp4, mov and mkv.

Sample aspect ratio: ``make_clip(sample_aspect_ratio=...)`` sets the encoder's, which libx264 and
libx264rgb write into the H.264 VUI (read back in mp4, mkv, mpegts) and the mov/mp4 muxers into a
``pasp`` box (png in mov too); measured with PyAV 18, FFV1 in MKV loses it (the Matroska muxer
writes the stream's SAR, which PyAV cannot set), so a lossless non-square clip is ``libx264rgb``
with ``qp=0``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

_DEFAULT_PIX_FMT = {"ffv1": "bgr0", "libx264": "yuv420p", "png": "rgb24", "mjpeg": "yuvj420p", "libwebp": "yuv420p"}
_FORMAT_BY_SUFFIX = {".mkv": "matroska", ".mka": "matroska", ".mp4": "mp4", ".m4a": "mp4", ".mov": "mov",
                     ".nut": "nut", ".avi": "avi", ".h264": "h264", ".ts": "mpegts"}


def _encode_and_mux(container, stream, frames) -> None:
    """Encode every frame, flush the encoder, mux all packets."""
    for frame in frames:
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def synthetic_frames(n: int, h: int, w: int, seed: int = 0, black_every: int = 4) -> np.ndarray:
    """uint8 [n, h, w, 3]: bright moving blobs on a dark, slightly noisy background.

    Every ``black_every``-th frame (starting with frame 2) is completely black, to exercise the
    "no person found" path of the stand-in models, which react to bright regions.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    n_blobs = 2
    start = rng.uniform(0.2, 0.8, size=(n_blobs, 2)) * (h, w)
    vel = rng.uniform(-0.08, 0.08, size=(n_blobs, 2)) * (h, w)
    radius = rng.uniform(0.12, 0.25, size=n_blobs) * min(h, w) + 1.0
    colours = rng.integers(170, 256, size=(n_blobs, 3))
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        if black_every and i % black_every == 2:
            out[i] = 0
            continue
        img = rng.integers(0, 24, size=(h, w, 3)).astype(np.float32)
        for b in range(n_blobs):
            cy, cx = start[b] + vel[b] * i
            cy, cx = cy % h, cx % w
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2) <= radius[b] ** 2
            img[mask] = colours[b]
        out[i] = img.astype(np.uint8)
    return out


def make_clip(
    path: str | Path,
    frames_rgb: Sequence[np.ndarray] | np.ndarray,
    fps: Fraction | int = 25,
    pts: Sequence[int] | None = None,
    codec: str = "ffv1",
    pix_fmt: str | None = None,
    time_base: Fraction | None = None,
    rotation: int | None = None,
    options: dict | None = None,
    input_format: str = "rgb24",
    container_options: dict | None = None,
    sample_aspect_ratio: Fraction | None = None,
) -> Path:
    """Encode ``frames_rgb`` (uint8 HxWx3, or HxWx4 with ``input_format="rgba"``) to ``path``.

    Constant frame rate by default (pts 0, 1, 2 ... in ``time_base`` = 1/fps); pass ``pts`` (in
    ``time_base`` units) for a variable frame rate or a non-zero start. ``rotation`` writes a
    display matrix (counter-clockwise degrees); ``sample_aspect_ratio`` the stored pixels' shape
    (see the module docstring). The container follows the suffix. ``options`` go to the encoder,
    ``container_options`` to the muxer.

    For mp4/mov the muxer's ``movie_timescale`` (default 1000) is set to the time base's
    denominator: the edit list holding a non-zero start is written in that timescale, and at
    1/1000 s a start like 1234/90000 s would be rounded.
    """
    path = Path(path)
    frames = [np.ascontiguousarray(f) for f in frames_rgb]
    fps = Fraction(fps)
    tb = Fraction(time_base) if time_base is not None else 1 / fps
    if pts is None:
        step = 1 / (fps * tb)
        assert step.denominator == 1, f"1/fps is not a whole number of ticks of {tb}"
        pts = [int(i * step) for i in range(len(frames))]
    assert len(pts) == len(frames)
    h, w = frames[0].shape[:2]
    fmt = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    copts = dict(container_options or {})
    if fmt in ("mp4", "mov"):
        copts.setdefault("movie_timescale", str(min(tb.denominator, 2**31 - 1)))
    with av.open(str(path), mode="w", format=fmt, options=copts) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = w, h
        stream.pix_fmt = pix_fmt or _DEFAULT_PIX_FMT.get(codec, "yuv420p")
        stream.time_base = tb
        stream.codec_context.time_base = tb
        if rotation:
            stream.set_display_rotation(rotation)
        if sample_aspect_ratio is not None:
            stream.codec_context.sample_aspect_ratio = Fraction(sample_aspect_ratio)
        def video_frames():
            for img, p in zip(frames, pts):
                frame = av.VideoFrame.from_ndarray(img, format=input_format)
                frame.pts = int(p)
                frame.time_base = tb
                yield frame

        _encode_and_mux(container, stream, video_frames())
    return path


def make_image(path: str | Path, image: np.ndarray, codec: str | None = None, input_format: str = "rgb24") -> Path:
    """Write one still image (png by default; mjpeg for .jpg, libwebp for .webp) as a bare file."""
    path = Path(path)
    codec = codec or {".jpg": "mjpeg", ".jpeg": "mjpeg", ".webp": "libwebp"}.get(path.suffix.lower(), "png")
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height = image.shape[1], image.shape[0]
    ctx.pix_fmt = "rgb24" if codec == "png" and input_format == "rgb24" else (
        "rgba" if codec == "png" else _DEFAULT_PIX_FMT.get(codec, "yuv420p"))
    ctx.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=input_format)
    frame.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(bytes(p) for p in ctx.encode(None))
    path.write_bytes(data)
    return path


def make_audio_only(path: str | Path, seconds: float = 0.5, codec: str = "aac", rate: int = 16000) -> Path:
    """An audio-only file (no video stream), e.g. ``audio.mp4`` with AAC or ``.mka`` with PCM."""
    path = Path(path)
    fmt = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    n = int(seconds * rate)
    t = np.arange(n, dtype=np.float32) / rate
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        sample_fmt = stream.codec_context.format.name  # aac: fltp, pcm_s16le: s16
        if sample_fmt.startswith("flt"):
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        else:
            samples = (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)[None]
        def audio_frames(chunk: int = 1024):
            for i in range(0, n, chunk):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + chunk]), format=sample_fmt,
                                                   layout="mono")
                frame.sample_rate = rate
                frame.pts = i
                yield frame

        _encode_and_mux(container, stream, audio_frames())
    return path


def make_clip_with_audio(path: str | Path, frames_rgb: Sequence[np.ndarray] | np.ndarray, fps: int = 25,
                         audio_codec: str = "pcm_s16le", rate: int = 16000, chunk: int = 320,
                         video_codec: str | None = None) -> Path:
    """A constant-rate video (FFV1 in .mkv, H.264 in .mp4/.mov unless ``video_codec`` says) with a mono audio
    track as long as it: a staircase, each frame's span of samples at 1000 * (frame index + 1) (s16), so
    where the audio of a cut output starts is readable from its first sample. Audio packets are ``chunk``
    samples (the default is 20 ms at 16 kHz: a packet edge at every frame edge of 25 frames/s)."""
    path = Path(path)
    frames = [np.ascontiguousarray(f) for f in frames_rgb]
    fmt = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    video_codec = video_codec or ("ffv1" if fmt == "matroska" else "libx264")
    per_frame = rate // fps
    staircase = np.repeat((1000 * np.arange(1, len(frames) + 1)).astype(np.int16), per_frame)[None]
    with av.open(str(path), mode="w", format=fmt) as container:
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height = frames[0].shape[1], frames[0].shape[0]
        video.pix_fmt = _DEFAULT_PIX_FMT.get(video_codec, "yuv420p")
        audio = container.add_stream(audio_codec, rate=rate, layout="mono")
        sample_fmt = audio.codec_context.format.name
        samples = staircase if sample_fmt.startswith("s16") else (staircase / 32768.0).astype(np.float32)
        audio_frames = []
        for i in range(0, samples.shape[1], chunk):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + chunk]),
                                               format="s16" if sample_fmt.startswith("s16") else "flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            audio_frames.append(frame)
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
            for audio_frame in audio_frames[i * per_frame // chunk:(i + 1) * per_frame // chunk]:
                for packet in audio.encode(audio_frame):
                    container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return path
