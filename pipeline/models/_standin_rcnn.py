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
a luma channel L and, from res4 on, a broad blur of it, the context B (3x3 box blurs that treat the zero
padding like replicate padding, so neither darkens towards the image's borders); the FPN hands every level
L, B, a level constant and a scale-selective contrast; the RPN scores anchors by that contrast (coarse
levels and tall anchors first, tall proposals person-shaped); the box head marks a 7x7 bin salient where its
luma departs from the background (the mean of the box's outer ring of bins, corrected by half the context's
departure from its own ring mean), scores a proposal by how well that mask fills the inner 5x5 bins
(central column weighted) with an empty ring, larger boxes preferred, and regresses the box onto the mask's
row/column profiles, grown (the mask misses low-contrast parts: faces and hands on a light wall, shoes on
the floor). What this achieves, measured (see the repository's notes): one dominant box on simple generated
scenes of one or two people; on real frames people-sized boxes on the person, but not yet reliably tight or
decisive (adjacent dark furniture joins the mask, half-person boxes compete). A frame without contrast
(black) has nobody. The DensePose head carries the luma and box-relative position features built from zero
padding (fine parts as contiguous regions, U/V ramps). All other channels are random, calibrated to unit
scale, and reach every output with small weights, so every weight matters.

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


# --- weights -------------------------------------------------------------------------------------------
#
# A small designed signal path in an otherwise random network (see the module docstring). Channel 0 of every
# backbone stage carries luma L (black 0, white 2.55); channel 1 of res4 and res5 the context B, a broad blur
# of it. Each FPN level l outputs L_l (channel 0), B (channel 1), a level constant (channel 2) and a
# scale-selective contrast K_l (channel 3). Designated channels read only designated channels; random
# channels read everything.

LUMA_BGR = (0.114, 0.587, 0.299)
LUMA_SCALE = 0.01
BLUR_ALPHA = 0.35  # diffusion step of a block: L <- (1 - a) L + a blur3x3(L)
BLURRED_BLOCKS = 2  # per stage at most, the last ones (R50 and R101 blur alike)
BLUR_MARGIN = 3.0  # M of _design_blur: above any signal (white luma is 2.55)
CONTEXT_BLOCKS = 6  # res4 blocks (the last ones) that blur the context B; every res5 block does too
LEVEL_CONSTANT = {2: 0.0, 3: 0.5, 4: 1.0, 5: 1.5}  # P6 is P5's
RPN_CONTRAST_GAIN, RPN_CONTRAST_FLOOR, RPN_LEVEL_GAIN = 6.0, 0.04, 1.5
RPN_RATIO_BIAS = (-1.5, 0.0, 1.0)  # wide, square, tall anchors
RPN_RATIO_SHAPE = ((1.0, 1.0), (1.0, 1.0), (0.8, 1.25))  # width, height factors of the proposals
BOX_MASK_FLOOR, BOX_MASK_RAMP = 0.2, 0.2  # |d| -> mask 0..1 (luma units)
BOX_GROWTH = (1.35, 1.5)  # the box around the mask: width, height factors (the mask misses
# low-contrast parts: face and hands against a light wall, shoes on the floor)
BOX_SHIFT = (0.0, -0.05)  # and moved by these fractions of the box (up: the head)
BOX_ROW_SHARE = 0.0  # share of the row's end bins in a bin's background reference
BOX_CONTEXT_SHARE = 0.5  # d = L - ring mean of L - share x (B - ring mean of B)
BOX_FIT_GAIN, BOX_LOGIT_OFFSET, BOX_RING_PENALTY, BOX_CENTRE_WEIGHT, BOX_LEVEL_GAIN = 12.0, 9.0, 2.0, 1.0, 4.0
RANDOM_LOGIT_GAIN, RANDOM_DELTA_GAIN = 0.02, 0.002  # how much the random channels move scores and boxes
RANDOM_DENSE_GAIN = 0.01


class _Init:
    """Seeded initialisation: He-normal weights from one torch.Generator, in a fixed module order."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(int(seed))

    def normal(self, shape, std: float) -> Tensor:
        return torch.randn(shape, generator=self.generator) * std

    def he(self, layer: nn.Module, gain: float = 1.0) -> None:
        weight = layer.weight
        if isinstance(layer, nn.ConvTranspose2d):
            fan_in = weight.shape[0] * weight.shape[2] * weight.shape[3] / 4  # stride 2: a quarter of the taps
        else:
            fan_in = weight[0].numel()
        weight.copy_(self.normal(weight.shape, gain * math.sqrt(2.0 / fan_in)))
        if layer.bias is not None:
            layer.bias.zero_()


def _calibration_image(seed: int, height: int = 192, width: int = 160) -> Tensor:
    """A seeded smooth uint8 CHW picture (low-frequency noise): roughly a photo's statistics."""
    g = torch.Generator().manual_seed(int(seed) + 1)
    coarse = torch.rand(1, 3, 6, 5, generator=g)
    fine = torch.rand(1, 3, 48, 40, generator=g)
    image = 0.7 * F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False) + \
        0.3 * F.interpolate(fine, size=(height, width), mode="bilinear", align_corners=False)
    return (image[0].clamp(0, 1) * 255).round().to(torch.uint8)


def _copy(conv: nn.Conv2d, out: int, inp: int, gain: float = 1.0) -> None:
    """Output channel ``out`` = ``gain`` x input channel ``inp`` (centre tap), nothing else."""
    conv.weight[out].zero_()
    kh, kw = conv.weight.shape[2], conv.weight.shape[3]
    conv.weight[out, inp, kh // 2, kw // 2] = gain


def _isolate(conv: nn.Conv2d, designated_in: int, designated_out: int) -> None:
    """Designated outputs read no random input; random outputs may read everything."""
    conv.weight[:designated_out, designated_in:] = 0.0
    if conv.bias is not None:
        conv.bias[:designated_out] = 0.0


def _design_backbone(model: GeneralizedRCNN, init: _Init, seed: int) -> None:
    """Channel 0 of every stage: luma L (blurred a little in each stage's last blocks). Channel 1 of res4 and
    res5: the context B, a broad blur of L (a 3x3 box blur in each of the last ``CONTEXT_BLOCKS`` res4 blocks
    and every res5 block): the smooth background a person stands out from."""
    bottom_up = model.backbone.bottom_up
    keep: Dict[FrozenBatchNorm2d, int] = {}  # batch norms whose first n channels stay as designed
    stem = bottom_up.stem.conv1
    init.he(stem)
    stem.weight[0].zero_()
    for channel, coefficient in enumerate(LUMA_BGR):  # centre tap only: the zero padding leaves luma alone
        stem.weight[0, channel, 3, 3] = coefficient * LUMA_SCALE
    stem.norm.bias[0] = sum(c * m for c, m in zip(LUMA_BGR, PIXEL_MEAN_BGR)) * LUMA_SCALE  # undo the mean
    keep[stem.norm] = 1
    stages = [bottom_up.res2, bottom_up.res3, bottom_up.res4, bottom_up.res5]
    for stage_index, stage in enumerate(stages):
        signals = 2 if stage_index >= 2 else 1  # res4 and res5 also carry B
        for block_index, block in enumerate(stage):
            for conv in (block.conv1, block.conv2, block.conv3, block.shortcut):
                if conv is not None:
                    init.he(conv)
            inputs = signals
            if block.shortcut is not None:
                inputs = 2 if stage_index == 3 else 1  # what the block's input carries
                _isolate(block.shortcut, inputs, signals)
                for s in range(signals):
                    _copy(block.shortcut, s, min(s, inputs - 1))  # B starts as L at the first res4 block
                keep[block.shortcut.norm] = signals
            alphas = []
            for s in range(signals):
                if s == 1:
                    alphas.append(1.0 if stage_index == 3 or block_index >= len(stage) - CONTEXT_BLOCKS else 0.0)
                else:
                    alphas.append(BLUR_ALPHA if 0 < block_index and block_index >= len(stage) - BLURRED_BLOCKS
                                  else 0.0)
            _design_blur(block, inputs, alphas)
            keep[block.conv1.norm] = 1 + signals
            keep[block.conv2.norm] = 16 * signals
            keep[block.conv3.norm] = signals
            block.conv3.norm.weight.fill_(0.3)  # random residual branches start small
            block.conv3.norm.weight[:signals] = 1.0
    _calibrate(model, keep, seed)


def _design_blur(block: BottleneckBlock, inputs: int, alphas: List[float]) -> None:
    """The block's branch adds ``alpha_s / 9 * sum over the 8 neighbours inside the map of (x_n - x_s)`` to
    signal s: a 3x3 box blur that ignores the zero padding (a padded neighbour counts as the centre, like
    replicate padding), so a smooth map does not darken towards the image's borders.

    conv1: hidden 0 = e = 1 (its bias; 0 in conv2's padding), hidden 1 + s = a_s = x_s + M (M > any signal).
    conv2 per signal and neighbour n: relu(a_n - a_c) and relu(a_c - a_n + 2M e_n - 2M); both are 0 where n
    is padding (a_n = e_n = 0), their difference is x_n - x_c inside. conv3 sums them with alpha / 9."""
    signals = len(alphas)
    margin = BLUR_MARGIN
    _isolate(block.conv1, inputs, 1 + signals)
    _isolate(block.conv2, 1 + signals, 16 * signals)
    _isolate(block.conv3, 16 * signals, signals)
    block.conv1.weight[:1 + signals] = 0.0
    block.conv1.norm.bias[0] = 1.0
    for s in range(signals):
        block.conv1.weight[1 + s, min(s, inputs - 1), 0, 0] = 1.0
        block.conv1.norm.bias[1 + s] = margin
    block.conv2.weight[:16 * signals] = 0.0
    block.conv3.weight[:signals] = 0.0
    neighbours = [(i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)]
    for s, alpha in enumerate(alphas):
        if alpha == 0.0:
            continue
        for k, (i, j) in enumerate(neighbours):
            plus, minus = 16 * s + 2 * k, 16 * s + 2 * k + 1
            block.conv2.weight[plus, 1 + s, i, j] = 1.0
            block.conv2.weight[plus, 1 + s, 1, 1] = -1.0
            block.conv2.weight[minus, 1 + s, 1, 1] = 1.0
            block.conv2.weight[minus, 1 + s, i, j] = -1.0
            block.conv2.weight[minus, 0, i, j] = 2.0 * margin
            block.conv2.norm.bias[minus] = -2.0 * margin
            block.conv3.weight[s, plus, 0, 0] = alpha / 9.0
            block.conv3.weight[s, minus, 0, 0] = -alpha / 9.0


def _calibrate(model: GeneralizedRCNN, keep: Dict[FrozenBatchNorm2d, int], seed: int) -> None:
    """Frozen BN statistics of the random channels from a seeded picture, layer by layer (unit scale)."""

    def set_statistics(module: FrozenBatchNorm2d, inputs) -> None:
        x = inputs[0]
        n = keep.get(module, 0)
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False).clamp(min=1e-4)
        module.running_mean[n:] = mean[n:]
        module.running_var[n:] = var[n:]

    hooks = [m.register_forward_pre_hook(set_statistics) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    try:
        image = _calibration_image(seed)
        x = (image - model.pixel_mean) / model.pixel_std
        model.backbone.bottom_up(x[None])
    finally:
        for hook in hooks:
            hook.remove()


def _design_fpn_rpn(model: GeneralizedRCNN, init: _Init) -> None:
    """FPN level l: channel 0 L_l, 1 the context B (carried down from res5 by the top-down path), 2 a level
    constant, 3 the scale-selective contrast K_l; the RPN scores anchors by |K| (coarse levels, tall first)."""
    fpn = model.backbone
    laterals = {level: getattr(fpn, f"fpn_lateral{level}") for level in (2, 3, 4, 5)}
    outputs = {level: getattr(fpn, f"fpn_output{level}") for level in (2, 3, 4, 5)}
    luma_group = {2: 3, 3: 4, 4: 5, 5: 6}  # top-down channels: L_l alone
    contrast_group = {2: 7, 3: 8, 4: 9, 5: 10}  # L_{l+1} - L_{l+2} (levels 4 and 5: L5 - B)
    context_group = 11  # B, from res5 down to every level
    designated = 12
    for level in (2, 3, 4, 5):
        init.he(laterals[level])
        init.he(outputs[level], gain=0.5)
        _isolate(laterals[level], 2 if level == 5 else 1, designated)
        _isolate(outputs[level], designated, 4)
        laterals[level].weight[:designated] = 0.0
    for level in (2, 3, 4, 5):
        laterals[level].weight[luma_group[level], 0] = 1.0
    laterals[3].weight[contrast_group[2], 0] = 1.0
    laterals[4].weight[contrast_group[2], 0] = -1.0
    laterals[4].weight[contrast_group[3], 0] = 1.0
    laterals[5].weight[contrast_group[3], 0] = -1.0
    for level in (4, 5):
        laterals[5].weight[contrast_group[level], 0] = 1.0
        laterals[5].weight[contrast_group[level], 1] = -1.0
    laterals[5].weight[context_group, 1] = 1.0
    for level in (2, 3, 4, 5):
        _copy(outputs[level], 0, luma_group[level])
        _copy(outputs[level], 1, context_group)
        outputs[level].weight[2].zero_()
        outputs[level].bias[2] = LEVEL_CONSTANT[level]
        _copy(outputs[level], 3, contrast_group[level])

    head = model.proposal_generator.rpn_head
    init.he(head.conv)
    _isolate(head.conv, 4, 3)
    for hidden, sign in ((0, 1.0), (1, -1.0)):  # relu(+-K - floor), K averaged over 3x3 (centre weighted)
        head.conv.weight[hidden].zero_()
        head.conv.weight[hidden, 3] = sign * 0.5 / 8.0
        head.conv.weight[hidden, 3, 1, 1] = sign * 0.5
        head.conv.bias[hidden] = -RPN_CONTRAST_FLOOR
    _copy(head.conv, 2, 2)
    for layer in (head.objectness_logits, head.anchor_deltas):
        init.he(layer, gain=RANDOM_LOGIT_GAIN if layer is head.objectness_logits else RANDOM_DELTA_GAIN)
        layer.weight[:, :3] = 0.0
    for ratio, (dw, dh) in enumerate(RPN_RATIO_SHAPE):  # tall anchors: person-shaped
        head.anchor_deltas.bias[4 * ratio + 2] = math.log(dw)
        head.anchor_deltas.bias[4 * ratio + 3] = math.log(dh)
    for ratio, bias in enumerate(RPN_RATIO_BIAS):
        head.objectness_logits.weight[ratio, 0:2, 0, 0] = RPN_CONTRAST_GAIN
        head.objectness_logits.weight[ratio, 2, 0, 0] = RPN_LEVEL_GAIN
        head.objectness_logits.bias[ratio] = bias


def _design_box_head(model: GeneralizedRCNN, init: _Init) -> None:
    """fc1: per bin relu(+-d - floor) with d = (L - B) - ring mean of (L - B): the bin's luma against the
    context, corrected by how far the context is off in the box's outer ring of bins (a loose box's ring is
    background); the pooled level (box size) and a constant. fc2: the bins' mask saturated to 0..1. cls_score:
    how well the mask fills the inner 5x5 of 7x7 bins (centre-weighted) with an empty ring, larger boxes a
    little preferred. bbox_pred: the box moved onto the mask's edges (linearised at the ideal fit)."""
    roi = model.roi_heads
    fc1, fc2 = roi.box_head.fc1, roi.box_head.fc2
    cls, reg = roi.box_predictor.cls_score, roi.box_predictor.bbox_pred
    for layer in (fc1, fc2):
        init.he(layer)
    init.he(cls, gain=RANDOM_LOGIT_GAIN)
    init.he(reg, gain=RANDOM_DELTA_GAIN)
    bins = [(i, j) for i in range(7) for j in range(7)]
    ring = [b for b in bins if b[0] in (0, 6) or b[1] in (0, 6)]
    inner = [b for b in bins if b not in ring]
    designated = 2 * 49 + 2
    fc1.weight[:designated] = 0.0
    fc1.bias[:designated] = 0.0
    ring_mean = torch.zeros(49)
    for i, j in ring:
        ring_mean[i * 7 + j] = 1.0 / len(ring)
    inner_mean = torch.zeros(49)
    for i, j in inner:
        inner_mean[i * 7 + j] = 1.0 / len(inner)
    for index in range(49):
        row = index // 7
        reference = (1.0 - BOX_ROW_SHARE) * ring_mean  # the background: the ring, and the row's two ends
        reference[row * 7] += 0.5 * BOX_ROW_SHARE
        reference[row * 7 + 6] += 0.5 * BOX_ROW_SHARE
        difference = -reference
        difference[index] += 1.0
        for sign, unit in ((1.0, 2 * index), (-1.0, 2 * index + 1)):
            fc1.weight[unit, :49] = sign * difference  # L
            fc1.weight[unit, 49:98] = -sign * BOX_CONTEXT_SHARE * difference  # B
            fc1.bias[unit] = -BOX_MASK_FLOOR
    fc1.weight[98, 98:147] = 1.0 / 49.0  # the level constant
    fc1.bias[99] = 1.0
    fc2.weight[:designated] = 0.0
    fc2.bias[:designated] = 0.0
    for index in range(49):  # p = relu(|d|), q = relu(|d| - ramp): mask = (p - q) / ramp
        fc2.weight[index, 2 * index: 2 * index + 2] = 1.0
        fc2.weight[49 + index, 2 * index: 2 * index + 2] = 1.0
        fc2.bias[49 + index] = -BOX_MASK_RAMP
    for unit in range(98, designated):
        fc2.weight[unit, unit] = 1.0

    def mask_weights(coefficients: Tensor) -> Tensor:
        """fc2 weights realising sum(coefficients * mask) over the 49 bins."""
        weights = torch.zeros(designated)
        weights[:49] = coefficients / BOX_MASK_RAMP
        weights[49:98] = -coefficients / BOX_MASK_RAMP
        return weights

    cls.weight[:, :designated] = 0.0
    cls.bias.zero_()
    centre = torch.zeros(49)  # inner bins, the central column and rows weigh more (where a person is)
    for i, j in inner:
        centre[i * 7 + j] = 1.0 + BOX_CENTRE_WEIGHT * (j == 3)
    centre /= centre.sum()
    cls.weight[0, :designated] = BOX_FIT_GAIN * mask_weights(centre - BOX_RING_PENALTY * ring_mean)
    cls.weight[0, 98] = BOX_LEVEL_GAIN
    cls.bias[0] = -BOX_LOGIT_OFFSET
    # edges: empty fraction on each side, from the inner rows' (columns') mask profile
    ideal = 2.0 / 7.0
    reg.weight[:, :designated] = 0.0
    reg.bias.zero_()
    for axis in (0, 1):  # 0: x (columns), 1: y (rows)
        low, high = torch.zeros(49), torch.zeros(49)
        constant_low = constant_high = 0.0
        for k, share in ((0, 1.0), (1, 1.0), (2, 1.0), (3, 0.5)):
            for t in range(1, 6):
                near = (t, k) if axis == 0 else (k, t)
                far = (t, 6 - k) if axis == 0 else (6 - k, t)
                low[near[0] * 7 + near[1]] -= share / 7.0 / 5.0
                high[far[0] * 7 + far[1]] -= share / 7.0 / 5.0
            constant_low += share / 7.0
            constant_high += share / 7.0
        # e_low = constant_low + low . mask, e_high likewise; dx = 5 (e_low - e_high),
        # dw = 5 (log(1 - ideal) - (e_low + e_high - ideal) / (1 - ideal))
        centre, size = axis, axis + 2
        reg.weight[centre, :designated] = 5.0 * mask_weights(low - high)
        reg.bias[centre] = 5.0 * (constant_low - constant_high) + 10.0 * BOX_SHIFT[axis]
        reg.weight[size, :designated] = -5.0 / (1.0 - ideal) * mask_weights(low + high)
        reg.bias[size] = 5.0 * (math.log(1.0 - ideal) - (constant_low + constant_high - ideal) / (1.0 - ideal)
                                + math.log(BOX_GROWTH[axis]))


# DensePose head: the decoder passes L and a constant; in the pooled 28x28 box the ASPP turns the constant
# into steps at bins 6, 12, 16 and 22 in x and y (dilated taps that fall into the zero padding), which sum
# to box-relative position staircases X, Y; GroupNorm groups of +-signal pairs keep each signal exact (they
# only rescale by its RMS). Parts are the Voronoi cells of 24 lattice points in (X, Y); the foreground is a
# person-like region of the box; U and V follow position and luma.

PART_LAYOUT = (  # part index per (row, column) band of the box; 0: the background channel's cell (a corner)
    (0, 20, 23, 19, 6),
    (22, 16, 24, 15, 21),
    (4, 18, 1, 17, 3),
    (8, 10, 2, 9, 7),
    (12, 14, 5, 13, 11),
)
COARSE_GAIN = 4.0


def _signed_group(conv: nn.Conv2d, group: int, size: int, weights: Dict[Tuple[int, Tuple[int, int]], float],
                  bias: float = 0.0) -> None:
    """Channels of GroupNorm group ``group`` (``size`` channels) = +s, -s, +s, ... with s = sum of
    weights[(input, tap)] * input at tap (+ bias)."""
    for k in range(size):
        out = group * size + k
        sign = 1.0 if k % 2 == 0 else -1.0
        conv.weight[out].zero_()
        for (inp, (a, b)), w in weights.items():
            conv.weight[out, inp, a, b] = sign * w
        if conv.bias is not None:
            conv.bias[out] = sign * bias


def _design_densepose(model: GeneralizedRCNN, init: _Init) -> None:
    roi = model.roi_heads
    decoder = roi.decoder
    for name in ("p2", "p3", "p4", "p5"):
        for layer in getattr(decoder, name):
            if isinstance(layer, nn.Conv2d):
                init.he(layer)
                layer.weight[:2] = 0.0
                layer.bias[:2] = 0.0
    _copy(decoder.p2[0], 0, 0)  # L at stride 4 (positive: the ReLU keeps it)
    init.he(decoder.predictor)
    _isolate(decoder.predictor, 2, 2)
    _copy(decoder.predictor, 0, 0)
    decoder.predictor.weight[1].zero_()
    decoder.predictor.bias[1] = 1.0  # a constant: 1 inside the image, 0 where a box reaches past it

    head = roi.densepose_head
    aspp = head.ASPP
    channels = aspp.project[0].weight.shape[0]
    g = channels // 32  # GroupNorm group size in the ASPP
    for branch in aspp.convs:
        for layer in branch.modules():
            if isinstance(layer, nn.Conv2d):
                init.he(layer)
                layer.weight[:8 * g] = 0.0
    one = aspp.convs[0][0]
    for k in range(g):  # group 0: L (all +), group 1: -L; GroupNorm centres and scales them per box
        one.weight[k, 0, 0, 0] = 1.0
        one.weight[g + k, 0, 0, 0] = -1.0
    dilated6, dilated12 = aspp.convs[1][0], aspp.convs[2][0]
    centre = (1, 1)
    steps = [  # (conv, group, tap, sign): s = sign * (constant at tap - constant / 2) = +-(step - 1/2)
        (dilated6, 0, (1, 0), 1.0), (dilated6, 1, (1, 2), -1.0), (dilated12, 0, (1, 0), 1.0),
        (dilated12, 1, (1, 2), -1.0),  # x >= 6, x >= 22, x >= 12, x >= 16
        (dilated6, 2, (0, 1), 1.0), (dilated6, 3, (2, 1), -1.0), (dilated12, 2, (0, 1), 1.0),
        (dilated12, 3, (2, 1), -1.0),  # y likewise
    ]
    for conv, group, tap, sign in steps:
        _signed_group(conv, group, g, {(1, tap): sign, (1, centre): -0.5 * sign})
    project = aspp.project[0]
    init.he(project)
    project.weight[:6] = 0.0
    for axis in (0, 1):  # X = sum of the four steps (+-1 each after GroupNorm) / 2
        for index, (conv, group, _, _) in enumerate(steps[4 * axis: 4 * axis + 4]):
            branch = 1 if conv is dilated6 else 2
            plus = branch * channels + group * g
            for out, sign in ((2 * axis, 1.0), (2 * axis + 1, -1.0)):
                project.weight[out, plus, 0, 0] = 0.5 * sign
                project.weight[out, plus + 1, 0, 0] = -0.5 * sign
    project.weight[4, 0, 0, 0] = 1.0
    project.weight[4, g, 0, 0] = -1.0
    project.weight[5, 0, 0, 0] = -1.0
    project.weight[5, g, 0, 0] = 1.0

    convs = [getattr(head, f"body_conv_fcn{i + 1}") for i in range(HEAD_CONVS)]
    hidden = convs[0].weight.shape[0]
    gh = hidden // 32
    for index, conv in enumerate(convs):
        init.he(conv)
        conv.weight[:3 * gh] = 0.0
        for group in range(3):  # X, Y, L as +- pairs; the previous layer has them as relu(+), relu(-)
            if index == 0:
                plus, minus = 2 * group, 2 * group + 1
            else:
                plus, minus = group * gh, group * gh + 1
            _signed_group(conv, group, gh, {(plus, centre): 1.0, (minus, centre): -1.0})

    predictor = roi.densepose_predictor
    bilinear = torch.tensor([0.25, 0.75, 0.75, 0.25])
    kernel = bilinear[:, None] * bilinear[None, :]  # a 4x4 stride-2 transposed conv that interpolates

    def signal(layer: nn.ConvTranspose2d, out: int, terms: Dict[int, float], bias: float) -> None:
        layer.weight[:3 * gh, out] = 0.0
        for inp, w in terms.items():
            layer.weight[inp, out] = w * kernel
        layer.bias[out] = bias

    x_plus, x_minus, y_plus, y_minus, l_plus, l_minus = 0, 1, gh, gh + 1, 2 * gh, 2 * gh + 1
    levels = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]) / math.sqrt(60.0 / 28.0)  # X after GroupNorm
    for layer in (predictor.ann_index_lowres, predictor.index_uv_lowres, predictor.u_lowres, predictor.v_lowres):
        init.he(layer, gain=RANDOM_DENSE_GAIN)
    # coarse: foreground where |X| + 0.45 |Y| is small, a little more where the box is bright or dark
    signal(predictor.ann_index_lowres, 0, {}, 0.0)
    signal(predictor.ann_index_lowres, 1, {x_plus: -COARSE_GAIN, x_minus: -COARSE_GAIN, y_plus: -0.45 * COARSE_GAIN,
                                           y_minus: -0.45 * COARSE_GAIN, l_plus: 0.3, l_minus: 0.3},
           1.05 * COARSE_GAIN)
    # fine: Voronoi cells: logit_k = 2 (X x_k + Y y_k) - (x_k^2 + y_k^2), 3 x that for margin
    cells = {}
    for row in range(5):
        for column in range(5):
            cells.setdefault(PART_LAYOUT[row][column], (float(levels[column]), float(levels[row])))
    for part in range(N_FINE):
        xk, yk = cells[part]
        signal(predictor.index_uv_lowres, part, {x_plus: 6.0 * xk, x_minus: -6.0 * xk, y_plus: 6.0 * yk,
                                                 y_minus: -6.0 * yk}, -3.0 * (xk * xk + yk * yk))
        # u, v in 0..1: box position plus a little luma, each part its own mix
        turn = part * 2.0 * math.pi / N_FINE
        cu, su = 0.18 * math.cos(turn), 0.18 * math.sin(turn)
        signal(predictor.u_lowres, part, {x_plus: cu, x_minus: -cu, y_plus: su, y_minus: -su, l_plus: 0.05,
                                          l_minus: -0.05}, 0.5)
        signal(predictor.v_lowres, part, {x_plus: -su, x_minus: su, y_plus: cu, y_minus: -cu, l_plus: -0.05,
                                          l_minus: 0.05}, 0.5)


@torch.no_grad()
def standin_core(depth: int = 50, style: str = "tuple", seed: int = 0, width: float = 1.0,
                 score_threshold: Optional[float] = None) -> GeneralizedRCNN:
    """The eager ``GeneralizedRCNN`` of a stand-in with its designed, seeded weights, in eval mode."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth!r}")
    if not 0.0 < width <= 1.0:
        raise ValueError(f"width must be in (0, 1], got {width!r}")
    threshold = SCORE_THRESHOLDS[style] if score_threshold is None else float(score_threshold)
    model = GeneralizedRCNN(depth, width, style, threshold).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    init = _Init(seed)
    _design_backbone(model, init, seed)
    _design_fpn_rpn(model, init)
    _design_box_head(model, init)
    _design_densepose(model, init)
    return model


def build_standin_rcnn(style: str = "tuple", depth: int = 50, dtype: torch.dtype = torch.float32, seed: int = 0,
                       width: float = 1.0, score_threshold: Optional[float] = None) -> torch.jit.ScriptModule:
    """A stand-in DensePose R-CNN file's module: ``style`` "tuple" (traced, as the hub files) or "dict"
    (scripted, as the DensePose-TorchScript releases; ``dtype=torch.float16`` is their ``--fp16``: the
    scripted module converted with ``.half()``). ``depth`` 50 or 101; ``width`` < 1 scales every channel
    count (a reduced variant for fast tests); ``score_threshold`` defaults per style (``SCORE_THRESHOLDS``)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float16, got {dtype!r}")
    if style == "tuple" and dtype != torch.float32:
        raise ValueError("the tuple-style hub files are float32 only; float16 is the dict style's --fp16 release")
    core = standin_core(depth, style, seed, width, score_threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace/script are deprecated (still what the real files are)
        if style == "tuple":
            with torch.no_grad():
                return torch.jit.trace(TracingAdapter(core).eval(), _calibration_image(seed), check_trace=False)
        scripted = torch.jit.script(DefaultPredictor(core).eval())
    return scripted.half() if dtype == torch.float16 else scripted


def save_standin_rcnn(path, style: str = "tuple", depth: int = 50, dtype: torch.dtype = torch.float32, seed: int = 0,
                      width: float = 1.0, score_threshold: Optional[float] = None) -> Path:
    """Build a stand-in (``build_standin_rcnn``) and save it as a TorchScript file at ``path``; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = build_standin_rcnn(style, depth, dtype, seed, width, score_threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module.save(str(path))
    return path


def state_dict_layout(depth: int = 50, style: str = "tuple", width: float = 1.0) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of the published architecture's TorchScript ``state_dict()`` (the dict style has the
    vendored code's ModuleList aliases too); TorchScript files keep non-persistent buffers (``pixel_mean``,
    ``pixel_std``, the anchors), so they are listed. Built without weights or compilation: cheap."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth!r}")
    with torch.device("meta"):
        model = GeneralizedRCNN(depth, width, style, SCORE_THRESHOLDS[style])
    layout: Dict[str, Tuple[int, ...]] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for name, tensor in list(module._parameters.items()) + list(module._buffers.items()):
            if tensor is not None:
                layout[f"model.{prefix}.{name}" if prefix else f"model.{name}"] = tuple(tensor.shape)
    return layout
