"""densevid's hints equal the DensePose Estimator node's, pixel for pixel (both export styles, both colormaps)."""

import numpy as np
import pytest
import torch

from densevid import DensePoseEstimator
from densevid.pipeline.engine import resize_and_pad
from support.helpers import assert_exact
from support.node_reference import blob_frames, node_hint


@pytest.mark.parametrize("height,width,resolution",
                         [(96, 160, 64), (123, 77, 128), (240, 427, 512), (1080 // 4, 1920 // 4, 256)])
def test_preprocess_matches_node(height, width, resolution):
    from support.node_reference import node_resize_image_with_pad

    image = blob_frames(2, height, width, seed=height)[1]
    padded, (h, w) = resize_and_pad(image, resolution)
    expected, remove_pad = node_resize_image_with_pad(image, resolution)
    assert_exact(torch.from_numpy(padded), torch.from_numpy(expected))
    assert remove_pad(expected).shape[:2] == (h, w)
    assert min(h, w) == resolution
    assert padded.shape[0] % 64 == 0 and padded.shape[1] % 64 == 0


def test_preprocess_does_not_modify_input():
    image = blob_frames(2, 50, 70)[1]
    before = image.copy()
    resize_and_pad(image, 128)
    assert np.array_equal(image, before)


@pytest.mark.parametrize("style", ["tuple", "dict"])
@pytest.mark.parametrize("cmap", ["viridis", "parula"])
def test_hints_equal_node(standin_models, tuple_model, style, cmap):
    estimator = DensePoseEstimator(str(standin_models[style]), cmap=cmap, resolution=128, device="cpu")
    frames = blob_frames(7, 90, 151, seed=3)  # odd size, portrait-ish upscale; frame 0 is empty
    people = []
    for frame in frames:
        expected = node_hint(frame, tuple_model, cmap=cmap, resolution=128)
        actual = estimator(frame)
        assert actual.shape == expected.shape == (128, 215, 3)
        assert_exact(torch.from_numpy(actual), torch.from_numpy(expected))
        padded, _ = resize_and_pad(frame, 128)
        people.append(len(estimator.detect(torch.from_numpy(padded))))
    # the clip exercises empty frames and several overlapping people
    assert 0 in people and max(people) >= 2


def test_batch_call_equals_single_calls(standin_models):
    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cpu")
    frames = blob_frames(4, 64, 80, seed=5)
    batch = estimator(frames)
    assert isinstance(batch, list) and len(batch) == 4
    for frame, hint in zip(frames, batch):
        assert np.array_equal(estimator(frame), hint)
    as_tensor = estimator(torch.from_numpy(frames[1]))
    assert isinstance(as_tensor, torch.Tensor) and np.array_equal(as_tensor.numpy(), batch[1])


def test_empty_frame_is_all_background(standin_models):
    black = np.zeros((64, 64, 3), np.uint8)
    for cmap, colour in (("viridis", (68, 1, 84)), ("parula", (0, 0, 0))):
        hint = DensePoseEstimator(str(standin_models["tuple"]), cmap=cmap, resolution=64, device="cpu")(black)
        assert (hint == np.array(colour, np.uint8)).all()


def test_api_rejects_bad_images(standin_models):
    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cpu")
    with pytest.raises(ValueError, match="uint8 RGB"):
        estimator(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        estimator(np.zeros((10, 10, 3), np.float32))
