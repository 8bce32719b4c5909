"""The published exports as densevid loads them, on the hub-like stand-ins: both depths, both styles, the
--fp16 releases (float32 on the CPU, as their own runner does; float16 on CUDA), the releases' RPN (w, h) bug
told once. Reduced-width stand-ins (a quarter of every channel count): the same graph, quickly."""

from __future__ import annotations

import warnings

import pytest
import torch

from densevid.pipeline.models import DICT_KEYS, ModelWarning, load_model, rpn_size_order_bug, save_standin_rcnn
from support.cases import ONE, THREE

SMALL = 0.25


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    directory = tmp_path_factory.mktemp("exports")
    return {
        "tuple": save_standin_rcnn(directory / "tuple.pt", "tuple", 50, width=SMALL),
        "dict": save_standin_rcnn(directory / "dict.pt", "dict", 50, width=SMALL),
        "fp16": save_standin_rcnn(directory / "model_fp16.pt", "dict", 50, torch.float16, width=SMALL),
    }


def _load_noting(path, **kwargs):
    """load_model on the CPU, and the ModelWarning messages it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(path, "cpu", **kwargs)
    return model, [str(w.message) for w in caught if issubclass(w.category, ModelWarning)]


def test_fp16_release_runs_in_float32_on_the_cpu_as_its_conversion(small):
    model, notices = _load_noting(small["fp16"])
    assert (model.precision.weights, model.precision.runs) == (torch.float16, torch.float32)
    assert model.describe() == ("model_fp16.pt (dict-style) on cpu: float16 weights, run in float32; native engine, "
                                "1 frame per call")
    assert "model_fp16.pt has float16 weights: on the CPU they run in float32 (float16 runs on CUDA)" in notices
    detections = model.detect(THREE)
    assert detections.fine_segm.dtype == torch.float32
    # exactly what the float32 conversion of the same file gives (what the exports' own runner does)
    converted = torch.jit.load(str(small["fp16"])).float()
    with torch.inference_mode():
        expected = converted(THREE.flip(-1).contiguous(), True)
    for field, key in zip(("boxes_xyxy", "coarse_segm", "fine_segm", "u", "v"), DICT_KEYS):
        assert torch.equal(getattr(detections, field), expected[key])


@pytest.mark.parametrize("style,dtype", [("dict", torch.float16), ("tuple", torch.float32)])
def test_r101_runs_on_the_cpu(tmp_path, style, dtype):
    model, notices = _load_noting(save_standin_rcnn(tmp_path / "r101.pt", style, 101, dtype, width=SMALL))
    assert (model.precision.weights, model.precision.runs) == (dtype, torch.float32)
    assert model.style == style
    detections = model.detect(ONE)
    assert detections.fine_segm.dtype == torch.float32 and detections.fine_segm.shape[1:] == (25, 112, 112)


@pytest.mark.slow
def test_fp16_release_encodes_like_its_float32_conversion(tmp_path, small):
    from support.clips import make_clip, synthetic_frames
    from support.helpers import assert_exact, decode_all, run_cli

    half = small["fp16"]
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


def test_the_releases_rpn_size_order_bug_is_reported_once_with_the_way_out(small):
    assert rpn_size_order_bug(load_model(small["tuple"], "cpu").module) is None  # upstream detectron2: (h, w)
    path = small["dict"]
    with pytest.warns(ModelWarning, match=r"^dict\.pt: its RPN \(model\.proposal_generator\) takes the image "
                                          r"size as \(w, h\) where detectron2 means \(h, w\).*short side.*a square "
                                          r"frame avoids it: --size 512 --fit crop gives the model a 512x512 "
                                          r"square \(--fit pad does not\)$"):
        load_model(path, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(path, "cpu")  # said once


# --- on CUDA (the GPU check runs these) ---------------------------------------------------------------

def _part_agreement(a, b) -> float:
    """How many pixels of the people's fine part maps (argmax) two runs agree on."""
    return float((a.fine_segm.float().argmax(1).cpu() == b.fine_segm.float().argmax(1).cpu()).float().mean())


@pytest.mark.cuda
def test_fp16_release_runs_natively_in_float16_on_cuda(small):
    model = load_model(small["fp16"], "cuda")
    assert (model.precision.runs, model.precision.convert_to) == (torch.float16, None)
    detections = model.detect(ONE.cuda())
    on_cpu = load_model(small["fp16"], "cpu").detect(ONE)
    assert detections.fine_segm.dtype == torch.float16 and len(detections) == len(on_cpu)
    if len(on_cpu):
        assert _part_agreement(detections, on_cpu) > 0.99


@pytest.mark.cuda
@pytest.mark.parametrize("route", ["autocast", "native"])
def test_half_routes_on_cuda_agree_with_float32(small, route):
    full = load_model(small["dict"], "cuda")
    half = load_model(small["dict"], "cuda", half=route)
    assert half.precision.runs == torch.float16 and half.precision.autocast == (route == "autocast")
    a, b = half.detect(ONE.cuda()), full.detect(ONE.cuda())
    assert len(a) == len(b)
    if len(b):
        assert not torch.equal(a.fine_segm.float(), b.fine_segm)  # the network did compute in float16
        assert _part_agreement(a, b) > 0.99
