"""--smooth: the temporal majority vote (kernels/smooth.py) and its effect end to end."""

import numpy as np
import pytest
import torch

from densevid.kernels.smooth import TemporalSmoother, smooth_labels, smooth_labels_reference
from support.clips import make_clip, synthetic_frames
from support.helpers import assert_exact, decode_all, labels_from_hint, run_cli


def _labels(t, h, w, seed, high=25):
    return torch.randint(0, high, (t, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _streamed(labels, k, splits):
    smoother = TemporalSmoother(k)
    outs, metas, start = [], [], 0
    for n in splits:
        out, meta = smoother.push(labels[start:start + n], list(range(start, start + n)))
        outs.append(out)
        metas += meta
        start += n
    out, meta = smoother.flush()
    if out is not None:
        outs.append(out)
        metas += meta
    return torch.cat(outs), metas


@pytest.mark.parametrize("t,h,w,k,high", [
    (9, 5, 7, 3, 25), (9, 5, 7, 5, 3), (4, 3, 3, 7, 2), (11, 1, 1, 9, 4), (6, 2, 5, 1, 25), (3, 4, 4, 21, 3),
])
def test_fast_and_streamed_equal_reference(t, h, w, k, high):
    labels = _labels(t, h, w, seed=t * k + high, high=high)
    before = labels.clone()
    expected = smooth_labels_reference(labels, k)
    assert_exact(smooth_labels(labels, k), expected)
    for splits in ([t], [1] * t, [2] * (t // 2) + [t % 2], [t - 1, 1]):
        streamed, metas = _streamed(labels, k, [n for n in splits if n])
        assert_exact(streamed, expected)
        assert metas == list(range(t))  # every frame's metadata, in order
    assert torch.equal(labels, before), "input modified"


def test_ties_go_to_the_centre_frame_then_the_lowest_label():
    # window of 3 with three different labels: the centre frame's label wins
    labels = torch.tensor([5, 9, 2], dtype=torch.uint8).view(3, 1, 1)
    assert smooth_labels(labels, 3).flatten().tolist() == [5, 9, 2]
    # frame 0's truncated window [5, 9]: tie, centre (5) wins; a 2-2 tie without the centre: lowest
    labels = torch.tensor([7, 4, 4, 3, 3], dtype=torch.uint8).view(5, 1, 1)
    assert smooth_labels(labels, 5).flatten().tolist() == smooth_labels_reference(labels, 5).flatten().tolist()
    assert smooth_labels(labels, 5).flatten().tolist()[0] == 4


def test_edge_cases():
    empty = torch.zeros((0, 4, 4), dtype=torch.uint8)
    assert smooth_labels(empty, 5).shape == (0, 4, 4)
    smoother = TemporalSmoother(5)
    out, meta = smoother.push(empty, [])
    assert out.shape[0] == 0 and meta == [] and smoother.flush() == (None, [])
    static = _labels(1, 6, 6, seed=1).expand(8, 6, 6).contiguous()
    assert_exact(smooth_labels(static, 7), static)
    for bad in (0, 2, -1, 257, True, 3.0):
        with pytest.raises(ValueError, match="odd integer"):
            smooth_labels(static, bad)


def test_flicker_is_removed():
    labels = torch.full((10, 4, 4), 3, dtype=torch.uint8)
    labels[4, 1:3, 1:3] = 17  # a one-frame flicker
    out = smooth_labels(labels, 3)
    assert (out == 3).all()


def _change_fraction(labels: np.ndarray) -> float:
    return float((labels[1:] != labels[:-1]).mean())


def test_cli_smoothing_reduces_label_changes_and_keeps_a_static_clip(tmp_path, standin_models):
    model = standin_models["tuple"]
    common = ("--model", model, "--resolution", "64", "--lossless", "--device", "cpu")
    frame = synthetic_frames(2, 48, 64, seed=5)[1]
    # flickering: a still person who vanishes for one frame in three (detector dropouts)
    frames = np.stack([frame] * 13)  # ends on a shown frame: a truncated last window would tie
    frames[2::3] = 0
    flicker = make_clip(tmp_path / "flicker.mkv", frames)
    assert run_cli(flicker, "-o", tmp_path / "raw.mkv", *common).exit_code == 0
    result = run_cli(flicker, "-o", tmp_path / "smooth.mkv", "--smooth", "3", "--batch-size", "5", *common)
    assert result.exit_code == 0, result.output
    raw, raw_pts = decode_all(tmp_path / "raw.mkv")
    smooth, smooth_pts = decode_all(tmp_path / "smooth.mkv")
    assert smooth.shape == raw.shape and smooth_pts == raw_pts  # same length and timing
    raw_labels, smoothed = labels_from_hint(raw), labels_from_hint(smooth)
    assert _change_fraction(raw_labels) > 0.05
    assert _change_fraction(smoothed) == 0.0  # every dropout is voted away
    assert_exact(torch.from_numpy(smoothed), smooth_labels(torch.from_numpy(raw_labels), 3))

    # a moving clip across batch boundaries: the engine's streamed vote equals the whole-clip one
    moving = make_clip(tmp_path / "moving.mkv", synthetic_frames(11, 48, 64, seed=3))
    assert run_cli(moving, "-o", tmp_path / "m_raw.mkv", *common).exit_code == 0
    smoothed_run = run_cli(moving, "-o", tmp_path / "m_smooth.mkv", "--smooth", "5", "--batch-size", "3", *common)
    assert smoothed_run.exit_code == 0
    raw_labels = labels_from_hint(decode_all(tmp_path / "m_raw.mkv")[0])
    smoothed = labels_from_hint(decode_all(tmp_path / "m_smooth.mkv")[0])
    assert_exact(torch.from_numpy(smoothed), smooth_labels(torch.from_numpy(raw_labels), 5))
    assert _change_fraction(smoothed) < _change_fraction(raw_labels)

    static = make_clip(tmp_path / "static.mkv", np.stack([frame] * 6))
    assert run_cli(static, "-o", tmp_path / "s_raw.mkv", *common).exit_code == 0
    smoothed_run = run_cli(static, "-o", tmp_path / "s_smooth.mkv", "--smooth", "5", "--batch-size", "2", *common)
    assert smoothed_run.exit_code == 0
    assert np.array_equal(decode_all(tmp_path / "s_raw.mkv")[0], decode_all(tmp_path / "s_smooth.mkv")[0])


def test_cli_rejects_even_window(tmp_path):
    result = run_cli(tmp_path / "x.mp4", "--smooth", "4")
    assert result.exit_code == 2 and "odd" in result.output


@pytest.mark.parametrize("k", [3, 5, 15])
def test_pairwise_and_per_label_vote_paths_agree(monkeypatch, k):
    import densevid.kernels.smooth as smooth

    labels = _labels(19, 9, 13, seed=k, high=6)
    fast = smooth_labels(labels, k)  # pairwise comparisons (K <= 15)
    monkeypatch.setattr(smooth, "_PAIRWISE_MAX_K", 1)
    assert_exact(smooth_labels(labels, k), fast)  # per-label int16 vote counts
    assert_exact(fast, smooth_labels_reference(labels, k))
