"""Triton label render: one pass per output pixel, no per-instance intermediates, U/V never read.

Each program handles ``BLOCK`` pixels of the flattened canvas. For each pixel it walks the
instances from last to first, skips those whose integer box does not contain it, computes the
2-channel coarse bilinear value and, if foreground, the 25-channel fine bilinear argmax (first max
wins, like ``torch.argmax``); the first instance whose label is > 0 paints the pixel and the walk
stops (its ``done`` mask). Box integers (x, y, w, h) and float32 scales are computed on the device
with torch ops exactly as the reference computes them.

The bilinear arithmetic mirrors PyTorch's CPU kernel (the reference): ``src = fma(scale, d + 0.5,
-0.5)``, ``row = fma(x_c0, wx0, x_c1 * wx1)``, ``out = fma(row0, wy0, row1 * wy1)``; on a GPU
``tl.fma`` is a true fused multiply-add so the labels should match the CPU reference exactly, but
the test policy only requires ``GPU_MIN_AGREEMENT`` (tests/helpers.py). Logits are converted to
float32 on the device before the kernel (float16 inputs are supported that way).

The kernel lives in ``kernels/_render_triton_kernels.py``, imported on the first launch, so
``kernels`` imports fine without triton. Under ``TRITON_INTERPRET=1`` (set before triton is first
imported) the kernel also runs on CPU tensors.
"""

from __future__ import annotations

import torch

BLOCK = 256  # canvas pixels per program


def box_params(boxes_xyxy: torch.Tensor, s_h: int, s_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """int32 [N, 4] (x, y, w, h) and float32 [N, 2] (scale_y, scale_x), as the reference computes them.

    x = int(x0), y = int(y0) (truncation toward zero), w = int(float32(x1 - x0)), h likewise;
    scale = float32(S) / float32(size) (PyTorch's align_corners=False scale; 0 when size <= 0).
    """
    b = boxes_xyxy.to(torch.float32)
    x, y = b[:, 0].trunc(), b[:, 1].trunc()
    w, h = (b[:, 2] - b[:, 0]).trunc(), (b[:, 3] - b[:, 1]).trunc()
    ints = torch.stack([x, y, w, h], dim=1).to(torch.int64)
    # clamp to int32 range (boxes far outside the canvas stay outside)
    ints = ints.clamp(-(2 ** 30), 2 ** 30).to(torch.int32)
    wf = ints[:, 2].to(torch.float32)
    hf = ints[:, 3].to(torch.float32)
    one = torch.ones_like(wf)
    scale_y = torch.where(hf > 0, torch.tensor(float(s_h), device=b.device) / torch.where(hf > 0, hf, one), 0.0)
    scale_x = torch.where(wf > 0, torch.tensor(float(s_w), device=b.device) / torch.where(wf > 0, wf, one), 0.0)
    return ints.contiguous(), torch.stack([scale_y, scale_x], dim=1).to(torch.float32).contiguous()


def _launch(boxes_xyxy, coarse_segm, fine_segm, height, width, lut_rgb):
    from ._render_triton_kernels import render_kernel

    device = coarse_segm.device
    n = boxes_xyxy.shape[0]
    s_h, s_w = coarse_segm.shape[-2:]
    write_rgb = lut_rgb is not None
    shape = (height, width, 3) if write_rgb else (height, width)
    out = torch.empty(shape, dtype=torch.uint8, device=device)
    if n == 0:
        out.zero_() if not write_rgb else out.copy_(lut_rgb.to(device)[0].expand(height, width, 3))
        return out
    ints, scales = box_params(boxes_xyxy.to(device), s_h, s_w)
    coarse = coarse_segm.to(torch.float32).contiguous()
    fine = fine_segm.to(torch.float32).contiguous()
    lut = (lut_rgb.to(device=device, dtype=torch.uint8).contiguous() if write_rgb
           else torch.zeros((1,), dtype=torch.uint8, device=device))
    grid = ((height * width + BLOCK - 1) // BLOCK,)
    render_kernel[grid](ints, scales, coarse, fine, lut, out, n, height, width, s_h, s_w,
                        N_FINE=fine.shape[1], WRITE_RGB=write_rgb, BLOCK=BLOCK)
    return out


def render_labels_triton(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                         height: int, width: int) -> torch.Tensor:
    """uint8 [height, width] part labels on the logits' device (CUDA, or CPU under TRITON_INTERPRET=1)."""
    return _launch(boxes_xyxy, coarse_segm, fine_segm, height, width, None)


def render_hint_triton(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                       height: int, width: int, lut_rgb: torch.Tensor) -> torch.Tensor:
    """uint8 [height, width, 3] hint: labels coloured through ``lut_rgb`` [25, 3] inside the kernel."""
    return _launch(boxes_xyxy, coarse_segm, fine_segm, height, width, lut_rgb)


def warm_up(device: torch.device | str) -> None:
    """Compile the kernel's two variants (labels, hint) on ``device`` now, once, before a video's
    model workers would each compile them at their first frame."""
    from .colormaps import hint_lut
    from .parts import N_COARSE_CHANNELS, N_FINE_CHANNELS

    boxes = torch.tensor([[1.0, 1.0, 7.0, 7.0]], device=device)
    coarse = torch.zeros((1, N_COARSE_CHANNELS, 2, 2), device=device)
    fine = torch.zeros((1, N_FINE_CHANNELS, 2, 2), device=device)
    render_labels_triton(boxes, coarse, fine, 8, 8)
    render_hint_triton(boxes, coarse, fine, 8, 8, hint_lut("viridis", device))


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True
