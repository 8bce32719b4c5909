"""Fast CPU label render, bit-exact with :func:`kernels.reference.render_labels_reference`.

How it stays exact while doing far less work than the reference:

1. **Reverse order.** Instances are processed from last to first. A pixel painted (label > 0) by a
   later instance is final, so an earlier instance is only evaluated where the canvas is still 0.
2. **Cell shortcut.** A bilinear output pixel is a convex combination of the 4 source samples of
   its cell (rows r0, r1; cols c0, c1). If at all 4 corners channel k beats every other channel by
   a margin far above float32 rounding (``_REL_MARGIN`` x max|logit| + ``_ABS_MARGIN``), then
   argmax is k at every pixel of the cell, whatever the weights. The same holds for the coarse
   fg/bg decision (fg iff coarse[1] > coarse[0]; a tie is background). Cells are classified on the
   small S x S grid and looked up per pixel with two ``index_select``.
3. **Exact mixed pixels.** Only pixels in undecided cells are computed, and only for the channels
   that can still win in their cell (a channel whose max over the 4 corners is below the best
   channel's min, minus the margin, cannot win). Their values reproduce PyTorch's CPU kernel bit
   for bit. Measured on torch 2.14 (x86-64, AVX2/AVX512 dispatch), the generic
   ``upsample_bilinear2d`` kernel (used when out_h + out_w > 128 and the input is not
   channels-last) computes, in float32 with fused multiply-adds::

       src    = fma(scale, dst + 0.5, -0.5)  (clamped at 0), scale = float32(in) / float32(out)
       row_r  = fma(x[r, c0], wx0, x[r, c1] * wx1)
       out    = fma(row_r0, wy0, row_r1 * wy1)           (height outer, width inner)

   with lambda1 = src - floor(src), lambda0 = 1 - lambda1. The plain unfused formula does NOT
   match (about 1 value in 5 differs in the last bit). ``fma`` is emulated exactly: the product is
   exact in float64, the float64 sum is rounded to float32, and the rare double-rounding case (the
   float64 sum lands exactly on a float32 midpoint while the exact sum does not) is corrected with a
   TwoSum error term.

   Because this matches a build detail of PyTorch, it is **verified at first use** against
   ``F.interpolate`` on adversarial probes (mixed magnitudes, up- and downscales). If the probe
   fails (another torch build / CPU), every instance falls back to the reference's full
   ``F.interpolate`` (still with the reverse-order skipping): slower, still exact.

   Boxes where PyTorch picks its other (channels-last, vectorised) kernel -- out_h + out_w <= 128,
   or an input that is channels-last contiguous such as S == 1 -- and instances with non-finite
   logits also use the reference's ``F.interpolate``; those are small or rare.

Torch ops only; inputs are never modified. Logits are computed in float32 (float16 inputs are
converted with ``.float()`` exactly as the reference does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import box_xywh_int, instance_labels_reference

_REL_MARGIN = 1e-5  # >> the few float32 ulps of error of a 4-tap bilinear value
_ABS_MARGIN = 1e-30  # covers underflow to subnormals/zero in products
_MIXED = 255  # cell/pixel code: needs exact evaluation
_INF = float("inf")

# --------------------------------------------------------------------------------------------
# exact emulation of PyTorch's CPU bilinear kernel


def _fma32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 fma(a, b, c) for float32 tensors (broadcasting)."""
    p = a.double() * b.double()  # exact: 24 + 24 bits < 53
    cd = c.double()
    s = p + cd
    f = s.float()
    # Double rounding can only go wrong if s sits exactly on a float32 midpoint (while p + c is not
    # exactly s). For float32-normal magnitudes that means the 29 low mantissa bits of the float64
    # are 1000...0; float32-subnormal magnitudes are checked the slow way.
    low = s.view(torch.int64) & 0x1FFFFFFF
    suspect = (low == 0x10000000) | ((s != 0) & (s.abs() < 2.0 ** -125))
    if bool(suspect.any()):
        fd = f.double()
        g = torch.nextafter(f, torch.where(s > fd, _INF, -_INF).float())
        on_mid = (s != fd) & (s == (fd + g.double()) * 0.5)
        bb = s - p
        err = (p - (s - bb)) + (cd - bb)  # TwoSum: s + err == p + c exactly
        fix = on_mid & (err != 0)
        if bool(fix.any()):
            f = torch.where(fix, torch.where(err > 0, torch.maximum(f, g), torch.minimum(f, g)), f)
    return f


def _axis_taps(in_size: int, out_size: int, dst: torch.Tensor):
    """PyTorch's (align_corners=False) source taps and weights for output indices ``dst``.

    Returns (i0, i1, w0, w1): int64 indices and float32 weights, same shape as ``dst``.
    """
    if in_size == out_size:  # PyTorch copies: lambda (1, 0)
        return dst, dst, torch.ones(dst.shape), torch.zeros(dst.shape)
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    # fma(scale, d + 0.5, -0.5): exact in float64 for any realistic size (<= 51 bits), one rounding.
    src = (scale.double() * (dst.double() + 0.5) - 0.5).float().clamp_min(0.0)
    i0 = src.floor().long().clamp_max(in_size - 1)
    w1 = (src - i0.float()).clamp(0.0, 1.0)
    w0 = 1.0 - w1
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, w0, w1


def _bilinear_points(values: torch.Tensor, p00, p01, p10, p11, wx0, wx1, wy0, wy1) -> torch.Tensor:
    """Exact bilinear values: ``values`` is a flat float32 tensor, p** flat indices (same shape)."""
    x00, x01 = values[p00], values[p01]
    x10, x11 = values[p10], values[p11]
    row0 = _fma32(x00, wx0, x01 * wx1)
    row1 = _fma32(x10, wx0, x11 * wx1)
    return _fma32(row0, wy0, row1 * wy1)


def _bilinear_approx(values: torch.Tensor, p00, p01, p10, p11, wx0, wx1, wy0, wy1) -> torch.Tensor:
    """Plain float32 bilinear values: within a few ulps of max|x| of the exact ones."""
    row0 = values[p00] * wx0 + values[p01] * wx1
    row1 = values[p10] * wx0 + values[p11] * wx1
    return row0 * wy0 + row1 * wy1


def _interpolate_reference(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]


def _emulated_interpolate(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Full emulation (for the self-check): float32 [C, h, w]."""
    C, Sh, Sw = x.shape
    r0, r1, wy0, wy1 = _axis_taps(Sh, h, torch.arange(h))
    c0, c1, wx0, wx1 = _axis_taps(Sw, w, torch.arange(w))
    flat = x.reshape(-1)
    ch = (torch.arange(C) * (Sh * Sw))[:, None, None]
    def pid(r, c):
        return ch + (r * Sw)[None, :, None] + c[None, None, :]
    shape = (C, h, w)
    return _bilinear_points(flat, pid(r0, c0), pid(r0, c1), pid(r1, c0), pid(r1, c1),
                            wx0[None, None, :].expand(shape), wx1[None, None, :].expand(shape),
                            wy0[None, :, None].expand(shape), wy1[None, :, None].expand(shape))


_EMULATION_OK: bool | None = None


def emulation_matches_torch() -> bool:
    """Whether the exact-emulation model matches this torch build's F.interpolate (cached probe)."""
    global _EMULATION_OK
    if _EMULATION_OK is None:
        gen = torch.Generator().manual_seed(1234)
        ok = True
        for C, S, h, w in ((25, 112, 173, 61), (2, 112, 301, 97), (3, 13, 90, 211), (2, 37, 129, 5),
                           (4, 112, 112, 40)):
            x = torch.randn(C, S, S, generator=gen) * torch.exp(torch.randn(C, S, S, generator=gen) * 8)
            if not torch.equal(_emulated_interpolate(x, h, w), _interpolate_reference(x, h, w)):
                ok = False
                break
        _EMULATION_OK = ok
    return _EMULATION_OK


# --------------------------------------------------------------------------------------------
# cell classification on the S x S grid


def _corner_views(t: torch.Tensor):
    """The 4 corner values of every cell of a [..., Sh, Sw] grid: cell (r, c) has corners
    (r, c), (r, c1), (r1, c), (r1, c1) with r1 = min(r + 1, Sh - 1), c1 = min(c + 1, Sw - 1)."""
    down = torch.cat([t[..., 1:, :], t[..., -1:, :]], dim=-2)
    right = torch.cat([t[..., :, 1:], t[..., :, -1:]], dim=-1)
    diag = torch.cat([down[..., :, 1:], down[..., :, -1:]], dim=-1)
    return t, right, down, diag


def _min4(t):
    a, b, c, d = _corner_views(t)
    return torch.minimum(torch.minimum(a, b), torch.minimum(c, d))


def _max4(t):
    a, b, c, d = _corner_views(t)
    return torch.maximum(torch.maximum(a, b), torch.maximum(c, d))


class _InstanceCells:
    """Per-cell decisions for one instance's logits (float32 [2, Sh, Sw] and [25, Sh, Sw])."""

    def __init__(self, coarse: torch.Tensor, fine: torch.Tensor):
        self.coarse, self.fine = coarse, fine
        self.Sh, self.Sw = coarse.shape[-2:]
        self.n_fine = fine.shape[0]
        self.c_margin = c_margin = _REL_MARGIN * float(coarse.abs().max()) + _ABS_MARGIN
        self.f_margin = _REL_MARGIN * float(fine.abs().max()) + _ABS_MARGIN
        d = coarse[1] - coarse[0]  # fg iff > 0
        self.fg_safe = _min4(d) > c_margin
        bg_safe = _max4(d) < -c_margin
        if self.n_fine >= 2:
            top = fine.topk(2, dim=0)
            best, gap = top.indices[0], top.values[0] - top.values[1]
        else:
            best = torch.zeros((self.Sh, self.Sw), dtype=torch.long)
            gap = torch.full((self.Sh, self.Sw), _INF)
        same = (_min4(best) == _max4(best))
        self.fine_safe = same & (_min4(gap) > self.f_margin)
        code = torch.full((self.Sh, self.Sw), _MIXED, dtype=torch.uint8)
        code[self.fg_safe & self.fine_safe] = best[self.fg_safe & self.fine_safe].to(torch.uint8)
        code[bg_safe] = 0
        self.code = code
        self.best = best

    def candidates(self, cell_ids: torch.Tensor):
        """For fine-undecided cells (flat ids, unique): [M, K] channel candidates and a validity mask."""
        Sh, Sw, C = self.Sh, self.Sw, self.n_fine
        r = torch.div(cell_ids, Sw, rounding_mode="floor")
        c = cell_ids - r * Sw
        r1 = torch.clamp(r + 1, max=Sh - 1)
        c1 = torch.clamp(c + 1, max=Sw - 1)
        f = self.fine.reshape(C, Sh * Sw)
        corners = torch.stack([f[:, r * Sw + c], f[:, r * Sw + c1], f[:, r1 * Sw + c], f[:, r1 * Sw + c1]])  # [4, C, M]
        lo = corners.amin(0)  # [C, M]
        hi = corners.amax(0)
        floor_best = lo.amax(0)  # [M]
        possible = hi >= (floor_best - self.f_margin)[None]  # [C, M]
        k = int(possible.sum(0).max())
        # top-k by hi contains every possible channel (all with hi >= threshold); extras are masked.
        hi_m = torch.where(possible, hi, -_INF).t()  # [M, C]
        top = hi_m.topk(k, dim=1)
        return top.indices, top.values > -_INF


# --------------------------------------------------------------------------------------------


def _mixed_pixel_labels(cells: _InstanceCells, coarse, fine, R0, R1, C0, C1, WY0, WY1, WX0, WX1):
    """Exact labels (uint8 [P]) of pixels whose cell is undecided."""
    Sh, Sw = cells.Sh, cells.Sw
    plane = Sh * Sw
    cell = R0 * Sw + C0
    pts = (cell, R0 * Sw + C1, R1 * Sw + C0, R1 * Sw + C1)
    wts = (WX0, WX1, WY0, WY1)
    result = torch.zeros(cell.shape, dtype=torch.uint8)
    # coarse: fg where decided by the cell, else per pixel (approximate, then exact on near-ties)
    fg = cells.fg_safe.reshape(-1)[cell]
    cmix = ~fg  # bg-safe cells never reach here (their code is 0)
    if bool(cmix.any()):
        sel = cmix.nonzero(as_tuple=True)[0]
        cflat = coarse.reshape(-1)
        args = tuple(p[sel] for p in pts + wts)
        d = (_bilinear_approx(cflat, *(p + plane for p in args[:4]), *args[4:])
             - _bilinear_approx(cflat, *args))
        fg_sel = d > 0
        close = d.abs() <= cells.c_margin
        if bool(close.any()):
            ci = close.nonzero(as_tuple=True)[0]
            cargs = tuple(a[ci] for a in args)
            v0 = _bilinear_points(cflat, *cargs)
            v1 = _bilinear_points(cflat, *(p + plane for p in cargs[:4]), *cargs[4:])
            fg_sel[ci] = v1 > v0
        fg[sel] = fg_sel
    # fine: decided cells give their best channel, others per pixel over the cell's candidates
    fsafe = cells.fine_safe.reshape(-1)[cell]
    take = fg & fsafe
    result[take] = cells.best.reshape(-1)[cell[take]].to(torch.uint8)
    fmix = fg & ~fsafe
    if bool(fmix.any()):
        sel = fmix.nonzero(as_tuple=True)[0]
        ucells, inverse = torch.unique(cell[sel], return_inverse=True)
        cand, valid = cells.candidates(ucells)  # [M, K]
        cand, valid = cand[inverse], valid[inverse]  # [P, K]
        off = cand * plane
        args = tuple(p[sel][:, None] + off for p in pts) + tuple(w[sel][:, None] for w in wts)
        fflat = fine.reshape(-1)
        vals = torch.where(valid, _bilinear_approx(fflat, *args), -_INF)
        top = vals.topk(2, dim=1) if vals.shape[1] >= 2 else None
        if top is None:
            winner = cand[:, 0]
        else:
            winner = cand.gather(1, top.indices[:, :1])[:, 0]
            close = (top.values[:, 0] - top.values[:, 1]) <= cells.f_margin
            if bool(close.any()):
                ci = close.nonzero(as_tuple=True)[0]
                cargs = tuple(a[ci] for a in args)
                exact = torch.where(valid[ci], _bilinear_points(fflat, *cargs), -_INF)
                vmax = exact.amax(1, keepdim=True)
                # argmax with ties to the lowest channel index, like torch.argmax over all channels
                winner[ci] = torch.where((exact == vmax) & valid[ci], cand[ci], 1 << 30).amin(1)
        result[sel] = winner.to(torch.uint8)
    return result


def _paint_instance_fast(sub: torch.Tensor, open_mask, coarse: torch.Tensor, fine: torch.Tensor,
                         h: int, w: int, oy: int, ox: int) -> None:
    """Paint one instance into ``sub`` (a canvas view of the clipped box, offset oy, ox in the box)."""
    hh, ww = sub.shape
    Sh, Sw = coarse.shape[-2:]
    cells = _InstanceCells(coarse, fine)
    r0, r1, wy0, wy1 = _axis_taps(Sh, h, torch.arange(oy, oy + hh))
    c0, c1, wx0, wx1 = _axis_taps(Sw, w, torch.arange(ox, ox + ww))
    labels = cells.code.index_select(0, r0).index_select(1, c0)  # [hh, ww] uint8
    need = labels == _MIXED
    if open_mask is not None:
        need &= open_mask
    py, px = need.nonzero(as_tuple=True)
    if py.numel():
        labels.view(-1)[py * ww + px] = _mixed_pixel_labels(cells, coarse, fine, r0[py], r1[py], c0[px],
                                                            c1[px], wy0[py], wy1[py], wx0[px], wx1[px])
    # (pixels of mixed cells that are not open keep code 255; they are masked below)
    if open_mask is None:
        sub.copy_(labels)
    else:
        sub.copy_(torch.where(open_mask, labels, sub))


def _paint_instance_reference(sub: torch.Tensor, open_mask, coarse, fine, h, w, oy, ox) -> None:
    labels = instance_labels_reference(coarse, fine, h, w)[oy:oy + sub.shape[0], ox:ox + sub.shape[1]]
    if open_mask is None:
        sub.copy_(labels)
    else:
        sub.copy_(torch.where(open_mask, labels, sub))


def _uses_generic_kernel(x: torch.Tensor, h: int, w: int) -> bool:
    """Whether PyTorch's CPU upsample_bilinear2d runs its generic (emulated) kernel for x[None]."""
    xb = x[None]
    vectorized = (xb.is_contiguous(memory_format=torch.channels_last) and xb.shape[1] > 3) or (h + w <= 128)
    return not vectorized


def render_labels_cpu(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                      height: int, width: int) -> torch.Tensor:
    """uint8 [height, width] part labels, bit-exact with ``render_labels_reference`` (CPU tensor)."""
    canvas = torch.zeros((height, width), dtype=torch.uint8)
    n = boxes_xyxy.shape[0]
    if n == 0:
        return canvas
    boxes = boxes_xyxy.detach().cpu()
    fast_ok = emulation_matches_torch()
    painted_any = False
    for i in range(n - 1, -1, -1):
        x, y, w, h = box_xywh_int(boxes[i])
        if w <= 0 or h <= 0:
            continue
        cx0, cy0 = max(x, 0), max(y, 0)
        cx1, cy1 = min(x + w, width), min(y + h, height)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        sub = canvas[cy0:cy1, cx0:cx1]
        open_mask = None
        if painted_any:
            open_mask = sub == 0
            if not bool(open_mask.any()):
                continue
        coarse = coarse_segm[i].detach().cpu()
        fine = fine_segm[i].detach().cpu()
        coarse_f, fine_f = coarse.float(), fine.float()
        use_fast = (fast_ok and _uses_generic_kernel(coarse_f, h, w) and _uses_generic_kernel(fine_f, h, w)
                    and bool(torch.isfinite(coarse_f).all()) and bool(torch.isfinite(fine_f).all()))
        paint = _paint_instance_fast if use_fast else _paint_instance_reference
        paint(sub, open_mask, coarse_f if use_fast else coarse, fine_f if use_fast else fine,
              h, w, cy0 - y, cx0 - x)
        painted_any = True
    return canvas
