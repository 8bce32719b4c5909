"""What a DensePose TorchScript file holds, read for the native model: its weights, its architecture, its settings.

The published files are detectron2's DensePose R-CNN R_50_FPN_DL / R_101_FPN_DL (see ``_standin_rcnn`` for
the two export styles and what differs between them). ``read_spec`` takes a loaded file and returns a
``NativeSpec`` when its weights map onto that architecture, or the one-line reason why not:

* weights: the file's ``state_dict()``; the dict-style releases register some modules twice under ModuleList
  aliases (``stages.*``, ``lateral_convs.*``, ``output_convs.*``, ``scale_heads.*``, ``stacked_convs.*``):
  keys that share a tensor's storage with a canonical key are dropped. FrozenBN statistics, ``pixel_mean`` /
  ``pixel_std`` and the anchors are buffers in the file, read like the weights.
* architecture: ResNet-50 or -101 from the number of ``res4`` blocks; channel counts from the shapes (so a
  reduced-width stand-in maps too); every key the network needs must be there with the shape it implies,
  and no key may be left over (an unknown extra part means another architecture).
* settings: scripted files keep the thresholds as attributes (read under the releases' names and the
  stand-ins'); traced files bake them into their code as constants (read from it where the pattern is
  unambiguous); what is found nowhere is the published DensePose config's value, and ``sources`` says which.
  The batched-NMS variant is read from the file's own copy of torchvision's ``batched_nms`` (scripted files
  switch to a per-class loop above a box count the torchvision of their export fixed; traced files always
  use the coordinate offsets).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

PUBLISHED = {  # detectron2's DensePose R_50/R_101_FPN_DL configs at test time
    "score_threshold": {"tuple": 0.05, "dict": 0.3},  # detectron2's default; DensePose-TorchScript's --min_score
    "box_nms": 0.5, "detections_per_image": 100, "rpn_pre_nms_topk": 1000, "rpn_post_nms_topk": 1000,
    "rpn_nms": 0.7, "min_size": 800, "max_size": 1333,
}
DEPTHS = {6: 50, 23: 101}  # res4 blocks -> ResNet depth
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_ALIASES = re.compile(r"\.(stages|lateral_convs|output_convs|scale_heads|stacked_convs)\.")


@dataclass(frozen=True)
class NativeSettings:
    score_threshold: float
    box_nms: float
    detections_per_image: int
    rpn_pre_nms_topk: int
    rpn_post_nms_topk: int
    rpn_nms: float
    min_size: int  # the dict style's internal resize
    max_size: int
    # scripted files: batched NMS loops over classes above this many box coordinates ({device type: count});
    # None: always the coordinate offsets (traced files, or a torchvision without the loop)
    vanilla_nms_above: dict | None
    sources: dict = field(default_factory=dict)  # setting -> "file" or "published config"


@dataclass(frozen=True)
class NativeSpec:
    style: str  # "tuple" (the hub files: no resize, RGB given, upstream detectron2) or "dict" (the releases)
    depth: int
    channels: int  # FPN channels
    box_dim: int
    head_dim: int
    settings: NativeSettings
    weights: dict  # canonical key -> tensor

    @property
    def release_quirks(self) -> bool:
        return self.style == "dict"

    def describe(self) -> str:
        read = sorted(k for k, v in self.settings.sources.items() if v == "file")
        published = sorted(k for k, v in self.settings.sources.items() if v != "file")
        return (f"R{self.depth}-FPN-DL, {self.style} style; settings from the file: {', '.join(read) or 'none'}; "
                f"from the published config: {', '.join(published) or 'none'}")


def _canonical_name(alias: str) -> str | None:
    """The upstream name of a key under one of the releases' ModuleList aliases, else None."""
    rules = (
        (r"\.bottom_up\.stages\.(\d+)\.", lambda m: f".bottom_up.res{int(m.group(1)) + 2}."),
        (r"\.backbone\.lateral_convs\.(\d+)\.", lambda m: f".backbone.fpn_lateral{5 - int(m.group(1))}."),
        (r"\.backbone\.output_convs\.(\d+)\.", lambda m: f".backbone.fpn_output{5 - int(m.group(1))}."),
        (r"\.decoder\.scale_heads\.(\d+)\.", lambda m: f".decoder.p{int(m.group(1)) + 2}."),
        (r"\.densepose_head\.stacked_convs\.(\d+)\.", lambda m: f".densepose_head.body_conv_fcn{int(m.group(1)) + 1}."),
    )
    for pattern, replace in rules:
        if re.search(pattern, alias):
            return re.sub(pattern, replace, alias, count=1)
    return None


def canonical_weights(module: torch.nn.Module) -> dict:
    """The file's tensors, each once: a key under a release's ModuleList alias is dropped when its upstream
    twin holds the same values (the same storage in a loaded file; equal copies after a dtype conversion)."""
    state = module.state_dict()
    weights = {}
    for key, tensor in state.items():
        twin = _canonical_name(key)
        if twin is not None and twin in state and (state[twin] is tensor or torch.equal(state[twin], tensor)):
            continue
        weights[key] = tensor
    return weights


def _shape(weights: dict, key: str):
    tensor = weights.get(key)
    return None if tensor is None else tuple(tensor.shape)


def _expected_keys(depth: int, c: int, box_dim: int, head_dim: int, weights: dict) -> dict:
    """key -> expected shape (None: any) of the architecture with these dimensions."""
    expected: dict = {"model.pixel_mean": (3, 1, 1), "model.pixel_std": (3, 1, 1)}

    def conv(prefix, out, inp, k, bias=False, norm="bn"):
        expected[f"{prefix}.weight"] = (out, inp, k, k)
        if bias:
            expected[f"{prefix}.bias"] = (out,)
        if norm == "bn":
            for name in ("weight", "bias", "running_mean", "running_var"):
                expected[f"{prefix}.norm.{name}"] = (out,)
        elif norm == "gn":
            for name in ("weight", "bias"):
                expected[f"{prefix}.norm.{name}"] = (out,)

    bottom = "model.backbone.bottom_up"
    stem = weights[f"{bottom}.stem.conv1.weight"].shape[0]
    conv(f"{bottom}.stem.conv1", stem, 3, 7)
    # res2's widths from its first block (a reduced-width stand-in does not keep ResNet's 4x); then x2 per stage
    out = weights[f"{bottom}.res2.0.conv3.weight"].shape[0] if f"{bottom}.res2.0.conv3.weight" in weights else 4 * stem
    mid = weights[f"{bottom}.res2.0.conv1.weight"].shape[0] if f"{bottom}.res2.0.conv1.weight" in weights else stem
    inp = stem
    stage_out = []
    for stage, blocks in zip((2, 3, 4, 5), STAGE_BLOCKS[depth]):
        for b in range(blocks):
            prefix = f"{bottom}.res{stage}.{b}"
            if b == 0:
                conv(f"{prefix}.shortcut", out, inp, 1)
            conv(f"{prefix}.conv1", mid, inp if b == 0 else out, 1)
            conv(f"{prefix}.conv2", mid, mid, 3)
            conv(f"{prefix}.conv3", out, mid, 1)
        stage_out.append(out)
        inp, out, mid = out, out * 2, mid * 2
    for level, channels in zip((2, 3, 4, 5), stage_out):
        conv(f"model.backbone.fpn_lateral{level}", c, channels, 1, bias=True, norm=None)
        conv(f"model.backbone.fpn_output{level}", c, c, 3, bias=True, norm=None)
    rpn = "model.proposal_generator"
    conv(f"{rpn}.rpn_head.conv", c, c, 3, bias=True, norm=None)
    conv(f"{rpn}.rpn_head.objectness_logits", 3, c, 1, bias=True, norm=None)
    conv(f"{rpn}.rpn_head.anchor_deltas", 12, c, 1, bias=True, norm=None)
    for index in range(5):
        expected[f"{rpn}.anchor_generator.cell_anchors.{index}"] = (3, 4)
    roi = "model.roi_heads"
    expected[f"{roi}.box_head.fc1.weight"] = (box_dim, c * 49)
    expected[f"{roi}.box_head.fc1.bias"] = (box_dim,)
    expected[f"{roi}.box_head.fc2.weight"] = (box_dim, box_dim)
    expected[f"{roi}.box_head.fc2.bias"] = (box_dim,)
    expected[f"{roi}.box_predictor.cls_score.weight"] = (2, box_dim)
    expected[f"{roi}.box_predictor.cls_score.bias"] = (2,)
    expected[f"{roi}.box_predictor.bbox_pred.weight"] = (4, box_dim)
    expected[f"{roi}.box_predictor.bbox_pred.bias"] = (4,)
    for level in (2, 3, 4, 5):
        for k in range(max(1, level - 2)):
            conv(f"{roi}.decoder.p{level}.{2 * k if level != 2 else k}", c, c, 3, bias=True, norm=None)
    conv(f"{roi}.decoder.predictor", c, c, 1, bias=True, norm=None)
    aspp = f"{roi}.densepose_head.ASPP"
    for branch in range(4):
        expected[f"{aspp}.convs.{branch}.0.weight"] = (c, c, 1 if branch == 0 else 3, 1 if branch == 0 else 3)
        expected[f"{aspp}.convs.{branch}.1.weight"] = (c,)
        expected[f"{aspp}.convs.{branch}.1.bias"] = (c,)
    expected[f"{aspp}.convs.4.1.weight"] = (c, c, 1, 1)
    expected[f"{aspp}.convs.4.2.weight"] = (c,)
    expected[f"{aspp}.convs.4.2.bias"] = (c,)
    expected[f"{aspp}.project.0.weight"] = (c, 5 * c, 1, 1)
    for index in range(8):
        conv(f"{roi}.densepose_head.body_conv_fcn{index + 1}", head_dim, c if index == 0 else head_dim, 3, norm="gn")
    for name, channels in (("ann_index_lowres", 2), ("index_uv_lowres", 25), ("u_lowres", 25), ("v_lowres", 25)):
        expected[f"{roi}.densepose_predictor.{name}.weight"] = (head_dim, channels, 4, 4)
        expected[f"{roi}.densepose_predictor.{name}.bias"] = (channels,)
    return expected


def recognise(weights: dict) -> tuple[int, int, int, int] | str:
    """(depth, FPN channels, box head dim, DensePose head dim), or why the weights are not that architecture."""
    bottom = "model.backbone.bottom_up"
    if f"{bottom}.stem.conv1.weight" not in weights:
        return "no detectron2 ResNet stem (model.backbone.bottom_up.stem.conv1)"
    res4 = {int(k.split(".")[4]) for k in weights if k.startswith(f"{bottom}.res4.")}
    depth = DEPTHS.get(len(res4))
    if depth is None:
        return f"{len(res4)} res4 blocks: neither ResNet-50 (6) nor ResNet-101 (23)"
    lateral = _shape(weights, "model.backbone.fpn_lateral2.weight")
    fc1 = _shape(weights, "model.roi_heads.box_head.fc1.weight")
    fcn1 = _shape(weights, "model.roi_heads.densepose_head.body_conv_fcn1.weight")
    if lateral is None or fc1 is None or fcn1 is None:
        return "no FPN, box head or DeepLab DensePose head under detectron2's names"
    dims = (depth, lateral[0], fc1[0], fcn1[0])
    expected = _expected_keys(*dims, weights)
    missing = [k for k in expected if k not in weights]
    if missing:
        return f"missing {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    wrong = [k for k, shape in expected.items() if shape is not None and tuple(weights[k].shape) != shape]
    if wrong:
        return f"{wrong[0]} has shape {list(weights[wrong[0]].shape)}, expected {list(expected[wrong[0]])}"
    extra = [k for k in weights if k not in expected]
    if extra:
        return f"unknown part {extra[0]}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
    return dims


# --- settings -------------------------------------------------------------------------------------------

_ATTRIBUTES = {  # setting -> (submodule, attribute) candidates: the releases' vendored names, the stand-ins'
    "score_threshold": [("model.roi_heads.box_predictor", "test_score_thresh"), ("model.roi_heads", "score_threshold")],
    "box_nms": [("model.roi_heads.box_predictor", "test_nms_thresh"), ("model.roi_heads", "nms_thresh")],
    "detections_per_image": [("model.roi_heads.box_predictor", "test_topk_per_image"),
                             ("model.roi_heads", "topk_per_image")],
    "rpn_pre_nms_topk": [("model.proposal_generator", "pre_nms_topk")],
    "rpn_post_nms_topk": [("model.proposal_generator", "post_nms_topk")],
    "rpn_nms": [("model.proposal_generator", "nms_thresh")],
    "min_size": [("", "min_size")],
    "max_size": [("", "max_size")],
}


def _attribute(module, path: str, name: str):
    target = module
    for part in [p for p in path.split(".") if p]:
        target = getattr(target, part, None)
        if target is None:
            return None
    value = getattr(target, name, None)
    if isinstance(value, dict):  # detectron2's RPN keeps {training: value, test: value}
        value = value.get(False)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _traced_code(module) -> str:
    codes = []
    for _, submodule in module.named_modules():
        try:
            codes.append(submodule.code)
        except Exception:  # a module without TorchScript source
            continue
    return "\n".join(codes)


def _vanilla_nms_limits(path: Path) -> dict | None:
    """The box-coordinate counts above which the file's own ``batched_nms`` loops over classes, by device
    type, read from its serialized torchvision code; None when it has no such branch."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("code/__torch__/torchvision/ops/boxes.py")]
            text = archive.read(names[0]).decode("utf-8", "replace") if names else ""
    except (OSError, zipfile.BadZipFile):
        return None
    block = text.split("def batched_nms(", 1)
    if len(block) < 2 or "_batched_nms_vanilla" not in block[1].split("\ndef ", 1)[0]:
        return None
    body = block[1].split("\ndef ", 1)[0]
    found = re.search(r'"cpu"\)\s*if \w+:\s*\w+ = (\d+)\s*else:\s*\w+ = (\d+)', body)
    if found:
        return {"cpu": int(found.group(1)), "other": int(found.group(2))}
    single = re.search(r"torch\.gt\(\w+, (\d+)\)", body)
    return {"cpu": int(single.group(1)), "other": int(single.group(1))} if single else None


def read_settings(module, style: str, path: Path) -> NativeSettings:
    values, sources = {}, {}
    for name, candidates in _ATTRIBUTES.items():
        found = next((v for v in (_attribute(module, p, a) for p, a in candidates) if v is not None), None)
        values[name], sources[name] = (found, "file") if found is not None else (None, "")
    if style == "tuple":  # traced: the box head's constants are in its code
        code = _traced_code(module)
        thresholds = set(re.findall(r"torch\.gt\(scores\w*, ([0-9.e-]+)\)", code))
        if len(thresholds) == 1 and values["score_threshold"] is None:
            values["score_threshold"], sources["score_threshold"] = float(thresholds.pop()), "file"
        nms_calls = set(re.findall(r"\(boxes\w*, scores\w*, classes\w*, ([0-9.]+), \), 0, 0, (\d+)\)", code))
        if len(nms_calls) == 1:
            nms, top = nms_calls.pop()
            if values["box_nms"] is None:
                values["box_nms"], sources["box_nms"] = float(nms), "file"
            if values["detections_per_image"] is None:
                values["detections_per_image"], sources["detections_per_image"] = int(top), "file"
    for name, value in values.items():
        if value is None:
            published = PUBLISHED[name]
            values[name] = published[style] if isinstance(published, dict) else published
            sources[name] = "published config"
    limits = _vanilla_nms_limits(path) if style == "dict" else None
    return NativeSettings(float(values["score_threshold"]), float(values["box_nms"]),
                          int(values["detections_per_image"]), int(values["rpn_pre_nms_topk"]),
                          int(values["rpn_post_nms_topk"]), float(values["rpn_nms"]), int(values["min_size"]),
                          int(values["max_size"]), limits, sources)


def read_spec(module, style: str, path: Path) -> NativeSpec | str:
    """The native model's spec of a loaded file, or the one-line reason its weights do not map."""
    weights = canonical_weights(module)
    dims = recognise(weights)
    if isinstance(dims, str):
        return dims
    depth, channels, box_dim, head_dim = dims
    return NativeSpec(style, depth, channels, box_dim, head_dim, read_settings(module, style, path), weights)
