"""The render backends (kernels/render.py) against the plain reference (kernels/reference.py): the
exact CPU render, the torch-on-device render (exact on the CPU), Triton (interpreter on the CPU,
CUDA where there is one), the hint colouring and the backend choice."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from densevid.kernels import CMAP_NAMES, hint_lut, render, render_hint, render_labels, render_labels_reference
from densevid.kernels.render_cpu import emulation_matches_torch
from densevid.kernels.render_device import render_labels_device
from support.cases import make_case, near_tie_case
from support.helpers import GPU_MIN_AGREEMENT, REPO_ROOT, assert_exact, assert_labels_agree
from support.helpers import assert_cpu_render_exact as check_cpu


def test_emulation_model_matches_this_torch():
    # the compiled kernels' exact bilinear model; if this fails the cpu render quietly uses F.interpolate
    assert emulation_matches_torch()


@pytest.mark.parametrize("seed,n,s,h,w,smooth", [
    (0, 3, 112, 359, 641, True),
    (1, 3, 112, 359, 641, False),
    (2, 2, 56, 128, 200, True),
    (3, 4, 16, 90, 70, False),
    (4, 1, 112, 7, 13, True),
    (5, 2, 8, 1, 1, False),
    (6, 5, 24, 150, 150, True),
    (7, 2, 1, 200, 160, False),  # S = 1
    (8, 3, 13, 301, 257, False),  # odd S, upscale
])
def test_cpu_parity_random(seed, n, s, h, w, smooth):
    check_cpu(*make_case(seed, n, s, h, w, smooth))


def test_cpu_empty_and_degenerate_boxes():
    check_cpu(*make_case(0, 0, 112, 31, 17))
    boxes = torch.tensor([[5.0, 5.0, 5.5, 40.0],     # w < 1: skipped
                          [3.0, 9.0, 60.0, 9.9],     # h < 1: skipped
                          [10.0, 10.0, 4.0, 30.0],   # negative w
                          [2.0, 3.0, 3.0, 4.0],      # 1 x 1
                          [7.2, 8.9, 9.3, 11.95],    # 2 x 3
                          [-500.0, -500.0, -400.0, -400.0],  # fully outside
                          [60.0, 40.0, 200.0, 100.0]])       # starts outside on the right/bottom
    _, coarse, fine, _, _ = make_case(1, 7, 112, 50, 60, smooth=False)
    check_cpu(boxes, coarse, fine, 50, 60)


def test_cpu_boxes_crossing_borders_and_overlapping():
    h, w = 120, 170
    boxes = torch.tensor([[-30.7, -12.2, 80.0, 90.0], [40.0, 30.0, 200.5, 150.3], [20.0, 20.0, 150.0, 110.0],
                          [0.0, 0.0, 170.0, 120.0], [-1.0, -1.0, 171.0, 121.0]])
    _, coarse, fine, _, _ = make_case(2, 5, 112, h, w, smooth=True)
    check_cpu(boxes, coarse, fine, h, w)


@pytest.mark.parametrize("box_size", [3, 37, 111, 112, 113, 500])  # downscale .. identity .. upscale
def test_cpu_scales(box_size):
    boxes = torch.tensor([[1.0, 2.0, 1.0 + box_size, 2.0 + box_size * 0.7]])
    _, coarse, fine, _, _ = make_case(box_size, 1, 112, 8, 8, smooth=False)
    check_cpu(boxes, coarse, fine, 360, 520)


def test_cpu_argmax_ties():
    n, s, h, w = 3, 20, 90, 140
    boxes = torch.tensor([[0.0, 0.0, 140.0, 90.0], [10.0, 5.0, 100.0, 80.0], [50.0, 20.0, 139.0, 89.0]])
    coarse = torch.zeros(n, 2, s, s)                # coarse tie -> background everywhere for instance 0
    coarse[1:, 1] = 0.5                             # instances 1, 2: foreground
    fine = torch.zeros(n, 25, s, s)
    fine[1, 3] = 1.0
    fine[1, 7] = 1.0                                # duplicated channels: index 3 must win
    fine[2] = 2.0                                   # constant logits: argmax 0 -> earlier instance shows through
    fine[2, 5, :10] = 2.0 + torch.rand(10, s)       # partly part 5
    expected = check_cpu(boxes, coarse, fine, h, w)
    assert set(expected.unique().tolist()) <= {0, 3, 5}
    assert (expected == 3).any() and (expected == 5).any()


def test_cpu_foreground_with_fine_background_shows_earlier_instance():
    s = 16
    boxes = torch.tensor([[0.0, 0.0, 150.0, 100.0], [20.0, 10.0, 130.0, 90.0]])
    coarse = torch.zeros(2, 2, s, s)
    coarse[:, 1] = 4.0  # both foreground
    fine = torch.zeros(2, 25, s, s)
    fine[0, 9] = 3.0
    fine[1, 0] = 5.0  # later instance: fg but fine argmax 0 -> must not paint
    fine[1, 2, :, :4] = 6.0
    expected = check_cpu(boxes, coarse, fine, 100, 150)
    assert (expected == 9).sum() > 0 and (expected == 2).sum() > 0


def test_cpu_near_ties():
    # the exact (emulated) path must decide near-ties like F.interpolate
    check_cpu(*near_tie_case())


def test_cpu_float16_input():
    boxes, coarse, fine, h, w = make_case(12, 3, 56, 160, 230, smooth=True)
    check_cpu(boxes, coarse.half(), fine.half(), h, w)


def _device_cases():
    """Cases for the torch-on-device render: odd sizes, no instance, degenerate and outside boxes,
    ties, float16, channels-last and non-finite logits."""
    yield make_case(40, 3, 112, 359, 641, smooth=True)
    yield make_case(41, 2, 13, 301, 257, smooth=False)
    yield make_case(42, 0, 112, 31, 17)
    yield make_case(43, 2, 8, 1, 1, smooth=False)
    yield make_case(44, 2, 1, 200, 160, smooth=False)
    boxes = torch.tensor([[5.0, 5.0, 5.5, 40.0], [10.0, 10.0, 4.0, 30.0], [2.0, 3.0, 3.0, 4.0],
                          [-500.0, -500.0, -400.0, -400.0], [60.0, 40.0, 200.0, 100.0], [-7.5, -3.2, 44.0, 51.0]])
    _, coarse, fine, _, _ = make_case(45, 6, 28, 50, 60, smooth=True)
    fine[5, 7] = fine[5, 3]  # exact ties: the lowest index wins
    yield boxes, coarse, fine, 50, 60
    boxes, coarse, fine, h, w = make_case(46, 3, 56, 160, 230, smooth=True)
    yield boxes, coarse.half(), fine.half(), h, w
    yield boxes, coarse.to(memory_format=torch.channels_last), fine.to(memory_format=torch.channels_last), h, w
    coarse, fine = coarse.clone(), fine.clone()
    fine[0, 4, 10, 10] = float("nan")
    coarse[1, 1, 0, 0] = float("inf")
    fine[2, 7, 3:5, 3:5] = -float("inf")
    yield boxes, coarse, fine, h, w
    yield near_tie_case()


def test_device_render_on_cpu_equals_reference():
    # on CPU tensors the torch-on-device render runs the reference's ops: exact
    for args in _device_cases():
        before = [t.clone() for t in args[:3]]
        expected = render_labels_reference(*args)
        assert_exact(render_labels_device(*args), expected)
        assert_exact(render_labels(*args, backend="device"), expected)
        for t, b in zip(args[:3], before):
            torch.testing.assert_close(t, b, rtol=0, atol=0, equal_nan=True, msg="inputs were modified")


def test_auto_backend_choice(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert render._resolve("auto", cpu) == "cpu"
    monkeypatch.setattr(render, "_triton_importable", lambda: True)
    assert render._resolve("auto", cuda) == "triton"
    monkeypatch.setattr(render, "_triton_importable", lambda: False)
    assert render._resolve("auto", cuda) == "device"  # CUDA without triton: the torch-on-device render
    assert render._resolve("auto", cpu) == "cpu"
    for backend in ("reference", "cpu", "device", "triton"):
        assert render._resolve(backend, cuda) == backend


def test_kernels_work_without_triton(monkeypatch):
    # only the triton backend imports triton: without it the others run, and auto does not pick it
    import densevid.kernels

    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` raises ImportError
    for name in ("render_triton", "_render_triton_kernels"):
        monkeypatch.delitem(sys.modules, f"densevid.kernels.{name}", raising=False)
        monkeypatch.delattr(densevid.kernels, name, raising=False)
    render_triton = importlib.import_module("densevid.kernels.render_triton")
    assert not render_triton.triton_available()
    assert render._resolve("auto", torch.device("cuda")) == "device"
    args = make_case(0, 2, 8, 20, 30)
    assert_exact(render_labels(*args), render_labels_reference(*args))
    with pytest.raises(ImportError):
        render_triton.render_labels_triton(*args)


@pytest.mark.parametrize("cmap", CMAP_NAMES)
@pytest.mark.parametrize("backend", ["cpu", "reference", "device", "auto"])
def test_render_hint_is_lut_of_labels(cmap, backend):
    args = make_case(13, 3, 56, 77, 131)
    lut = hint_lut(cmap)
    expected = lut[render_labels_reference(*args).long()]
    assert_exact(render_hint(*args, lut, backend=backend), expected)


def test_bad_backend_and_shapes():
    args = make_case(14, 2, 8, 10, 10)
    with pytest.raises(ValueError, match="unknown render backend"):
        render_labels(*args, backend="gpu")
    boxes, coarse, fine, h, w = args
    with pytest.raises(ValueError, match="fine_segm must have shape"):
        render_labels(boxes, coarse, fine[:, :24], h, w)
    with pytest.raises(ValueError, match="coarse_segm must have shape"):
        render_labels(boxes[:1], coarse, fine, h, w)
    with pytest.raises(ValueError, match="height and width"):
        render_labels(boxes, coarse, fine, 0, w)


# --- Triton, under the CPU interpreter (a subprocess, so TRITON_INTERPRET=1 is set before import) --

_TRITON_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TRITON_INTERPRET"] = "1"
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
    import torch
    from support.cases import make_case
    from densevid.kernels import hint_lut, render_labels_reference
    from densevid.kernels.render import prepare_backend
    from densevid.kernels.render_triton import render_labels_triton, render_hint_triton
    prepare_backend("triton", "cpu")  # the warm-up: both variants of the kernel, before the cases
    cases = [make_case(20, 3, 12, 40, 50), make_case(21, 2, 8, 33, 47, smooth=False),
             make_case(22, 0, 8, 5, 6), make_case(23, 3, 16, 7, 13, smooth=False), make_case(24, 2, 9, 1, 1)]
    b, c, f, h, w = make_case(25, 2, 8, 30, 40)
    cases.append((b, c.half(), f.half(), h, w))
    equal = total = 0
    for args in cases:
        ref = render_labels_reference(*args)
        out = render_labels_triton(*args)
        assert out.shape == ref.shape and out.dtype == torch.uint8
        equal += int((out == ref).sum()); total += ref.numel()
        rgb = render_hint_triton(*args, hint_lut("parula"))
        assert torch.equal(rgb, hint_lut("parula")[out.long()])
    print("AGREEMENT", equal, total)
""")


@pytest.mark.slow
def test_triton_interpreter_parity(tmp_path):
    pytest.importorskip("triton")
    script = tmp_path / "triton_parity.py"
    script.write_text(_TRITON_SCRIPT)
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, str(script), str(REPO_ROOT), str(REPO_ROOT / "tests")],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("AGREEMENT")][-1]
    equal, total = map(int, line.split()[1:])
    agreement = equal / total
    print(f"triton interpreter agreement: {agreement:.6%} ({equal}/{total} pixels)")
    assert agreement >= GPU_MIN_AGREEMENT, f"only {agreement:.6%} of pixels agree"


@pytest.mark.cuda
@pytest.mark.parametrize("seed,smooth", [(30, True), (31, False)])
def test_triton_cuda_parity(seed, smooth):
    boxes, coarse, fine, h, w = make_case(seed, 3, 112, 512, 910, smooth=smooth)
    expected = render_labels_reference(boxes, coarse, fine, h, w)
    dev = torch.device("cuda")
    args = (boxes.to(dev), coarse.to(dev), fine.to(dev), h, w)
    labels = render_labels(*args, backend="triton")
    assert labels.device.type == "cuda"
    agreement = assert_labels_agree(labels, expected, exact=False)
    print(f"triton cuda agreement: {agreement:.6%}")
    assert torch.equal(render_labels(*args), labels)  # auto picks triton on CUDA
    lut = hint_lut("viridis")
    rgb = render_hint(*args, lut, backend="triton")
    assert rgb.device.type == "cuda" and rgb.shape == (h, w, 3)
    assert torch.equal(rgb.cpu(), lut[labels.cpu().long()])
    args16 = (args[0], args[1].half(), args[2].half(), h, w)
    assert_labels_agree(render_labels(*args16, backend="triton"),
                        render_labels_reference(boxes, coarse.half(), fine.half(), h, w), exact=False)


@pytest.mark.cuda
@pytest.mark.parametrize("seed,smooth", [(32, True), (33, False)])
def test_device_render_cuda_parity(monkeypatch, seed, smooth):
    boxes, coarse, fine, h, w = make_case(seed, 3, 112, 512, 910, smooth=smooth)
    expected = render_labels_reference(boxes, coarse, fine, h, w)
    dev = torch.device("cuda")
    args = (boxes.to(dev), coarse.to(dev), fine.to(dev), h, w)
    labels = render_labels(*args, backend="device")
    assert labels.device.type == "cuda"
    agreement = assert_labels_agree(labels, expected, exact=False)
    print(f"device-torch cuda agreement: {agreement:.6%}")
    monkeypatch.setattr(render, "_triton_importable", lambda: False)
    assert torch.equal(render_labels(*args), labels)  # auto picks it on CUDA without triton
    lut = hint_lut("viridis")
    rgb = render_hint(*args, lut)
    assert rgb.device.type == "cuda" and torch.equal(rgb.cpu(), lut[labels.cpu().long()])
    for odd in (make_case(34, 0, 112, 31, 17), make_case(35, 2, 13, 7, 13, smooth=False)):
        odd_args = (odd[0].to(dev), odd[1].to(dev).half(), odd[2].to(dev).half(), odd[3], odd[4])
        assert_labels_agree(render_labels(*odd_args, backend="device"),
                            render_labels_reference(odd[0], odd[1].half(), odd[2].half(), odd[3], odd[4]), exact=False)
