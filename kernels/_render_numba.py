"""Numba kernels of the exact CPU label render (reached through :func:`kernels.render_cpu.compiled_kernels`).

:func:`render_instance` paints one instance exactly as the reference does (``F.interpolate`` of all
channels to the box, argmax, composited where the label is > 0) while doing far less work:

1. **Cell shortcut.** A bilinear output pixel is a convex combination of the 4 source samples of
   its cell (rows r, r + 1; columns c, c + 1). If at all 4 corners channel k beats every other
   channel by a margin far above float32 rounding (``c_margin`` / ``f_margin``, set per instance
   by ``render_cpu`` from max|logit|), argmax is k at every pixel of the cell, whatever the
   weights. The same holds for the coarse fg/bg decision (fg iff coarse[1] > coarse[0]; a tie is
   background). Decided cells copy their label to their output pixels.
2. **Mixed cells.** The other cells evaluate their pixels, with only the fine channels that can
   still win in the cell (not beaten by more than the margin at all 4 corners by one channel) as
   candidates. A plain float32 bilinear value decides a pixel unless it is within the margin of a
   tie; with 2 candidates (most cells) the sign of their difference decides.
3. **Exact near-ties.** Values within the margin of a tie are computed exactly as PyTorch's CPU
   kernel does. Measured on torch 2.14 (x86-64, AVX2/AVX512 dispatch), the generic
   ``upsample_bilinear2d`` kernel (used when out_h + out_w > 128 and the input is not
   channels-last) computes, in float32 with fused multiply-adds::

       src    = fma(scale, dst + 0.5, -0.5)  (clamped at 0), scale = float32(in) / float32(out)
       row_r  = fma(x[r, c0], wx0, x[r, c1] * wx1)
       out    = fma(row_r0, wy0, row_r1 * wy1)           (height outer, width inner)

   with lambda1 = src - floor(src), lambda0 = 1 - lambda1. The plain unfused formula does NOT
   match (about 1 value in 5 differs in the last bit). ``fma`` is emulated exactly: the product is
   exact in float64, the float64 sum is rounded to float32, and the rare double-rounding case (the
   float64 sum lands exactly on a float32 midpoint while the exact sum does not) is corrected with
   a TwoSum error term. Because this matches a build detail of PyTorch, ``render_cpu`` verifies
   it at first use (:func:`interpolate_exact` against ``F.interpolate``) and uses the reference's
   ``F.interpolate`` where it does not hold.

Compiled on first use (``cache=True``: later processes load the machine code from numba's cache).
``render_cpu`` imports this file under one fixed module name whatever the package is called (see
there why); do not import it directly. Every scratch array is written before it is read.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_MIXED = np.uint8(255)
# Where numba has nowhere writable to cache (read-only install and home) or cannot write its cache
# (disk full, file size limit), the loader (render_cpu.compiled_kernels) runs this file again with
# _CACHE = False preset, and every process compiles the kernels itself (a few seconds).
_CACHE = globals().get("_CACHE", True)


@njit(cache=_CACHE, nogil=True, inline="always")
def _fma32(a, b, c):
    """Correctly rounded float32 fma(a, b, c) of float32 a, b, c."""
    p = np.float64(a) * np.float64(b)  # exact: 24 + 24 bits
    cd = np.float64(c)
    s = p + cd
    f = np.float32(s)
    fd = np.float64(f)
    if fd != s:
        # Rounding s (already rounded once) can only go wrong when s sits exactly on a float32
        # midpoint while p + c does not: then the TwoSum error term says which side is right.
        toward = np.float32(np.inf) if s > fd else np.float32(-np.inf)
        g = np.nextafter(f, toward)
        if (fd + np.float64(g)) * 0.5 == s:
            bb = s - p
            err = (p - (s - bb)) + (cd - bb)  # s + err == p + c exactly
            if err > 0:
                f = max(f, g)
            elif err < 0:
                f = min(f, g)
    return f


@njit(cache=_CACHE, nogil=True, inline="always")
def _exact(x00, x01, x10, x11, wx0, wx1, wy0, wy1):
    """PyTorch's float32 bilinear value (width inner, height outer, fused multiply-adds)."""
    row0 = _fma32(x00, wx0, np.float32(x01 * wx1))
    row1 = _fma32(x10, wx0, np.float32(x11 * wx1))
    return _fma32(row0, wy0, np.float32(row1 * wy1))


@njit(cache=_CACHE, nogil=True)
def _taps(in_size, out_size, first, count):
    """PyTorch's (align_corners=False) taps of output indices first .. first + count - 1:
    i0 (the cell), w0, w1 (float32)."""
    i0 = np.empty(count, np.int64)
    w0 = np.empty(count, np.float32)
    w1 = np.empty(count, np.float32)
    scale = np.float64(np.float32(in_size) / np.float32(out_size))  # float32 division, as PyTorch
    for j in range(count):
        dst = first + j
        if in_size == out_size:  # PyTorch copies: taps (dst, dst), weights (1, 0)
            i0[j] = dst
            w0[j] = 1.0
            w1[j] = 0.0
            continue
        src = np.float32(scale * (dst + 0.5) - 0.5)  # fma(scale, dst + 0.5, -0.5): exact, one rounding
        if src < 0:
            src = np.float32(0.0)
        i = min(np.int64(np.floor(src)), in_size - 1)
        lam = src - np.float32(i)
        lam = min(max(lam, np.float32(0.0)), np.float32(1.0))
        i0[j] = i
        w1[j] = lam
        w0[j] = np.float32(1.0) - lam
    return i0, w0, w1


@njit(cache=_CACHE, nogil=True)
def _runs(i0, n_cells):
    """Start and length of the run of output indices in each source cell (i0 never decreases)."""
    start = np.zeros(n_cells, np.int64)
    count = np.zeros(n_cells, np.int64)
    for j in range(i0.shape[0] - 1, -1, -1):
        start[i0[j]] = j
        count[i0[j]] += 1
    return start, count


@njit(cache=_CACHE, nogil=True, inline="always")
def _blend(x00, x01, x10, x11, wx0, wx1, wy0, wy1):
    """Plain float32 bilinear value: within a few ulps of max|corner| of PyTorch's (the margins
    are ~100x larger)."""
    return wy0 * (wx0 * x00 + wx1 * x01) + wy1 * (wx0 * x10 + wx1 * x11)


@njit(cache=_CACHE, nogil=True)
def interpolate_exact(x, out_h, out_w):
    """float32 [C, out_h, out_w]: the bilinear resize (align_corners=False) of x float32 [C, Sh, Sw]
    computed as :func:`render_instance` computes near-ties, for ``render_cpu``'s check against
    ``F.interpolate``. Taps on an axis with in == out are (i, i + 1) with weights (1, 0), as in
    the render's cells: fma(x, 1, y * 0) == x for finite y."""
    n_channels, Sh, Sw = x.shape
    ri0, rw0, rw1 = _taps(Sh, out_h, 0, out_h)
    ci0, cw0, cw1 = _taps(Sw, out_w, 0, out_w)
    out = np.empty((n_channels, out_h, out_w), np.float32)  # every element is written below
    for k in range(n_channels):
        for j in range(out_h):
            r = ri0[j]
            r1 = min(r + 1, Sh - 1)
            for i in range(out_w):
                c = ci0[i]
                c1 = min(c + 1, Sw - 1)
                out[k, j, i] = _exact(x[k, r, c], x[k, r, c1], x[k, r1, c], x[k, r1, c1],
                                      cw0[i], cw1[i], rw0[j], rw1[j])
    return out


@njit(cache=_CACHE, nogil=True)
def render_instance(coarse, fine, x, y, w, h, cx0, cy0, cx1, cy1, c_margin, f_margin, canvas):
    """Paint one instance's labels (> 0) into ``canvas`` (uint8 [H, W], modified in place).

    coarse float32 [2, Sh, Sw], fine float32 [C, Sh, Sw] (C <= 254), all finite; (x, y, w, h) the
    integer box, (cx0, cy0, cx1, cy1) its visible part; margins as in render_cpu._margins.
    """
    n_fine, Sh, Sw = fine.shape
    plane = Sh * Sw
    flat = fine.reshape(n_fine, plane)
    # per sample: the top fine channel and whether it leads the runner-up by more than the margin
    # branch-free loop over contiguous planes: it vectorises
    top1 = flat[0].copy()
    top2 = np.full(plane, -np.inf, np.float32)
    best_flat = np.zeros(plane, np.uint8)
    for k in range(1, n_fine):
        fk = flat[k]
        kk = np.uint8(k)
        for s in range(plane):
            v = fk[s]
            t = top1[s]
            top2[s] = max(top2[s], min(t, v))
            best_flat[s] = kk if v > t else best_flat[s]
            top1[s] = max(t, v)
    clear = (top1 - top2 > f_margin).reshape(Sh, Sw)
    best = best_flat.reshape(Sh, Sw)
    d = coarse[1] - coarse[0]

    # per cell (corners r, r1 x c, c1): code = its label when decided, else _MIXED
    code = np.empty((Sh, Sw), np.uint8)
    fg_safe = np.empty((Sh, Sw), np.bool_)
    fine_safe = np.empty((Sh, Sw), np.bool_)
    for r in range(Sh):
        r1 = min(r + 1, Sh - 1)
        for c in range(Sw):
            c1 = min(c + 1, Sw - 1)
            d_lo = min(min(d[r, c], d[r, c1]), min(d[r1, c], d[r1, c1]))
            d_hi = max(max(d[r, c], d[r, c1]), max(d[r1, c], d[r1, c1]))
            k = best[r, c]
            safe = (clear[r, c] and clear[r, c1] and clear[r1, c] and clear[r1, c1]
                    and best[r, c1] == k and best[r1, c] == k and best[r1, c1] == k)
            fg = d_lo > c_margin
            fg_safe[r, c] = fg
            fine_safe[r, c] = safe
            if d_hi < -c_margin or (safe and k == 0):
                code[r, c] = 0
            elif fg and safe:
                code[r, c] = k
            else:
                code[r, c] = _MIXED

    n_rows, n_cols = cy1 - cy0, cx1 - cx0
    ri0, rw0, rw1 = _taps(Sh, h, cy0 - y, n_rows)
    ci0, cw0, cw1 = _taps(Sw, w, cx0 - x, n_cols)

    # decided pixels: the code row of each source row, gathered once, written to its output rows
    # labels 1..254 painted; 0 keeps what is below, _MIXED is done per cell below
    gathered = np.empty(n_cols, np.uint8)
    j = 0
    while j < n_rows:
        code_r = code[ri0[j]]
        for i in range(n_cols):
            gathered[i] = code_r[ci0[i]]
        r = ri0[j]
        while j < n_rows and ri0[j] == r:
            out = canvas[cy0 + j, cx0:cx1]
            for i in range(n_cols):
                v = gathered[i]
                out[i] = v if np.uint8(v - 1) < np.uint8(254) else out[i]
            j += 1

    # mixed cells: their run of output rows x run of output columns
    row_start, row_count = _runs(ri0, Sh)
    col_start, col_count = _runs(ci0, Sw)
    # per-cell scratch, zeroed once: every element is written before it is read (below), and
    # zeros keep a slip from turning into a wild channel index
    lo = np.zeros(n_fine, np.float32)
    cand = np.zeros(n_fine, np.int64)
    vals = np.zeros(n_fine, np.float32)
    for r in range(Sh):
        if row_count[r] == 0:
            continue
        r1 = min(r + 1, Sh - 1)
        for c in range(Sw):
            if code[r, c] != _MIXED or col_count[c] == 0:
                continue
            c1 = min(c + 1, Sw - 1)
            d00, d01, d10, d11 = d[r, c], d[r, c1], d[r1, c], d[r1, c1]
            coarse_open = not fg_safe[r, c]
            if fine_safe[r, c]:
                # the fine channel is decided (the coarse one is not, or the cell would not be
                # mixed): the one candidate is the channel that leads at all 4 corners
                cand[0] = best[r, c]
                m = 1
            else:
                # channel k cannot win in the cell when one channel beats it by more than the
                # margin at all 4 corners (bilinear weights are convex); tested against the
                # channel with the best minimum over the corners
                top = 0
                for k in range(n_fine):
                    lo[k] = min(min(fine[k, r, c], fine[k, r, c1]), min(fine[k, r1, c], fine[k, r1, c1]))
                    if lo[k] > lo[top]:
                        top = k
                m = 0
                for k in range(n_fine):
                    lead = min(min(fine[top, r, c] - fine[k, r, c], fine[top, r, c1] - fine[k, r, c1]),
                               min(fine[top, r1, c] - fine[k, r1, c], fine[top, r1, c1] - fine[k, r1, c1]))
                    if lead <= f_margin:
                        cand[m] = k
                        m += 1
                # m >= 1: `top` leads itself by 0 <= f_margin at every corner (logits are finite)
            a = cand[0]
            b = cand[1] if m == 2 else a
            e00, e01 = fine[a, r, c] - fine[b, r, c], fine[a, r, c1] - fine[b, r, c1]
            e10, e11 = fine[a, r1, c] - fine[b, r1, c], fine[a, r1, c1] - fine[b, r1, c1]
            for j in range(row_start[r], row_start[r] + row_count[r]):
                wy0, wy1 = rw0[j], rw1[j]
                out = canvas[cy0 + j, cx0:cx1]
                for i in range(col_start[c], col_start[c] + col_count[c]):
                    wx0, wx1 = cw0[i], cw1[i]
                    if coarse_open:
                        # fg iff coarse[1] > coarse[0] (a tie is background): the sign of the
                        # plain difference, exact values when it is within the margin of 0
                        diff = _blend(d00, d01, d10, d11, wx0, wx1, wy0, wy1)
                        if diff < -c_margin:
                            continue
                        if diff <= c_margin:
                            v0 = _exact(coarse[0, r, c], coarse[0, r, c1], coarse[0, r1, c], coarse[0, r1, c1],
                                        wx0, wx1, wy0, wy1)
                            v1 = _exact(coarse[1, r, c], coarse[1, r, c1], coarse[1, r1, c], coarse[1, r1, c1],
                                        wx0, wx1, wy0, wy1)
                            if not v1 > v0:
                                continue
                    if m == 1:
                        label = a
                    elif m == 2:  # the sign of the candidates' difference, exact near 0
                        delta = _blend(e00, e01, e10, e11, wx0, wx1, wy0, wy1)
                        if delta > f_margin:
                            label = a
                        elif delta < -f_margin:
                            label = b
                        else:
                            va = _exact(fine[a, r, c], fine[a, r, c1], fine[a, r1, c], fine[a, r1, c1],
                                        wx0, wx1, wy0, wy1)
                            vb = _exact(fine[b, r, c], fine[b, r, c1], fine[b, r1, c], fine[b, r1, c1],
                                        wx0, wx1, wy0, wy1)
                            label = b if vb > va else a  # a < b: a tie goes to a
                    else:
                        vmax = -np.inf
                        label = a
                        for q in range(m):
                            k = cand[q]
                            v = _blend(fine[k, r, c], fine[k, r, c1], fine[k, r1, c], fine[k, r1, c1],
                                       wx0, wx1, wy0, wy1)
                            vals[q] = v
                            if v > vmax:
                                vmax = v
                                label = k
                        near = 0
                        for q in range(m):
                            if vals[q] >= vmax - f_margin:
                                near += 1
                        if near > 1:  # exact values of the near-tied candidates
                            emax = -np.inf
                            for q in range(m):
                                if vals[q] >= vmax - f_margin:
                                    k = cand[q]
                                    e = _exact(fine[k, r, c], fine[k, r, c1], fine[k, r1, c], fine[k, r1, c1],
                                               wx0, wx1, wy0, wy1)
                                    if e > emax:  # candidates ascend: ties keep the lowest index
                                        emax = e
                                        label = k
                    if label > 0:
                        out[i] = label


@njit(cache=_CACHE, nogil=True)
def colorize_into(labels, lut_rgb, word_table, out):
    """out (uint8 [H, W, 3], C-contiguous) = lut_rgb[labels] (labels uint8 [H, W]).

    Four pixels are 12 bytes = 3 int32 words, each looked up in ``word_table`` (see
    :func:`kernels.render._word_table`) by the pair of labels it spans; the last size % 4 pixels
    byte by byte.
    """
    flat = labels.ravel()
    n = lut_rgb.shape[0]
    size = flat.shape[0]
    quads = size // 4
    out_bytes = out.reshape(-1)
    words = out_bytes[:quads * 12].view(np.int32)
    for q in range(quads):
        a, b = np.int64(flat[4 * q]), np.int64(flat[4 * q + 1])
        c, d = np.int64(flat[4 * q + 2]), np.int64(flat[4 * q + 3])
        if max(max(a, b), max(c, d)) >= n:  # compiled code does not check bounds: a bad label would read past the table
            raise IndexError("label out of range of the colour table")
        words[3 * q] = word_table[a * n + b]
        words[3 * q + 1] = word_table[n * n + b * n + c]
        words[3 * q + 2] = word_table[2 * n * n + c * n + d]
    for p in range(quads * 4, size):
        if flat[p] >= n:
            raise IndexError("label out of range of the colour table")
        for ch in range(3):
            out_bytes[3 * p + ch] = lut_rgb[flat[p], ch]


def warm_up() -> None:
    """Compile (or load from the cache) the kernels for the argument types the render uses."""
    interpolate_exact(np.zeros((2, 2, 2), np.float32), 3, 5)
    fine = np.zeros((3, 2, 2), np.float32)
    fine[1, :, 1] = 1.0
    coarse = np.zeros((2, 2, 2), np.float32)
    coarse[1] = 1.0
    canvas = np.zeros((3, 5), np.uint8)
    render_instance(coarse, fine, 0, 0, 5, 3, 0, 0, 5, 3, 1e-5, 1e-5, canvas)
    lut = np.zeros((3, 3), np.uint8)
    colorize_into(canvas, lut, np.zeros(27, np.int32), np.empty((3, 5, 3), np.uint8))
