"""Videos as people really have them: joined recordings, size changes, broken timestamps, non-square pixels.

Each input is built here with PyAV the way people make it (``cat part1.ts part2.ts``, an H.264 with
a sample aspect ratio, a muxer that repeats a timestamp, a damaged packet) and goes through the CLI
with the stand-in model. Expected frames are computed independently (PyAV decoding of the parts,
OpenCV at the interpolation the decoder's docstring states, explicit sizes and offsets), and hints
are compared bit for bit with the hints of a plain square-pixel clip of those frames (``--lossless``).
"""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from densevid.pipeline.core import InputError
from densevid.pipeline.io import iter_frame_batches, probe_video
from support.clips import make_clip, synthetic_frames
from support.helpers import decode_all, run_cli

LOSSLESS_H264 = dict(codec="libx264rgb", pix_fmt="rgb24", options={"qp": "0"})  # decodes to the source exactly


def cat(out, *parts):
    """``cat part1 part2 > out``."""
    out.write_bytes(b"".join(p.read_bytes() for p in parts))
    return out


def pyav_frames(path):
    """Every frame of ``path`` as PyAV decodes it (rgb24, no densevid in between)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def decoded(path, **kwargs):
    """(frames [N,H,W,3], pts, time base, warnings) from densevid's decoder."""
    warnings: list[str] = []
    batches = list(iter_frame_batches(path, 8, warnings_out=warnings, **kwargs))
    return (np.concatenate([b.frames_rgb.numpy() for b in batches]), [p for b in batches for p in b.pts],
            batches[0].time_base, warnings)


def warning_lines(result):
    return [line for line in result.output.splitlines() if line.startswith("densevid: warning:")]


def encode(clip, out, standin_models, *extra):
    result = run_cli(clip, "--model", standin_models["tuple"], "--resolution", "64", "--lossless", "-o", out, *extra)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def reference_hints(tmp_path, frames, standin_models, *extra, name="reference"):
    """The hints of a plain square-pixel lossless clip of ``frames`` (what the odd input must equal)."""
    clip = make_clip(tmp_path / f"{name}.mkv", frames)
    out = tmp_path / f"{name}_hint.mkv"
    encode(clip, out, standin_models, *extra)
    return decode_all(out)[0]


def strictly_increasing(values):
    return all(a < b for a, b in zip(values, values[1:]))


def output_aspect(path):
    """(display width / height, SAR) of a video's first stream as PyAV reads it back."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        sar = stream.sample_aspect_ratio or Fraction(1)
        return Fraction(stream.width * sar, stream.height), sar


# --- joined recordings, a frame size that changes, timestamps that start again -------------------------


@pytest.fixture(scope="module")
def joined_ts(tmp_path_factory):
    """Two H.264 MPEG-TS recordings joined with cat: 20 frames of 64x36, then 20 of 36x64 (a rotated phone
    clip), the second starting again at its own zero. Returns (joined, part1, part2)."""
    d = tmp_path_factory.mktemp("joined")
    part1 = make_clip(d / "part1.ts", synthetic_frames(20, 36, 64, seed=1), codec="libx264")
    part2 = make_clip(d / "part2.ts", synthetic_frames(20, 64, 36, seed=2), codec="libx264")
    return cat(d / "all.ts", part1, part2), part1, part2


def pillarboxed_36x64_in_64x36(frame):
    """A 36x64 (w x h) frame shown in a 64x36 frame: scaled by 36/64 to 20x36 (20.25 rounded), INTER_AREA
    (shrinking), centred: 22 black columns on the left, 22 on the right."""
    out = np.zeros((36, 64, 3), np.uint8)
    out[:, 22:42] = cv2.resize(frame, (20, 36), interpolation=cv2.INTER_AREA)
    return out


def test_joined_ts_decodes_every_frame_resized_with_monotonic_timestamps(joined_ts, tmp_path, standin_models):
    joined, part1, part2 = joined_ts
    # what the demuxer and PyAV do with it (the reason for each rule): all 40 frames decode, one packet
    # is flagged corrupt, the second part's timestamps start again, and its frames are 36x64
    with av.open(str(joined)) as container:
        stream = container.streams.video[0]
        flagged = sum(p.is_corrupt for p in container.demux(stream))
    with av.open(str(joined)) as container:
        raw = [(f.pts, f.width, f.height) for f in container.decode(video=0)]
    assert flagged == 1 and len(raw) == 40
    assert raw[20][0] <= raw[19][0] and raw[20][1:] == (36, 64) and raw[0][1:] == (64, 36)

    expected = pyav_frames(part1) + [pillarboxed_36x64_in_64x36(f) for f in pyav_frames(part2)]
    info = probe_video(joined)
    assert (info.width, info.height) == (64, 36)
    frames, pts, tb, warnings = decoded(joined)
    np.testing.assert_array_equal(frames, np.stack(expected))
    # the second part continues one nominal frame (1/25 s) after the first, keeping its own spacing
    step = Fraction(1, 25) / tb
    assert [p - pts[0] for p in pts] == [i * step for i in range(40)]
    assert len(warnings) == 3, warnings

    out = tmp_path / "all_hint.mkv"
    result = encode(joined, out, standin_models)
    lines = warning_lines(result)
    assert len(lines) == 3, result.output
    assert "1 damaged packet" in lines[2] and "kept" in lines[2]
    assert "frame size changes at frame 20 (64x36 -> 36x64)" in lines[0] and "20 frames" in lines[0]
    assert "timestamps go backwards or repeat at frame 20" in lines[1] and "20 frames moved" in lines[1]
    hints, seconds = decode_all(out)
    assert hints.shape == (40, 64, 114, 3)  # every frame, at the first frame's size (short side 36 -> 64)
    assert output_aspect(out) == (Fraction(114, 64), 1)
    assert strictly_increasing(seconds)
    assert seconds == pytest.approx([seconds[0] + i / 25 for i in range(40)], abs=5e-4)  # MKV: milliseconds
    np.testing.assert_array_equal(hints, reference_hints(tmp_path, expected, standin_models))


def test_joined_ts_with_fps_resamples_the_corrected_times(joined_ts, tmp_path, standin_models):
    joined, _, _ = joined_ts
    plain, fast = tmp_path / "plain.mkv", tmp_path / "fast.mkv"
    encode(joined, plain, standin_models)
    encode(joined, fast, standin_models, "--fps", "50")
    hints, _ = decode_all(plain)
    doubled, seconds = decode_all(fast)
    # 40 frames at 25 fps on a 50 fps grid: each shown twice (the raw times would show the second part's
    # frames over the first part's span and the first part's end never)
    assert doubled.shape == (80, 64, 114, 3)
    np.testing.assert_array_equal(doubled, np.repeat(hints, 2, axis=0))
    assert seconds == pytest.approx([seconds[0] + k / 50 for k in range(80)], abs=5e-4)


def test_size_changes_same_aspect_scaled_other_aspect_boxed(tmp_path):
    sizes = [(36, 64), (18, 32), (36, 48)]  # (h, w): 16:9, 16:9 at half size, 4:3
    sources = [synthetic_frames(3, h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    parts = [make_clip(tmp_path / f"p{i}.ts", f, **LOSSLESS_H264) for i, f in enumerate(sources)]
    clip = cat(tmp_path / "all.ts", *parts)
    frames, pts, _, warnings = decoded(clip)
    pillarboxed = np.zeros((3, 36, 64, 3), np.uint8)
    pillarboxed[:, :, 8:56] = sources[2]  # 48x36 fits at scale 1: 8 black columns either side
    expected = np.concatenate([
        sources[0],
        [cv2.resize(f, (64, 36), interpolation=cv2.INTER_CUBIC) for f in sources[1]],  # enlarged, no bars
        pillarboxed,
    ])
    np.testing.assert_array_equal(frames, expected)
    assert strictly_increasing(pts)
    assert sum("frame size changes at frame 3 (64x36 -> 32x18); 6 frames" in w for w in warnings) == 1, warnings


def test_restarted_segment_keeps_its_own_spacing(tmp_path):
    """A variable-rate second part that starts again at zero continues one nominal frame after the first
    part's end and keeps its own gaps (not re-spaced at the nominal rate)."""
    part1 = make_clip(tmp_path / "a.ts", synthetic_frames(5, 24, 32, seed=11), **LOSSLESS_H264)
    part2 = make_clip(tmp_path / "b.ts", synthetic_frames(4, 24, 32, seed=12), pts=[0, 2, 3, 7], **LOSSLESS_H264)
    frames, pts, tb, warnings = decoded(cat(tmp_path / "all.ts", part1, part2))
    assert len(frames) == 9
    step = Fraction(1, 25) / tb
    assert [(p - pts[0]) / step for p in pts] == [0, 1, 2, 3, 4, 5, 7, 8, 12]
    lines = [w for w in warnings if "timestamps" in w]
    assert len(lines) == 1 and "at frame 5" in lines[0] and "4 frames moved" in lines[0], warnings


# --- repeated timestamps ------------------------------------------------------------------------------


def test_repeated_timestamp_is_made_monotonic_and_fps_sees_every_frame(tmp_path, standin_models):
    source = synthetic_frames(6, 48, 64, seed=4)
    # Matroska accepts a repeated timestamp (not a decreasing one): frame 3 repeats frame 2's 80 ms
    clip = make_clip(tmp_path / "repeat.mkv", source, pts=[0, 40, 80, 80, 160, 200], time_base=Fraction(1, 1000))
    with av.open(str(clip)) as container:
        assert [f.pts for f in container.decode(video=0)] == [0, 40, 80, 80, 160, 200]
    out = tmp_path / "repeat_hint.mkv"
    result = encode(clip, out, standin_models)
    lines = warning_lines(result)
    assert len(lines) == 1 and "repeat at frame 3" in lines[0] and "1 frame moved" in lines[0], result.output
    hints, seconds = decode_all(out)
    # one nominal frame (1/25 s) after its predecessor; frame 4 keeps its own 160 ms
    assert seconds == pytest.approx([0, 0.04, 0.08, 0.12, 0.16, 0.2], abs=1e-9)
    np.testing.assert_array_equal(hints, reference_hints(tmp_path, source, standin_models))

    fast = tmp_path / "fast.mkv"
    encode(clip, fast, standin_models, "--fps", "50")
    doubled, seconds = decode_all(fast)
    # every frame twice; on the raw times frame 2 would be shown 0 times and frame 3 four times
    np.testing.assert_array_equal(doubled, np.repeat(hints, 2, axis=0))
    assert seconds == pytest.approx([k / 50 for k in range(12)], abs=5e-4)


# --- damaged packets ----------------------------------------------------------------------------------


def _damage_packets(clip, indices, out):
    """A copy of ``clip`` with 8 bytes in the middle of the given video packets overwritten."""
    with av.open(str(clip)) as container:
        where = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(clip.read_bytes())
    for i in indices:
        pos, size = where[i]
        data[pos + size // 2: pos + size // 2 + 8] = b"\xff" * 8
    out.write_bytes(data)
    return out


def test_packet_the_decoder_rejects_is_skipped_with_a_warning(tmp_path, standin_models):
    source = synthetic_frames(12, 32, 48, seed=5)
    clip = make_clip(tmp_path / "png.mov", source, codec="png")  # intra-only: one packet, one frame
    bad = _damage_packets(clip, [5], tmp_path / "damaged.mov")
    assert len(pyav_frames(clip)) == 12
    out = tmp_path / "damaged_hint.mkv"
    result = encode(bad, out, standin_models)
    lines = warning_lines(result)
    assert len(lines) == 1 and "rejected 1 packet (the first after 5 frames" in lines[0], result.output
    hints, seconds = decode_all(out)
    kept = [i for i in range(12) if i != 5]
    assert seconds == pytest.approx([i / 25 for i in kept], abs=5e-4)
    np.testing.assert_array_equal(hints, reference_hints(tmp_path, source[kept], standin_models))


class _DemuxerFailsAfter:
    """A container whose demuxer fails with InvalidDataError after ``n`` packets (no real file built with
    PyAV does this reliably: measured, 240 byte-mutated MKV/MP4/TS files gave decoder errors, never a
    demuxer error after the first frame)."""

    def __init__(self, container, n):
        self._container, self._n = container, n

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._container.close()

    def demux(self, stream):
        for i, packet in enumerate(self._container.demux(stream)):
            if i == self._n:
                raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
            yield packet


@pytest.mark.parametrize("suffix,kwargs", [(".mkv", {}), (".ts", LOSSLESS_H264)])
def test_demuxer_error_mid_file_ends_the_input_keeping_its_frames(tmp_path, monkeypatch, suffix, kwargs):
    import densevid.pipeline.io._decode as decode

    source = synthetic_frames(8, 24, 32, seed=13)
    clip = make_clip(tmp_path / f"c{suffix}", source, **kwargs)
    real_open = decode._open
    monkeypatch.setattr(decode, "_open", lambda path: _DemuxerFailsAfter(real_open(path), 5))
    frames, _, _, warnings = decoded(clip)
    np.testing.assert_array_equal(frames, source[:5])  # the decoder is drained: every packet before the error
    # one line: the duration (MKV: the header's; TS: FFmpeg's estimate from the file's last timestamps)
    # says what is missing, and why reading stopped
    assert len(warnings) == 1 and "looks truncated" in warnings[0] and "encoded the 5 frames" in warnings[0]
    assert "reading stopped at a demuxer error (Invalid data found when processing input)" in warnings[0]
    monkeypatch.setattr(decode, "_open", lambda path: _DemuxerFailsAfter(real_open(path), 0))
    with pytest.raises(InputError, match="no frame decodes"):
        decoded(clip)


def test_input_from_which_no_frame_decodes_is_a_one_line_error(tmp_path, standin_models):
    clip = make_clip(tmp_path / "png.mov", synthetic_frames(4, 32, 48, seed=6), codec="png")
    bad = _damage_packets(clip, range(4), tmp_path / "dead.mov")
    out = tmp_path / "dead_hint.mkv"
    result = run_cli(bad, "--model", standin_models["tuple"], "--resolution", "64", "--lossless", "-o", out)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("densevid: error:") and "dead.mov" in lines[0], result.output
    assert not out.exists()


def test_truncated_mp4_with_index_first_keeps_its_frames_with_one_warning(tmp_path, standin_models):
    source = synthetic_frames(24, 48, 48, seed=7)
    clip = make_clip(tmp_path / "whole.mp4", source, container_options={"movflags": "+faststart"},
                     **LOSSLESS_H264)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2 + 61])
    with av.open(str(cut)) as container:
        assert sum(p.is_corrupt for p in container.demux(video=0)) == 1  # the packet the cut goes through
    out = tmp_path / "cut_hint.mkv"
    result = encode(cut, out, standin_models)
    hints, _ = decode_all(out)
    assert 0 < len(hints) < 24
    lines = warning_lines(result)
    assert len(lines) == 1, result.output
    assert "looks truncated" in lines[0] and f"encoded the {len(hints)} frames" in lines[0]
    assert "last packet is incomplete" in lines[0]
    # the frames that were kept are the source's first ones, whole
    np.testing.assert_array_equal(hints, reference_hints(tmp_path, source[: len(hints)], standin_models))


# --- non-square pixels ----------------------------------------------------------------------------------


def test_non_square_pixels_hint_has_the_display_aspect_ratio(tmp_path, standin_models):
    """The issue's case, small: an H.264 MP4 of 36x48 storage (portrait) with SAR 2:1 plays as 72x48."""
    clip = make_clip(tmp_path / "anamorphic.mp4", synthetic_frames(4, 48, 36, seed=8), codec="libx264",
                     sample_aspect_ratio=Fraction(2))
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.sample_aspect_ratio) == (36, 48, 2)
        source_dar = stream.display_aspect_ratio
    info = probe_video(clip)
    assert (info.width, info.height, info.sample_aspect_ratio) == (72, 48, 2) and source_dar == Fraction(3, 2)
    result = run_cli(clip, "--model", standin_models["tuple"], "--resolution", "64")
    assert result.exit_code == 0 and warning_lines(result) == [], result.output
    out = tmp_path / "anamorphic_densepose.mp4"
    hints, seconds = decode_all(out)
    assert hints.shape == (4, 64, 96, 3)  # landscape, short side 64: not 64x85 portrait
    assert output_aspect(out) == (source_dar, 1)
    assert strictly_increasing(seconds)


@pytest.mark.parametrize("width,sar,rotation,display_width,interpolation", [
    (36, Fraction(2), 0, 72, cv2.INTER_CUBIC),  # anamorphic: wider
    (35, Fraction(3, 2), 0, 53, cv2.INTER_CUBIC),  # 52.5: nearest, halves up (not to even 52)
    (36, Fraction(10, 11), 0, 33, cv2.INTER_AREA),  # DV NTSC 4:3 pixels: narrower (32.7)
    (36, Fraction(2), 90, 72, cv2.INTER_CUBIC),  # square pixels first, then upright: 48x72
])
def test_non_square_pixels_resampled_exactly_and_framed_in_display_geometry(
        tmp_path, standin_models, width, sar, rotation, display_width, interpolation):
    source = synthetic_frames(3, 48, width, seed=9)
    clip = make_clip(tmp_path / "sar.mkv", source, sample_aspect_ratio=sar, rotation=rotation, **LOSSLESS_H264)
    expected = np.stack([np.rot90(cv2.resize(f, (display_width, 48), interpolation=interpolation), k=rotation // 90)
                         for f in source])
    info = probe_video(clip)
    assert (info.height, info.width) == expected.shape[1:3] and info.sample_aspect_ratio == sar
    frames, _, _, warnings = decoded(clip)
    np.testing.assert_array_equal(frames, expected)
    assert warnings == []
    # --size/--fit pad frames the display picture: the same hint as a square-pixel clip of it
    for extra in ((), ("--size", "64", "--fit", "pad")):
        out = tmp_path / f"sar_hint{len(extra)}.mkv"
        encode(clip, out, standin_models, *extra)
        hints, _ = decode_all(out)
        np.testing.assert_array_equal(hints, reference_hints(tmp_path, expected, standin_models, *extra,
                                                             name=f"ref{len(extra)}"))
        if not extra:
            h, w = expected.shape[1:3]
            assert hints.shape[1:3] == ((64, round(64 * w / h)) if w > h else (round(64 * h / w), 64))


def test_implausible_sample_aspect_ratio_is_ignored_with_a_warning(tmp_path):
    source = synthetic_frames(2, 24, 32, seed=10)
    clip = make_clip(tmp_path / "odd_sar.mkv", source, sample_aspect_ratio=Fraction(20), **LOSSLESS_H264)
    frames, _, _, warnings = decoded(clip)
    np.testing.assert_array_equal(frames, source)
    assert len(warnings) == 1 and "sample aspect ratio 20:1 is implausible" in warnings[0]
