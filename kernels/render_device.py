"""Label render in plain torch ops on the logits' device: the GPU render where Triton is unavailable.

The reference's method (:mod:`kernels.reference`) where the logits are: per instance, all channels
resampled to the box with ``F.interpolate``, argmax, composited in order (later instances win where
their label > 0). On the CPU it is the reference exactly. On a GPU, ``F.interpolate``'s float
rounding differs from PyTorch's CPU kernel in the last bits, which can flip a near-tie between two
parts: the GPU tolerance policy applies (tests/helpers.py). Memory: the channels of one box at a
time. Inputs are never modified.
"""

from __future__ import annotations

import torch

from .reference import instance_labels_reference, visible_instances


def render_labels_device(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                         height: int, width: int) -> torch.Tensor:
    """uint8 [height, width] part labels, computed on the logits' device."""
    canvas = torch.zeros((height, width), dtype=torch.uint8, device=coarse_segm.device)
    boxes = boxes_xyxy.detach().cpu()  # the integer boxes are host numbers: one copy, not one per box
    for i, (x, y, w, h), (cx0, cy0, cx1, cy1) in visible_instances(boxes, height, width):
        labels = instance_labels_reference(coarse_segm[i], fine_segm[i], h, w)[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
        target = canvas[cy0:cy1, cx0:cx1]
        canvas[cy0:cy1, cx0:cx1] = torch.where(labels > 0, labels, target)
    return canvas
