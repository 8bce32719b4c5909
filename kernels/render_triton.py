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
the test policy only requires ``TRITON_MIN_AGREEMENT``. Logits are converted to float32 on the
device before the kernel (float16 inputs are supported that way).

Triton is imported lazily, so ``kernels`` imports fine without it. Under ``TRITON_INTERPRET=1``
(set before triton is first imported) the kernel also runs on CPU tensors.
"""

from __future__ import annotations

from functools import lru_cache

import torch

BLOCK = 256


@lru_cache(maxsize=None)
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def _bilinear(base, plane_off, Sw, i00, i01, i10, i11, wx0, wx1, wy0, wy1, mask):
        x00 = tl.load(base + plane_off + i00, mask=mask, other=0.0)
        x01 = tl.load(base + plane_off + i01, mask=mask, other=0.0)
        x10 = tl.load(base + plane_off + i10, mask=mask, other=0.0)
        x11 = tl.load(base + plane_off + i11, mask=mask, other=0.0)
        row0 = tl.fma(x00, wx0, x01 * wx1)
        row1 = tl.fma(x10, wx0, x11 * wx1)
        return tl.fma(row0, wy0, row1 * wy1)

    @triton.jit
    def _taps(dst, scale, size):
        src = tl.maximum(tl.fma(scale, dst.to(tl.float32) + 0.5, -0.5), 0.0)
        i0 = tl.minimum(tl.floor(src).to(tl.int32), size - 1)
        l1 = tl.minimum(tl.maximum(src - i0.to(tl.float32), 0.0), 1.0)
        l0 = 1.0 - l1
        i1 = tl.where(i0 < size - 1, i0 + 1, i0)
        return i0, i1, l0, l1

    # The JIT resolves helper names through the module's globals: publish them there.
    globals()["_bilinear"] = _bilinear
    globals()["_taps"] = _taps

    @triton.jit
    def render_kernel(boxes_ptr, scales_ptr, coarse_ptr, fine_ptr, lut_ptr, out_ptr,
                      N, H, W, Sh, Sw,
                      N_FINE_C: tl.constexpr, WRITE_RGB: tl.constexpr, BLOCK_C: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid * BLOCK_C + tl.arange(0, BLOCK_C)
        in_canvas = offs < H * W
        py = offs // W
        px = offs % W
        label = tl.zeros((BLOCK_C,), dtype=tl.int32)
        done = offs < 0  # all False
        plane = Sh * Sw
        for t in range(0, N):
            i = N - 1 - t
            bx = tl.load(boxes_ptr + i * 4 + 0)
            by = tl.load(boxes_ptr + i * 4 + 1)
            bw = tl.load(boxes_ptr + i * 4 + 2)
            bh = tl.load(boxes_ptr + i * 4 + 3)
            scale_y = tl.load(scales_ptr + i * 2 + 0)
            scale_x = tl.load(scales_ptr + i * 2 + 1)
            inside = (in_canvas & (~done) & (bw > 0) & (bh > 0)
                      & (px >= bx) & (px < bx + bw) & (py >= by) & (py < by + bh))
            r0, r1, wy0, wy1 = _taps(py - by, scale_y, Sh)
            c0, c1, wx0, wx1 = _taps(px - bx, scale_x, Sw)
            i00 = r0 * Sw + c0
            i01 = r0 * Sw + c1
            i10 = r1 * Sw + c0
            i11 = r1 * Sw + c1
            cbase = coarse_ptr + i * 2 * plane
            bg = _bilinear(cbase, 0, Sw, i00, i01, i10, i11, wx0, wx1, wy0, wy1, inside)
            fgv = _bilinear(cbase, plane, Sw, i00, i01, i10, i11, wx0, wx1, wy0, wy1, inside)
            fg = inside & (fgv > bg)
            fbase = fine_ptr + i * N_FINE_C * plane
            best = _bilinear(fbase, 0, Sw, i00, i01, i10, i11, wx0, wx1, wy0, wy1, fg)
            arg = tl.zeros((BLOCK_C,), dtype=tl.int32)
            for k in tl.static_range(1, N_FINE_C):
                v = _bilinear(fbase, k * plane, Sw, i00, i01, i10, i11, wx0, wx1, wy0, wy1, fg)
                better = v > best  # strict: the first maximum wins, as torch.argmax
                best = tl.where(better, v, best)
                arg = tl.where(better, k, arg)
            paint = fg & (arg > 0)
            label = tl.where(paint, arg, label)
            done = done | paint
        if WRITE_RGB:
            for ch in tl.static_range(0, 3):
                rgb = tl.load(lut_ptr + label * 3 + ch, mask=in_canvas, other=0)
                tl.store(out_ptr + offs * 3 + ch, rgb, mask=in_canvas)
        else:
            tl.store(out_ptr + offs, label.to(tl.uint8), mask=in_canvas)

    return triton, render_kernel


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
    triton, kernel = _kernels()
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
    grid = (triton.cdiv(height * width, BLOCK),)
    kernel[grid](ints, scales, coarse, fine, lut, out, n, height, width, s_h, s_w,
                 N_FINE_C=fine.shape[1], WRITE_RGB=write_rgb, BLOCK_C=BLOCK)
    return out


def render_labels_triton(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                         height: int, width: int) -> torch.Tensor:
    """uint8 [height, width] part labels on the logits' device (CUDA, or CPU under TRITON_INTERPRET=1)."""
    return _launch(boxes_xyxy, coarse_segm, fine_segm, height, width, None)


def render_hint_triton(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                       height: int, width: int, lut_rgb: torch.Tensor) -> torch.Tensor:
    """uint8 [height, width, 3] hint: labels coloured through ``lut_rgb`` [25, 3] inside the kernel."""
    return _launch(boxes_xyxy, coarse_segm, fine_segm, height, width, lut_rgb)


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True
