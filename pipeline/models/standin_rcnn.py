"""Hub-like real-cost stand-ins: DensePose R-CNN R_50_FPN_DL / R_101_FPN_DL TorchScript files with seeded weights.

The real DensePose exports cannot be downloaded where the project is built and tested, so this module makes
files that look and cost exactly like them: the architecture of detectron2's ``densepose_rcnn_R_50_FPN_DL_s1x``
and ``..._R_101_...`` configs with detectron2's module and parameter names (a stand-in's ``state_dict()`` has
the keys and shapes of a real file's, see ``state_dict_layout``), the real arithmetic on every frame, and
weights chosen so the outputs behave like a trained detector's. A stand-in is a model, never a stub. This
module imports only the standard library, torch and torchvision.

Two export styles, as published:

* ``style="tuple"``: the hub files ``densepose_r{50,101}_fpn_dl.torchscript`` of
  ``LayerNorm/DensePose-TorchScript-with-hint-image`` (the ComfyUI node's): detectron2's ``TracingAdapter``
  around ``GeneralizedRCNN``, traced. ``forward(image)``: ``image`` uint8 CHW, given RGB by the node (the
  graph does not flip channels: the traced ``flatten.py`` hands its argument straight to the model, and
  ``GeneralizedRCNN.preprocess_image`` only subtracts detectron2's BGR pixel mean and pads, so the red
  channel is normalised with the blue mean, as in the real file). Returns ``(boxes_xyxy [N,4] on the CPU,
  coarse_segm [N,2,112,112], fine_segm [N,25,112,112], u [N,25,112,112], v [N,25,112,112])``, float32. No
  resize: the network runs at the size it is given (padded to a multiple of 32), boxes are in the input's
  coordinates, clipped to it.
* ``style="dict"``: the DensePose-TorchScript releases: ``torch.jit.script(DefaultPredictor(cfg))`` of that
  repository's vendored detectron2, ``.half()`` for ``--fp16`` (``dtype=torch.float16``). ``forward(image,
  bgr: bool = True)``: ``image`` uint8 HWC (or CHW) BGR; it resizes inside (``k = min(800 / short, 1333 /
  long)``, ``F.interpolate(image[None], scale_factor=k, mode="bilinear", align_corners=False)`` on the
  uint8 image itself) and returns a dict: ``image_size``, ``pred_boxes``, ``scores``, ``pred_classes``,
  ``pred_densepose_coarse_segm``, ``pred_densepose_fine_segm``, ``pred_densepose_u``, ``pred_densepose_v``.

What the dict style does differently from upstream detectron2 (each reproduced here, ``RELEASE_QUIRKS``):
the RPN is given the padded image's size as ``(w, h)`` where detectron2 means ``(h, w)``, so proposals are
clipped with x to the padded height and y to the padded width (in a portrait frame nobody is found below
y = width); it clips proposals to the padded size, not the image's; it keeps zero-size proposals (``>=``
where detectron2 has ``>``); the box head's clip of its final boxes is computed and thrown away, so the
DensePose pooler gets unclipped boxes; the final filter keeps zero-size boxes and runs before the final
clip (detectron2: clip, then drop empty boxes); the ``bgr`` argument is ignored (INPUT.FORMAT is BGR); the
score threshold is the export's ``--min_score`` 0.3 (detectron2's default 0.05); some modules are also
registered under ModuleList aliases (``backbone.bottom_up.stages.*``, ``backbone.lateral_convs.*`` /
``output_convs.*``, ``roi_heads.decoder.scale_heads.*``, ``roi_heads.densepose_head.stacked_convs.*``).
Upstream-only behaviour of the traced tuple style: tracing bakes torchvision's coordinate-trick batched NMS
(scripted, torchvision switches to a per-level loop over 4,000 box coordinates on the CPU).

Tracing generalises here: every size is read from tensors, as detectron2's tracing-friendly code does, so a
traced file runs at any input size and any number of detections (the tests check it). The score threshold
of the hub files is not published (their outputs carry no scores): ``score_threshold`` defaults to
detectron2's 0.05 for the tuple style.

Weights: seeded with a ``torch.Generator`` (never the global RNG) and deterministic. Random weights alone
give degenerate boxes, so a small designed signal path runs through the random network: the backbone carries
a luma channel, progressively blurred; the FPN turns it into a saliency map (luma against the broad
background) and a scale-selective contrast per level; the RPN scores anchors by that contrast (tall anchors
and coarse levels first); the box head scores a proposal by how well a salient region fills its inner 5x5
of 7x7 bins with background around it, and regresses the box onto the region's edges, so overlapping
candidates land on nearly the same box and the winner's score stands well clear of its rivals' and of the
threshold (decisive detections, needed to compare batched and one-image runs); a frame without contrast
(black) has nobody. The DensePose head carries the saliency (coarse foreground) and box-relative position
features built from zero padding (fine parts as contiguous regions, U/V ramps). All other channels are
random, calibrated to unit scale, and reach every output with small weights, so every weight matters.

``width`` scales every channel count (a reduced variant of the same graph for fast tests, with the same
keys and different shapes); the full-size default is the real architecture and cost.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision  # noqa: F401  (registers torchvision::nms / roi_align, which the graphs call)
from torch import Tensor
from torchvision.ops import boxes as box_ops
from torchvision.ops import roi_align

STYLES = ("tuple", "dict")
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
DTYPES = (torch.float32, torch.float16)
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)  # detectron2's MODEL.PIXEL_MEAN (BGR)
PIXEL_STD = (1.0, 1.0, 1.0)
MIN_SIZE_TEST, MAX_SIZE_TEST = 800, 1333  # the dict style's internal resize
SIZE_DIVISIBILITY = 32
ANCHOR_SIZES = (32.0, 64.0, 128.0, 256.0, 512.0)  # one per level, P2..P6
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
ANCHOR_STRIDES = (4, 8, 16, 32, 64)
RPN_PRE_NMS_TOPK, RPN_POST_NMS_TOPK, RPN_NMS = 1000, 1000, 0.7  # test-time values of the DensePose configs
BOX_NMS, DETECTIONS_PER_IMAGE = 0.5, 100
SCORE_THRESHOLDS = {"tuple": 0.05, "dict": 0.3}  # detectron2's default; DensePose-TorchScript's --min_score
RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
ROI_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
SCALE_CLAMP = math.log(1000.0 / 16)
ASPP_RATES = (6, 12, 56)
HEAD_CONVS = 8  # ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS
HEAD_POOL = 28  # ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION; the outputs are 4x that (HEATMAP_SIZE 112)
N_COARSE, N_FINE = 2, 25
FEATURES = ("p2", "p3", "p4", "p5")


def _channels(full: int, width: float) -> int:
    """``full`` channels scaled by ``width``: a multiple of 32 (GroupNorm's groups), at least 64."""
    return max(64, int(round(full * width / 32)) * 32)


# --- layers ------------------------------------------------------------------------------------------

class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine, all buffers (detectron2's ``FrozenBatchNorm2d``)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)  # exactly the identity

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with an optional ``norm`` and ``activation`` submodule (detectron2's wrapper)."""

    def __init__(self, *args, norm: Optional[nn.Module] = None, activation: Optional[nn.Module] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


# --- backbone: ResNet + FPN ------------------------------------------------------------------------------

class BasicStem(nn.Module):
    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.conv1 = Conv2d(3, out_channels, 7, stride=2, padding=3, bias=False, norm=FrozenBatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """1x1 (stride here: STRIDE_IN_1X1), 3x3, 1x1, frozen BN after each, projection shortcut when needed."""

    def __init__(self, in_channels: int, out_channels: int, bottleneck: int, stride: int, first: bool) -> None:
        super().__init__()
        self.shortcut: Optional[nn.Module] = None
        if first:  # the first block of a stage projects (channels differ there in every real ResNet)
            self.shortcut = Conv2d(in_channels, out_channels, 1, stride=stride, bias=False,
                                   norm=FrozenBatchNorm2d(out_channels))
        self.conv1 = Conv2d(in_channels, bottleneck, 1, stride=stride, bias=False, norm=FrozenBatchNorm2d(bottleneck))
        self.conv2 = Conv2d(bottleneck, bottleneck, 3, padding=1, bias=False, norm=FrozenBatchNorm2d(bottleneck))
        self.conv3 = Conv2d(bottleneck, out_channels, 1, bias=False, norm=FrozenBatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
        else:
            shortcut = x
        out += shortcut
        return F.relu_(out)


class ResNet(nn.Module):
    """Stem and stages res2..res5; the dict style's vendored code also lists the stages in ``stages``."""

    def __init__(self, depth: int, width: float, aliases: bool) -> None:
        super().__init__()
        stem_channels = _channels(64, width)
        self.stem = BasicStem(stem_channels)
        in_channels, out_channels, bottleneck = stem_channels, _channels(256, width), stem_channels
        stages = []
        for index, blocks in enumerate(DEPTHS[depth]):
            stride = 1 if index == 0 else 2
            stage = nn.Sequential(*[BottleneckBlock(in_channels if b == 0 else out_channels, out_channels, bottleneck,
                                                    stride if b == 0 else 1, b == 0) for b in range(blocks)])
            self.add_module(f"res{index + 2}", stage)
            stages.append(stage)
            in_channels, out_channels, bottleneck = out_channels, out_channels * 2, bottleneck * 2
        self.out_channels = [stage[-1].conv3.out_channels for stage in stages]
        if aliases:
            self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.stem(x)
        c2 = self.res2(x)
        c3 = self.res3(c2)
        c4 = self.res4(c3)
        c5 = self.res5(c4)
        return [c2, c3, c4, c5]


class LastLevelMaxPool(nn.Module):
    """P6 from P5: ``max_pool2d(kernel 1, stride 2)``, i.e. every other cell."""

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, kernel_size=1, stride=2, padding=0)


class FPN(nn.Module):
    """Lateral 1x1 and output 3x3 convs per level (``fpn_lateral{2..5}``, ``fpn_output{2..5}``), top-down
    nearest 2x upsampling and sum; P6 by ``top_block``. Returns [p2, p3, p4, p5, p6]."""

    def __init__(self, depth: int, width: float, aliases: bool) -> None:
        super().__init__()
        self.bottom_up = ResNet(depth, width, aliases)
        channels = _channels(256, width)
        self.out_channels = channels
        laterals, outputs = [], []
        for level, in_channels in zip((2, 3, 4, 5), self.bottom_up.out_channels):
            lateral = Conv2d(in_channels, channels, 1)
            output = Conv2d(channels, channels, 3, padding=1)
            self.add_module(f"fpn_lateral{level}", lateral)
            self.add_module(f"fpn_output{level}", output)
            laterals.insert(0, lateral)
            outputs.insert(0, output)
        if aliases:  # the vendored code keeps them in top-down order in ModuleLists
            self.lateral_convs = nn.ModuleList(laterals)
            self.output_convs = nn.ModuleList(outputs)
        self.top_block = LastLevelMaxPool()

    def forward(self, x: Tensor) -> List[Tensor]:
        c2, c3, c4, c5 = self.bottom_up(x)
        prev = self.fpn_lateral5(c5)
        p5 = self.fpn_output5(prev)
        prev = self.fpn_lateral4(c4) + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        p4 = self.fpn_output4(prev)
        prev = self.fpn_lateral3(c3) + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        p3 = self.fpn_output3(prev)
        prev = self.fpn_lateral2(c2) + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        p2 = self.fpn_output2(prev)
        return [p2, p3, p4, p5, self.top_block(p5)]


# --- boxes ---------------------------------------------------------------------------------------------

def apply_deltas(deltas: Tensor, boxes: Tensor, weights: Tuple[float, float, float, float], scale_clamp: float
                 ) -> Tensor:
    """detectron2's ``Box2BoxTransform.apply_deltas``: (dx, dy, dw, dh) per 4 columns, in float32."""
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=scale_clamp)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=scale_clamp)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    x1 = pred_ctr_x - 0.5 * pred_w
    y1 = pred_ctr_y - 0.5 * pred_h
    x2 = pred_ctr_x + 0.5 * pred_w
    y2 = pred_ctr_y + 0.5 * pred_h
    return torch.stack((x1, y1, x2, y2), dim=-1).reshape(deltas.shape)


def clip_xyxy(boxes: Tensor, x_max: Tensor, y_max: Tensor) -> Tensor:
    """Boxes clamped to [0, x_max] x [0, y_max] (0-dim tensors, so a trace follows the image size)."""
    x1 = boxes[:, 0].clamp(min=0, max=x_max)
    y1 = boxes[:, 1].clamp(min=0, max=y_max)
    x2 = boxes[:, 2].clamp(min=0, max=x_max)
    y2 = boxes[:, 3].clamp(min=0, max=y_max)
    return torch.stack((x1, y1, x2, y2), dim=-1)


def nonempty(boxes: Tensor, keep_empty: bool) -> Tensor:
    """Boxes with positive width and height (detectron2), or non-negative (``keep_empty``: the releases)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    if keep_empty:
        return (widths >= 0.0) & (heights >= 0.0)
    return (widths > 0.0) & (heights > 0.0)


# --- RPN -----------------------------------------------------------------------------------------------

class BufferList(nn.Module):
    """Buffers "0", "1", ... (detectron2 registers them non-persistent; TorchScript files keep them)."""

    def __init__(self, buffers: List[Tensor]) -> None:
        super().__init__()
        for index, buffer in enumerate(buffers):
            self.register_buffer(str(index), buffer, persistent=False)


class DefaultAnchorGenerator(nn.Module):
    """Anchors of one size and three aspect ratios (h / w) per level, offset 0 (ANCHOR_GENERATOR.OFFSET)."""

    def __init__(self) -> None:
        super().__init__()
        cells = []
        for size in ANCHOR_SIZES:
            anchors = []
            for ratio in ANCHOR_RATIOS:
                w = math.sqrt(size * size / ratio)
                h = ratio * w
                anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
            cells.append(torch.tensor(anchors).float())
        self.strides = list(ANCHOR_STRIDES)
        self.cell_anchors = BufferList(cells)

    def forward(self, features: List[Tensor]) -> List[Tensor]:
        anchors: List[Tensor] = []
        cells: List[Tensor] = [pair[1] for pair in self.cell_anchors.named_buffers()]
        for feature, stride, cell in zip(features, self.strides, cells):
            grid_h, grid_w = feature.shape[-2], feature.shape[-1]
            shifts_x = torch.arange(0.0, grid_w * stride, step=stride, dtype=torch.float32, device=cell.device)
            shifts_y = torch.arange(0.0, grid_h * stride, step=stride, dtype=torch.float32, device=cell.device)
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x = shift_x.reshape(-1)
            shift_y = shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            anchors.append((shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4))
        return anchors


class StandardRPNHead(nn.Module):
    """Shared 3x3 conv + ReLU, then 1x1 objectness (3 per position) and 1x1 deltas (12) on every level."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1, activation=nn.ReLU())
        self.objectness_logits = nn.Conv2d(channels, len(ANCHOR_RATIOS), 1)
        self.anchor_deltas = nn.Conv2d(channels, len(ANCHOR_RATIOS) * 4, 1)

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        logits: List[Tensor] = []
        deltas: List[Tensor] = []
        for x in features:
            t = self.conv(x)
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas


class RPN(nn.Module):
    """Proposals: top 1000 per level by objectness, clip, drop empty, NMS 0.7 per level, top 1000."""

    __constants__ = ["release_quirks"]

    def __init__(self, channels: int, release_quirks: bool) -> None:
        super().__init__()
        self.rpn_head = StandardRPNHead(channels)
        self.anchor_generator = DefaultAnchorGenerator()
        self.release_quirks = release_quirks
        self.pre_nms_topk = RPN_PRE_NMS_TOPK
        self.post_nms_topk = RPN_POST_NMS_TOPK
        self.nms_thresh = RPN_NMS
        self.box_weights = RPN_BOX_WEIGHTS
        self.scale_clamp = SCALE_CLAMP

    def forward(self, images: Tensor, features: List[Tensor], image_h: Tensor, image_w: Tensor
                ) -> Tuple[Tensor, Tensor]:
        """``images`` the padded batch [1,3,Hp,Wp]; ``image_h``/``image_w`` the unpadded size. Returns
        (proposal boxes [R,4], objectness logits [R])."""
        anchors = self.anchor_generator(features)
        logits, deltas = self.rpn_head(features)
        level_boxes: List[Tensor] = []
        level_scores: List[Tensor] = []
        level_ids: List[Tensor] = []
        for level, (anchors_i, logits_i, deltas_i) in enumerate(zip(anchors, logits, deltas)):
            scores_i = logits_i.permute(0, 2, 3, 1).flatten(1)[0]
            deltas_i = deltas_i.view(deltas_i.shape[0], -1, 4, deltas_i.shape[-2], deltas_i.shape[-1])
            deltas_i = deltas_i.permute(0, 3, 4, 1, 2).flatten(1, -2)[0]
            boxes_i = apply_deltas(deltas_i, anchors_i, self.box_weights, self.scale_clamp)
            if torch.jit.is_scripting():
                k = min(scores_i.shape[0], self.pre_nms_topk)
            else:  # a traced shape is a tensor: the file then follows the input size
                k = _at_most_traced(scores_i.shape[0], self.pre_nms_topk)
            top_scores, top_index = scores_i.topk(k)
            level_boxes.append(boxes_i[top_index])
            level_scores.append(top_scores)
            level_ids.append(torch.full_like(top_index, level))
        boxes = torch.cat(level_boxes)
        scores = torch.cat(level_scores)
        levels = torch.cat(level_ids)
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        if not bool(valid.all()):
            boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        if self.release_quirks:
            # the releases build the size as (w, h) of the padded batch, and clip_boxes reads it as (h, w)
            size = self.padded_size_wh(images)
            boxes = clip_xyxy(boxes, size[1], size[0])
        else:
            boxes = clip_xyxy(boxes, image_w, image_h)
        keep = nonempty(boxes, self.release_quirks)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = box_ops.batched_nms(boxes.float(), scores, levels, self.nms_thresh)[:self.post_nms_topk]
        return boxes[keep], scores[keep]

    def padded_size_wh(self, images: Tensor) -> Tensor:
        return torch.tensor([images.shape[3], images.shape[2]], dtype=torch.int64)


@torch.jit.unused
def _at_most_traced(count, limit: int):
    """min(count, limit) for a shape that is a tensor in a trace (recorded, so the file follows the size)."""
    if isinstance(count, Tensor):
        return torch.clamp(count, max=limit)
    return min(count, limit)


# --- ROI heads -----------------------------------------------------------------------------------------

class ROIAlign(nn.Module):
    def __init__(self, output_size: int, spatial_scale: float, sampling_ratio: int) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio

    def forward(self, x: Tensor, rois: Tensor) -> Tensor:
        # POOLER_TYPE "ROIAlign" in the DensePose configs: the legacy, unaligned variant
        return roi_align(x, rois.to(dtype=x.dtype), self.output_size, self.spatial_scale, self.sampling_ratio, False)


class ROIPooler(nn.Module):
    """RoIAlign from the FPN level a box's size picks (canonical 224 px on level 4), or from one map."""

    def __init__(self, output_size: int, scales: Tuple[float, ...], sampling_ratio: int = 2) -> None:
        super().__init__()
        self.output_size = output_size
        self.level_poolers = nn.ModuleList([ROIAlign(output_size, scale, sampling_ratio) for scale in scales])
        self.min_level = int(round(-math.log2(scales[0])))
        self.max_level = int(round(-math.log2(scales[-1])))

    def forward(self, features: List[Tensor], boxes: Tensor) -> Tensor:
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        if len(self.level_poolers) == 1:
            return self.level_poolers[0](features[0], rois)
        sizes = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        levels = torch.floor(4 + torch.log2(sizes / 224 + 1e-8))
        levels = torch.clamp(levels, min=self.min_level, max=self.max_level).to(torch.int64) - self.min_level
        channels = features[0].shape[1]
        output = features[0].new_zeros((boxes.shape[0], channels, self.output_size, self.output_size))
        for level, pooler in enumerate(self.level_poolers):
            index = (levels == level).nonzero().reshape(-1)
            output.index_put_((index,), pooler(features[level], rois[index]))
        return output


class FastRCNNConvFCHead(nn.Sequential):
    """flatten, fc1 (C*7*7 -> 1024), ReLU, fc2 (1024 -> 1024), ReLU."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.add_module("flatten", nn.Flatten())
        self.add_module("fc1", nn.Linear(channels * 49, dim))
        self.add_module("fc_relu1", nn.ReLU())
        self.add_module("fc2", nn.Linear(dim, dim))
        self.add_module("fc_relu2", nn.ReLU())


class FastRCNNOutputLayers(nn.Module):
    """Person/background logits and class-specific box deltas (one class)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(dim, 2)
        self.bbox_pred = nn.Linear(dim, 4)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class Decoder(nn.Module):
    """Panoptic-FPN semantic head: per level 3x3 convs + ReLU and 2x upsamplings down to stride 4, summed, 1x1."""

    def __init__(self, channels: int, aliases: bool) -> None:
        super().__init__()
        heads = []
        for level in (2, 3, 4, 5):
            ops: List[nn.Module] = []
            for k in range(max(1, level - 2)):
                ops.append(Conv2d(channels, channels, 3, padding=1, activation=nn.ReLU()))
                if level != 2:
                    ops.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
            head = nn.Sequential(*ops)
            self.add_module(f"p{level}", head)
            heads.append(head)
        if aliases:
            self.scale_heads = nn.ModuleList(heads)
        self.predictor = Conv2d(channels, channels, 1)

    def forward(self, features: List[Tensor]) -> Tensor:
        x = self.p2(features[0])
        x = x + self.p3(features[1])
        x = x + self.p4(features[2])
        x = x + self.p5(features[3])
        return self.predictor(x)


class ASPPPooling(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.GroupNorm(32, out_channels), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """DeepLabV3 ASPP: 1x1, three dilated 3x3 (6, 12, 56) and image pooling, each GroupNorm + ReLU; 1x1 + ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        branches: List[nn.Module] = [nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False),
                                                   nn.GroupNorm(32, channels), nn.ReLU())]
        for rate in ASPP_RATES:
            branches.append(nn.Sequential(nn.Conv2d(channels, channels, 3, padding=rate, dilation=rate, bias=False),
                                          nn.GroupNorm(32, channels), nn.ReLU()))
        branches.append(ASPPPooling(channels, channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(5 * channels, channels, 1, bias=False), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        outputs: List[Tensor] = []
        for branch in self.convs:
            outputs.append(branch(x))
        return self.project(torch.cat(outputs, dim=1))


class DensePoseDeepLabHead(nn.Module):
    """ASPP, then 8 x (3x3 conv, GroupNorm 32, ReLU) of 512 channels (``body_conv_fcn1..8``)."""

    def __init__(self, in_channels: int, hidden: int, aliases: bool) -> None:
        super().__init__()
        self.ASPP = ASPP(in_channels)
        convs = []
        for index in range(HEAD_CONVS):
            conv = Conv2d(in_channels if index == 0 else hidden, hidden, 3, padding=1, bias=False,
                          norm=nn.GroupNorm(32, hidden))
            self.add_module(f"body_conv_fcn{index + 1}", conv)
            convs.append(conv)
        if aliases:
            self.NLBlock = nn.Identity()  # NONLOCAL_ON 0: the vendored code keeps an Identity
            self.stacked_convs = nn.ModuleList(convs)

    def forward(self, x: Tensor) -> Tensor:
        x = self.ASPP(x)
        x = F.relu(self.body_conv_fcn1(x))
        x = F.relu(self.body_conv_fcn2(x))
        x = F.relu(self.body_conv_fcn3(x))
        x = F.relu(self.body_conv_fcn4(x))
        x = F.relu(self.body_conv_fcn5(x))
        x = F.relu(self.body_conv_fcn6(x))
        x = F.relu(self.body_conv_fcn7(x))
        return F.relu(self.body_conv_fcn8(x))


class DensePoseChartPredictor(nn.Module):
    """Four 4x4 stride-2 transposed convs (coarse 2, fine 25, u 25, v 25), each upsampled 2x bilinearly."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.ann_index_lowres = nn.ConvTranspose2d(hidden, N_COARSE, 4, stride=2, padding=1)
        self.index_uv_lowres = nn.ConvTranspose2d(hidden, N_FINE, 4, stride=2, padding=1)
        self.u_lowres = nn.ConvTranspose2d(hidden, N_FINE, 4, stride=2, padding=1)
        self.v_lowres = nn.ConvTranspose2d(hidden, N_FINE, 4, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        return (self._up(self.ann_index_lowres(x)), self._up(self.index_uv_lowres(x)), self._up(self.u_lowres(x)),
                self._up(self.v_lowres(x)))

    def _up(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class DensePoseROIHeads(nn.Module):
    """Box head (pooler 7x7 on P2-P5, two FCs, predictor, score threshold, NMS 0.5, top 100), then the
    DensePose branch on the kept boxes (decoder, pooler 28x28 on its stride-4 output, DeepLab head)."""

    __constants__ = ["release_quirks"]

    def __init__(self, channels: int, box_dim: int, head_dim: int, score_threshold: float, release_quirks: bool,
                 aliases: bool) -> None:
        super().__init__()
        self.release_quirks = release_quirks
        self.score_threshold = float(score_threshold)
        self.nms_thresh = BOX_NMS
        self.topk_per_image = DETECTIONS_PER_IMAGE
        self.box_weights = ROI_BOX_WEIGHTS
        self.scale_clamp = SCALE_CLAMP
        self.box_pooler = ROIPooler(7, (1 / 4, 1 / 8, 1 / 16, 1 / 32))
        self.box_head = FastRCNNConvFCHead(channels, box_dim)
        self.box_predictor = FastRCNNOutputLayers(box_dim)
        self.decoder = Decoder(channels, aliases)
        self.densepose_pooler = ROIPooler(HEAD_POOL, (1 / 4,))
        self.densepose_head = DensePoseDeepLabHead(channels, head_dim, aliases)
        self.densepose_predictor = DensePoseChartPredictor(head_dim)

    def forward(self, features: List[Tensor], proposals: Tensor, image_h: Tensor, image_w: Tensor
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        box_features = self.box_head(self.box_pooler(features[:4], proposals))
        class_logits, box_deltas = self.box_predictor(box_features)
        boxes = apply_deltas(box_deltas, proposals, self.box_weights, self.scale_clamp)
        scores = F.softmax(class_logits, dim=-1)
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
        if not bool(valid.all()):
            boxes, scores = boxes[valid], scores[valid]
        scores = scores[:, :-1]
        boxes = boxes.reshape(-1, 4)
        if not self.release_quirks:  # the releases compute this clip and throw it away
            boxes = clip_xyxy(boxes, image_w, image_h)
        boxes = boxes.view(-1, 1, 4)
        candidates = (scores > self.score_threshold).nonzero()
        boxes = boxes[candidates[:, 0], 0]
        scores = scores[candidates[:, 0], candidates[:, 1]]
        classes = candidates[:, 1]
        keep = box_ops.batched_nms(boxes.float(), scores, classes, self.nms_thresh)[:self.topk_per_image]
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]

        decoded = self.decoder(features[:4])
        pooled = self.densepose_pooler([decoded], boxes)
        coarse, fine, u, v = self.densepose_predictor(self.densepose_head(pooled))
        return boxes, scores, classes, coarse, fine, u, v


class GeneralizedRCNN(nn.Module):
    """Normalise (BGR pixel mean, std 1), pad to 32, backbone, RPN, ROI heads, rescale to the output size."""

    __constants__ = ["release_quirks"]

    def __init__(self, depth: int, width: float, style: str, score_threshold: float) -> None:
        super().__init__()
        quirks = style == "dict"
        self.release_quirks = quirks
        self.size_divisibility = SIZE_DIVISIBILITY
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN_BGR).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), False)
        self.backbone = FPN(depth, width, aliases=quirks)
        channels = self.backbone.out_channels
        self.proposal_generator = RPN(channels, quirks)
        self.roi_heads = DensePoseROIHeads(channels, _channels(1024, width), _channels(512, width), score_threshold,
                                           quirks, aliases=quirks)

    def forward(self, image: Tensor, output_width: Tensor, output_height: Tensor
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``image`` CHW (uint8 or float) in the model's channel order; the output size as 0-dim tensors.
        Returns (boxes, scores, classes, coarse, fine, u, v) in the output size's coordinates."""
        x = (image.to(self.pixel_mean.device) - self.pixel_mean) / self.pixel_std
        if torch.jit.is_scripting():
            image_h = torch.tensor(x.shape[1])
            image_w = torch.tensor(x.shape[2])
        else:
            image_h, image_w = _traced_size(x, 1), _traced_size(x, 2)
        d = self.size_divisibility
        padded_h = torch.div(image_h + (d - 1), d, rounding_mode="floor") * d
        padded_w = torch.div(image_w + (d - 1), d, rounding_mode="floor") * d
        pad_w = padded_w - image_w
        pad_h = padded_h - image_h
        if torch.jit.is_scripting():
            images = F.pad(x, [0, int(pad_w), 0, int(pad_h)], value=0.0)
        else:
            images = _pad_traced(x, pad_w, pad_h)
        images = images.unsqueeze(0).contiguous()
        features = self.backbone(images)
        proposals, _ = self.proposal_generator(images, features, image_h, image_w)
        boxes, scores, classes, coarse, fine, u, v = self.roi_heads(features, proposals, image_h, image_w)

        if self.release_quirks:
            # scale from the padded width minus the padding; drop negative sizes, then clip
            scale_x = output_width.float() / (padded_w - pad_w)
            scale_y = output_height.float() / (padded_h - pad_h)
            boxes = boxes * torch.stack([scale_x, scale_y, scale_x, scale_y])
            keep = nonempty(boxes, True)
            boxes = clip_xyxy(boxes[keep], output_width, output_height)
        else:
            scale_x = output_width.float() / image_w
            scale_y = output_height.float() / image_h
            boxes = boxes * torch.stack([scale_x, scale_y, scale_x, scale_y])
            boxes = clip_xyxy(boxes, output_width, output_height)
            keep = nonempty(boxes, False)
            boxes = boxes[keep]
        return boxes, scores[keep], classes[keep], coarse[keep], fine[keep], u[keep], v[keep]


@torch.jit.unused
def _pad_traced(x: Tensor, pad_w: Tensor, pad_h: Tensor) -> Tensor:
    """Zero padding right and bottom by amounts that are tensors in a trace (so the trace follows them)."""
    return F.pad(x, [0, pad_w, 0, pad_h], value=0.0)  # type: ignore[list-item]


@torch.jit.unused
def _traced_size(x: Tensor, dim: int) -> Tensor:
    """``x.shape[dim]`` as a 0-dim int64 tensor: in a trace a shape is a tensor that follows the input."""
    size = x.shape[dim]
    if isinstance(size, Tensor):
        return size.to(torch.int64)
    return torch.tensor(size, dtype=torch.int64)


# --- the two export wrappers ---------------------------------------------------------------------------

class TracingAdapter(nn.Module):
    """The hub files' top level (detectron2's ``TracingAdapter``): the output size is the input's, boxes go
    to the CPU. Traced."""

    def __init__(self, model: GeneralizedRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        output_height = _traced_size(image, 1)
        output_width = _traced_size(image, 2)
        boxes, scores, classes, coarse, fine, u, v = self.model(image, output_width, output_height)
        return boxes.to(device=torch.device("cpu")), coarse, fine, u, v


class DefaultPredictor(nn.Module):
    """The releases' top level (their vendored ``DefaultPredictor``): HWC (or CHW) uint8 in, resized inside to
    short side 800 (long side at most 1333) on the uint8 image, one image's predictions out. Scripted."""

    def __init__(self, model: GeneralizedRCNN) -> None:
        super().__init__()
        self.model = model
        self.min_size = MIN_SIZE_TEST
        self.max_size = MAX_SIZE_TEST
        self.input_format = "BGR"  # INPUT.FORMAT: so ``bgr`` changes nothing, as in the releases

    def forward(self, original_image: Tensor, bgr: bool = True) -> Dict[str, Tensor]:
        if original_image.shape[2] == 3:
            original_image = original_image.permute(2, 0, 1)
        elif original_image.shape[0] != 3:
            raise ValueError("expected an HWC or CHW image with 3 channels")
        if self.input_format == "RGB" and bgr:
            original_image = original_image.flip(0)
        height = original_image.shape[1]
        width = original_image.shape[2]
        k = min(self.min_size / min(height, width), self.max_size / max(height, width))
        image = F.interpolate(original_image[None], scale_factor=k, mode="bilinear", align_corners=False)[0]
        output_height = torch.tensor(height, dtype=torch.int64)
        output_width = torch.tensor(width, dtype=torch.int64)
        with torch.no_grad():
            boxes, scores, classes, coarse, fine, u, v = self.model(image, output_width, output_height)
        return {
            "image_size": torch.stack([output_height, output_width]),
            "pred_boxes": boxes,
            "scores": scores,
            "pred_classes": classes,
            "pred_densepose_coarse_segm": coarse,
            "pred_densepose_fine_segm": fine,
            "pred_densepose_u": u,
            "pred_densepose_v": v,
        }
