"""The source's audio in a hint video: ``mux_audio`` writes a copy of a hint video with the first audio stream
of another file (the source) beside its video stream.

The video packets are copied as they are (no re-encode: the hint's pixels do not change). The audio packets
are copied too where the container takes their codec (MP4/MOV: AAC, MP3, Opus, FLAC, ALAC, AC-3; Matroska:
all); otherwise (e.g. PCM into MP4) the audio is decoded and encoded as AAC. ``start`` (seconds) cuts the
audio where the hint video's first frame is in the source (a trimmed or windowed encode), and the audio
stops where the video ends, so both keep the source's sync.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from ..core import InputError, OutputError, os_reason
from ._atomic import Partial, check_file_target

# the audio codecs the MP4/MOV muxers take as they are
_MP4_AUDIO = {"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"}
_MP4_OPTIONS = {"movflags": "+faststart+use_metadata_tags"}


def has_audio(path: str | os.PathLike) -> bool:
    """Whether ``path`` has an audio stream (False for a file PyAV cannot open)."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.error.FFmpegError, OSError):
        return False


def mux_audio(video_path: str | os.PathLike, audio_source: str | os.PathLike, output_path: str | os.PathLike,
              start: float = 0.0, overwrite: bool = False) -> bool:
    """Write ``output_path``: the video of ``video_path`` and the first audio stream of ``audio_source``, from
    ``start`` seconds after the source's first video frame, as long as the video lasts. The output is written
    atomically. Returns whether there was audio to carry (without any, the output is a copy of the video).
    """
    video_path, output_path = Path(video_path), Path(output_path)
    check_file_target(output_path, overwrite)
    partial = Partial(output_path, overwrite=overwrite)
    try:
        carried = _mux(video_path, Path(audio_source), partial.path, output_path.suffix.lower(), start)
    except BaseException:
        partial.discard()
        raise
    partial.commit()
    return carried


def _open(path: Path, what: str):
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise InputError(f"cannot read the {what} {path}: {os_reason(err)}") from None


def _mux(video_path: Path, source_path: Path, out_path: Path, suffix: str, start: float) -> bool:
    is_mp4 = suffix in (".mp4", ".m4v", ".mov")
    fmt = ("mov" if suffix == ".mov" else "mp4") if is_mp4 else "matroska"
    with _open(video_path, "hint video") as hint, _open(source_path, "source") as source:
        video_in = hint.streams.video[0]
        audio_in = source.streams.audio[0] if source.streams.audio else None
        options = dict(_MP4_OPTIONS, movie_timescale=str(video_in.time_base.denominator)) if is_mp4 else {}
        try:
            out = av.open(str(out_path), mode="w", format=fmt, options=options)
        except (av.error.FFmpegError, OSError) as err:
            raise OutputError(f"cannot write {out_path}: {os_reason(err)}") from None
        with out:
            out.metadata.update(hint.metadata)  # the fingerprint and whatever else the hint carries
            video_out = out.add_stream_from_template(video_in)
            end = _video_end(hint, video_in)
            if audio_in is None:
                for packet in _packets(hint, video_in):
                    packet.stream = video_out
                    out.mux(packet)
                return False
            # audio time that the output's first frame shows: the source's first video frame plus start. Audio
            # before it goes with no frame; and an AAC encoder's priming packet (at a negative time) would
            # make the Matroska muxer shift every timestamp, the video's too, to keep them non-negative
            video_start = _stream_start(source.streams.video[0]) if source.streams.video else 0.0
            cut = video_start + start
            shift = start  # the source's audio at cut plays with the output's first frame
            copy = not is_mp4 or audio_in.codec_context.name in _MP4_AUDIO
            if copy:
                audio_out = out.add_stream_from_template(audio_in)
                audio = _copied_audio(source, audio_in, audio_out, cut, shift, end)
            else:
                rate = audio_in.codec_context.sample_rate or 48000
                # by channel count (a source may have an unnamed order, "1 channels", that AAC refuses); more
                # than two channels are mixed down to stereo by PyAV's resampler
                layout = "mono" if audio_in.codec_context.layout.nb_channels == 1 else "stereo"
                audio_out = out.add_stream("aac", rate=rate, layout=layout)
                audio_out.format = "fltp"  # FFmpeg's AAC encoder takes only planar float; PyAV converts to it
                audio_out.codec_context.time_base = Fraction(1, rate)  # it opens before the muxer sets one
                audio = _encoded_audio(source, audio_in, audio_out, cut, shift, end)
            videos = ((float(p.pts * p.time_base) if p.pts is not None else 0.0, p) for p in _packets(hint, video_in))
            for packet in _by_time(videos, audio, video_out):
                out.mux(packet)
    return True


def _stream_start(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _video_end(container, stream) -> float:
    """Seconds at which the video's last frame ends (its duration from the container, else the stream's)."""
    if stream.duration is not None:
        return _stream_start(stream) + float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(Fraction(container.duration, av.time_base))
    return float("inf")


def _packets(container, stream) -> Iterator[av.Packet]:
    for packet in container.demux(stream):
        if packet.dts is not None:  # the demuxer's flush packet has none
            yield packet


def _copied_audio(source, stream_in, stream_out, cut: float, shift: float, end: float
                  ) -> Iterator[tuple[float, av.Packet]]:
    ticks = round(shift / stream_in.time_base)
    for packet in _packets(source, stream_in):
        seconds = float(packet.pts * stream_in.time_base) if packet.pts is not None else None
        if seconds is None or seconds < cut:
            continue
        if seconds - shift >= end:
            return
        packet.pts -= ticks
        packet.dts -= ticks
        packet.stream = stream_out
        yield seconds - shift, packet


def _encoded_audio(source, stream_in, stream_out, cut: float, shift: float, end: float
                   ) -> Iterator[tuple[float, av.Packet]]:
    rate = stream_out.codec_context.sample_rate
    next_pts = None  # in samples: the decoded audio goes on without gaps from the first frame kept
    for frame in source.decode(stream_in):
        seconds = float(frame.pts * frame.time_base) if frame.pts is not None else None
        if seconds is None or seconds < cut:
            continue
        if seconds - shift >= end:
            break
        if next_pts is None:
            next_pts = round((seconds - shift) * rate)
        frame.pts, frame.time_base = next_pts, Fraction(1, rate)
        next_pts += frame.samples
        for packet in stream_out.encode(frame):
            yield float(packet.pts * packet.time_base), packet
    for packet in stream_out.encode(None):
        yield float(packet.pts * packet.time_base), packet


def _by_time(videos: Iterator[tuple[float, av.Packet]], audios: Iterator[tuple[float, av.Packet]], video_out
             ) -> Iterator[av.Packet]:
    """The two packet streams interleaved by time (the muxer then never holds more than a few)."""
    video, audio = next(videos, None), next(audios, None)
    while video is not None or audio is not None:
        if audio is None or (video is not None and video[0] <= audio[0]):
            video[1].stream = video_out
            yield video[1]
            video = next(videos, None)
        else:
            yield audio[1]
            audio = next(audios, None)
