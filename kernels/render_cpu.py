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
   logits also use the reference's ``F.interpolate``; those are small or rare. So do instances whose
   logits are noise-like (more than 30% of cells undecided), where per-pixel work would cost more.

Torch ops only; inputs are never modified. Logits are computed in float32 (float16 inputs are
converted with ``.float()`` exactly as the reference does).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .reference import box_xywh_int, instance_labels_reference

_REL_MARGIN = 1e-5  # >> the few float32 ulps of error of a 4-tap bilinear value
_ABS_MARGIN = 1e-30  # covers underflow to subnormals/zero in products
_MAX_MIXED_FRACTION = 0.3  # above: the instance uses the reference's F.interpolate (noise-like logits)
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


def _bilerp_table(table: torch.Tensor, wx0, wx1, wy0, wy1) -> torch.Tensor:
    """Plain float32 bilinear of per-pixel corner values ``table[..., 4]`` (corner order 00, 01, 10, 11)."""
    t00, t01, t10, t11 = table.unbind(-1)
    return (t00 * wx0 + t01 * wx1) * wy0 + (t10 * wx0 + t11 * wx1) * wy1


def _margin(t: torch.Tensor) -> float:
    """Decision margin for one instance's logits: inf/NaN when any logit is not finite."""
    lo, hi = torch.aminmax(t)
    lo, hi = float(lo), float(hi)
    if math.isnan(lo) or math.isnan(hi):  # aminmax propagates NaN
        return math.nan
    return _REL_MARGIN * max(abs(lo), abs(hi)) + _ABS_MARGIN


class _InstanceCells:
    """Per-cell decisions for one instance's float32 logits ([2, Sh, Sw] and [C, Sh, Sw]).

    Codes: 0..24 decided label, ``_MIXED`` undecided. For undecided cells, per-cell tables of corner
    values let each pixel compute an approximate bilinear value with one row gather; a pixel is
    decided from that approximation unless it is within the margin of a tie, where it is computed
    exactly.
    """

    _BUCKETS = (2, 4)  # candidate-count buckets (last bucket: all channels that may win)

    def __init__(self, coarse: torch.Tensor, fine: torch.Tensor, c_margin: float, f_margin: float):
        self.coarse, self.fine = coarse, fine
        self.c_margin, self.f_margin = c_margin, f_margin
        Sh, Sw = self.Sh, self.Sw = coarse.shape[-2:]
        C = self.n_fine = fine.shape[0]
        d = coarse[1] - coarse[0]  # fg iff > 0
        dc = _corner_views(d)
        self.fg_safe = (torch.minimum(torch.minimum(dc[0], dc[1]), torch.minimum(dc[2], dc[3])) > c_margin)
        bg_safe = torch.maximum(torch.maximum(dc[0], dc[1]), torch.maximum(dc[2], dc[3])) < -c_margin
        self.d_table = torch.stack(dc, -1).reshape(Sh * Sw, 4)
        if C >= 2:
            top, best = fine.max(0)
            second = fine.scatter(0, best[None], -_INF).amax(0)
            gap = top - second
        else:
            best = torch.zeros((Sh, Sw), dtype=torch.long)
            gap = torch.full((Sh, Sw), _INF)
        self.fine_safe = (_min4(best) == _max4(best)) & (_min4(gap) > f_margin)
        code = torch.full((Sh, Sw), _MIXED, dtype=torch.uint8)
        decided = self.fg_safe & self.fine_safe
        code[decided] = best[decided].to(torch.uint8)
        code[bg_safe] = 0
        self.code = code
        self.best_flat = best.reshape(-1).to(torch.uint8)
        self.fg_flat = self.fg_safe.reshape(-1)
        self.fine_safe_flat = self.fine_safe.reshape(-1)
        # candidate tables for cells whose fine argmax is undecided (and that are not surely bg)
        self.group = torch.full((Sh * Sw,), -1, dtype=torch.long)
        self.row = torch.zeros((Sh * Sw,), dtype=torch.long)
        self.tables: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        # Per-pixel work pays off only when most cells are decided (smooth, blob-like logits).
        self.too_mixed = float((code == _MIXED).float().mean()) > _MAX_MIXED_FRACTION
        if self.too_mixed:
            return
        ids = (~self.fine_safe & ~bg_safe).reshape(-1).nonzero(as_tuple=True)[0]
        if ids.numel() == 0:
            return
        r = torch.div(ids, Sw, rounding_mode="floor")
        c = ids - r * Sw
        r1 = torch.clamp(r + 1, max=Sh - 1)
        c1 = torch.clamp(c + 1, max=Sw - 1)
        f = fine.reshape(C, Sh * Sw)
        corners = torch.stack([f.index_select(1, r * Sw + c), f.index_select(1, r * Sw + c1),
                               f.index_select(1, r1 * Sw + c), f.index_select(1, r1 * Sw + c1)], -1)  # [C, M, 4]
        lo = corners.amin(-1)
        hi = corners.amax(-1)
        possible = hi >= (lo.amax(0) - f_margin)[None]  # [C, M]: channels that may win somewhere in the cell
        count = possible.sum(0)
        hi_m = torch.where(possible, hi, -_INF).t()  # [M, C]
        corners = corners.permute(1, 0, 2)  # [M, C, 4]
        lower = 0
        for g, upper in enumerate(self._BUCKETS + (C,)):
            in_group = ((count > lower) & (count <= upper)).nonzero(as_tuple=True)[0]
            lower = upper
            if in_group.numel() == 0:
                continue
            k = min(int(count[in_group].max()), C)
            top = hi_m.index_select(0, in_group).topk(k, dim=1)
            cand, valid = top.indices, top.values > -_INF  # every possible channel is in the top k
            table = corners.index_select(0, in_group).gather(1, cand[..., None].expand(-1, -1, 4))
            self.group[ids[in_group]] = len(self.tables)
            self.row[ids[in_group]] = torch.arange(in_group.numel())
            self.tables.append((cand, valid, table))


def _mixed_pixel_labels(cells: _InstanceCells, R0, R1, C0, C1, WY0, WY1, WX0, WX1):
    """Exact labels (uint8 [P]) of pixels whose cell is undecided."""
    coarse, fine = cells.coarse, cells.fine
    Sw = cells.Sw
    plane = cells.Sh * Sw
    cell = R0 * Sw + C0
    pts = (cell, R0 * Sw + C1, R1 * Sw + C0, R1 * Sw + C1)
    wts = (WX0, WX1, WY0, WY1)
    result = torch.zeros(cell.shape, dtype=torch.uint8)
    # coarse: fg where decided by the cell, else per pixel (approximate, then exact on near-ties)
    fg = cells.fg_flat.index_select(0, cell)
    cmix = ~fg  # bg-safe cells never reach here (their code is 0)
    sel = cmix.nonzero(as_tuple=True)[0]
    if sel.numel():
        w_sel = [w.index_select(0, sel) for w in wts]
        d = _bilerp_table(cells.d_table.index_select(0, cell.index_select(0, sel)), *w_sel)
        fg_sel = d > 0
        close = (d.abs() <= cells.c_margin).nonzero(as_tuple=True)[0]
        if close.numel():
            ci = sel.index_select(0, close)
            cargs = tuple(a.index_select(0, ci) for a in pts + wts)
            cflat = coarse.reshape(-1)
            v0 = _bilinear_points(cflat, *cargs)
            v1 = _bilinear_points(cflat, *(p + plane for p in cargs[:4]), *cargs[4:])
            fg_sel[close] = v1 > v0
        fg[sel] = fg_sel
    # fine: decided cells give their best channel, others per pixel over the cell's candidates
    take = fg & cells.fine_safe_flat.index_select(0, cell)
    result[take] = cells.best_flat.index_select(0, cell[take])
    fmix = fg & ~take
    if not bool(fmix.any()):
        return result
    grp = torch.where(fmix, cells.group.index_select(0, cell), -1)
    fflat = fine.reshape(-1)
    for g, (cand_t, valid_t, table_t) in enumerate(cells.tables):
        sel = (grp == g).nonzero(as_tuple=True)[0]
        if sel.numel() == 0:
            continue
        rows = cells.row.index_select(0, cell.index_select(0, sel))
        cand, valid = cand_t.index_select(0, rows), valid_t.index_select(0, rows)
        w_sel = [w.index_select(0, sel)[:, None] for w in wts]
        vals = torch.where(valid, _bilerp_table(table_t.index_select(0, rows), *w_sel), -_INF)
        top, arg = vals.max(1)
        second = vals.scatter(1, arg[:, None], -_INF).amax(1)
        winner = cand.gather(1, arg[:, None])[:, 0]
        close = ((top - second) <= cells.f_margin).nonzero(as_tuple=True)[0]
        if close.numel():
            ci = sel.index_select(0, close)
            c_cand, c_valid = cand.index_select(0, close), valid.index_select(0, close)
            off = c_cand * plane
            cargs = tuple(p.index_select(0, ci)[:, None] + off for p in pts)
            cargs += tuple(w.index_select(0, ci)[:, None] for w in wts)
            exact = torch.where(c_valid, _bilinear_points(fflat, *cargs), -_INF)
            vmax = exact.amax(1, keepdim=True)
            # argmax with ties to the lowest channel index, like torch.argmax over all channels
            winner[close] = torch.where((exact == vmax) & c_valid, c_cand, 1 << 30).amin(1)
        result[sel] = winner.to(torch.uint8)
    return result


def _paint_instance_fast(sub: torch.Tensor, open_mask, coarse: torch.Tensor, fine: torch.Tensor,
                         h: int, w: int, oy: int, ox: int, c_margin: float, f_margin: float) -> None:
    """Paint one instance into ``sub`` (a canvas view of the clipped box, offset oy, ox in the box)."""
    hh, ww = sub.shape
    Sh, Sw = coarse.shape[-2:]
    cells = _InstanceCells(coarse, fine, c_margin, f_margin)
    if cells.too_mixed:
        _paint_instance_reference(sub, open_mask, coarse, fine, h, w, oy, ox)
        return
    r0, r1, wy0, wy1 = _axis_taps(Sh, h, torch.arange(oy, oy + hh))
    c0, c1, wx0, wx1 = _axis_taps(Sw, w, torch.arange(ox, ox + ww))
    labels = cells.code.index_select(0, r0).index_select(1, c0)  # [hh, ww] uint8
    need = labels == _MIXED
    if open_mask is not None:
        need &= open_mask
    flat = need.view(-1).nonzero(as_tuple=True)[0]
    if flat.numel():
        py = torch.div(flat, ww, rounding_mode="floor")
        px = flat - py * ww
        rows = [t.index_select(0, py) for t in (r0, r1)]
        cols = [t.index_select(0, px) for t in (c0, c1)]
        labels.view(-1)[flat] = _mixed_pixel_labels(cells, rows[0], rows[1], cols[0], cols[1],
                                                    wy0.index_select(0, py), wy1.index_select(0, py),
                                                    wx0.index_select(0, px), wx1.index_select(0, px))
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
        use_fast = fast_ok and _uses_generic_kernel(coarse_f, h, w) and _uses_generic_kernel(fine_f, h, w)
        if use_fast:
            c_margin, f_margin = _margin(coarse_f), _margin(fine_f)
            use_fast = math.isfinite(c_margin) and math.isfinite(f_margin)  # NaN/inf: reference path
        if use_fast:
            _paint_instance_fast(sub, open_mask, coarse_f, fine_f, h, w, cy0 - y, cx0 - x, c_margin, f_margin)
        else:
            _paint_instance_reference(sub, open_mask, coarse, fine, h, w, cy0 - y, cx0 - x)
        painted_any = True
    return canvas
