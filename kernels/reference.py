"""Plain reference render: the DensePose Estimator node's semantics, one instance at a time.

Slow on purpose (full-box, all-channel resampling per instance): the fast paths in this package
are tested against it. Pure: inputs are never modified.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box_xywh_int(box_xyxy: torch.Tensor) -> tuple[int, int, int, int]:
    """The node's integer box: xyxy -> xywh in float (w = x1 - x0), then each truncated toward zero."""
    x0, y0, x1, y1 = (float(c) for c in box_xyxy.to(torch.float32))
    # float32 arithmetic, like detectron2's BoxMode conversion on the float32 boxes tensor
    w = float(torch.tensor(x1, dtype=torch.float32) - torch.tensor(x0, dtype=torch.float32))
    h = float(torch.tensor(y1, dtype=torch.float32) - torch.tensor(y0, dtype=torch.float32))
    return int(x0), int(y0), int(w), int(h)


def visible_box(x: int, y: int, w: int, h: int, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The part (cx0, cy0, cx1, cy1) of the integer box x, y, w, h inside a height x width canvas;
    None when the box is empty or entirely outside."""
    if w <= 0 or h <= 0:
        return None
    cx0, cy0 = max(x, 0), max(y, 0)
    cx1, cy1 = min(x + w, width), min(y + h, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    return cx0, cy0, cx1, cy1


def visible_instances(boxes_xyxy: torch.Tensor, height: int, width: int):
    """Yield (i, (x, y, w, h), (cx0, cy0, cx1, cy1)) of each instance whose integer box shows on the
    height x width canvas, in order."""
    for i in range(boxes_xyxy.shape[0]):
        x, y, w, h = box_xywh_int(boxes_xyxy[i].cpu())
        visible = visible_box(x, y, w, h, height, width)
        if visible is not None:
            yield i, (x, y, w, h), visible


def instance_labels_reference(coarse_segm: torch.Tensor, fine_segm: torch.Tensor, height: int,
                              width: int) -> torch.Tensor:
    """Part labels (uint8 [h, w]) of one instance resampled to its box: argmax fine where argmax coarse > 0."""
    coarse = F.interpolate(coarse_segm[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]
    fine = F.interpolate(fine_segm[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]
    foreground = coarse.argmax(dim=0) > 0
    return (fine.argmax(dim=0) * foreground).to(torch.uint8)


def render_labels_reference(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                            height: int, width: int) -> torch.Tensor:
    """uint8 [height, width] label canvas; later instances overwrite earlier ones where their label > 0.

    Box parts outside the canvas are dropped (the node would fail on such boxes; real models clip them).
    """
    canvas = torch.zeros((height, width), dtype=torch.uint8)
    for i, (x, y, w, h), (cx0, cy0, cx1, cy1) in visible_instances(boxes_xyxy, height, width):
        labels = instance_labels_reference(coarse_segm[i].cpu(), fine_segm[i].cpu(), h, w)
        patch = labels[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
        target = canvas[cy0:cy1, cx0:cx1]
        canvas[cy0:cy1, cx0:cx1] = torch.where(patch > 0, patch, target)
    return canvas


def colorize_reference(labels: torch.Tensor, lut_rgb: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3] RGB from uint8 labels through a [25, 3] table."""
    return lut_rgb.to(labels.device)[labels.long()]
