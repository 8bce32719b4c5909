"""Resize + pad exactly as the DensePose Estimator node does before calling the model.

The node (comfyui_controlnet_aux ``resize_image_with_pad``) scales the short side to the detect
resolution with OpenCV (INTER_CUBIC when enlarging, INTER_AREA otherwise, even at scale 1) and
pads bottom/right by edge replication to multiples of 64. The model's output depends on every
input pixel, so this must be bit-identical to OpenCV: it runs on the CPU with OpenCV (in the
decode thread, so it overlaps the model), not as a device-side approximation.
"""

from __future__ import annotations

import math

import numpy as np


def resized_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(H, W) after scaling the short side to ``resolution``; rounding half to even, as np.round."""
    k = float(resolution) / float(min(height, width))
    return int(np.round(float(height) * k)), int(np.round(float(width) * k))


def padded_size(height: int, width: int) -> tuple[int, int]:
    """Next multiples of 64 at or above (height, width)."""
    return int(math.ceil(height / 64.0) * 64), int(math.ceil(width / 64.0) * 64)


def resize_and_pad(image_rgb: np.ndarray, resolution: int) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 HWC RGB -> (padded uint8 HWC RGB for the model, (H, W) of the resized image).

    Pure: returns a new array. The hint is rendered at the returned (H, W), which equals
    cropping the node's padded canvas (painting is per pixel, so the padding never matters).
    """
    import cv2

    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB image, got {image_rgb.dtype} {list(image_rgb.shape)}")
    height, width = image_rgb.shape[:2]
    target_h, target_w = resized_size(height, width, resolution)
    k = float(resolution) / float(min(height, width))
    interpolation = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    resized = cv2.resize(np.ascontiguousarray(image_rgb), (target_w, target_h), interpolation=interpolation)
    pad_h, pad_w = padded_size(target_h, target_w)
    padded = np.pad(resized, [[0, pad_h - target_h], [0, pad_w - target_w], [0, 0]], mode="edge")
    return np.ascontiguousarray(padded), (target_h, target_w)
