"""Framing: where the source is cropped, at what resolution the model sees it, how the hint is sized.

``--size N`` makes the output exactly N x N (N even, so H.264's yuv420p needs no padding):

* ``crop`` (default): a centred square of the (upright) source, or ``--crop-box x,y,w,h``, is cut
  out of the SOURCE frame before detection, and the model sees it at N x N (short side N): no
  resampling of the hint at all. Cropping before detection is what makes "the model sees the
  person at the requested resolution" true: the person is not shrunk by a border that is then
  cut away.
* ``pad``: the model sees the whole frame with its long side at N (the detection resolution is
  chosen so the rendered map needs no resampling), and the rendered LABEL MAP is centred on an
  N x N canvas of label 0, i.e. the colormap's background colour. Padding the source instead
  would change what the model sees (edge-replicated or black borders are content to a detector).
* ``stretch``: the model sees the frame with its short side at N (the node's usual input), and
  the rendered label map is resized to N x N with nearest-neighbour, as MagicAnimate's demo
  squashes its driving videos; every pixel stays one of the colormap's 25 colours.

With ``--resolution`` given explicitly (flag or preset) the model sees that resolution instead,
and the rendered map is nearest-resized to the framed size. Without ``--size``, ``--crop-box``
alone crops the source and the output's short side is ``--resolution`` as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import DEFAULT_FIT, FITS
from ..core import ConfigError
from ._preprocess import resized_size


@dataclass(frozen=True)
class FramePlan:
    crop: tuple[int, int, int, int] | None  # x, y, w, h of the upright source frame, or None
    resolution: int  # short side the model sees (of the cropped source)
    hint_hw: tuple[int, int]  # size the labels are rendered at
    content_hw: tuple[int, int]  # size of the map before padding (nearest-resized when != hint_hw)
    out_hw: tuple[int, int]  # output size

    @property
    def needs_label_stage(self) -> bool:
        """True when the rendered map must be resized or padded (not just coloured)."""
        return self.hint_hw != self.content_hw or self.content_hw != self.out_hw

    def crop_frame(self, frame: np.ndarray) -> np.ndarray:
        if self.crop is None:
            return frame
        x, y, w, h = self.crop
        return frame[y:y + h, x:x + w]

    def preview_source(self, cropped: np.ndarray) -> np.ndarray:
        """The source frame framed like the hint (area/cubic resize, black padding), for --preview."""
        import cv2

        ch, cw = self.content_hw
        src_h, src_w = cropped.shape[:2]
        shrink = ch * cw <= src_h * src_w
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        image = cv2.resize(np.ascontiguousarray(cropped), (cw, ch), interpolation=interpolation)
        oh, ow = self.out_hw
        if (oh, ow) == (ch, cw):
            return image
        out = np.zeros((oh, ow, 3), np.uint8)
        top, left = (oh - ch) // 2, (ow - cw) // 2
        out[top:top + ch, left:left + cw] = image
        return out


def _pad_resolution(src_h: int, src_w: int, content_hw: tuple[int, int]) -> int:
    """A short-side resolution whose resize gives exactly ``content_hw`` when one exists."""
    guess = max(1, min(content_hw))
    for res in (guess, guess - 1, guess + 1):
        if res >= 1 and resized_size(src_h, src_w, res) == content_hw:
            return res
    return guess


def plan_framing(height: int, width: int, *, size: int | None, fit: str | None,
                 crop_box: tuple[int, int, int, int] | None, resolution: int | None) -> FramePlan:
    """The framing of a (height x width, upright) source. ``resolution``: the short side the model sees;
    with ``size`` it may be None (implied by ``size``/``fit``), without it is required (the config's
    ``framing_resolution`` is both). Raises ConfigError for a box that does not fit."""
    crop = None
    if crop_box is not None:
        x, y, w, h = crop_box
        if x + w > width or y + h > height:
            raise ConfigError(f"crop box {x},{y},{w},{h} does not fit in the {width}x{height} (upright) frame; "
                              f"need x + w <= {width} and y + h <= {height}")
        crop = (x, y, w, h)
    if size is None:
        if resolution is None:
            raise ValueError("without size, plan_framing needs the resolution")
        src_h, src_w = (crop[3], crop[2]) if crop else (height, width)
        hint = resized_size(src_h, src_w, resolution)
        return FramePlan(crop, resolution, hint, hint, hint)
    fit = fit or DEFAULT_FIT
    if fit not in FITS:
        raise ConfigError(f"unknown fit {fit!r}; allowed: {', '.join(FITS)}")
    if fit == "crop" and crop is None:
        side = min(height, width)
        crop = ((width - side) // 2, (height - side) // 2, side, side)
    elif fit == "crop" and crop[2] != crop[3]:
        raise ConfigError(f"--fit crop with --size {size} needs a square crop box, got {crop[2]}x{crop[3]}; "
                          f"use --fit pad or --fit stretch for a non-square box")
    src_h, src_w = (crop[3], crop[2]) if crop else (height, width)
    out = (size, size)
    if fit == "pad":
        long_side = max(src_h, src_w)
        content = (max(1, int(np.round(src_h * size / long_side))), max(1, int(np.round(src_w * size / long_side))))
        res = resolution if resolution is not None else _pad_resolution(src_h, src_w, content)
    else:  # crop (square source) or stretch
        content = out
        res = resolution if resolution is not None else size
    return FramePlan(crop, res, resized_size(src_h, src_w, res), content, out)
