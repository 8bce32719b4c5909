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
# output axes: the source cell of every output row / column


class _Axes:
    """:func:`_axis_taps` of several clipped output axes at once (a few tensor ops for all of them).

    ``specs``: (in_size, out_size, offset, length) per axis: output indices offset .. offset+length-1
    of an out_size-long resize of in_size samples. The elements of all axes are concatenated (axis a
    is ``begin[a]:begin[a + 1]``). Since i0 never decreases along an axis, the outputs that fall in
    source cell i0 form one run: ``run_start[a * stride + i0]``, ``run_count[...]`` (0 if none).
    """

    def __init__(self, specs):
        lens = [s[3] for s in specs]
        self.begin = [0]
        for n in lens:
            self.begin.append(self.begin[-1] + n)
        total = self.begin[-1]
        ins = torch.tensor([s[0] for s in specs])
        outs = torch.tensor([s[1] for s in specs])
        axis = torch.repeat_interleave(torch.arange(len(specs)), torch.tensor(lens), output_size=total)
        shift = torch.tensor([s[2] - b for s, b in zip(specs, self.begin)])
        dst = torch.arange(total) + shift[axis]
        scale = ins.float() / outs.float()  # float32, as PyTorch
        src = (scale.double()[axis] * (dst.double() + 0.5) - 0.5).float().clamp_min(0.0)
        last = (ins - 1)[axis]
        i0 = torch.minimum(src.floor().long(), last)
        w1 = (src - i0.float()).clamp(0.0, 1.0)
        i1 = torch.where(i0 < last, i0 + 1, i0)
        same = (ins == outs)[axis]  # PyTorch copies: taps (dst, dst), weights (1, 0)
        self.i0 = torch.where(same, dst, i0)
        self.i1 = torch.where(same, dst, i1)
        self.w1 = torch.where(same, 0.0, w1)
        self.w0 = 1.0 - self.w1
        self.stride = int(ins.max())
        counts = torch.bincount(axis * self.stride + self.i0, minlength=len(specs) * self.stride)
        self.run_count = counts
        self.run_start = counts.cumsum(0) - counts
        # block size per axis kind (rows: even axes, columns: odd): the longest run of an interior
        # cell (the border cells' runs are split in chunks of that size)
        runs = counts.view(len(specs) // 2, 2, self.stride)
        interior = runs[:, :, 1:-1] if self.stride > 2 else runs
        self.k_rows, self.k_cols = (torch.maximum(interior.amax((0, 2)), (runs > 0).any(2).amax(0).long())
                                    .clamp_min(1).tolist())

    def part(self, a: int, t: torch.Tensor) -> torch.Tensor:
        return t[self.begin[a]:self.begin[a + 1]]


# --------------------------------------------------------------------------------------------
# cell classification on the S x S grid, all fast instances at once


def _corner_min_max(t: torch.Tensor):
    """Min and max over the 4 corners of every cell of a [..., Sh, Sw] grid: cell (r, c) has corners
    (r, c), (r, c1), (r1, c), (r1, c1) with r1 = min(r + 1, Sh - 1), c1 = min(c + 1, Sw - 1)."""
    down = torch.cat([t[..., 1:, :], t[..., -1:, :]], dim=-2)
    lo, hi = torch.minimum(t, down), torch.maximum(t, down)
    lo = torch.minimum(lo, torch.cat([lo[..., :, 1:], lo[..., :, -1:]], dim=-1))
    hi = torch.maximum(hi, torch.cat([hi[..., :, 1:], hi[..., :, -1:]], dim=-1))
    return lo, hi


def _bilerp(t00, t01, t10, t11, wx0, wx1, wy0, wy1):
    """Plain float32 bilinear blocks: corners [...] per cell, weights wx [..., Kc], wy [..., Kr]
    -> [..., Kr, Kc] (within a few ulps of max|corner| of PyTorch's values)."""
    top = t00[..., None] * wx0 + t01[..., None] * wx1
    bottom = t10[..., None] * wx0 + t11[..., None] * wx1
    return top[..., None, :] * wy0[..., :, None] + bottom[..., None, :] * wy1[..., :, None]


_SUM_BASE = 32.0  # > number of channels: count and index sum of near-top channels packed in one float


def _classify(c: torch.Tensor, f: torch.Tensor, c_margin: torch.Tensor, f_margin: torch.Tensor):
    """Cell decisions of all instances at once (c [n, 2, Sh, Sw], f [n, C, Sh, Sw], margins [n]).

    Returns (code uint8, fg_safe, fine_safe, best uint8, d), grids [n, Sh, Sw]; d = fg - bg logit.
    Coarse: a cell is fg-safe (bg-safe) when d > margin (< -margin) at its 4 corners. Fine: at each
    sample the channels within the margin of the top are marked; a cell is fine-safe when every
    corner has exactly one such channel and it is the same one. Marks are counted and their
    indices summed in one matrix product (s = count + 32 * index sum, exact in float32); the
    comparison writes float32 0/1 because bool outputs are several times slower on CPU.
    """
    n, n_fine = f.shape[:2]
    d = c[:, 1] - c[:, 0]
    top = f.amax(1)
    marks = torch.ge(f, (top - f_margin[:, None, None])[:, None], out=torch.empty_like(f))
    weights = 1.0 + _SUM_BASE * torch.arange(n_fine, dtype=torch.float32)
    s = torch.matmul(weights, marks.view(n, n_fine, -1)).view(d.shape)
    lo, hi = _corner_min_max(torch.stack([d, s], 1))
    fg_safe = lo[:, 0] > c_margin[:, None, None]
    bg_safe = hi[:, 0] < -c_margin[:, None, None]
    fine_safe = (lo[:, 1] == hi[:, 1]) & (torch.fmod(s, _SUM_BASE) == 1.0)
    best = torch.div(s, _SUM_BASE, rounding_mode="floor").to(torch.uint8)
    code = torch.where(bg_safe, 0, torch.where(fg_safe & fine_safe, best, _MIXED)).to(torch.uint8)
    return code, fg_safe, fine_safe, best, d, top


def _blocks(cell, inst, r, cc, ax: "_Axes", Sw: int):
    """Output blocks of mixed cells: each cell's run of rows x run of columns, split into chunks of
    at most k_rows x k_cols (the longest interior run; the border cells' runs are ~1.5x longer and
    would otherwise pad every block). Returns per block: cell, inst, r, cc, row_el [B, Kr],
    col_el [B, Kc] (axis elements, clamped), valid [B, Kr, Kc]; or None when no cell owns a pixel."""
    row_key = 2 * inst * ax.stride + r
    col_key = (2 * inst + 1) * ax.stride + cc
    n_rows, n_cols = ax.run_count[row_key], ax.run_count[col_key]
    keep = ((n_rows > 0) & (n_cols > 0)).nonzero(as_tuple=True)[0]
    if keep.numel() == 0:
        return None
    cell, inst, r, cc, row_key, col_key, n_rows, n_cols = (
        t[keep] for t in (cell, inst, r, cc, row_key, col_key, n_rows, n_cols))
    k_rows, k_cols = ax.k_rows, ax.k_cols
    row_chunks = torch.div(n_rows + (k_rows - 1), k_rows, rounding_mode="floor")
    col_chunks = torch.div(n_cols + (k_cols - 1), k_cols, rounding_mode="floor")
    per_cell = row_chunks * col_chunks
    row_start, col_start = ax.run_start[row_key], ax.run_start[col_key]
    if bool((per_cell > 1).any()):
        owner = torch.repeat_interleave(per_cell)
        q = torch.arange(owner.numel()) - (per_cell.cumsum(0) - per_cell)[owner]
        a = torch.div(q, col_chunks[owner], rounding_mode="floor")
        b = q - a * col_chunks[owner]
        cell, inst, r, cc = cell[owner], inst[owner], r[owner], cc[owner]
        row_start = row_start[owner] + a * k_rows
        col_start = col_start[owner] + b * k_cols
        n_rows = torch.clamp_max(n_rows[owner] - a * k_rows, k_rows)
        n_cols = torch.clamp_max(n_cols[owner] - b * k_cols, k_cols)
    jr, jc = torch.arange(k_rows), torch.arange(k_cols)
    last = ax.i0.numel() - 1
    row_el = torch.clamp_max(row_start[:, None] + jr, last)
    col_el = torch.clamp_max(col_start[:, None] + jc, last)
    valid = (jr < n_rows[:, None])[:, :, None] & (jc < n_cols[:, None])[:, None, :]
    return cell, inst, r, cc, row_el, col_el, valid


def _render_fast(places, coarse: torch.Tensor, fine: torch.Tensor) -> dict:
    """Labels of the given instances (dict place -> uint8 [hh, ww], its clipped box).

    Instances with non-finite or noise-like logits are left out (the caller renders them with
    the reference).
    """
    if [p.i for p in places] == list(range(coarse.shape[0])):
        c, f = coarse.contiguous(), fine.contiguous()
    else:
        idx = torch.tensor([p.i for p in places])
        c, f = coarse.index_select(0, idx).contiguous(), fine.index_select(0, idx).contiguous()
    n, n_fine, Sh, Sw = f.shape
    plane = Sh * Sw
    # decision margins per instance (NaN / inf when a logit is not finite: reference path)
    c_abs = torch.maximum(c.view(n, -1).amax(1), -c.view(n, -1).amin(1))
    f_abs = torch.maximum(f.view(n, -1).amax(1), -f.view(n, -1).amin(1))
    c_margin = _REL_MARGIN * c_abs + _ABS_MARGIN
    f_margin = _REL_MARGIN * f_abs + _ABS_MARGIN
    finite = torch.isfinite(c_margin) & torch.isfinite(f_margin)
    code, fg_safe, fine_safe, best, d, _ = _classify(c, f, c_margin, f_margin)
    mixed = code == _MIXED
    use = finite & (mixed.view(n, -1).sum(1) <= _MAX_MIXED_FRACTION * plane)
    use_list = use.tolist()
    if not any(use_list):
        return {}

    # per-instance output axes (rows of instance j: axis 2j, columns: axis 2j + 1)
    specs = []
    for p in places:
        specs.append((Sh, p.h, p.cy0 - p.y, p.cy1 - p.cy0))
        specs.append((Sw, p.w, p.cx0 - p.x, p.cx1 - p.cx0))
    ax = _Axes(specs)

    # decided pixels: cell codes expanded to the box (rows by index_select, columns by a gather
    # with a broadcast index: both far cheaper than a per-pixel gather), into a buffer with one
    # spare element that absorbs the writes of padding slots below
    out, bufs = {}, []
    for j, p in enumerate(places):
        hh, ww = p.cy1 - p.cy0, p.cx1 - p.cx0
        buf = torch.empty(hh * ww + 1, dtype=torch.uint8)
        bufs.append(buf)
        if use_list[j]:
            rows = code[j].index_select(0, ax.part(2 * j, ax.i0))
            torch.gather(rows, 1, ax.part(2 * j + 1, ax.i0).expand(hh, ww), out=buf[:-1].view(hh, ww))
            out[p] = buf[:-1].view(hh, ww)

    # mixed cells, as blocks of output slots
    if not all(use_list):
        mixed &= use[:, None, None]
    cell = mixed.view(-1).nonzero(as_tuple=True)[0]
    inst = torch.div(cell, plane, rounding_mode="floor")
    rc = cell - inst * plane
    r = torch.div(rc, Sw, rounding_mode="floor")
    blocks = _blocks(cell, inst, r, rc - r * Sw, ax, Sw)
    if blocks is None:
        return out
    cell, inst, r, cc, row_el, col_el, valid = blocks
    k_rows, k_cols = ax.k_rows, ax.k_cols
    wy0, wy1 = ax.w0[row_el], ax.w1[row_el]
    wx0, wx1 = ax.w0[col_el], ax.w1[col_el]
    taps = (inst, r, cc, row_el, col_el, wx0, wx1, wy0, wy1)
    r1 = torch.clamp_max(r + 1, Sh - 1)
    c1 = torch.clamp_max(cc + 1, Sw - 1)
    corner = torch.stack([r * Sw + cc, r * Sw + c1, r1 * Sw + cc, r1 * Sw + c1], 1)  # [B, 4] in a plane

    # coarse: fg where the cell is fg-safe, else from the plain bilinear fg - bg difference, exact
    # (emulated PyTorch kernel) where that is within the margin of 0
    fg = fg_safe.view(-1)[cell][:, None, None].expand(-1, k_rows, k_cols).contiguous()
    unsure = (~fg[:, 0, 0]).nonzero(as_tuple=True)[0]
    if unsure.numel():
        u_taps = [t[unsure] for t in taps]
        dc = d.view(-1)[(u_taps[0] * plane)[:, None] + corner[unsure]]  # [U, 4]
        diff = _bilerp(*dc.unbind(1), *u_taps[5:])
        fg[unsure] = diff > 0
        close = valid[unsure] & (diff.abs() <= c_margin[u_taps[0]][:, None, None])
        if bool(close.any()):
            m, a, b, pt = _exact_points(close, u_taps, ax, Sw)
            base = u_taps[0][m] * (2 * plane)
            cflat = c.view(-1)
            v0 = _bilinear_points(cflat, *(base + q for q in pt[:4]), *pt[4:])
            v1 = _bilinear_points(cflat, *(base + plane + q for q in pt[:4]), *pt[4:])
            fg[unsure[m], a, b] = v1 > v0

    # fine: the cell's channel where fine-safe, else the winner among the channels that can still
    # win somewhere in the cell (candidates), exact on near-ties
    labels = best.view(-1)[cell][:, None, None].expand(-1, k_rows, k_cols).contiguous()
    undecided = (~fine_safe.view(-1)[cell]).nonzero(as_tuple=True)[0]
    if undecided.numel():
        u_taps = [t[undecided] for t in taps]
        u_inst = u_taps[0]
        # the 25 channels at the 4 corners: row gathers from a channels-last copy
        f_cl = f.permute(0, 2, 3, 1).reshape(n * plane, n_fine)
        u_corners = f_cl.index_select(0, ((u_inst * plane)[:, None] + corner[undecided]).view(-1))
        u_corners = u_corners.view(-1, 4, n_fine)  # [U, 4, C]
        c_lo, c_hi = u_corners.amin(1), u_corners.amax(1)
        u_margin = f_margin[u_inst]
        possible = c_hi >= (c_lo.amax(1) - u_margin)[:, None]  # [U, C]
        n_cand = possible.sum(1)
        for lo_k, hi_k in ((2, 2), (3, 4), (5, n_fine)):
            g = ((n_cand >= lo_k) & (n_cand <= hi_k)).nonzero(as_tuple=True)[0]
            if g.numel() == 0:
                continue
            g_taps = [t[g] for t in u_taps]
            g_margin = u_margin[g][:, None, None]
            if hi_k == 2:  # two candidates: the sign of their (linear) difference decides
                cand = possible[g].nonzero(as_tuple=True)[1].view(-1, 2)
                cand_ok = torch.ones(cand.shape, dtype=torch.bool)
                tab = u_corners[g].gather(2, cand[:, None, :].expand(-1, 4, -1))  # [G, 4, 2]
                delta = _bilerp(*(tab[:, :, 0] - tab[:, :, 1]).unbind(1), *g_taps[5:])
                win = torch.where(delta > 0, cand[:, :1, None], cand[:, 1:, None])
                near_tie = delta.abs() <= g_margin
            else:
                k = min(hi_k, int(n_cand[g].max()))
                top = torch.where(possible[g], c_hi[g], -_INF).topk(k, dim=1)
                cand, cand_ok = top.indices, top.values > -_INF
                tab = u_corners[g].gather(2, cand[:, None, :].expand(-1, 4, -1))  # [G, 4, k]
                w = [t[:, None, :] for t in g_taps[5:]]
                vals = _bilerp(*tab.unbind(1), *w)  # [G, k, Kr, Kc]
                vals = torch.where(cand_ok[:, :, None, None], vals, -_INF)
                in_reach = vals >= (vals.amax(1) - g_margin)[:, None]
                win = torch.where(in_reach, cand[:, :, None, None], -1).amax(1)
                near_tie = in_reach.sum(1) > 1
            win = win.to(torch.uint8)
            near_tie &= valid[undecided[g]]
            if bool(near_tie.any()):
                m, a, b, pt = _exact_points(near_tie, g_taps, ax, Sw)
                g_cand, g_ok = cand[m], cand_ok[m]
                base = (g_taps[0][m] * n_fine)[:, None] + g_cand
                exact = _bilinear_points(f.view(-1), *(base * plane + q[:, None] for q in pt[:4]),
                                         *(q[:, None] for q in pt[4:]))
                exact = torch.where(g_ok, exact, -_INF)
                vmax = exact.amax(1, keepdim=True)
                # ties go to the lowest channel index, like torch.argmax over all channels
                win[m, a, b] = torch.where((exact == vmax) & g_ok, g_cand, 1 << 30).amin(1).to(torch.uint8)
            labels[undecided[g]] = win
    labels = torch.where(fg, labels, 0).to(torch.uint8)

    # scatter the blocks into each instance's buffer (padding slots go to the spare element)
    sizes = torch.tensor([b.numel() - 1 for b in bufs])
    widths = torch.tensor([p.cx1 - p.cx0 for p in places])
    begins = torch.tensor(ax.begin)
    y = row_el - begins[2 * inst][:, None]
    x = col_el - begins[2 * inst + 1][:, None]
    target = torch.where(valid, y[:, :, None] * widths[inst][:, None, None] + x[:, None, :],
                         sizes[inst][:, None, None])
    bounds = torch.bincount(inst, minlength=n).cumsum(0).tolist()
    lo_m = 0
    for j, hi_m in enumerate(bounds):
        if hi_m > lo_m:
            bufs[j].scatter_(0, target[lo_m:hi_m].view(-1), labels[lo_m:hi_m].view(-1))
        lo_m = hi_m
    return out


def _exact_points(mask: torch.Tensor, taps, ax: _Axes, Sw: int):
    """Block slots where ``mask`` [M, Kr, Kc] is set -> (m, a, b, point args of _bilinear_points
    relative to the instance's plane: p00, p01, p10, p11, wx0, wx1, wy0, wy1)."""
    m, a, b = mask.nonzero(as_tuple=True)
    _, r, cc, row_el, col_el, wx0, wx1, wy0, wy1 = taps
    re, ce = row_el[m, a], col_el[m, b]
    r0, c0 = r[m], cc[m]
    r1, c1 = ax.i1[re], ax.i1[ce]
    # identity axes tap (dst, dst): i0 there equals the cell index, so r0 / c0 stay right
    return m, a, b, (r0 * Sw + c0, r0 * Sw + c1, r1 * Sw + c0, r1 * Sw + c1,
                     wx0[m, b], wx1[m, b], wy0[m, a], wy1[m, a])


def _uses_generic_kernel(x: torch.Tensor, h: int, w: int) -> bool:
    """Whether PyTorch's CPU upsample_bilinear2d runs its generic (emulated) kernel for x[None]."""
    xb = x[None]
    vectorized = (xb.is_contiguous(memory_format=torch.channels_last) and xb.shape[1] > 3) or (h + w <= 128)
    return not vectorized


class _Place:
    """One instance's integer box and its intersection with the canvas."""

    __slots__ = ("i", "x", "y", "w", "h", "cx0", "cy0", "cx1", "cy1")

    def __init__(self, i, x, y, w, h, cx0, cy0, cx1, cy1):
        self.i, self.x, self.y, self.w, self.h = i, x, y, w, h
        self.cx0, self.cy0, self.cx1, self.cy1 = cx0, cy0, cx1, cy1


def render_labels_cpu(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                      height: int, width: int) -> torch.Tensor:
    """uint8 [height, width] part labels, bit-exact with ``render_labels_reference`` (CPU tensor)."""
    canvas = torch.zeros((height, width), dtype=torch.uint8)
    places = []
    boxes = boxes_xyxy.detach().cpu()
    for i in range(boxes.shape[0]):
        x, y, w, h = box_xywh_int(boxes[i])
        if w <= 0 or h <= 0:
            continue
        cx0, cy0 = max(x, 0), max(y, 0)
        cx1, cy1 = min(x + w, width), min(y + h, height)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        places.append(_Place(i, x, y, w, h, cx0, cy0, cx1, cy1))
    if not places:
        return canvas
    coarse = coarse_segm.detach().cpu().float()
    fine = fine_segm.detach().cpu().float()
    fast = []
    if emulation_matches_torch():
        fast = [p for p in places
                if _uses_generic_kernel(coarse[p.i], p.h, p.w) and _uses_generic_kernel(fine[p.i], p.h, p.w)]
    rendered = _render_fast(fast, coarse, fine) if fast else {}
    painted = []  # canvas rectangles written so far
    for p in places:  # in order: later instances overwrite where their label > 0
        labels = rendered.get(p)
        if labels is None:
            labels = instance_labels_reference(coarse[p.i], fine[p.i], p.h, p.w)[
                p.cy0 - p.y:p.cy1 - p.y, p.cx0 - p.x:p.cx1 - p.x]
        for qx0, qy0, qx1, qy1 in painted:  # where this one is 0, keep what is below
            ix0, iy0, ix1, iy1 = max(qx0, p.cx0), max(qy0, p.cy0), min(qx1, p.cx1), min(qy1, p.cy1)
            if ix0 < ix1 and iy0 < iy1:
                part = labels[iy0 - p.cy0:iy1 - p.cy0, ix0 - p.cx0:ix1 - p.cx0]
                part.copy_(torch.where(part > 0, part, canvas[iy0:iy1, ix0:ix1]))
        canvas[p.cy0:p.cy1, p.cx0:p.cx1] = labels
        painted.append((p.cx0, p.cy0, p.cx1, p.cy1))
    return canvas
