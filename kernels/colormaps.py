"""Colour lookup tables: DensePose part index (0..24) -> RGB, as the DensePose Estimator node colours it.

The node colours part index i with ``cv2.applyColorMap(uint8(clip(i * 255 / 24)), cmap)`` (BGR),
converts to RGB and, for viridis only, replaces every channel value 0 in the image by 68, 1, 84
(R, G, B). Index 0 is never painted, so it stands for the background (black, or (68, 1, 84) after
the viridis fix). Applying the fix per table entry is the same as applying it per pixel, because
every pixel of the hint is one of these entries.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .parts import N_PART_LABELS

if TYPE_CHECKING:
    import torch

# The colormaps: name -> (OpenCV colormap, the label the ComfyUI node shows for it). A new colormap
# is a new row here; the CLI, presets, Python API and node all take their choices from this table.
COLORMAPS = {
    "viridis": ("COLORMAP_VIRIDIS", "Viridis (MagicAnimate)"),
    "parula": ("COLORMAP_PARULA", "Parula (CivitAI)"),
}
CMAP_NAMES = tuple(COLORMAPS)
_VIRIDIS_ZERO_FILL_RGB = (68, 1, 84)


def _cv2_colormap_id(cmap: str) -> int:
    import cv2

    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colormap {cmap!r}; allowed: {', '.join(CMAP_NAMES)}")
    return getattr(cv2, COLORMAPS[cmap][0])


@lru_cache(maxsize=None)
def _hint_lut_numpy(cmap: str) -> np.ndarray:
    import cv2

    labels = np.arange(N_PART_LABELS, dtype=np.float32)
    largest = N_PART_LABELS - 1  # the node scales label i by 255 / 24: the largest label gets 255
    scaled_u8 = np.clip(labels * (255.0 / largest), 0, 255).astype(np.uint8)
    lut_bgr = cv2.applyColorMap(scaled_u8.reshape(-1, 1), _cv2_colormap_id(cmap)).reshape(-1, 3)
    lut_rgb = lut_bgr[:, ::-1].copy()
    lut_rgb[0] = 0  # label 0 is never painted: the canvas stays black there
    if cmap == "viridis":
        for channel, fill in enumerate(_VIRIDIS_ZERO_FILL_RGB):
            column = lut_rgb[:, channel]
            column[column == 0] = fill
    lut_rgb.flags.writeable = False
    return lut_rgb


def hint_lut(cmap: str, device: "torch.device | str" = "cpu") -> "torch.Tensor":
    """uint8 [25, 3] RGB table: row i is the hint colour of part label i (row 0: background)."""
    import torch  # here: the colormap table above is read by the CLI, which must start without torch

    return torch.from_numpy(_hint_lut_numpy(cmap).copy()).to(device)


def background_rgb(cmap: str) -> tuple[int, int, int]:
    """The hint's background colour for ``cmap`` (what label 0 becomes)."""
    return tuple(int(c) for c in _hint_lut_numpy(cmap)[0])
