"""The exact fast CPU render of kernels/render_cpu.py, both implementations (the numba-compiled
kernels and the batched torch-op cell blocks; check_cpu runs each): exact parity with the reference
on the cases that reach their separate code paths (forced onto the fast path where the production
heuristics would fall back to F.interpolate), and equality of the vectorised helpers with the
scalar ones."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
import torch

from helpers import CPU_IMPLS, REPO_ROOT, assert_exact, cpu_render_impl, subprocess_env
from cases import make_case, near_tie_case, smooth_logits
from test_kernels import check_cpu

from densevid.kernels import render_cpu
from densevid.kernels.reference import box_xywh_int, render_labels_reference


@pytest.fixture
def fast_only(monkeypatch):
    """Every instance the fast path can take takes it (no noise-like fallback; a fallback raises
    unless PyTorch uses its vectorised kernel or a logit is not finite): the parity then tests the
    fast path itself."""
    monkeypatch.setattr(render_cpu, "_MAX_MIXED_FRACTION", 1.0)
    fallback = render_cpu._instance_labels_fallback

    def checked_fallback(coarse, fine, h, w):
        eligible = render_cpu._uses_generic_kernel(fine.float(), h, w) and bool(
            torch.isfinite(coarse).all() and torch.isfinite(fine).all())
        assert not eligible, "fell back to the reference"
        return fallback(coarse, fine, h, w)

    monkeypatch.setattr(render_cpu, "_instance_labels_fallback", checked_fallback)


def test_boxes_xywh_int_matches_reference():
    gen = torch.Generator().manual_seed(0)
    boxes = torch.cat([torch.randn(200, 4, generator=gen) * 300,
                       torch.randn(50, 4, generator=gen) * 1e6,
                       torch.tensor([[0.0, 0.0, 0.0, 0.0], [-0.5, -0.99, 0.5, 0.99], [1.0, 2.0, 1.0 + 2 ** -20, 2.5]])])
    for dtype in (torch.float32, torch.float64, torch.float16):
        b = boxes.to(dtype) if dtype != torch.float16 else boxes[:200].to(dtype)  # float16: no 1e6
        assert render_cpu._boxes_xywh_int(b) == [box_xywh_int(b[i]) for i in range(b.shape[0])]


def test_axes_match_axis_taps():
    gen = torch.Generator().manual_seed(1)
    specs = []
    for in_size, out_size in ((112, 485), (112, 112), (112, 40), (1, 7), (2, 300), (13, 13), (37, 1), (112, 113)):
        offset = int(torch.randint(0, out_size, (1,), generator=gen))
        specs.append((in_size, out_size, offset, int(torch.randint(1, out_size - offset + 1, (1,), generator=gen))))
    if len(specs) % 2:
        specs.append((5, 9, 0, 9))
    ax = render_cpu._Axes(specs)
    for a, (in_size, out_size, offset, length) in enumerate(specs):
        i0, _, w0, w1 = render_cpu._axis_taps(in_size, out_size, torch.arange(offset, offset + length))
        assert torch.equal(ax.part(a, ax.i0), i0)
        assert torch.equal(ax.part(a, ax.w[0]), w0) and torch.equal(ax.part(a, ax.w[1]), w1)
        counts = torch.bincount(i0, minlength=in_size)
        key = a * ax.stride
        assert torch.equal(ax.run_count[key:key + in_size], counts)
        assert torch.equal(ax.run_start[key:key + in_size], ax.begin[a] + counts.cumsum(0) - counts)


@pytest.mark.parametrize("low,s", [(3, 112), (6, 112), (12, 112), (24, 112), (6, 56), (5, 24), (4, 9)])
def test_fast_parity_smoothness_sweep(fast_only, low, s):
    # many overlapping instances of varying smoothness: exercises 2- and many-candidate cells
    gen = torch.Generator().manual_seed(100 + low + s)
    n, h, w = 6, 333, 517
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.7
    wh = (torch.rand(n, 2, generator=gen) * 0.5 + 0.25) * torch.tensor([w, h])
    boxes = torch.cat([xy, xy + wh], 1)
    coarse = torch.stack([smooth_logits(gen, 2, s, low) + torch.tensor([0.0, 1.0])[:, None, None] for _ in range(n)])
    fine = torch.stack([smooth_logits(gen, 25, s, low) for _ in range(n)])
    check_cpu(boxes, coarse, fine, h, w)


@pytest.mark.parametrize("seed,n,s,h,w", [(0, 3, 112, 301, 419), (1, 2, 13, 150, 211), (2, 4, 2, 131, 97)])
def test_fast_parity_noisy_logits(fast_only, seed, n, s, h, w):
    # noise: nearly every cell mixed, many candidates per cell, many near-ties
    check_cpu(*make_case(seed, n, s, h, w, smooth=False))


def test_fast_parity_near_ties(fast_only):
    check_cpu(*near_tie_case())


def test_fast_parity_exact_ties_and_constant_logits(fast_only):
    n, s, h, w = 3, 20, 90, 140
    boxes = torch.tensor([[0.0, 0.0, 140.0, 90.0], [10.0, 5.0, 100.0, 80.0], [50.0, 20.0, 139.0, 89.0]])
    coarse = torch.zeros(n, 2, s, s)
    coarse[1:, 1] = 0.5
    coarse[2, 1, :, :7] = 0.0  # exact fg/bg tie: background
    fine = torch.zeros(n, 25, s, s)
    fine[1, 3] = 1.0
    fine[1, 7] = 1.0  # duplicated channels: 3 wins
    fine[1, 9, 5:9, 5:9] = 1.0  # three-way tie in a patch
    fine[2] = 2.0
    fine[2, 5, :10] = 2.0 + torch.rand(10, s, generator=torch.Generator().manual_seed(0))
    expected = check_cpu(boxes, coarse, fine, h, w)
    assert (expected == 3).any() and (expected == 5).any()


@pytest.mark.parametrize("box", [(0.0, 0.0, 112.0, 300.0), (3.0, 1.0, 400.0, 113.0), (0.0, 0.0, 112.0, 112.0)])
def test_fast_parity_identity_axes(fast_only, box):
    # box side == S: PyTorch copies along that axis (taps (i, i), weights (1, 0))
    _, coarse, fine, _, _ = make_case(7, 1, 112, 8, 8, smooth=True)
    check_cpu(torch.tensor([box]), coarse, fine, 320, 420)
    _, coarse, fine, _, _ = make_case(8, 1, 112, 8, 8, smooth=False)
    check_cpu(torch.tensor([box]), coarse, fine, 320, 420)


@pytest.mark.parametrize("s,size", [(4, 300), (8, 517), (2, 200), (112, 90)])
def test_fast_parity_large_and_small_scale_factors(fast_only, s, size):
    # long border runs (split into several blocks) and downscales (cells without pixels)
    gen = torch.Generator().manual_seed(size)
    boxes = torch.tensor([[-7.0, 3.0, size - 7.0, 3.0 + size * 0.8], [20.0, -11.0, 20.0 + size * 0.6, size - 11.0]])
    coarse = torch.randn(2, 2, s, s, generator=gen) + 0.5
    fine = torch.randn(2, 25, s, s, generator=gen)
    check_cpu(boxes, coarse, fine, size - 20, size + 13)


def test_fast_parity_boxes_on_and_over_the_canvas_border(fast_only):
    h, w = 211, 307
    boxes = torch.tensor([[-50.5, -20.0, 100.0, 150.0], [200.0, 100.0, 400.0, 300.0], [0.0, 0.0, 307.0, 211.0],
                          [306.0, 0.0, 420.0, 211.0], [-100.0, 210.0, 500.0, 400.0], [150.2, 60.7, 151.9, 200.0]])
    _, coarse, fine, _, _ = make_case(3, 6, 56, h, w, smooth=True)
    check_cpu(boxes, coarse, fine, h, w)


def test_fast_parity_non_square_grid(fast_only):
    gen = torch.Generator().manual_seed(5)
    n, sh, sw = 3, 20, 31
    boxes = torch.tensor([[5.0, 5.0, 205.0, 150.0], [60.0, 20.0, 160.0, 190.0], [0.0, 100.0, 250.0, 199.0]])
    coarse = torch.stack([smooth_logits(gen, 2, sw, 5, sh=sh) + torch.tensor([0.0, 1.0])[:, None, None] for _ in range(n)])
    fine = torch.stack([smooth_logits(gen, 25, sw, 5, sh=sh) for _ in range(n)])
    check_cpu(boxes, coarse, fine, 200, 250)


def test_mixed_fast_and_reference_instances():
    # one frame with a small box (PyTorch's vectorised kernel), a noise-like instance, non-finite
    # logits and smooth ones, overlapping: each path composited in order
    h, w = 240, 320
    boxes, coarse, fine, _, _ = make_case(9, 6, 56, h, w, smooth=True)
    boxes = torch.tensor([[10.0, 10.0, 300.0, 230.0], [50.0, 40.0, 90.0, 80.0], [100.0, 20.0, 260.0, 200.0],
                          [0.0, 0.0, 160.0, 120.0], [150.0, 100.0, 320.0, 240.0], [30.0, 150.0, 200.0, 235.0]])
    gen = torch.Generator().manual_seed(9)
    coarse[2], fine[2] = torch.randn(2, 56, 56, generator=gen), torch.randn(25, 56, 56, generator=gen)
    fine[3, 4, 10, 10] = float("nan")
    coarse[4, 1, 0, 0] = float("inf")
    fine[5, 7, 3:5, 3:5] = -float("inf")
    before = [t.clone() for t in (boxes, coarse, fine)]
    args = (boxes, coarse, fine, h, w)
    for impl in CPU_IMPLS:
        with cpu_render_impl(impl):
            assert_exact(render_cpu.render_labels_cpu(*args), render_labels_reference(*args))
    for t, b in zip(args[:3], before):  # NaN != NaN: compare the bits
        assert torch.equal(t.view(torch.int32), b.view(torch.int32)), "inputs were modified"


def test_fast_path_is_taken_for_smooth_logits(fast_only):
    check_cpu(*make_case(0, 3, 112, 359, 641, smooth=True))


def test_channels_last_logits():
    boxes, coarse, fine, h, w = make_case(4, 3, 56, 200, 300, smooth=True)
    check_cpu(boxes, coarse.to(memory_format=torch.channels_last), fine.to(memory_format=torch.channels_last), h, w)


def test_parity_with_one_thread():
    # PyTorch's CPU bilinear rounding can depend on the thread count (the emulation probe is cached
    # per thread count); the fast path must stay exact, and in use, with a single thread
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert render_cpu.emulation_matches_torch()
        for smooth in (True, False):
            check_cpu(*make_case(21, 3, 112, 300, 500, smooth=smooth))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("shape", [(512, 910), (77, 131), (1, 1), (1, 3), (3, 5), (2, 2)])
def test_colorize_matches_indexing(shape):
    from densevid.kernels import hint_lut
    from densevid.kernels.reference import colorize_reference
    from densevid.kernels.render import colorize

    labels = torch.randint(0, 25, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(shape[1]))
    for lut in (hint_lut("viridis"), hint_lut("parula"),
                torch.randint(0, 256, (25, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))):
        for impl in CPU_IMPLS:
            with cpu_render_impl(impl):
                out = colorize(labels, lut)
            assert out.is_contiguous() and out.dtype == torch.uint8
            assert_exact(out, colorize_reference(labels, lut))
    # a non-contiguous label view is coloured as its values say
    view = labels.t()
    for impl in CPU_IMPLS:
        with cpu_render_impl(impl):
            assert_exact(colorize(view, lut), colorize_reference(view, lut))


@pytest.mark.parametrize("bad", [25, 255])
@pytest.mark.parametrize("shape", [(8, 8), (3, 5)])  # in a group of 4 pixels / in the tail
def test_colorize_rejects_labels_outside_the_table(bad, shape):
    from densevid.kernels import hint_lut
    from densevid.kernels.render import colorize

    labels = torch.zeros(shape, dtype=torch.uint8)
    labels[-1, -1] = bad
    for impl in CPU_IMPLS:
        with cpu_render_impl(impl), pytest.raises(IndexError):
            colorize(labels, hint_lut("viridis"))


@pytest.mark.parametrize("smooth", [True, False])
def test_fallback_labels_match_reference(smooth):
    # the fallback's argmax replacement (first maximal index), including exact ties and -0.0 / 0.0
    from densevid.kernels.reference import instance_labels_reference

    _, coarse, fine, _, _ = make_case(31, 2, 24, 8, 8, smooth=smooth)
    fine[1, 3:6] = fine[1, 2]  # exact ties: lowest index wins
    fine[1, 7, :4] = 0.0
    fine[1, 8, :4] = -0.0
    coarse[1, 1, :3] = coarse[1, 0, :3]  # coarse tie: background
    for i in range(2):
        for h, w in ((97, 61), (24, 24), (300, 7)):
            assert_exact(render_cpu._instance_labels_fallback(coarse[i], fine[i], h, w),
                         instance_labels_reference(coarse[i], fine[i], h, w))


def _fma32_correctly_rounded(a: float, b: float, c: float) -> float:
    """Independent reference: the float32 nearest to the exact a * b + c (ties to even)."""
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    guess = np.float32(float(exact))
    options = [guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))]
    return float(min(options, key=lambda f: (abs(Fraction(float(f)) - exact),
                                             int(np.array(f).view(np.int32)) & 1)))


def _fma_cases():
    gen = torch.Generator().manual_seed(5)
    one_ulp = 2.0 ** -23
    crafted = [  # a * b + c lands, after float64 rounding, exactly on a float32 midpoint
        (1.0 + one_ulp, 2.0 ** -24 * (1.0 - one_ulp), 1.0 + one_ulp),   # true value below it
        (1.0 + one_ulp, -2.0 ** -24 * (1.0 - one_ulp), 1.0 + 2 * one_ulp),  # above it
        (1.0 + one_ulp, 2.0 ** -24 * (1.0 - one_ulp), 1.0),
        (2.0 ** -70, 2.0 ** -70, 2.0 ** -140),  # float32 subnormal results
        (3.0e-39, 0.5, -1.0e-45), (0.0, 5.0, -0.0), (1.5, 2.0, -3.0),
    ]
    a = torch.randn(300, generator=gen) * torch.exp(torch.randn(300, generator=gen) * 6)
    b = torch.rand(300, generator=gen)
    c = torch.randn(300, generator=gen) * torch.exp(torch.randn(300, generator=gen) * 6)
    rand = list(zip(a.tolist(), b.tolist(), c.tolist()))
    return [tuple(float(torch.tensor(v, dtype=torch.float32)) for v in case) for case in crafted + rand]


def test_fma32_emulations_are_correctly_rounded():
    _render_numba = render_cpu.compiled_kernels()

    cases = _fma_cases()
    a, b, c = (torch.tensor(col, dtype=torch.float32) for col in zip(*cases))
    expected = [_fma32_correctly_rounded(*case) for case in cases]
    assert render_cpu._fma32(a, b, c).tolist() == expected
    compiled = [float(_render_numba._fma32(*(np.float32(v) for v in case))) for case in cases]
    assert compiled == expected


def test_compiled_taps_match_axis_taps():
    _render_numba = render_cpu.compiled_kernels()

    for in_size, out_size, offset, length in ((112, 485, 0, 485), (112, 485, 37, 200), (112, 112, 5, 100),
                                              (112, 40, 0, 40), (1, 7, 0, 7), (2, 300, 299, 1), (37, 1, 0, 1),
                                              (112, 113, 0, 113), (13, 900, 450, 450)):
        i0, _, w0, w1 = render_cpu._axis_taps(in_size, out_size, torch.arange(offset, offset + length))
        c_i0, c_w0, c_w1 = _render_numba._taps(in_size, out_size, offset, length)
        assert torch.equal(torch.from_numpy(c_i0), i0)
        assert torch.equal(torch.from_numpy(c_w0), w0) and torch.equal(torch.from_numpy(c_w1), w1)


def test_without_usable_numba_the_torch_path_renders():
    # NUMBA_DISABLE_JIT would run the kernels as (very slow) Python: the torch path takes over
    code = textwrap.dedent("""
        import torch
        from densevid.kernels import render_cpu
        from densevid.kernels.reference import render_labels_reference
        from cases import make_case
        assert render_cpu.compiled_kernels() is None
        args = make_case(3, 3, 56, 120, 90, smooth=True)
        assert torch.equal(render_cpu.render_labels_cpu(*args), render_labels_reference(*args))
    """)
    env = subprocess_env(REPO_ROOT / "tests", NUMBA_DISABLE_JIT="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_compiled_kernels_stay_in_bounds_on_a_random_sweep(tmp_path):
    # Compiled code does not check array bounds: a wrong index would read or write memory silently.
    # Here numba compiles the kernels with bounds checks (into a private cache) and a sweep of odd
    # sizes, tiny and non-square grids, boxes over the borders, smooth/noisy/tied logits must run
    # without an IndexError and match the reference.
    code = textwrap.dedent("""
        import torch
        from densevid.kernels import render_cpu
        from densevid.kernels.reference import render_labels_reference
        from cases import make_case, near_tie_case, smooth_logits
        assert render_cpu.compiled_kernels() is not None
        gen = torch.Generator().manual_seed(11)
        cases = [near_tie_case()]
        for seed in range(40):
            n, sh, sw = (int(v) for v in torch.randint(1, 5, (1,), generator=gen).tolist() +
                         torch.randint(2, 30, (2,), generator=gen).tolist())
            h, w = (int(v) for v in torch.randint(1, 160, (2,), generator=gen))
            boxes, coarse, fine, _, _ = make_case(seed, n, 30, h, w, smooth=seed % 3 != 0)
            coarse, fine = coarse[:, :, :sh, :sw].contiguous(), fine[:, :, :sh, :sw].contiguous()
            if seed % 5 == 0:
                fine[:, 3] = fine[:, 2]  # exact ties
            cases.append((boxes, coarse, fine, h, w))
        for args in cases:
            assert torch.equal(render_cpu.render_labels_cpu(*args), render_labels_reference(*args))
    """)
    env = subprocess_env(REPO_ROOT / "tests", NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_compiled_kernels_work_where_numba_cannot_cache(tmp_path):
    # a read-only install with no writable home: numba finds no cache location (simulated by
    # allowing only its zip-file locator) and refuses cache=True; the kernels compile uncached
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")
        from densevid.kernels import render_cpu
        from densevid.kernels.reference import render_labels_reference
        from cases import make_case
        kernels = render_cpu.compiled_kernels()
        assert kernels is not None and kernels._CACHE is False
        args = make_case(2, 2, 40, 90, 120)
        assert (render_cpu.render_labels_cpu(*args) == render_labels_reference(*args)).all()
    """)
    env = subprocess_env(REPO_ROOT / "tests", NUMBA_CACHE_LOCATOR_CLASSES="ZipCacheLocator")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
