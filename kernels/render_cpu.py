"""Fast CPU label render, bit-exact with :func:`kernels.reference.render_labels_reference`.

One method, two implementations: compiled per-pixel loops (numba, ``kernels/_render_numba.py``,
used whenever numba works: ~1.7 ms for a 512x910 frame with 3 people) and batched torch ops (this
file, used when it does not: ~7 ms; on CPU a small op costs microseconds whatever its size, so the
work is batched over all instances). Both are parity-tested against the reference.

How it stays exact while doing far less work than the reference:

1. **Cell shortcut.** A bilinear output pixel is a convex combination of the 4 source samples of
   its cell (rows r0, r1; cols c0, c1). If at all 4 corners channel k beats every other channel by
   a margin far above float32 rounding (``_REL_MARGIN`` x max|logit| + ``_ABS_MARGIN``), then
   argmax is k at every pixel of the cell, whatever the weights. The same holds for the coarse
   fg/bg decision (fg iff coarse[1] > coarse[0]; a tie is background). Cells of all instances are
   classified at once on the small S x S grids; decided cells are expanded to the box with one row
   ``index_select`` and one column ``gather`` per instance.
2. **Mixed cells as blocks.** The output pixels of an undecided cell are its run of output rows x
   its run of output columns: a small block (border cells' longer runs are split). All blocks of
   all instances are evaluated together, block index innermost. A plain float32 bilinear
   value decides a pixel unless it is within the margin of a tie. Coarse: the sign of the bilinear
   fg - bg difference. Fine: only the channels that can still win in the cell (not beaten by more
   than the margin at all 4 corners by one channel) are candidates; with 2 candidates (most cells)
   the sign of their difference decides.
3. **Exact near-ties.** The few pixels within the margin of a tie are computed exactly, all in one
   batch, reproducing PyTorch's CPU kernel bit for bit. Measured on torch 2.14 (x86-64,
   AVX2/AVX512 dispatch), the generic ``upsample_bilinear2d`` kernel (used when out_h + out_w >
   128 and the input is not channels-last) computes, in float32 with fused multiply-adds::

       src    = fma(scale, dst + 0.5, -0.5)  (clamped at 0), scale = float32(in) / float32(out)
       row_r  = fma(x[r, c0], wx0, x[r, c1] * wx1)
       out    = fma(row_r0, wy0, row_r1 * wy1)           (height outer, width inner)

   with lambda1 = src - floor(src), lambda0 = 1 - lambda1. The plain unfused formula does NOT
   match (about 1 value in 5 differs in the last bit). ``fma`` is emulated exactly: the product is
   exact in float64, the float64 sum is rounded to float32, and the rare double-rounding case (the
   float64 sum lands exactly on a float32 midpoint while the exact sum does not) is corrected with a
   TwoSum error term.

   Because this matches a build detail of PyTorch, it is **verified at first use** against
   ``F.interpolate`` on adversarial probes (mixed magnitudes, up- and downscales, the coarse and
   fine channel counts), once per thread count (PyTorch's loop specialisation can depend on it).
   If the probe fails (another torch build / CPU), every instance falls back to ``F.interpolate``
   of the whole box: slower, still exact.

4. **Fallbacks.** Boxes where PyTorch picks its other (channels-last, vectorised) kernel --
   out_h + out_w <= 128, or an input that is channels-last contiguous such as S == 1 -- and
   instances with non-finite logits use the reference's ``F.interpolate``; those are small or rare.
   The torch-op path also sends instances whose logits are noise-like (more than 30% of cells
   undecided) there, where block work would cost more; for finite logits their argmax is a faster
   equivalent of ``torch.argmax``. (The compiled path handles those itself, faster.)

Instances are composited in order (later ones win where their label > 0). Inputs are never
modified. Logits are computed in float32 (float16 inputs are converted with ``.float()``
exactly as the reference does).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from ..pipeline._errors import DensevidWarning
from .reference import instance_labels_reference, visible_box

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
    suspect = (low == 0x10000000) | (s.abs() < 2.0 ** -125)  # (zeros too: rare, and fixed right)
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


_EMULATION_OK: dict[tuple[int, int], bool] = {}


def emulation_matches_torch(n_fine: int = 25) -> bool:
    """Whether the exact-emulation model matches this torch build's F.interpolate for the coarse
    (2) and fine (``n_fine``) channel counts, at the current ``torch.get_num_threads()``.

    Cached per (threads, n_fine): PyTorch's loop specialisation can depend on both (measured on
    torch 2.14: with 1 thread, 3-channel inputs round differently from this model, while 1, 2, 5,
    24 and 25 channels match at 1 and 2 threads), so a thread-count change re-probes.
    """
    key = (torch.get_num_threads(), n_fine)
    ok = _EMULATION_OK.get(key)
    if ok is None:
        gen = torch.Generator().manual_seed(1234)
        ok = True
        for C, S, h, w in ((n_fine, 112, 173, 61), (2, 112, 301, 97), (n_fine, 13, 90, 211), (2, 37, 129, 5),
                           (n_fine, 112, 112, 40), (2, 13, 211, 90)):
            x = torch.randn(C, S, S, generator=gen) * torch.exp(torch.randn(C, S, S, generator=gen) * 8)
            if not torch.equal(_emulated_interpolate(x, h, w), _interpolate_reference(x, h, w)):
                ok = False
                break
        _EMULATION_OK[key] = ok
    return ok


# --------------------------------------------------------------------------------------------
# output axes: the source cell of every output row / column


class _Axes:
    """:func:`_axis_taps` of several clipped output axes at once (a few tensor ops for all of them).

    ``specs``: (in_size, out_size, offset, length) per axis: output indices offset .. offset+length-1
    of an out_size-long resize of in_size samples; axes alternate rows, columns (one pair per
    instance). The elements of all axes are concatenated (axis a is ``begin[a]:begin[a + 1]``).
    Since i0 never decreases along an axis, the outputs in source cell i0 form one run:
    ``run_start[a * stride + i0]``, ``run_count[...]`` (0 if none).
    """

    def __init__(self, specs):
        self.begin = [0]
        for s in specs:
            self.begin.append(self.begin[-1] + s[3])
        total = self.begin[-1]
        spec = torch.tensor([[s[0], s[1], s[2] - b, s[3]] for s, b in zip(specs, self.begin)])
        ins, outs, shift, lens = spec.unbind(1)
        axis = self.axis = torch.repeat_interleave(torch.arange(len(specs)), lens, output_size=total)
        dst = torch.arange(total) + shift[axis]
        scale = ins.float() / outs.float()  # float32, as PyTorch
        src = (scale.double()[axis] * (dst.double() + 0.5) - 0.5).float().clamp_min(0.0)
        last = (ins - 1)[axis]
        i0 = torch.minimum(src.floor().long(), last)
        same = (ins == outs)[axis]  # PyTorch copies: taps (dst, dst), weights (1, 0)
        self.i0 = torch.where(same, dst, i0)
        w1 = torch.where(same, 0.0, (src - i0.float()).clamp(0.0, 1.0))
        self.w = torch.stack([1.0 - w1, w1])  # [2, total]: (w0, w1)
        self.stride = int(ins.max())
        counts = torch.bincount(axis * self.stride + self.i0, minlength=len(specs) * self.stride)
        self.run_count = counts
        self.run_start = counts.cumsum(0) - counts
        # block size per axis kind: the longest run of an interior cell (border cells, whose runs
        # are up to ~1.5x longer because of the clamp at 0 / in_size - 1, are split in chunks)
        runs = counts.view(-1, 2, self.stride)
        interior = runs[:, :, 1:-1] if self.stride > 2 else runs
        self.k_rows, self.k_cols = interior.amax((0, 2)).clamp_min(1).tolist()

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


@functools.lru_cache(maxsize=None)
def _count_index_weights(n_fine: int) -> torch.Tensor:
    return torch.stack([torch.ones(n_fine), torch.arange(n_fine, dtype=torch.float32)])


def _classify(c: torch.Tensor, f: torch.Tensor, c_margin: torch.Tensor, f_margin: torch.Tensor):
    """Cell decisions of all instances at once (c [n, 2, Sh, Sw], f [n, C, Sh, Sw], margins [n]).

    Returns (code uint8, fg_safe, fine_safe, best uint8, d), grids [n, Sh, Sw]; d = fg - bg logit.
    Coarse: a cell is fg-safe (bg-safe) when d > margin (< -margin) at its 4 corners. Fine: at each
    sample the channels within the margin of the top are marked; a cell is fine-safe when every
    corner has exactly one such channel and it is the same one. The marks' count and index sum
    come from one matrix product (exact in float32); the comparison writes float32 0/1 because
    bool outputs are several times slower on CPU.
    """
    n, n_fine = f.shape[:2]
    d = c[:, 1] - c[:, 0]
    top = f.amax(1)
    marks = torch.ge(f, (top - f_margin[:, None, None])[:, None], out=torch.empty_like(f))
    stats = torch.matmul(_count_index_weights(n_fine), marks.view(n, n_fine, -1)).view(n, 2, *d.shape[1:])
    lo, hi = _corner_min_max(torch.cat([d[:, None], stats], 1))
    fg_safe = lo[:, 0] > c_margin[:, None, None]
    bg_safe = hi[:, 0] < -c_margin[:, None, None]
    fine_safe = (hi[:, 1] == 1.0) & (lo[:, 2] == hi[:, 2])  # count >= 1: max 1 means 1 everywhere
    best = stats[:, 1].clamp_max(_MIXED).to(torch.uint8)  # the marked channel where count == 1
    # label 0 where surely background, or where the fine channel is surely 0 (whatever fg/bg says)
    zero = bg_safe | (fine_safe & (best == 0))
    code = torch.where(zero, 0, torch.where(fg_safe & fine_safe, best, _MIXED)).to(torch.uint8)
    return code, fg_safe, fine_safe, best, d


# --------------------------------------------------------------------------------------------
# mixed cells: blocks of output pixels


class _Blocks:
    """The output pixels of the mixed cells, as padded blocks of k_rows x k_cols slots.

    A cell's pixels are its run of rows x its run of columns; runs longer than the block size
    (border cells) are split into several blocks. Block tensors keep the block index innermost
    ([..., B]): PyTorch's CPU elementwise kernels are several times faster with a long inner
    dimension than with the few slots of a block. Per block: ``cell`` (flat id in [n, Sh, Sw]),
    ``inst``; ``row_el`` [Kr, B] / ``col_el`` [Kc, B] (axis elements, clamped in range); ``valid``
    [S, B] (slot = row * k_cols + col); weights ``wy`` [2, Kr, B] / ``wx`` [2, Kc, B]; ``w4``
    [4, S, B]: each slot's weight of each corner (order 00, 01, 10, 11); ``src``: the index of
    each block's cell in the input cells (non-decreasing: input order is kept).
    """

    def __init__(self, cell: torch.Tensor, inst: torch.Tensor, r: torch.Tensor, cc: torch.Tensor, ax: _Axes):
        row_key = 2 * inst * ax.stride + r
        col_key = row_key + (ax.stride + cc - r)  # (2 inst + 1) * stride + cc
        n_rows, n_cols = ax.run_count[row_key], ax.run_count[col_key]
        src = ((n_rows > 0) & (n_cols > 0)).nonzero().squeeze(1)  # cells with visible pixels
        if src.numel() < cell.numel():
            cell, inst, row_key, col_key, n_rows, n_cols = (
                t.index_select(0, src) for t in (cell, inst, row_key, col_key, n_rows, n_cols))
        row_start, col_start = ax.run_start[row_key], ax.run_start[col_key]
        k_rows, k_cols = self.k_rows, self.k_cols = ax.k_rows, ax.k_cols
        row_chunks = torch.div(n_rows + (k_rows - 1), k_rows, rounding_mode="floor")
        col_chunks = torch.div(n_cols + (k_cols - 1), k_cols, rounding_mode="floor")
        per_cell = row_chunks * col_chunks
        if cell.numel() and int(per_cell.max()) > 1:
            owner = torch.repeat_interleave(per_cell)
            q = torch.arange(owner.numel()) - (per_cell.cumsum(0) - per_cell)[owner]
            a = torch.div(q, col_chunks[owner], rounding_mode="floor")
            b = q - a * col_chunks[owner]
            cell, inst, src = cell[owner], inst[owner], src[owner]
            row_start = row_start[owner] + a * k_rows
            col_start = col_start[owner] + b * k_cols
            n_rows = torch.clamp_max(n_rows[owner] - a * k_rows, k_rows)
            n_cols = torch.clamp_max(n_cols[owner] - b * k_cols, k_cols)
        self.src = src  # index of each block's cell in the input (non-decreasing)
        self.cell, self.inst = cell, inst
        n_blocks, slots = cell.numel(), k_rows * k_cols
        jr, jc = torch.arange(k_rows)[:, None], torch.arange(k_cols)[:, None]
        last = ax.i0.numel() - 1
        self.row_el = torch.clamp_max(row_start + jr, last)
        self.col_el = torch.clamp_max(col_start + jc, last)
        self.valid = ((jr < n_rows)[:, None, :] & (jc < n_cols)[None, :, :]).view(slots, n_blocks)
        self.wy = ax.w.index_select(1, self.row_el.view(-1)).view(2, k_rows, n_blocks)
        self.wx = ax.w.index_select(1, self.col_el.view(-1)).view(2, k_cols, n_blocks)
        self.w4 = (self.wy[:, None, :, None, :] * self.wx[None, :, None, :, :]).view(4, slots, n_blocks)

    def __len__(self) -> int:
        return self.cell.numel()


def _blend(t: torch.Tensor, w4: torch.Tensor) -> torch.Tensor:
    """Plain float32 bilinear values of block slots: corners t [4, ..., G], slot corner weights
    w4 [4, S, G] -> [..., S, G]. A different rounding order than PyTorch's, but within a few ulps
    of max|corner| of its values (the margins are ~100x larger)."""
    out = t[0].unsqueeze(-2) * w4[0]
    for c in (1, 2, 3):
        out.addcmul_(t[c].unsqueeze(-2), w4[c])
    return out


def _max_chain(parts):
    out = parts[0]
    for part in parts[1:]:
        out = torch.maximum(out, part)
    return out


def _exact_winners(corners: torch.Tensor, cand: torch.Tensor, ok: torch.Tensor, wx: torch.Tensor,
                   wy: torch.Tensor) -> torch.Tensor:
    """Exact argmax (PyTorch's bilinear values, ties to the lowest channel index, like
    torch.argmax) of pixels given their cell corners [P, 4, K] of K candidate channels ``cand``
    [P, K] (``ok`` marks real ones) and weights wx, wy [P, 2] (w0, w1).

    The cell's corners equal PyTorch's taps, except on an axis with in_size == out_size where
    PyTorch taps (i, i) with weights (1, 0) and the cell has (i, i + 1): fma(x, 1, y * 0) == x for
    finite y either way (up to the sign of a zero, which no comparison sees).
    """
    x00, x01, x10, x11 = corners.unbind(1)
    wx0, wx1, wy0, wy1 = (w[:, None] for w in (*wx.unbind(1), *wy.unbind(1)))
    row0, row1 = _fma32(torch.stack([x00, x10]), wx0, torch.stack([x01, x11]) * wx1).unbind(0)
    exact = torch.where(ok, _fma32(row0, wy0, row1 * wy1), -_INF)
    top = exact.amax(1, keepdim=True)
    return torch.where(ok & (exact == top), cand, 1 << 30).amin(1)


def _margins(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """float32 [2, n]: the coarse and fine decision margins of each instance (NaN / inf when a
    logit is not finite: such instances take the reference path)."""
    n = coarse.shape[0]
    c_abs = torch.maximum(coarse.reshape(n, -1).amax(1), -coarse.reshape(n, -1).amin(1))
    f_abs = torch.maximum(fine.reshape(n, -1).amax(1), -fine.reshape(n, -1).amin(1))
    return _REL_MARGIN * torch.stack([c_abs, f_abs]) + _ABS_MARGIN


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
    margin = _margins(c, f)
    c_margin, f_margin = margin.unbind(0)
    code, fg_safe, fine_safe, best, d = _classify(c, f, c_margin, f_margin)
    mixed = code == _MIXED
    use = torch.isfinite(margin).all(0) & (mixed.view(n, -1).sum(1) <= _MAX_MIXED_FRACTION * plane)
    use_list = use.tolist()
    if not any(use_list):
        return {}

    specs = []  # rows of instance j: axis 2j, columns: axis 2j + 1
    for p in places:
        specs += [(Sh, p.h, p.cy0 - p.y, p.cy1 - p.cy0), (Sw, p.w, p.cx0 - p.x, p.cx1 - p.cx0)]
    ax = _Axes(specs)

    # Decided pixels: cell codes expanded to the box (rows by index_select, columns by a gather
    # with a broadcast index: both far cheaper than a per-pixel gather), into one buffer for all
    # instances with a spare last element that absorbs the writes of the blocks' padding slots.
    sizes = [(p.cy1 - p.cy0) * (p.cx1 - p.cx0) for p in places]
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    buf = torch.empty(offsets[-1] + 1, dtype=torch.uint8)
    out = {}
    for j, p in enumerate(places):
        if use_list[j]:
            hh, ww = p.cy1 - p.cy0, p.cx1 - p.cx0
            rows = code[j].index_select(0, ax.part(2 * j, ax.i0))
            view = buf[offsets[j]:offsets[j + 1]].view(hh, ww)
            out[p] = torch.gather(rows, 1, ax.part(2 * j + 1, ax.i0).expand(hh, ww), out=view)

    if not all(use_list):
        mixed &= use[:, None, None]
    cell = mixed.view(-1).nonzero().squeeze(1)
    if cell.numel() == 0:
        return out

    # Fine candidates of the cells whose channel is undecided: the channels that can still win
    # somewhere in the cell. Done per cell before the blocks are built, so that cells can be ordered by kind (fine-safe,
    # 2 candidates, more) and each kind is a contiguous range of blocks (slices, not gathers).
    inst = torch.div(cell, plane, rounding_mode="floor")
    rc = cell - inst * plane
    r = torch.div(rc, Sw, rounding_mode="floor")
    cc = rc - r * Sw
    down = torch.where(r < Sh - 1, Sw, 0)
    right = torch.where(cc < Sw - 1, 1, 0)
    corner = torch.stack([cell, cell + right, cell + down, cell + down + right])  # [4, M] sample ids
    undecided = (~fine_safe.view(-1).index_select(0, cell)).nonzero().squeeze(1)
    n_safe = cell.numel() - undecided.numel()
    n_two = 0
    if undecided.numel():
        f_cl = f.permute(0, 2, 3, 1).reshape(n * plane, n_fine)  # row gathers of all channels
        corners = f_cl.index_select(0, corner.index_select(1, undecided).t().reshape(-1)).view(-1, 4, n_fine)
        x = corners.unbind(1)
        lo = torch.minimum(torch.minimum(x[0], x[1]), torch.minimum(x[2], x[3]))
        # Channel k cannot win anywhere in the cell when some channel j beats it by more than the
        # margin at all 4 corners (bilinear weights are convex). Tested against j = the channel
        # with the best minimum, this also drops every k whose max is below that minimum.
        top = corners.gather(2, lo.argmax(1)[:, None, None].expand(-1, 4, 1))  # [U, 4, 1]
        lead = (top - corners).unbind(1)
        lead = torch.minimum(torch.minimum(lead[0], lead[1]), torch.minimum(lead[2], lead[3]))  # [U, C]
        u_margin = f_margin.index_select(0, inst.index_select(0, undecided))
        possible = lead <= u_margin[:, None]  # [U, C]
        n_cand = possible.sum(1)
        by_kind = torch.argsort((n_cand != 2).to(torch.uint8), stable=True)  # 2 candidates first
        n_two = int((n_cand == 2).sum())
        corners, lead, u_margin, possible, n_cand = (t.index_select(0, by_kind) for t in (corners, lead, u_margin, possible, n_cand))
        order = torch.cat([(fine_safe.view(-1).index_select(0, cell)).nonzero().squeeze(1),
                           undecided.index_select(0, by_kind)])
        cell, inst, r, cc, corner = (t.index_select(-1, order) for t in (cell, inst, r, cc, corner))

    blk = _Blocks(cell, inst, r, cc, ax)
    if len(blk) == 0:
        return out
    k_cols = blk.k_cols
    slots, n_blocks = blk.valid.shape
    b_corner = corner.index_select(1, blk.src)
    exact_requests = []  # (is_coarse, slot, block, corners [P, 4, k], candidates, ok)

    # Coarse: fg where the cell is fg-safe, else the sign of the plain bilinear fg - bg difference
    # (a linear function: its value is the difference of the channels' values up to rounding);
    # exact where that is within the margin of 0. Computed for every block (no subset gathers).
    cell_fg = fg_safe.view(-1).index_select(0, blk.cell)
    diff = _blend(d.view(-1).index_select(0, b_corner.view(-1)).view(4, n_blocks), blk.w4)  # [S, B]
    fg = cell_fg | (diff > 0)
    b_margin = c_margin.index_select(0, blk.inst)
    slot, m = (~cell_fg & (diff.abs() <= b_margin) & blk.valid).nonzero().unbind(1)
    if m.numel():
        c_cl = c.permute(0, 2, 3, 1).reshape(n * plane, 2)
        tab = c_cl.index_select(0, b_corner.index_select(1, m).t().reshape(-1)).view(-1, 4, 2)
        cand = torch.tensor([0, 1]).expand(m.numel(), 2)
        exact_requests.append((True, slot, m, tab, cand, torch.ones(cand.shape, dtype=torch.bool)))

    # Fine: the cell's channel where fine-safe, else the winner among the cell's candidates, exact
    # on near-ties. Cells with 2 candidates (most) use the sign of their difference.
    labels = best.view(-1).index_select(0, blk.cell).expand(slots, n_blocks).contiguous()
    lo_b, two_b = torch.searchsorted(blk.src, torch.tensor([n_safe, n_safe + n_two])).tolist()
    for is_two, first, last in ((True, lo_b, two_b), (False, two_b, n_blocks)):
        if last <= first:
            continue
        row = blk.src[first:last] - n_safe  # the blocks' rows in the candidate tables
        w4 = blk.w4[:, :, first:last]
        g_margin = u_margin.index_select(0, row)
        # candidate tables per cell ([cells, ...]), then looked up per block by its cell's row
        if is_two:
            cand_c = possible[:n_two].nonzero()[:, 1].view(-1, 2)
            ok_c = torch.ones(cand_c.shape, dtype=torch.bool)
            tab_c = corners[:n_two].gather(2, cand_c[:, None, :].expand(-1, 4, -1))  # [cells, 4, 2]
            delta = _blend((tab_c[:, :, 0] - tab_c[:, :, 1]).index_select(0, row).t(), w4)  # [S, G]
            cand = cand_c.index_select(0, row)
            win = torch.where(delta > 0, cand[:, 0], cand[:, 1])
            near_tie = delta.abs() <= g_margin
        else:
            row = row - n_two
            k = int(n_cand[n_two:].max())
            top = torch.where(possible[n_two:], -lead[n_two:], -_INF).topk(k, dim=1)
            cand_c, ok_c = top.indices, top.values > -_INF
            tab_c = corners[n_two:].gather(2, cand_c[:, None, :].expand(-1, 4, -1))  # [cells, 4, k]
            cand, ok = cand_c.index_select(0, row), ok_c.index_select(0, row)
            tab = torch.where(ok_c[:, None, :], tab_c, 0.0).index_select(0, row)
            vals = _blend(tab.permute(1, 2, 0), w4)  # [k, S, G]
            vals = torch.where(ok.t()[:, None, :], vals, -_INF).unbind(0)
            # winner: the candidate at the top; near-tie: another one within the margin
            reach = _max_chain(vals) - g_margin
            win = torch.full(reach.shape, -1, dtype=torch.long)
            n_reach = torch.zeros(reach.shape, dtype=torch.long)
            for i, v in enumerate(vals):
                in_reach = v >= reach
                n_reach += in_reach
                win = torch.where(in_reach, cand[:, i], win)
            near_tie = n_reach > 1
        labels[:, first:last] = win
        slot, gi = (near_tie & blk.valid[:, first:last]).nonzero().unbind(1)
        if gi.numel():
            rows = row[gi]
            exact_requests.append((False, slot, gi + first, tab_c[rows], cand_c[rows], ok_c[rows]))

    if exact_requests:  # one exact evaluation for all near-ties (coarse ones have candidates 0, 1)
        k = max(req[3].shape[2] for req in exact_requests)
        extra = [k - req[3].shape[2] for req in exact_requests]
        slot, m = (torch.cat([req[i] for req in exact_requests]) for i in (1, 2))
        tab, cand, ok = (torch.cat([F.pad(req[i], (0, e)) for req, e in zip(exact_requests, extra)]) for i in (3, 4, 5))
        a = torch.div(slot, k_cols, rounding_mode="floor")
        win = _exact_winners(tab, cand, ok, blk.wx[:, slot - a * k_cols, m].t(), blk.wy[:, a, m].t())
        n_coarse = sum(req[1].numel() for req in exact_requests if req[0])
        if n_coarse:
            fg[slot[:n_coarse], m[:n_coarse]] = win[:n_coarse] == 1
        if n_coarse < m.numel():
            labels[slot[n_coarse:], m[n_coarse:]] = win[n_coarse:].to(torch.uint8)
    labels = torch.where(fg, labels, 0)

    # scatter the blocks into the buffer (padding slots go to the spare element): an output pixel's
    # buffer index is (row element's base) + (column element's base)
    base = torch.tensor([[p.cx1 - p.cx0, offsets[j] - ax.begin[2 * j] * (p.cx1 - p.cx0), 1, -ax.begin[2 * j + 1]]
                         for j, p in enumerate(places)]).view(-1, 2)[ax.axis]  # [elements, (mult, add)]
    base = torch.arange(ax.i0.numel()) * base[:, 0] + base[:, 1]
    target = base[blk.row_el][:, None, :] + base[blk.col_el][None, :, :]
    target = torch.where(blk.valid, target.view(slots, n_blocks), offsets[-1])
    buf.scatter_(0, target.view(-1), labels.view(-1))
    return out


def _instance_labels_fallback(coarse: torch.Tensor, fine: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The reference's labels of one instance (F.interpolate of all channels to the whole box), with
    a faster argmax for finite logits: torch.argmax over the channel dimension runs a slow
    strided kernel on CPU (~4x the time of this amax + compare + amin form, same result: the
    first maximal index). Non-finite logits (argmax's NaN handling) use the reference as is."""
    if not bool(torch.isfinite(coarse).all() and torch.isfinite(fine).all()):
        return instance_labels_reference(coarse, fine, h, w)
    c = _interpolate_reference(coarse.float(), h, w)
    f = _interpolate_reference(fine.float(), h, w)
    marks = torch.ge(f, f.amax(0), out=torch.empty_like(f))  # 1.0 at the maxima
    index = torch.arange(f.shape[0], dtype=torch.float32)[:, None, None]
    first = torch.addcmul(index + f.shape[0], marks, torch.full_like(index, -float(f.shape[0]))).amin(0)
    return torch.where(c[1] > c[0], first, 0.0).to(torch.uint8)  # fg iff coarse argmax is 1


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


def _boxes_xywh_int(boxes_xyxy: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """:func:`kernels.reference.box_xywh_int` of every box, in three tensor ops (tested equal)."""
    b = boxes_xyxy.detach().to(device="cpu", dtype=torch.float32)
    wh = b[:, 2:] - b[:, :2]  # float32 subtraction, as the reference
    return [(int(x0), int(y0), int(w), int(h)) for (x0, y0), (w, h) in zip(b[:, :2].tolist(), wh.tolist())]


# numba's on-disk cache is keyed by the source file, and a cached function is re-linked by importing
# its module by name. This package is ``densevid.kernels`` for the CLI but is named after its folder's
# path inside ComfyUI, so the kernels module always gets this one name: each process can load what
# the other cached (under two names, one of them would fail to load and compile again).
_KERNELS_MODULE = "_densevid_render_kernels"


def _load_kernels_module(cache: bool = True):
    module = sys.modules.get(_KERNELS_MODULE)
    if module is None:
        spec = importlib.util.spec_from_file_location(_KERNELS_MODULE, Path(__file__).with_name("_render_numba.py"))
        module = importlib.util.module_from_spec(spec)
        module._CACHE = cache
        sys.modules[_KERNELS_MODULE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[_KERNELS_MODULE]
            raise
    return module


@functools.lru_cache(maxsize=1)
def compiled_kernels():
    """The numba-compiled kernels (``kernels/_render_numba.py``), or None -- then the torch-op path
    below is used (same output, ~4x slower) -- when numba cannot be imported or compile (a
    warning says so), or JIT is disabled (``NUMBA_DISABLE_JIT=1``: the kernels would run as slow
    Python). Compiled (or loaded from numba's cache) on first use, with a tiny warm-up call so
    that a failure shows here, not mid-video."""
    try:
        import numba
    except ImportError:
        warnings.warn("numba is not installed: the CPU render uses its slower torch-op path (same output; "
                      "pip install numba)", DensevidWarning, stacklevel=2)
        return None
    if numba.config.DISABLE_JIT:
        return None
    try:
        try:
            kernels = _load_kernels_module()
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            kernels = _load_kernels_module(cache=False)  # nowhere writable to cache: compile each run
        kernels.warm_up()
    except Exception as exc:  # noqa: BLE001 -- any failure means: use the torch path (same output)
        warnings.warn(f"the compiled CPU render is unavailable ({type(exc).__name__}: {exc}): using its "
                      "slower torch-op path (same output)", DensevidWarning, stacklevel=2)
        return None
    return kernels


@contextlib.contextmanager
def torch_ops_only():
    """Within the block the CPU render (labels and colouring) runs its torch-op path, as where numba
    is unavailable: for its parity tests and benchmark. Process-wide, not for concurrent use."""
    global compiled_kernels
    saved = compiled_kernels
    compiled_kernels = _no_kernels
    try:
        yield
    finally:
        compiled_kernels = saved


def _no_kernels():
    return None


def _paint(canvas: torch.Tensor, p: "_Place", labels: torch.Tensor) -> None:
    """Composite one instance's visible labels: they replace the canvas where > 0."""
    target = canvas[p.cy0:p.cy1, p.cx0:p.cx1]
    target.copy_(torch.where(labels > 0, labels, target))


def _render_compiled(kernels, places, fast: set, coarse: torch.Tensor, fine: torch.Tensor,
                     canvas: torch.Tensor) -> torch.Tensor:
    """The numba path: eligible instances are painted by the compiled kernel, the others by the
    reference's F.interpolate, in order (later instances win where their label > 0)."""
    finite_fast = fast
    if fast:
        margin = _margins(coarse, fine)
        finite = torch.isfinite(margin).all(0).tolist()
        finite_fast = {i for i in fast if finite[i]}
        c_margin, f_margin = margin.tolist()
        coarse_np, fine_np, canvas_np = coarse.contiguous().numpy(), fine.contiguous().numpy(), canvas.numpy()
    for p in places:  # in order: later instances overwrite where their label > 0
        if p.i in finite_fast:
            kernels.render_instance(coarse_np[p.i], fine_np[p.i], p.x, p.y, p.w, p.h, p.cx0, p.cy0, p.cx1, p.cy1,
                                    c_margin[p.i], f_margin[p.i], canvas_np)
        else:
            labels = _instance_labels_fallback(coarse[p.i], fine[p.i], p.h, p.w)
            _paint(canvas, p, labels[p.cy0 - p.y:p.cy1 - p.y, p.cx0 - p.x:p.cx1 - p.x])
    return canvas


def render_labels_cpu(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                      height: int, width: int) -> torch.Tensor:
    """uint8 [height, width] part labels, bit-exact with ``render_labels_reference`` (CPU tensor)."""
    canvas = torch.zeros((height, width), dtype=torch.uint8)
    places = []
    for i, (x, y, w, h) in enumerate(_boxes_xywh_int(boxes_xyxy)):
        visible = visible_box(x, y, w, h, height, width)
        if visible is not None:
            places.append(_Place(i, x, y, w, h, *visible))
    if not places:
        return canvas
    coarse = coarse_segm.detach().cpu().float()
    fine = fine_segm.detach().cpu().float()
    fast = set()
    if emulation_matches_torch(fine.shape[1]):
        fast = {p.i for p in places
                if _uses_generic_kernel(coarse[p.i], p.h, p.w) and _uses_generic_kernel(fine[p.i], p.h, p.w)}
    kernels = compiled_kernels()
    if kernels is not None:
        return _render_compiled(kernels, places, fast, coarse, fine, canvas)
    rendered = _render_fast([p for p in places if p.i in fast], coarse, fine) if fast else {}
    for p in places:  # in order: later instances overwrite where their label > 0
        labels = rendered.get(p)
        if labels is None:
            labels = _instance_labels_fallback(coarse[p.i], fine[p.i], p.h, p.w)[
                p.cy0 - p.y:p.cy1 - p.y, p.cx0 - p.x:p.cx1 - p.x]
        _paint(canvas, p, labels)
    return canvas
