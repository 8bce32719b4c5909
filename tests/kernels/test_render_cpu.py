"""The exact CPU render of kernels/render_cpu.py (numba-compiled kernels, kernels/_render_numba.py):
exact parity with the reference on cases that reach the kernel's separate code paths, its helpers
against independent references, the fallbacks (reference instances, no numba) and numba's cache
trouble. The bounds-checked runs are in test_render_cpu_bounds.py."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from densevid.kernels import hint_lut, render_cpu
from densevid.kernels.reference import box_xywh_int, colorize_reference, render_labels_reference
from densevid.kernels.render import colorize
from densevid.pipeline.core import DensevidWarning
from support.cases import make_case, near_tie_case, smooth_logits
from support.helpers import REPO_ROOT, assert_exact, subprocess_env
from support.helpers import assert_cpu_render_exact as check_cpu


@pytest.fixture
def compiled_only(monkeypatch):
    """Fail when an instance the compiled kernel can take is rendered by the reference's F.interpolate
    instead: the parity then tests the kernel itself."""
    reference = render_cpu.instance_labels_reference

    def checked_reference(coarse, fine, h, w):
        eligible = render_cpu._uses_generic_kernel(fine.float(), h, w) and bool(
            torch.isfinite(coarse).all() and torch.isfinite(fine).all())
        assert not eligible, "fell back to the reference"
        return reference(coarse, fine, h, w)

    monkeypatch.setattr(render_cpu, "instance_labels_reference", checked_reference)


def test_boxes_xywh_int_matches_reference():
    gen = torch.Generator().manual_seed(0)
    boxes = torch.cat([torch.randn(200, 4, generator=gen) * 300,
                       torch.randn(50, 4, generator=gen) * 1e6,
                       torch.tensor([[0.0, 0.0, 0.0, 0.0], [-0.5, -0.99, 0.5, 0.99], [1.0, 2.0, 1.0 + 2 ** -20, 2.5]])])
    for dtype in (torch.float32, torch.float64, torch.float16):
        b = boxes.to(dtype) if dtype != torch.float16 else boxes[:200].to(dtype)  # float16: no 1e6
        assert render_cpu._boxes_xywh_int(b) == [box_xywh_int(b[i]) for i in range(b.shape[0])]


@pytest.mark.parametrize("low,s", [(3, 112), (6, 112), (12, 112), (24, 112), (6, 56), (5, 24), (4, 9)])
def test_kernel_parity_smoothness_sweep(compiled_only, low, s):
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
def test_kernel_parity_noisy_logits(compiled_only, seed, n, s, h, w):
    # noise: nearly every cell mixed, many candidates per cell, many near-ties
    check_cpu(*make_case(seed, n, s, h, w, smooth=False))


def test_kernel_parity_near_ties(compiled_only):
    check_cpu(*near_tie_case())


def test_kernel_parity_exact_ties_and_constant_logits(compiled_only):
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
def test_kernel_parity_identity_axes(compiled_only, box):
    # box side == S: PyTorch copies along that axis (taps (i, i), weights (1, 0))
    _, coarse, fine, _, _ = make_case(7, 1, 112, 8, 8, smooth=True)
    check_cpu(torch.tensor([box]), coarse, fine, 320, 420)
    _, coarse, fine, _, _ = make_case(8, 1, 112, 8, 8, smooth=False)
    check_cpu(torch.tensor([box]), coarse, fine, 320, 420)


@pytest.mark.parametrize("s,size", [(4, 300), (8, 517), (2, 200), (112, 90)])
def test_kernel_parity_large_and_small_scale_factors(compiled_only, s, size):
    # long runs of output pixels per cell (upscales) and cells without pixels (downscales)
    gen = torch.Generator().manual_seed(size)
    boxes = torch.tensor([[-7.0, 3.0, size - 7.0, 3.0 + size * 0.8], [20.0, -11.0, 20.0 + size * 0.6, size - 11.0]])
    coarse = torch.randn(2, 2, s, s, generator=gen) + 0.5
    fine = torch.randn(2, 25, s, s, generator=gen)
    check_cpu(boxes, coarse, fine, size - 20, size + 13)


def test_kernel_parity_boxes_on_and_over_the_canvas_border(compiled_only):
    h, w = 211, 307
    boxes = torch.tensor([[-50.5, -20.0, 100.0, 150.0], [200.0, 100.0, 400.0, 300.0], [0.0, 0.0, 307.0, 211.0],
                          [306.0, 0.0, 420.0, 211.0], [-100.0, 210.0, 500.0, 400.0], [150.2, 60.7, 151.9, 200.0]])
    _, coarse, fine, _, _ = make_case(3, 6, 56, h, w, smooth=True)
    check_cpu(boxes, coarse, fine, h, w)


def test_kernel_parity_non_square_grid(compiled_only):
    gen = torch.Generator().manual_seed(5)
    n, sh, sw = 3, 20, 31
    boxes = torch.tensor([[5.0, 5.0, 205.0, 150.0], [60.0, 20.0, 160.0, 190.0], [0.0, 100.0, 250.0, 199.0]])
    fg_bias = torch.tensor([0.0, 1.0])[:, None, None]
    coarse = torch.stack([smooth_logits(gen, 2, sw, 5, sh=sh) + fg_bias for _ in range(n)])
    fine = torch.stack([smooth_logits(gen, 25, sw, 5, sh=sh) for _ in range(n)])
    check_cpu(boxes, coarse, fine, 200, 250)


def test_kernel_is_used_for_smooth_logits(compiled_only):
    check_cpu(*make_case(0, 3, 112, 359, 641, smooth=True))


def test_kernel_and_reference_instances_composite_in_order():
    # one frame with a small box (PyTorch's vectorised kernel), a noise-like instance, non-finite
    # logits and smooth ones, overlapping: the kernel and the reference paint in turn
    h, w = 240, 320
    boxes, coarse, fine, _, _ = make_case(9, 6, 56, h, w, smooth=True)
    boxes = torch.tensor([[10.0, 10.0, 300.0, 230.0], [50.0, 40.0, 90.0, 80.0], [100.0, 20.0, 260.0, 200.0],
                          [0.0, 0.0, 160.0, 120.0], [150.0, 100.0, 320.0, 240.0], [30.0, 150.0, 200.0, 235.0]])
    gen = torch.Generator().manual_seed(9)
    coarse[2], fine[2] = torch.randn(2, 56, 56, generator=gen), torch.randn(25, 56, 56, generator=gen)
    fine[3, 4, 10, 10] = float("nan")
    coarse[4, 1, 0, 0] = float("inf")
    fine[5, 7, 3:5, 3:5] = -float("inf")
    check_cpu(boxes, coarse, fine, h, w)


def test_channels_last_logits():
    boxes, coarse, fine, h, w = make_case(4, 3, 56, 200, 300, smooth=True)
    check_cpu(boxes, coarse.to(memory_format=torch.channels_last), fine.to(memory_format=torch.channels_last), h, w)


def test_parity_with_one_thread():
    # PyTorch's CPU bilinear rounding can depend on the thread count (the emulation probe is cached
    # per thread count); the kernel must stay exact, and in use, with a single thread
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert render_cpu.emulation_matches_torch()
        for smooth in (True, False):
            check_cpu(*make_case(21, 3, 112, 300, 500, smooth=smooth))
    finally:
        torch.set_num_threads(threads)


def test_where_the_emulation_does_not_hold_every_instance_uses_the_reference(monkeypatch):
    # another torch build or CPU: the self-check fails, and the render stays exact without the kernel
    monkeypatch.setattr(render_cpu, "emulation_matches_torch", lambda *args: False)
    monkeypatch.setattr(render_cpu.compiled_kernels(), "render_instance", None)  # a call would raise
    check_cpu(*make_case(22, 3, 56, 150, 210, smooth=True))


def test_without_compiled_kernels_the_cpu_render_is_the_reference(monkeypatch):
    # numba missing or unable to compile: the plain reference render and lookup, same output
    args = make_case(23, 3, 56, 121, 97, smooth=True)
    labels = render_labels_reference(*args)
    lut = hint_lut("parula")
    monkeypatch.setattr(render_cpu, "compiled_kernels", lambda: None)
    assert_exact(render_cpu.render_labels_cpu(*args), labels)
    assert_exact(colorize(labels, lut), colorize_reference(labels, lut))
    with pytest.raises(IndexError):
        colorize(torch.full((3, 5), 25, dtype=torch.uint8), lut)


@pytest.mark.parametrize("shape", [(512, 910), (77, 131), (1, 1), (1, 3), (3, 5), (2, 2)])
def test_colorize_matches_indexing(shape):
    labels = torch.randint(0, 25, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(shape[1]))
    for lut in (hint_lut("viridis"), hint_lut("parula"),
                torch.randint(0, 256, (25, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))):
        out = colorize(labels, lut)
        assert out.is_contiguous() and out.dtype == torch.uint8
        assert_exact(out, colorize_reference(labels, lut))
    # a non-contiguous label view is coloured as its values say
    view = labels.t()
    assert_exact(colorize(view, lut), colorize_reference(view, lut))


@pytest.mark.parametrize("shape", [(4, 77, 131), (3, 1, 1), (2, 3, 5), (1, 2, 2), (2, 2, 3, 7)])
def test_batched_colorize_takes_the_compiled_path_and_matches_indexing(shape, monkeypatch):
    labels = torch.randint(0, 25, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(sum(shape)))
    lut = hint_lut("viridis")
    expected = colorize_reference(labels, lut)
    import densevid.kernels.render as render_module

    def no_reference(*args):
        raise AssertionError("a batch of label maps took the slow reference lookup")

    monkeypatch.setattr(render_module, "colorize_reference", no_reference)
    out = colorize(labels, lut)
    assert out.shape == (*shape, 3) and out.is_contiguous()
    assert_exact(out.reshape(-1, shape[-1], 3), expected.reshape(-1, shape[-1], 3))
    for i in range(shape[0]):  # each map of the batch as it would be alone
        monkeypatch.undo()
        assert_exact(out[i].reshape(-1, shape[-1], 3), colorize(labels[i], lut).reshape(-1, shape[-1], 3))


def test_batched_colorize_of_an_empty_batch_and_a_label_outside_the_table():
    lut = hint_lut("viridis")
    assert colorize(torch.zeros((0, 5, 7), dtype=torch.uint8), lut).shape == (0, 5, 7, 3)
    labels = torch.zeros((3, 4, 6), dtype=torch.uint8)
    labels[2, 3, 5] = 25
    with pytest.raises(IndexError):
        colorize(labels, lut)


@pytest.mark.parametrize("bad", [25, 255])
@pytest.mark.parametrize("shape", [(8, 8), (3, 5)])  # in a group of 4 pixels / in the tail
def test_colorize_rejects_labels_outside_the_table(bad, shape):
    labels = torch.zeros(shape, dtype=torch.uint8)
    labels[-1, -1] = bad
    with pytest.raises(IndexError):
        colorize(labels, hint_lut("viridis"))


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


def test_fma32_emulation_is_correctly_rounded():
    kernels = render_cpu.compiled_kernels()
    for case in _fma_cases():
        assert float(kernels._fma32(*(np.float32(v) for v in case))) == _fma32_correctly_rounded(*case), case


def _taps_reference(in_size: int, out_size: int, dst: int) -> tuple[int, float, float]:
    """PyTorch's (align_corners=False) source cell and weights of output index ``dst``, scalar by
    scalar: src = fma(scale, dst + 0.5, -0.5) correctly rounded, clamped at 0; an identity axis copies."""
    if in_size == out_size:
        return dst, 1.0, 0.0
    scale = float(np.float32(in_size) / np.float32(out_size))
    src = max(np.float32(_fma32_correctly_rounded(scale, dst + 0.5, -0.5)), np.float32(0.0))
    i0 = min(int(np.floor(src)), in_size - 1)
    lam = min(max(src - np.float32(i0), np.float32(0.0)), np.float32(1.0))
    return i0, float(np.float32(1.0) - lam), float(lam)


def test_compiled_taps_match_a_scalar_reference():
    kernels = render_cpu.compiled_kernels()
    for in_size, out_size, offset, length in ((112, 485, 0, 485), (112, 485, 37, 200), (112, 112, 5, 100),
                                              (112, 40, 0, 40), (1, 7, 0, 7), (2, 300, 299, 1), (37, 1, 0, 1),
                                              (112, 113, 0, 113), (13, 900, 450, 450)):
        i0, w0, w1 = kernels._taps(in_size, out_size, offset, length)
        expected = [_taps_reference(in_size, out_size, dst) for dst in range(offset, offset + length)]
        assert list(zip(i0.tolist(), w0.tolist(), w1.tolist())) == expected, (in_size, out_size)


def test_compiled_interpolate_matches_f_interpolate_on_odd_sizes():
    # the self-check's emulation on its own, on odd and identity sizes (out_h + out_w > 128: the
    # generic kernel), mixed magnitudes
    kernels = render_cpu.compiled_kernels()
    gen = torch.Generator().manual_seed(3)
    for n_channels, sh, sw, h, w in ((25, 7, 13, 101, 33), (2, 112, 112, 112, 57), (25, 3, 1, 129, 2),
                                     (5, 37, 29, 37, 200)):
        x = torch.randn(n_channels, sh, sw, generator=gen)
        x *= torch.exp(torch.randn(n_channels, sh, sw, generator=gen) * 4)
        expected = torch.nn.functional.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        assert_exact(torch.from_numpy(kernels.interpolate_exact(x.numpy(), h, w)), expected)


# --- numba's cache: where it cannot be kept, the kernels compile uncached --------------------------

class _FakeKernels:
    def __init__(self, cache: bool, failure: Exception | None):
        self._CACHE, self.failure = cache, failure

    def warm_up(self):
        if self.failure is not None:
            raise self.failure


@pytest.mark.parametrize("failure", [OSError(errno.EFBIG, "File too large"), OSError(errno.ENOSPC, "No space left"),
                                     PermissionError(errno.EACCES, "Permission denied"),
                                     RuntimeError("cannot cache function 'render_instance': no locator available")])
def test_kernels_compile_uncached_where_numba_cannot_keep_its_cache(monkeypatch, failure):
    loads = []

    def load(cache):
        loads.append(cache)
        return _FakeKernels(cache, failure if cache else None)

    monkeypatch.setattr(render_cpu, "_load_kernels_module", load)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernels = render_cpu._compiled_kernels.__wrapped__()
    assert loads == [True, False] and kernels._CACHE is False


def test_kernels_that_cannot_compile_leave_the_reference_with_a_warning(monkeypatch):
    monkeypatch.setattr(render_cpu, "_load_kernels_module", lambda cache: _FakeKernels(cache, TypeError("no")))
    with pytest.warns(DensevidWarning, match="reference render .slower, same output"):
        assert render_cpu._compiled_kernels.__wrapped__() is None


def test_threads_asking_for_the_kernels_at_once_all_get_them():
    # the background preparation and the first render ask at the same time: before the lock, the second
    # thread found the module half-loaded and fell back to the slow reference with a warning
    code = textwrap.dedent("""
        import threading, warnings
        warnings.simplefilter("error")
        from densevid.kernels import render_cpu
        barrier, got, errors = threading.Barrier(4), [], []
        def ask():
            barrier.wait()
            try:
                got.append(render_cpu.compiled_kernels())
            except Exception as exc:
                errors.append(exc)
        threads = [threading.Thread(target=ask) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert not errors, errors
        assert len(got) == 4 and got[0] is not None and all(k is got[0] for k in got), got
    """)
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env(REPO_ROOT / "tests"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_without_usable_numba_the_reference_renders():
    # NUMBA_DISABLE_JIT would run the kernels as (very slow) Python: the reference renders instead
    code = textwrap.dedent("""
        import torch
        from densevid.kernels import render_cpu
        from densevid.kernels.reference import render_labels_reference
        from support.cases import make_case
        assert render_cpu.compiled_kernels() is None
        args = make_case(3, 3, 56, 120, 90, smooth=True)
        assert torch.equal(render_cpu.render_labels_cpu(*args), render_labels_reference(*args))
    """)
    env = subprocess_env(REPO_ROOT / "tests", NUMBA_DISABLE_JIT="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


_UNCACHED_RENDER = """
    import warnings
    warnings.simplefilter("error")
    from densevid.kernels import render_cpu
    from densevid.kernels.reference import render_labels_reference
    from support.cases import make_case
    kernels = render_cpu.compiled_kernels()
    assert kernels is not None and kernels._CACHE is False
    args = make_case(2, 2, 40, 90, 120)
    assert (render_cpu.render_labels_cpu(*args) == render_labels_reference(*args)).all()
"""


@pytest.mark.slow
def test_compiled_kernels_work_where_numba_has_nowhere_to_cache():
    # a read-only install with no writable home: numba finds no cache location (simulated by
    # allowing only its zip-file locator) and refuses cache=True; the kernels compile uncached
    env = subprocess_env(REPO_ROOT / "tests", NUMBA_CACHE_LOCATOR_CLASSES="ZipCacheLocator")
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(_UNCACHED_RENDER)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _no_file_may_grow():
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # every write fails with EFBIG ("File too large")


@pytest.mark.slow
def test_compiled_kernels_work_where_numba_cannot_write_its_cache(tmp_path):
    # numba finds a cache directory but writing there fails (here a file size limit of 0: EFBIG, as
    # a full disk gives ENOSPC): the kernels compile uncached, silently, and render
    env = subprocess_env(REPO_ROOT / "tests", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(_UNCACHED_RENDER)], env=env, capture_output=True,
                            text=True, timeout=600, preexec_fn=_no_file_may_grow)
    assert result.returncode == 0, result.stderr[-3000:]
