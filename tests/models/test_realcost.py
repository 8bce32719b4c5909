"""The real-cost stand-in: the real exports' architecture, both contracts, loaded and run by densevid.

The fast tests use a reduced variant of the same graph (every channel count / 8, internal resize to
short side 128); the full-size model is built and run once in a slow test.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from densevid.kernels import hint_lut, render_hint
from densevid.pipeline.models import DICT_KEYS, ModelWarning, load_model, rpn_size_order_bug, save_realcost
from densevid.pipeline.models._standin_realcost import RealCostCore, realcost_core
from support.cases import ONE, THREE

SMALL = dict(width=0.125, min_size=128, max_size=224)


@pytest.fixture(scope="module")
def small_realcost(tmp_path_factory):
    """The reduced real-cost stand-in in both styles, saved and loaded by densevid's loader."""
    directory = tmp_path_factory.mktemp("realcost")
    return {style: load_model(save_realcost(directory / f"small_{style}.torchscript", style,
                                                                **SMALL), "cpu")
            for style in ("tuple", "dict")}


@pytest.mark.parametrize("style", ["tuple", "dict"])
def test_loads_detects_and_renders(small_realcost, tuple_model, style):
    model = small_realcost[style]
    assert model.style == style
    for image, people in ((ONE, 1), (THREE, 3), (torch.zeros_like(ONE), 0)):
        detections = model.detect(image)
        assert len(detections) == people
        assert detections.coarse_segm.shape == (people, 2, 112, 112)
        assert detections.fine_segm.shape == detections.u.shape == detections.v.shape == (people, 25, 112, 112)
        # the people the cheap stand-in finds, in the input image's coordinates
        with torch.inference_mode():
            cheap_boxes = tuple_model(image.permute(2, 0, 1))[0]
        torch.testing.assert_close(detections.boxes_xyxy, cheap_boxes, rtol=0, atol=1e-3)
        hint = render_hint(detections.boxes_xyxy, detections.coarse_segm, detections.fine_segm, image.shape[0],
                           image.shape[1], hint_lut("viridis"))
        painted = (hint != hint_lut("viridis")[0]).any(-1).float().mean()
        assert (float(painted) > 0.05) == (people > 0)


@pytest.mark.slow
def test_styles_agree_and_the_network_moves_the_logits(small_realcost, tuple_model):
    a, b = small_realcost["tuple"].detect(THREE), small_realcost["dict"].detect(THREE)
    for field in ("boxes_xyxy", "coarse_segm", "fine_segm", "u", "v"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    with torch.inference_mode():
        cheap = tuple_model(THREE.permute(2, 0, 1))
    moved = (a.fine_segm - cheap[2]).abs()
    assert 0.01 < float(moved.max()) <= 0.25 + 1e-4  # NET_GAIN * tanh: the network shifts the part pattern


def test_weights_are_seeded():
    first, again, other = (realcost_core(seed=seed, **SMALL).state_dict() for seed in (0, 0, 1))
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["backbone.body.conv1.weight"], other["backbone.body.conv1.weight"])


def test_architecture_at_full_size():
    """The default graph is the real exports': R50/R101-FPN, RPN of 1,000, 1024-d box head, 512-d DeepLab head."""
    core = RealCostCore(50)
    assert (core.min_size, core.max_size) == (800.0, 1333.0)
    assert core.proposal_generator.rpn._pre_nms_top_n["testing"] == 1000
    assert core.proposal_generator.rpn._post_nms_top_n["testing"] == 1000
    assert core.roi_heads.box_head.fc6.out_features == 1024
    assert core.densepose_head.convs[0][0].out_channels == 512 and len(core.densepose_head.convs) == 8
    body = core.backbone.body
    assert [len(getattr(body, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert core.backbone.fpn.layer_blocks[0][0].out_channels == 256
    r101 = RealCostCore(101).backbone.body
    assert [len(getattr(r101, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]


@pytest.mark.slow
def test_full_size_frame(tmp_path):
    model = load_model(save_realcost(tmp_path / "realcost_dict_r50.torchscript", "dict", 50), "cpu")
    image = torch.full((910, 512, 3), 30, dtype=torch.uint8)
    image[150:800, 170:340] = 190
    detections = model.detect(image)
    assert len(detections) == 1 and detections.fine_segm.shape == (1, 25, 112, 112)


# --- both depths, both precisions ------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_fp16(tmp_path_factory):
    """The reduced real-cost stand-in, dict style, R50, as the --fp16 releases are made."""
    return save_realcost(tmp_path_factory.mktemp("fp16") / "model_fp16.pt", "dict", 50,
                                             torch.float16, **SMALL)


def _load_noting(path):
    """load_model on the CPU, and the ModelWarning messages it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(path, "cpu")
    return model, [str(w.message) for w in caught if issubclass(w.category, ModelWarning)]


@pytest.mark.slow
def test_fp16_export_runs_in_float32_on_the_cpu_as_its_conversion(small_fp16, small_realcost):
    model, notices = _load_noting(small_fp16)
    assert (model.precision.weights, model.precision.runs) == (torch.float16, torch.float32)
    assert model.describe() == "model_fp16.pt (dict-style) on cpu: float16 weights, run in float32"
    assert notices == ["model_fp16.pt has float16 weights: on the CPU they run in float32 (float16 runs on CUDA)"]
    detections = model.detect(THREE)
    assert len(detections) == 3 and detections.fine_segm.dtype == torch.float32
    # exactly what the float32 conversion of the same file gives (what the exports' own runner does)
    converted = torch.jit.load(str(small_fp16)).float()
    with torch.inference_mode():
        expected = converted(THREE.flip(-1).contiguous(), True)
    for field, key in zip(("boxes_xyxy", "coarse_segm", "fine_segm", "u", "v"), DICT_KEYS):
        assert torch.equal(getattr(detections, field), expected[key])
    # unconverted, it cannot run on the CPU: torchvision's CPU nms has no float16
    with pytest.raises(RuntimeError, match="nms_kernel\" not implemented for 'Half'"), torch.inference_mode():
        torch.jit.load(str(small_fp16))(THREE.flip(-1).contiguous(), True)
    # the same seed in float32: the same people, logits within the float16 rounding of the weights
    full = small_realcost["dict"].detect(THREE)
    assert torch.equal(detections.boxes_xyxy, full.boxes_xyxy)
    torch.testing.assert_close(detections.fine_segm, full.fine_segm, rtol=1e-3, atol=0.02)


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.float32, marks=pytest.mark.slow)],
                         ids=["fp16", "fp32"])
def test_r101_runs_on_the_cpu(tmp_path, dtype):
    model, notices = _load_noting(save_realcost(tmp_path / "r101.pt", "dict", 101, dtype, **SMALL))
    assert (model.precision.weights, model.precision.runs) == (dtype, torch.float32)
    assert len(notices) == (dtype == torch.float16)
    detections = model.detect(THREE)
    assert len(detections) == 3 and detections.fine_segm.dtype == torch.float32


@pytest.mark.slow
def test_fp16_export_encodes_like_its_float32_conversion(tmp_path, small_fp16):
    from support.clips import make_clip, synthetic_frames
    from support.helpers import assert_exact, decode_all, run_cli

    half = small_fp16
    converted = tmp_path / "model_fp32.pt"
    torch.jit.load(str(half)).float().save(str(converted))
    clip = make_clip(tmp_path / "clip.mkv", synthetic_frames(2, 96, 64))
    outputs = []
    for model in (half, converted):
        out = tmp_path / f"{model.stem}.mkv"
        result = run_cli(clip, "--model", model, "--device", "cpu", "--resolution", "64", "--lossless", "-o", out)
        assert result.exit_code == 0, result.output
        outputs.append(decode_all(out)[0])
    assert_exact(torch.from_numpy(outputs[0]), torch.from_numpy(outputs[1]))


# --- the dict-style releases' RPN image size (w, h) -------------------------------------------------

@pytest.mark.slow
def test_rpn_size_order_bug_is_reported_once_with_the_way_out(tmp_path, small_realcost):
    path = save_realcost(tmp_path / "releases.pt", "dict", rpn_size="wh", **SMALL)
    with pytest.warns(ModelWarning, match=r"^releases\.pt: its RPN \(model\.proposal_generator\) takes the image "
                                          r"size as \(w, h\) where detectron2 means \(h, w\).*short side.*a square "
                                          r"frame avoids it: --size 512 --fit crop gives the model a 512x512 "
                                          r"square \(--fit pad does not\)$"):
        buggy = load_model(path, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(path, "cpu")  # said once
    assert rpn_size_order_bug(small_realcost["dict"].module) is None
    # what it does: in a portrait frame, a person below y = width is lost; a square frame keeps them
    portrait = torch.full((256, 128, 3), 20, dtype=torch.uint8)
    portrait[170:250, 40:90] = 200
    assert len(small_realcost["dict"].detect(portrait)) == 1
    assert len(buggy.detect(portrait)) == 0
    square = torch.full((256, 256, 3), 20, dtype=torch.uint8)
    square[170:250, 100:150] = 200
    assert len(buggy.detect(square)) == 1


# --- on CUDA (the GPU check runs these) ---------------------------------------------------------------

def _part_agreement(a, b) -> float:
    """How many pixels of the people's fine part maps (argmax) two runs agree on."""
    return float((a.fine_segm.float().argmax(1).cpu() == b.fine_segm.float().argmax(1).cpu()).float().mean())


@pytest.mark.cuda
def test_fp16_export_runs_natively_in_float16_on_cuda(small_fp16):
    model = load_model(small_fp16, "cuda")
    assert (model.precision.runs, model.precision.convert_to) == (torch.float16, None)
    detections = model.detect(THREE.cuda())
    assert len(detections) == 3 and detections.fine_segm.dtype == torch.float16
    on_cpu = load_model(small_fp16, "cpu").detect(THREE)
    assert _part_agreement(detections, on_cpu) > 0.99


@pytest.mark.cuda
@pytest.mark.parametrize("route", ["autocast", "native"])
def test_half_routes_on_cuda_agree_with_float32(small_realcost, route):
    path = small_realcost["dict"].path
    full = load_model(path, "cuda")
    half = load_model(path, "cuda", half=route)
    assert half.precision.runs == torch.float16 and half.precision.autocast == (route == "autocast")
    a, b = half.detect(THREE.cuda()), full.detect(THREE.cuda())
    assert not torch.equal(a.fine_segm.float(), b.fine_segm)  # the network did compute in float16
    assert _part_agreement(a, b) > 0.99
