"""The engines through the whole pipeline: auto (the native model, one frame per call on the CPU) gives the
TorchScript file's hint video pixel for pixel; a native model that batches goes through the same stages
(frames in order, every frame, the batch tolerance); the fingerprint records which engine ran."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densevid.pipeline.io import stored_fingerprint
from densevid.pipeline.models import save_standin_rcnn
from support.clips import make_clip, synthetic_frames
from support.helpers import BATCH_MIN_AGREEMENT, decode_all, labels_from_hint, run_cli


@pytest.fixture(scope="module")
def rcnn(tmp_path_factory):
    return save_standin_rcnn(tmp_path_factory.mktemp("engines") / "rcnn.pt", "tuple", 50, width=0.25)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mkv", synthetic_frames(7, 96, 160, seed=2, black_every=3))


def _encode(tmp_path, clip, model, *flags):
    out = tmp_path / f"{'_'.join(f.strip('-') for f in flags) or 'default'}.mkv"
    result = run_cli(clip, "--model", model, "--resolution", "128", "--lossless", "--device", "cpu", "-o", out, *flags)
    assert result.exit_code == 0, result.output
    return out


def test_auto_gives_the_files_hints_pixel_for_pixel(tmp_path, clip, rcnn):
    auto = _encode(tmp_path, clip, rcnn)
    file = _encode(tmp_path, clip, rcnn, "--engine", "torchscript")
    hints, seconds = decode_all(auto)
    expected, expected_seconds = decode_all(file)
    assert hints.shape == (7, 128, 213, 3) and seconds == expected_seconds
    np.testing.assert_array_equal(hints, expected)
    assert json.loads(stored_fingerprint(auto))["ran"]["engine"] == "native"
    assert json.loads(stored_fingerprint(file))["ran"]["engine"] == "torchscript"


def test_a_batching_native_model_goes_through_the_same_stages(tmp_path, clip, rcnn):
    batched = _encode(tmp_path, clip, rcnn, "--engine", "native", "--batch-size", "3", "--workers", "2")
    file = _encode(tmp_path, clip, rcnn, "--engine", "torchscript")
    hints, seconds = decode_all(batched)
    expected, expected_seconds = decode_all(file)
    assert hints.shape == expected.shape and seconds == expected_seconds  # every frame, in order
    agreement = float((labels_from_hint(hints) == labels_from_hint(expected)).mean())
    assert agreement >= BATCH_MIN_AGREEMENT
    ran = json.loads(stored_fingerprint(batched))["ran"]
    assert ran["engine"] == "native" and ran["batch"] == 3
