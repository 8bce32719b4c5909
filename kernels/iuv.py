"""IUV maps for training: part index I and the chart coordinates U, V of the painting instance.

Definition (``render_iuv_reference``), for one image with instances in the model's order:

* I is exactly the hint's label canvas (``render_labels_reference``): each instance's labels at
  its integer box size, later instances painting over earlier ones where their label > 0.
* At a pixel painted by instance n with part p = I, U = u[n, p] and V = v[n, p] resampled to the
  box size exactly as the reference resamples the fine/coarse logits (bilinear,
  align_corners=False, all 25 channels, then the channel p picked), then clamped to [0, 1]
  (the models regress U/V without a sigmoid, so values slightly outside occur).
* Background (I = 0): U = V = 0.

``render_iuv`` computes the same on the logits' device without resampling all 50 U/V channels:
I comes from the fast label render (one call per instance, so the painting instance of every
pixel is known; composing them is exactly the full render), and U/V are the 4-tap bilinear of
the one channel I selects. Float rounding of that 4-tap sum may differ from ``F.interpolate``
in the last bits: tests allow ``IUV_UV_ATOL_FLOAT32`` (tests/helpers.py). Inputs are never modified.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import instance_labels_reference, visible_instances


def render_iuv_reference(boxes_xyxy, coarse_segm, fine_segm, u, v, height: int, width: int):
    """(I uint8 [H, W], U float32 [H, W], V float32 [H, W]) on the CPU, one instance at a time."""
    labels = torch.zeros((height, width), dtype=torch.uint8)
    uu = torch.zeros((height, width), dtype=torch.float32)
    vv = torch.zeros((height, width), dtype=torch.float32)
    for i, (x, y, w, h), (cx0, cy0, cx1, cy1) in visible_instances(boxes_xyxy, height, width):
        inst = instance_labels_reference(coarse_segm[i].cpu(), fine_segm[i].cpu(), h, w)
        idx = inst.long()[None]
        u_box = F.interpolate(u[i][None].cpu().float(), size=(h, w), mode="bilinear", align_corners=False)[0]
        v_box = F.interpolate(v[i][None].cpu().float(), size=(h, w), mode="bilinear", align_corners=False)[0]
        u_sel, v_sel = u_box.gather(0, idx)[0], v_box.gather(0, idx)[0]
        sl = (slice(cy0 - y, cy1 - y), slice(cx0 - x, cx1 - x))
        paint = inst[sl] > 0
        labels[cy0:cy1, cx0:cx1] = torch.where(paint, inst[sl], labels[cy0:cy1, cx0:cx1])
        uu[cy0:cy1, cx0:cx1] = torch.where(paint, u_sel[sl], uu[cy0:cy1, cx0:cx1])
        vv[cy0:cy1, cx0:cx1] = torch.where(paint, v_sel[sl], vv[cy0:cy1, cx0:cx1])
    return labels, uu.clamp(0.0, 1.0), vv.clamp(0.0, 1.0)


def _taps(in_size: int, out_size: int, start: int, stop: int, offset: int, device):
    """Bilinear (align_corners=False) source taps for output indices start..stop-1 of a box at ``offset``."""
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    dst = torch.arange(start - offset, stop - offset, device=device, dtype=torch.float32)
    src = ((dst + 0.5) * scale.to(device) - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    l1 = src - i0.float()
    return i0, i1, 1.0 - l1, l1


def render_iuv(boxes_xyxy, coarse_segm, fine_segm, u, v, height: int, width: int, backend: str = "auto"):
    """(I uint8 [H, W], U float32 [H, W], V float32 [H, W]) on the logits' device."""
    from .render import render_labels

    device = coarse_segm.device
    height, width = int(height), int(width)
    labels = torch.zeros((height, width), dtype=torch.uint8, device=device)
    uu = torch.zeros((height, width), dtype=torch.float32, device=device)
    vv = torch.zeros((height, width), dtype=torch.float32, device=device)
    s_h, s_w = u.shape[2], u.shape[3]
    for i, (x, y, w, h), (cx0, cy0, cx1, cy1) in visible_instances(boxes_xyxy, height, width):
        inst = render_labels(boxes_xyxy[i:i + 1], coarse_segm[i:i + 1], fine_segm[i:i + 1], height, width,
                             backend=backend)[cy0:cy1, cx0:cx1]
        paint = inst > 0
        if not bool(paint.any()):
            continue
        r0, r1, wy0, wy1 = _taps(s_h, h, cy0, cy1, y, device)
        c0, c1, wx0, wx1 = _taps(s_w, w, cx0, cx1, x, device)
        part = inst.long()
        for plane, out in ((u[i], uu), (v[i], vv)):
            flat = plane.float().reshape(-1)
            base = part * (s_h * s_w)

            def at(rows, cols):
                return flat[base + rows[:, None] * s_w + cols[None, :]]

            top = at(r0, c0) * wx0[None, :] + at(r0, c1) * wx1[None, :]
            bottom = at(r1, c0) * wx0[None, :] + at(r1, c1) * wx1[None, :]
            value = (top * wy0[:, None] + bottom * wy1[:, None]).clamp(0.0, 1.0)
            out[cy0:cy1, cx0:cx1] = torch.where(paint, value, out[cy0:cy1, cx0:cx1])
        labels[cy0:cy1, cx0:cx1] = torch.where(paint, inst, labels[cy0:cy1, cx0:cx1])
    return labels, uu, vv
