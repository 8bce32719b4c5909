"""mux_audio: the source's audio beside a hint video's untouched video stream, cut to the hint's window."""

from __future__ import annotations

import av
import numpy as np
import pytest

from densevid.pipeline.core import OutputError
from densevid.pipeline.io import has_audio, mux_audio
from support.clips import make_clip, make_clip_with_audio, synthetic_frames
from support.helpers import decode_all


def _audio(path):
    """(codec, first packet's seconds, decoded samples as float [n]) of the first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        first = next(p for p in container.demux(stream) if p.dts is not None)
        container.seek(0)
        samples = np.concatenate([f.to_ndarray().astype(np.float64).ravel() for f in container.decode(stream)])
        return stream.codec_context.name, float(first.pts * stream.time_base), samples


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    # 10 frames at 25 frames/s, PCM audio: 40 ms at 1000, the next 40 ms at 2000, ...
    return make_clip_with_audio(tmp_path_factory.mktemp("audio") / "source.mkv", synthetic_frames(10, 48, 64, seed=2))


@pytest.mark.parametrize("start,level", [(0.0, 1000), (0.2, 6000)])
def test_the_audio_is_copied_from_the_hints_first_frame_to_its_last(tmp_path, source, start, level):
    hint_frames = synthetic_frames(5, 48, 64, seed=9)  # a 0.2 s "hint" of frames 5..9 when start is 0.2
    hint = make_clip(tmp_path / "hint.mkv", hint_frames)
    assert mux_audio(hint, source, tmp_path / "out.mkv", start=start) is True
    frames, seconds = decode_all(tmp_path / "out.mkv")
    assert np.array_equal(frames, hint_frames) and seconds == pytest.approx([0, 0.04, 0.08, 0.12, 0.16])
    codec, first, samples = _audio(tmp_path / "out.mkv")
    assert codec == "pcm_s16le" and first == 0.0
    assert samples[0] == samples[639] == level and samples[640] == level + 1000  # in sync
    assert len(samples) == 3200  # 0.2 s at 16 kHz: as long as the video, no longer


def test_pcm_into_mp4_is_encoded_as_aac_and_lasts_as_long_as_the_video(tmp_path, source):
    hint = make_clip(tmp_path / "hint.mp4", synthetic_frames(10, 48, 64, seed=9), codec="libx264")
    assert mux_audio(hint, source, tmp_path / "out.mp4") is True
    with av.open(str(hint)) as a, av.open(str(tmp_path / "out.mp4")) as b:
        assert [bytes(p) for p in a.demux(a.streams.video[0])] == [bytes(p) for p in b.demux(b.streams.video[0])]
    codec, first, samples = _audio(tmp_path / "out.mp4")
    assert codec == "aac" and first == pytest.approx(0.0, abs=0.07)
    assert len(samples) == pytest.approx(6400, abs=1024)  # 0.4 s, give or take an AAC frame of padding


def test_without_audio_in_the_source_the_output_is_the_video(tmp_path):
    silent = make_clip(tmp_path / "silent.mkv", synthetic_frames(3, 48, 64))
    hint_frames = synthetic_frames(3, 48, 64, seed=4)
    hint = make_clip(tmp_path / "hint.mkv", hint_frames)
    assert not has_audio(silent) and mux_audio(hint, silent, tmp_path / "out.mkv") is False
    assert np.array_equal(decode_all(tmp_path / "out.mkv")[0], hint_frames) and not has_audio(tmp_path / "out.mkv")


def test_an_existing_output_is_refused_and_kept(tmp_path, source):
    hint = make_clip(tmp_path / "hint.mkv", synthetic_frames(3, 48, 64))
    (tmp_path / "out.mkv").write_bytes(b"mine")
    with pytest.raises(OutputError, match="exists"):
        mux_audio(hint, source, tmp_path / "out.mkv")
    assert (tmp_path / "out.mkv").read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial left


def test_an_aac_priming_packet_does_not_shift_a_matroska_hint(tmp_path):
    # AAC starts with a priming packet at a negative time; Matroska cannot store one and its muxer would move
    # every timestamp, the video's too, later by it: the audio starts with the video's first frame instead
    source = make_clip_with_audio(tmp_path / "source.mp4", synthetic_frames(10, 48, 64, seed=2), audio_codec="aac")
    with av.open(str(source)) as container:
        first = next(p for p in container.demux(container.streams.audio[0]) if p.dts is not None)
        assert first.pts < 0  # the case: PyAV's AAC in MP4, as most phones' and cameras' files
    hint = make_clip(tmp_path / "hint.mkv", synthetic_frames(10, 48, 64, seed=9))
    assert mux_audio(hint, source, tmp_path / "out.mkv") is True
    assert decode_all(tmp_path / "out.mkv")[1] == pytest.approx([i / 25 for i in range(10)])
    codec, first_seconds, _ = _audio(tmp_path / "out.mkv")
    assert codec == "aac" and first_seconds >= 0
