"""The Triton kernel of :mod:`kernels.render_triton` (see there for what it computes).

Imported only when the triton backend runs, so that densevid imports without triton. Under
``TRITON_INTERPRET=1`` (set before this module is first imported) the kernel runs on CPU tensors.
"""

import triton
import triton.language as tl


@triton.jit
def _bilinear(base, plane_off, i00, i01, i10, i11, wx0, wx1, wy0, wy1, mask):
    """One channel's bilinear values: PyTorch's CPU arithmetic (width inner, fused multiply-adds)."""
    x00 = tl.load(base + plane_off + i00, mask=mask, other=0.0)
    x01 = tl.load(base + plane_off + i01, mask=mask, other=0.0)
    x10 = tl.load(base + plane_off + i10, mask=mask, other=0.0)
    x11 = tl.load(base + plane_off + i11, mask=mask, other=0.0)
    row0 = tl.fma(x00, wx0, x01 * wx1)
    row1 = tl.fma(x10, wx0, x11 * wx1)
    return tl.fma(row0, wy0, row1 * wy1)


@triton.jit
def _taps(dst, scale, size):
    """PyTorch's (align_corners=False) source taps and weights of output indices ``dst``."""
    src = tl.maximum(tl.fma(scale, dst.to(tl.float32) + 0.5, -0.5), 0.0)
    i0 = tl.minimum(tl.floor(src).to(tl.int32), size - 1)
    l1 = tl.minimum(tl.maximum(src - i0.to(tl.float32), 0.0), 1.0)
    l0 = 1.0 - l1
    i1 = tl.where(i0 < size - 1, i0 + 1, i0)
    return i0, i1, l0, l1


# The canvas and grid sizes change from frame to frame: one compiled variant serves all of them (Triton
# would otherwise compile again for sizes divisible by 16 and the others).
@triton.jit(do_not_specialize=["N", "H", "W", "Sh", "Sw"])
def render_kernel(boxes_ptr, scales_ptr, coarse_ptr, fine_ptr, lut_ptr, out_ptr,
                  N, H, W, Sh, Sw,
                  N_FINE: tl.constexpr, WRITE_RGB: tl.constexpr, BLOCK: tl.constexpr):
    """Labels (or, with WRITE_RGB, their lut colours) of BLOCK pixels of the flattened H x W canvas."""
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    in_canvas = offs < H * W
    py = offs // W
    px = offs % W
    label = tl.zeros((BLOCK,), dtype=tl.int32)
    done = offs < 0  # all False
    plane = Sh * Sw
    for t in range(0, N):
        i = N - 1 - t  # last instance first: the first one that paints a pixel wins it
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
        bg = _bilinear(cbase, 0, i00, i01, i10, i11, wx0, wx1, wy0, wy1, inside)
        fgv = _bilinear(cbase, plane, i00, i01, i10, i11, wx0, wx1, wy0, wy1, inside)
        fg = inside & (fgv > bg)
        fbase = fine_ptr + i * N_FINE * plane
        best = _bilinear(fbase, 0, i00, i01, i10, i11, wx0, wx1, wy0, wy1, fg)
        arg = tl.zeros((BLOCK,), dtype=tl.int32)
        for k in tl.static_range(1, N_FINE):
            v = _bilinear(fbase, k * plane, i00, i01, i10, i11, wx0, wx1, wy0, wy1, fg)
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
