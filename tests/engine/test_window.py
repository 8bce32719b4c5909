"""The frame window (--skip-frames, --every-nth, --max-frames, and a caller's trim in seconds): which source
frames are encoded, their timing in the output, and the refusals."""

from __future__ import annotations

import pytest
import torch

from densevid import DensePoseEstimator, EncodeConfig, InputError, encode_video
from densevid.pipeline.core import ConfigError
from densevid.pipeline.engine import Trim, windowed_count
from support.clips import make_clip, synthetic_frames
from support.helpers import assert_exact, decode_all, run_cli
from support.node_reference import node_hint


@pytest.fixture(scope="module")
def ten_frames(tmp_path_factory):
    frames = synthetic_frames(10, 72, 40, seed=5)
    return make_clip(tmp_path_factory.mktemp("window") / "clip.mkv", frames, fps=25), frames


@pytest.mark.parametrize("settings,trim,kept", [
    ({"skip_frames": 2, "every_nth": 3, "max_frames": 2}, None, [2, 5]),
    ({"every_nth": 4}, None, [0, 4, 8]),
    ({"max_frames": 3}, None, [0, 1, 2]),
    ({}, Trim(0.1, 0.2), [3, 4, 5, 6, 7]),  # frames at 0.12 .. 0.28 s of 0.1 <= t < 0.3
    ({"skip_frames": 1, "every_nth": 2}, Trim(0.1), [4, 6, 8]),
])
def test_the_window_encodes_the_chosen_frames_at_the_sources_speed(tmp_path, standin_models, tuple_model, ten_frames,
                                                                    settings, trim, kept):
    clip, frames = ten_frames
    result = encode_video_with(tmp_path, clip, standin_models, settings, trim)
    hints, seconds = decode_all(tmp_path / "out.mkv")
    assert len(hints) == result.frames == len(kept)
    # the first kept frame starts the output at 0; the others keep their distance from it
    assert seconds == pytest.approx([(index - kept[0]) / 25 for index in kept])
    assert result.source_start == pytest.approx(kept[0] / 25)
    for hint, index in zip(hints, kept):
        assert_exact(torch.from_numpy(hint), torch.from_numpy(node_hint(frames[index], tuple_model, "viridis", 64)))


def encode_video_with(tmp_path, clip, standin_models, settings, trim):
    config = EncodeConfig(model=str(standin_models["tuple"]), resolution=64, lossless=True, device="cpu",
                          batch_size=2, **settings)
    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cpu")
    return encode_video(clip, tmp_path / "out.mkv", estimator, config=config, trim=trim)


def test_a_window_past_the_end_is_an_error_saying_what_was_asked(tmp_path, standin_models, ten_frames):
    clip, _ = ten_frames
    with pytest.raises(InputError, match=r"keeps no frame of the input's 10 frame\(s\) .*--skip-frames 10"):
        encode_video_with(tmp_path, clip, standin_models, {"skip_frames": 10}, None)
    assert not (tmp_path / "out.mkv").exists()


def test_trim_refuses_negative_or_empty_windows():
    with pytest.raises(ConfigError, match=r"trim start -1: must be a finite number of seconds >= 0"):
        Trim(-1)
    with pytest.raises(ConfigError, match=r"trim duration 0: must be a finite number of seconds > 0"):
        Trim(0, 0)


def test_windowed_count_plans_with_the_kept_frames():
    assert windowed_count(10, EncodeConfig(skip_frames=2, every_nth=3)) == 3  # 2, 5, 8
    assert windowed_count(10, EncodeConfig(skip_frames=2, every_nth=3, max_frames=2)) == 2
    assert windowed_count(3, EncodeConfig(skip_frames=5)) == 0
    assert windowed_count(None, EncodeConfig(skip_frames=5)) is None


def test_the_cli_takes_the_window_flags(tmp_path, standin_models, ten_frames):
    clip, _ = ten_frames
    out = tmp_path / "cli.mkv"
    result = run_cli(clip, "-o", out, "--model", standin_models["tuple"], "--resolution", "64", "--lossless",
                     "--device", "cpu", "--skip-frames", "1", "--every-nth", "2", "--max-frames", "3")
    assert result.exit_code == 0, result.output
    _, seconds = decode_all(out)
    assert seconds == pytest.approx([0, 0.08, 0.16])
