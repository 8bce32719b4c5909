"""The engine (pipeline/_engine.py): one config per call, output checks once per job, sinks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clips import make_clip, make_image, synthetic_frames
from helpers import assert_exact, decode_all, labels_from_hint
from node_reference import node_hint
from densevid import DensePoseEstimator, EncodeConfig, OutputError, encode_video
from densevid.pipeline import _batch, _sinks
from densevid.pipeline._inputs import build_plan


@pytest.fixture(scope="module")
def clip_and_frames(tmp_path_factory):
    frames = synthetic_frames(4, 72, 40, seed=3)
    return make_clip(tmp_path_factory.mktemp("engine") / "clip.mkv", frames), frames


def test_the_calls_config_decides_every_setting_for_video_and_image(tmp_path, standin_models, tuple_model,
                                                                     clip_and_frames):
    clip, frames = clip_and_frames
    image = make_image(tmp_path / "still.png", frames[1])
    estimator = DensePoseEstimator(str(standin_models["tuple"]), cmap="viridis", resolution=128, device="cpu")
    config = EncodeConfig(model=str(standin_models["tuple"]), cmap="parula", resolution=64, lossless=True,
                          device="cpu")
    encode_video(clip, tmp_path / "v.mkv", estimator, config=config)
    encode_video(image, tmp_path / "i.png", estimator, config=config)
    video, _ = decode_all(tmp_path / "v.mkv")
    still, _ = decode_all(tmp_path / "i.png")
    assert video.shape[1:] == still.shape[1:] == (115, 64, 3)  # both at the call's resolution (64), not 128
    for frame, hint in zip(frames, video):  # and in the call's colormap, not the estimator's
        assert_exact(torch.from_numpy(hint), torch.from_numpy(node_hint(frame, tuple_model, "parula", 64)))
    assert_exact(torch.from_numpy(still[0]), torch.from_numpy(node_hint(frames[1], tuple_model, "parula", 64)))
    labels_from_hint(still[0], "parula")
    assert estimator.config.cmap == "viridis"  # the estimator itself is untouched


def test_output_paths_are_checked_once_per_job(tmp_path, standin_models, clip_and_frames, monkeypatch):
    clip, _ = clip_and_frames
    calls = []
    real = _sinks.check_targets
    monkeypatch.setattr(_sinks, "check_targets", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    monkeypatch.setattr("densevid.pipeline._engine.check_targets", _sinks.check_targets)
    config = EncodeConfig(model=str(standin_models["tuple"]), resolution=64, lossless=True, device="cpu",
                          frames_dir=tmp_path / "png", iuv_path=tmp_path / "a.npz")
    plan = build_plan([str(clip)], output=tmp_path / "o.mkv", lossless=True, frames_dir=config.frames_dir,
                      iuv_path=config.iuv_path)
    report = _batch.run_batch(plan.jobs, config)
    assert report.counts["done"] == 1, report.to_dict()
    assert calls == [clip]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "o.mkv", "png"]


def test_a_failing_extra_output_leaves_no_output_at_all(tmp_path, standin_models, clip_and_frames, monkeypatch):
    """The sinks close extras first and the hint last: a failed close aborts what is left."""
    clip, _ = clip_and_frames
    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cpu")

    def broken_close(self):
        raise OutputError("cannot write the IUV file: disk full")

    monkeypatch.setattr(_sinks._Iuv, "close", broken_close)
    config = EncodeConfig(resolution=64, lossless=True, frames_dir=tmp_path / "png", iuv_path=tmp_path / "a.npz")
    with pytest.raises(OutputError, match="disk full"):
        encode_video(clip, tmp_path / "o.mkv", estimator, config=config)
    # the IUV writer's own temporary files are the broken close's business; everything else is gone
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".a.")]


def test_sinks_get_batches_in_output_order(tmp_path):
    """OutputBatch rows go to every sink in order; an abort removes every temporary file."""
    targets = _sinks.OutputTargets(tmp_path / "h.mkv", False, frames_dir=tmp_path / "f", iuv=tmp_path / "i.npz")
    config = EncodeConfig(lossless=True)
    hints = np.random.default_rng(0).integers(0, 255, (3, 6, 4, 3), dtype=np.uint8)
    iuv = (np.zeros((3, 6, 4), np.uint8), np.zeros((3, 6, 4), np.float16), np.ones((3, 6, 4), np.float16))
    with _sinks.open_sinks(targets, config, (6, 4), time_base=_frac(1, 25), fps_hint=None) as sinks:
        sinks.write(_sinks.OutputBatch(hints[:2], (0, 1), iuv=tuple(a[:2] for a in iuv)))
        sinks.write(_sinks.OutputBatch(hints[2:], (5,), iuv=tuple(a[2:] for a in iuv)))
    video, seconds = decode_all(tmp_path / "h.mkv")
    assert np.array_equal(video, hints) and seconds == [0.0, 0.04, 0.2]
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert np.load(tmp_path / "i.npz")["pts_seconds"].tolist() == [0.0, 0.04, 0.2]
    sinks = _sinks.open_sinks(targets, EncodeConfig(lossless=True, overwrite=True), (6, 4), _frac(1, 25), None)
    sinks.write(_sinks.OutputBatch(hints, (0, 1, 2), iuv=iuv))
    sinks.abort()
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]


def _frac(a, b):
    from fractions import Fraction

    return Fraction(a, b)
