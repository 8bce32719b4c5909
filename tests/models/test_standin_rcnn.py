"""The hub-like real-cost stand-in R-CNN (pipeline/models/_standin_rcnn.py): layout, contracts, quirks, behaviour.

Reduced-width variants (same graph and keys, fewer channels) where the full size is not the point; the
full-size builds are marked slow. The reference check against DensePose-TorchScript's own code is
scripts/check_standin_detectron2.py (it needs that repository and its dependencies).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from densevid.pipeline.models import _standin_rcnn as S
from support.cases import ONE, THREE, TWO

SMALL = 0.25  # the reduced variant's width

# --- the published architecture, written out by hand -----------------------------------------------------

TOTAL_KEYS = {("tuple", 50): 366, ("tuple", 101): 621, ("dict", 50): 680, ("dict", 101): 1190}
PREFIX_COUNTS = {  # keys per prefix; the dict style adds the vendored code's ModuleList aliases
    ("tuple", 50): {"model.backbone.bottom_up.": 265, "model.roi_heads.decoder.": 16,
                    "model.roi_heads.densepose_head.": 40},
    ("tuple", 101): {"model.backbone.bottom_up.": 520, "model.roi_heads.decoder.": 16,
                     "model.roi_heads.densepose_head.": 40},
    ("dict", 50): {"model.backbone.bottom_up.": 525, "model.roi_heads.decoder.": 30,
                   "model.roi_heads.densepose_head.": 64, "model.backbone.lateral_convs.": 8,
                   "model.backbone.output_convs.": 8},
    ("dict", 101): {"model.backbone.bottom_up.": 1035, "model.roi_heads.decoder.": 30,
                    "model.roi_heads.densepose_head.": 64, "model.backbone.lateral_convs.": 8,
                    "model.backbone.output_convs.": 8},
}
COMMON_KEYS = {
    "model.pixel_mean": (3, 1, 1),
    "model.pixel_std": (3, 1, 1),
    "model.backbone.bottom_up.stem.conv1.weight": (64, 3, 7, 7),
    "model.backbone.bottom_up.stem.conv1.norm.running_var": (64,),
    "model.backbone.bottom_up.res2.0.shortcut.weight": (256, 64, 1, 1),
    "model.backbone.bottom_up.res2.0.conv1.weight": (64, 64, 1, 1),
    "model.backbone.bottom_up.res2.0.conv1.norm.weight": (64,),
    "model.backbone.bottom_up.res2.0.conv1.norm.bias": (64,),
    "model.backbone.bottom_up.res2.0.conv1.norm.running_mean": (64,),
    "model.backbone.bottom_up.res3.0.conv2.weight": (128, 128, 3, 3),
    "model.backbone.bottom_up.res5.2.conv3.weight": (2048, 512, 1, 1),
    "model.backbone.fpn_lateral2.weight": (256, 256, 1, 1),
    "model.backbone.fpn_lateral5.weight": (256, 2048, 1, 1),
    "model.backbone.fpn_output3.bias": (256,),
    "model.proposal_generator.rpn_head.conv.weight": (256, 256, 3, 3),
    "model.proposal_generator.rpn_head.objectness_logits.weight": (3, 256, 1, 1),
    "model.proposal_generator.rpn_head.anchor_deltas.weight": (12, 256, 1, 1),
    "model.proposal_generator.anchor_generator.cell_anchors.0": (3, 4),
    "model.proposal_generator.anchor_generator.cell_anchors.4": (3, 4),
    "model.roi_heads.box_head.fc1.weight": (1024, 12544),
    "model.roi_heads.box_head.fc2.weight": (1024, 1024),
    "model.roi_heads.box_predictor.cls_score.weight": (2, 1024),
    "model.roi_heads.box_predictor.bbox_pred.weight": (4, 1024),
    "model.roi_heads.decoder.p2.0.weight": (256, 256, 3, 3),
    "model.roi_heads.decoder.p5.4.bias": (256,),
    "model.roi_heads.decoder.predictor.weight": (256, 256, 1, 1),
    "model.roi_heads.densepose_head.ASPP.convs.0.0.weight": (256, 256, 1, 1),
    "model.roi_heads.densepose_head.ASPP.convs.3.0.weight": (256, 256, 3, 3),
    "model.roi_heads.densepose_head.ASPP.convs.4.2.weight": (256,),
    "model.roi_heads.densepose_head.ASPP.project.0.weight": (256, 1280, 1, 1),
    "model.roi_heads.densepose_head.body_conv_fcn1.weight": (512, 256, 3, 3),
    "model.roi_heads.densepose_head.body_conv_fcn8.norm.weight": (512,),
    "model.roi_heads.densepose_predictor.ann_index_lowres.weight": (512, 2, 4, 4),
    "model.roi_heads.densepose_predictor.index_uv_lowres.weight": (512, 25, 4, 4),
    "model.roi_heads.densepose_predictor.u_lowres.bias": (25,),
    "model.roi_heads.densepose_predictor.v_lowres.weight": (512, 25, 4, 4),
}
DEPTH_KEYS = {
    50: {"model.backbone.bottom_up.res4.5.conv3.weight": (1024, 256, 1, 1)},
    101: {"model.backbone.bottom_up.res4.22.conv3.weight": (1024, 256, 1, 1)},
}
ABSENT_DEPTH_KEYS = {50: "model.backbone.bottom_up.res4.6.conv1.weight",
                     101: "model.backbone.bottom_up.res4.23.conv1.weight"}
ALIAS_KEYS = {  # dict style only: the same tensors under the vendored code's ModuleList names
    "model.backbone.bottom_up.stages.0.0.conv1.weight": (64, 64, 1, 1),
    "model.backbone.lateral_convs.3.weight": (256, 256, 1, 1),  # is fpn_lateral2
    "model.backbone.output_convs.0.weight": (256, 256, 3, 3),  # is fpn_output5
    "model.roi_heads.decoder.scale_heads.3.4.weight": (256, 256, 3, 3),
    "model.roi_heads.densepose_head.stacked_convs.7.weight": (512, 512, 3, 3),
}


@pytest.mark.parametrize("style", ["tuple", "dict"])
@pytest.mark.parametrize("depth", [50, 101])
def test_layout_is_the_published_architecture(style, depth):
    layout = S.state_dict_layout(depth, style)
    assert len(layout) == TOTAL_KEYS[(style, depth)]
    for prefix, count in PREFIX_COUNTS[(style, depth)].items():
        assert sum(key.startswith(prefix) for key in layout) == count, prefix
    expected = {**COMMON_KEYS, **DEPTH_KEYS[depth], **(ALIAS_KEYS if style == "dict" else {})}
    for key, shape in expected.items():
        assert layout.get(key) == shape, key
    assert ABSENT_DEPTH_KEYS[depth] not in layout
    if style == "tuple":  # upstream detectron2 keeps these in plain lists: no aliases in the traced hub files
        assert not any(".stages." in key or "lateral_convs" in key or "scale_heads" in key or "stacked_convs" in key
                       or "NLBlock" in key for key in layout)


@pytest.fixture(scope="module")
def cores():
    return {style: S.standin_core(50, style, 0, SMALL) for style in ("tuple", "dict")}


@pytest.fixture(scope="module")
def small_files():
    return {style: S.build_standin_rcnn(style, 50, width=SMALL) for style in ("tuple", "dict")}


@pytest.mark.parametrize("style", ["tuple", "dict"])
def test_built_file_has_the_layout(small_files, style):
    state = small_files[style].state_dict()
    layout = S.state_dict_layout(50, style, width=SMALL)
    assert {key: tuple(value.shape) for key, value in state.items()} == layout
    if style == "dict":
        alias, original = state["model.backbone.lateral_convs.3.weight"], state["model.backbone.fpn_lateral2.weight"]
        assert alias.data_ptr() == original.data_ptr()


def test_tuple_contract_and_trace_generalises(small_files, cores):
    module = small_files["tuple"]
    arguments = [a.name for a in module.forward.schema.arguments if a.name != "self"]
    assert arguments == ["image"]
    core = cores["tuple"]
    for image in (ONE.permute(2, 0, 1), TWO.permute(2, 0, 1).contiguous()[:, :200, :333],
                  torch.zeros(3, 64, 64, dtype=torch.uint8)):
        out = module(image)
        assert isinstance(out, tuple) and len(out) == 5
        boxes, coarse, fine, u, v = out
        assert boxes.device.type == "cpu" and boxes.dtype == torch.float32 and boxes.shape[1] == 4
        n = boxes.shape[0]
        assert coarse.shape == (n, 2, 112, 112) and fine.shape == u.shape == v.shape == (n, 25, 112, 112)
        with torch.no_grad():  # the trace follows any size and any count: same as the eager model
            eager = core(image, torch.tensor(image.shape[2]), torch.tensor(image.shape[1]))
        assert torch.equal(eager[0], boxes) and torch.equal(eager[4], fine)
        if n:
            assert float(boxes[:, 2].max()) <= image.shape[2] and float(boxes[:, 3].max()) <= image.shape[1]


def test_dict_contract(small_files):
    module = small_files["dict"]
    arguments = [a.name for a in module.forward.schema.arguments if a.name != "self"]
    assert arguments == ["original_image", "bgr"]
    out = module(ONE.flip(-1).contiguous(), True)
    assert set(out) == {"image_size", "pred_boxes", "scores", "pred_classes", "pred_densepose_coarse_segm",
                        "pred_densepose_fine_segm", "pred_densepose_u", "pred_densepose_v"}
    assert out["pred_classes"].dtype == torch.int64 and out["pred_boxes"].dtype == torch.float32
    assert out["image_size"].tolist() == [ONE.shape[0], ONE.shape[1]]
    assert bool((out["scores"] > S.SCORE_THRESHOLDS["dict"]).all())
    same = module(ONE.flip(-1).contiguous(), False)  # INPUT.FORMAT BGR: the releases ignore ``bgr``
    assert torch.equal(same["pred_boxes"], out["pred_boxes"])


def _backbone_input_shape(model, call):
    seen = []
    hook = model.backbone.register_forward_pre_hook(lambda module, inputs: seen.append(tuple(inputs[0].shape)))
    try:
        with torch.no_grad():
            call()
    finally:
        hook.remove()
    return seen[0]


def test_tuple_runs_at_the_given_size_dict_resizes(cores):
    image = torch.zeros(3, 100, 37, dtype=torch.uint8)
    tuple_core = cores["tuple"]
    shape = _backbone_input_shape(tuple_core, lambda: tuple_core(image, torch.tensor(37), torch.tensor(100)))
    assert shape == (1, 3, 128, 64)  # padded to 32, not resized
    dict_core = cores["dict"]
    predictor = S.DefaultPredictor(dict_core)
    shape = _backbone_input_shape(dict_core, lambda: predictor(torch.zeros(256, 448, 3, dtype=torch.uint8)))
    assert shape == (1, 3, 768, 1344)  # resized by k = min(800 / 256, 1333 / 448) to 761x1332, padded to 32


def test_dict_resize_is_on_the_uint8_image():
    image = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)
    k = min(800 / 50, 1333 / 70)
    resized = F.interpolate(image[None], scale_factor=k, mode="bilinear", align_corners=False)
    assert resized.dtype == torch.uint8  # what the releases feed the normalisation (rounded), not float


def test_release_quirks(small_files, cores):
    boxes = torch.tensor([[5.0, 5.0, 5.0, 9.0], [1.0, 1.0, 4.0, 4.0]])
    assert S.nonempty(boxes, keep_empty=True).tolist() == [True, True]  # the releases: >=
    assert S.nonempty(boxes, keep_empty=False).tolist() == [False, True]  # detectron2: >
    code = small_files["dict"].model.proposal_generator.padded_size_wh.code
    assert "(torch.size(images))[3], (torch.size(images))[2]" in code  # what densevid's loader warns about
    # the RPN clips proposals to (x <= padded height, y <= padded width): a portrait frame's lower part is lost
    core = cores["dict"]
    x = torch.zeros(1, 3, 320, 160)
    with torch.no_grad():
        features = core.backbone(x)
        proposals, _ = core.proposal_generator(x, features, torch.tensor(320), torch.tensor(160))
    assert float(proposals[:, 3].max()) <= 160.0 and float(proposals[:, 2].max()) > 160.0
    tuple_core = cores["tuple"]
    with torch.no_grad():
        features = tuple_core.backbone(x)
        proposals, _ = tuple_core.proposal_generator(x, features, torch.tensor(320), torch.tensor(160))
    assert float(proposals[:, 2].max()) <= 160.0 and float(proposals[:, 3].max()) > 160.0


def test_deterministic_and_seeded(cores):
    first = cores["tuple"].state_dict()
    second = S.standin_core(50, "tuple", 0, SMALL).state_dict()
    other = S.standin_core(50, "tuple", 1, SMALL).state_dict()
    torch.manual_seed(123)  # the global RNG plays no part
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not torch.equal(first["roi_heads.box_head.fc1.weight"], other["roi_heads.box_head.fc1.weight"])


def _detect(core, image_hwc):
    image = image_hwc.permute(2, 0, 1)
    with torch.no_grad():
        boxes, scores, *_ = core(image, torch.tensor(image.shape[2]), torch.tensor(image.shape[1]))
    return boxes, scores


def test_people_sized_decisive_boxes_and_nobody_on_black(cores):
    core = cores["tuple"]
    boxes, scores = _detect(core, ONE)  # one person: rows 60-200, columns 150-230
    assert scores.shape[0] >= 1 and float(scores[0]) > 0.8
    assert scores.shape[0] == 1 or float(scores[1]) < float(scores[0]) - 0.3  # decisive, not a near-tie
    x0, y0, x1, y1 = boxes[0].tolist()
    assert x0 < 190 < x1 and y0 < 130 < y1 and (y1 - y0) > 1.2 * (x1 - x0) and (y1 - y0) > 0.4 * ONE.shape[0]
    for scene in (TWO, THREE):
        boxes, scores = _detect(core, scene)
        assert scores.shape[0] >= 1 and float(scores[0]) > 0.5
        heights, widths = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
        assert bool(((heights > 0.35 * scene.shape[0]) & (heights > widths)).any())
    boxes, scores = _detect(core, torch.zeros(256, 448, 3, dtype=torch.uint8))
    assert boxes.shape[0] == 0


def test_densepose_maps_are_coherent(cores):
    core = cores["tuple"]
    image = ONE.permute(2, 0, 1)
    with torch.no_grad():
        _, _, _, coarse, fine, u, v = core(image, torch.tensor(image.shape[2]), torch.tensor(image.shape[1]))
    foreground = coarse[0, 1] > coarse[0, 0]
    assert 0.2 < float(foreground.float().mean()) < 0.9
    # a region inside the box, not its corners (the outermost pixels see the transposed conv's edge)
    assert not bool(foreground[8, 8]) and bool(foreground[56, 56])
    parts = fine[0].argmax(0)
    inside = parts[foreground]
    assert len(set(inside.tolist())) >= 8 and int((inside == 0).sum()) == 0
    changes = (parts[1:] != parts[:-1]).float().mean() + (parts[:, 1:] != parts[:, :-1]).float().mean()
    assert float(changes) < 0.15  # contiguous regions, not per-pixel noise
    assert float(u.min()) > -0.5 and float(u.max()) < 1.5 and float(v.min()) > -0.5 and float(v.max()) < 1.5


def test_fp16_release_loads_and_runs_on_the_cpu_as_float(tmp_path):
    path = S.save_standin_rcnn(tmp_path / "fp16.pt", "dict", 50, torch.float16, width=SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path))
    assert module.state_dict()["model.roi_heads.box_head.fc1.weight"].dtype == torch.float16
    assert module.state_dict()["model.pixel_mean"].dtype == torch.float16  # .half() converts the buffers too
    out = module.float()(ONE.flip(-1).contiguous(), True)
    assert out["pred_boxes"].shape[1] == 4 and out["pred_densepose_fine_segm"].dtype == torch.float32


def test_user_errors_are_explicit():
    with pytest.raises(ValueError, match="style"):
        S.build_standin_rcnn("list")
    with pytest.raises(ValueError, match="depth"):
        S.state_dict_layout(34)
    with pytest.raises(ValueError, match="float16"):
        S.build_standin_rcnn("tuple", dtype=torch.float16)


@pytest.mark.slow
@pytest.mark.parametrize("style", ["tuple", "dict"])
def test_full_size_r50_builds_fast_with_the_published_layout(style):
    import time

    start = time.perf_counter()
    module = S.build_standin_rcnn(style, 50)
    assert time.perf_counter() - start < 40
    assert {key: tuple(value.shape) for key, value in module.state_dict().items()} == S.state_dict_layout(50, style)
