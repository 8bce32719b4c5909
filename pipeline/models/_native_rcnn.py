"""A native DensePose R-CNN, built from a TorchScript file's own weights, that runs B frames per call.

The arithmetic is the file's (detectron2's DensePose R-CNN R50/R101-FPN-DL, in the export style of the file,
see ``_standin_rcnn`` for the two styles and the releases' quirks), op for op, so that one frame through it
gives the file's outputs; what differs is that B frames go through the network at once:

* batched: the normalisation and padding (frames of one video share a size), the dict style's internal
  resize, the backbone and FPN, the RPN head, anchor decoding and the per-level top-k; the box head on every
  frame's proposals at once (RoIAlign reads each RoI's own frame), the DensePose decoder on the batch and the
  DensePose head on every frame's detections at once;
* per frame: the steps whose sizes depend on the data (dropping empty boxes, NMS, the score threshold), on
  small tensors. NMS is the file's: torchvision's ``nms`` on the same boxes, with the coordinate offsets per
  class the file uses (a traced hub file always; a scripted release below its torchvision's box count, above
  it one NMS per class), so no merged call changes which boxes survive.

``exact`` (the default) keeps every op of the file: FrozenBN as a batch norm after each convolution, the
file's memory layout. ``exact=False`` folds each FrozenBN into its convolution and runs channels-last, which
rounds differently in the last bits (kept only where it measured faster; see docs/speed.md).
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import Tensor

from ._native_spec import STAGE_BLOCKS, NativeSpec

ANCHOR_STRIDES = (4, 8, 16, 32, 64)
ROI_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
SCALE_CLAMP = math.log(1000.0 / 16)
ASPP_RATES = (6, 12, 56)  # the published DensePose DeepLab head (ROI_DENSEPOSE_HEAD.ASPP dilations)
BN_EPS, GN_EPS, GN_GROUPS = 1e-5, 1e-5, 32
SIZE_DIVISIBILITY = 32


def apply_deltas(deltas: Tensor, boxes: Tensor, weights: tuple[float, float, float, float]) -> Tensor:
    """detectron2's ``Box2BoxTransform.apply_deltas`` on [R, 4] (in float32, as the files compute it)."""
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=SCALE_CLAMP)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=SCALE_CLAMP)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    x1 = pred_ctr_x - 0.5 * pred_w
    y1 = pred_ctr_y - 0.5 * pred_h
    x2 = pred_ctr_x + 0.5 * pred_w
    y2 = pred_ctr_y + 0.5 * pred_h
    return torch.stack((x1, y1, x2, y2), dim=-1).reshape(deltas.shape)


def clip_xyxy(boxes: Tensor, x_max, y_max) -> Tensor:
    x1 = boxes[:, 0].clamp(min=0, max=x_max)
    y1 = boxes[:, 1].clamp(min=0, max=y_max)
    x2 = boxes[:, 2].clamp(min=0, max=x_max)
    y2 = boxes[:, 3].clamp(min=0, max=y_max)
    return torch.stack((x1, y1, x2, y2), dim=-1)


def nonempty(boxes: Tensor, keep_empty: bool) -> Tensor:
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    if keep_empty:
        return (widths >= 0.0) & (heights >= 0.0)
    return (widths > 0.0) & (heights > 0.0)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, threshold: float, vanilla_above: dict | None) -> Tensor:
    """torchvision's ``batched_nms`` as the file runs it: one NMS over boxes offset per class, or (scripted
    releases, more than ``vanilla_above`` box coordinates) one NMS per class, merged by score. Scores in half
    precision are compared in float32, as torchvision's CUDA autocast wrapper does (its CPU kernel takes one
    dtype for both: under CPU bfloat16 autocast the logits come as bfloat16, the boxes as float32)."""
    scores = scores.float()
    if vanilla_above is not None:
        limit = vanilla_above["cpu" if boxes.device.type == "cpu" else "other"]
        if boxes.numel() > limit:
            keep_mask = torch.zeros_like(scores, dtype=torch.bool)
            for class_id in torch.unique(idxs):
                current = torch.where(idxs == class_id)[0]
                keep_mask[current[torch.ops.torchvision.nms(boxes[current], scores[current], threshold)]] = True
            kept = torch.where(keep_mask)[0]
            return kept[scores[kept].sort(descending=True)[1]]
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return torch.ops.torchvision.nms(boxes + offsets[:, None], scores, threshold)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
PARALLEL_ROIS = 64  # fewer RoIs than this go in one call


def roi_align(features: Tensor, rois: Tensor, scale: float, size: int) -> Tensor:
    """torchvision's RoIAlign (sampling 2, unaligned: the files' POOLER_TYPE "ROIAlign"). Its CPU kernel runs
    on one thread, so on the CPU the RoIs are split between torch's threads: each RoI is computed on its own,
    so the result is the one call's, bit for bit. Half-precision features are pooled in float32 and the result
    converted back, as torchvision's autocast wrapper does (autocast is per thread: the pool's threads have
    none)."""
    if features.dtype in (torch.float16, torch.bfloat16):
        return roi_align(features.float(), rois.float(), scale, size).to(features.dtype)
    threads = torch.get_num_threads() if features.device.type == "cpu" else 1
    if threads < 2 or rois.shape[0] < PARALLEL_ROIS:
        return torch.ops.torchvision.roi_align(features, rois, scale, size, size, 2, False)
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < threads:
            _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="densevid-pool-roialign")
    chunks = rois.tensor_split(threads)
    parts = _POOL.map(lambda chunk: torch.ops.torchvision.roi_align(features, chunk, scale, size, size, 2, False),
                      chunks)
    return torch.cat(list(parts))


class NativeDensePose:
    """The network of ``spec`` on ``device``; ``forward(images)`` -> one tuple of outputs per frame.

    ``images``: uint8 [B, 3, H, W] in the file's input channel order (tuple style: as given to it, RGB from
    densevid; dict style: BGR), one size. Returns per frame (boxes [N, 4] float32 in the frame's coordinates,
    scores [N], coarse [N, 2, S, S], fine, u, v [N, 25, S, S]).
    """

    def __init__(self, spec: NativeSpec, device: torch.device, exact: bool = True) -> None:
        self.spec, self.device, self.exact = spec, torch.device(device), exact
        self.settings = spec.settings
        self.quirks = spec.release_quirks
        w = {k: v.to(self.device) for k, v in spec.weights.items()}
        self.w = w
        self.pixel_mean, self.pixel_std = w["model.pixel_mean"], w["model.pixel_std"]
        self.cell_anchors = [w[f"model.proposal_generator.anchor_generator.cell_anchors.{i}"] for i in range(5)]
        self._anchors: dict = {}
        self.blocks = STAGE_BLOCKS[spec.depth]
        self.memory_format = torch.preserve_format if exact else torch.channels_last
        self._folded: dict = {} if exact else self._fold_frozen_batch_norms()

    # --- layers ---------------------------------------------------------------------------------------

    def _fold_frozen_batch_norms(self) -> dict:
        """conv prefix -> (weight, bias) with its FrozenBN folded in (channels-last weights)."""
        folded = {}
        for key in [k for k in self.w if k.endswith(".norm.running_mean")]:
            prefix = key[: -len(".norm.running_mean")]
            scale = self.w[f"{prefix}.norm.weight"] * torch.rsqrt(self.w[f"{prefix}.norm.running_var"] + BN_EPS)
            weight = (self.w[f"{prefix}.weight"] * scale[:, None, None, None]).contiguous(
                memory_format=torch.channels_last)
            bias = self.w[f"{prefix}.norm.bias"] - self.w[f"{prefix}.norm.running_mean"] * scale
            folded[prefix] = (weight, bias)
        return folded

    def _conv(self, x: Tensor, prefix: str, stride: int = 1, padding: int = 0, dilation: int = 1) -> Tensor:
        return F.conv2d(x, self.w[f"{prefix}.weight"], self.w.get(f"{prefix}.bias"), stride, padding, dilation)

    def _conv_bn(self, x: Tensor, prefix: str, stride: int = 1, padding: int = 0) -> Tensor:
        """A convolution and its FrozenBN (detectron2's ``Conv2d(..., norm=FrozenBatchNorm2d)``)."""
        if not self.exact:
            weight, bias = self._folded[prefix]
            return F.conv2d(x, weight, bias, stride, padding)
        x = F.conv2d(x, self.w[f"{prefix}.weight"], None, stride, padding)
        return F.batch_norm(x, self.w[f"{prefix}.norm.running_mean"], self.w[f"{prefix}.norm.running_var"],
                            self.w[f"{prefix}.norm.weight"], self.w[f"{prefix}.norm.bias"], False, 0.0, BN_EPS)

    def _gn(self, x: Tensor, prefix: str) -> Tensor:
        return F.group_norm(x, GN_GROUPS, self.w[f"{prefix}.weight"], self.w[f"{prefix}.bias"], GN_EPS)

    # --- backbone --------------------------------------------------------------------------------------

    def backbone(self, images: Tensor) -> list[Tensor]:
        bottom = "model.backbone.bottom_up"
        x = F.relu_(self._conv_bn(images, f"{bottom}.stem.conv1", 2, 3))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        stages = []
        for index, blocks in enumerate(self.blocks):
            for b in range(blocks):
                prefix = f"{bottom}.res{index + 2}.{b}"
                stride = 2 if (b == 0 and index > 0) else 1
                out = F.relu_(self._conv_bn(x, f"{prefix}.conv1", stride))
                out = F.relu_(self._conv_bn(out, f"{prefix}.conv2", 1, 1))
                out = self._conv_bn(out, f"{prefix}.conv3")
                out += self._conv_bn(x, f"{prefix}.shortcut", stride) if b == 0 else x
                x = F.relu_(out)
            stages.append(x)
        c2, c3, c4, c5 = stages
        fpn = "model.backbone"
        prev = self._conv(c5, f"{fpn}.fpn_lateral5")
        p5 = self._conv(prev, f"{fpn}.fpn_output5", padding=1)
        prev = self._conv(c4, f"{fpn}.fpn_lateral4") + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        p4 = self._conv(prev, f"{fpn}.fpn_output4", padding=1)
        prev = self._conv(c3, f"{fpn}.fpn_lateral3") + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        p3 = self._conv(prev, f"{fpn}.fpn_output3", padding=1)
        prev = self._conv(c2, f"{fpn}.fpn_lateral2") + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        p2 = self._conv(prev, f"{fpn}.fpn_output2", padding=1)
        return [p2, p3, p4, p5, F.max_pool2d(p5, kernel_size=1, stride=2, padding=0)]

    # --- RPN -------------------------------------------------------------------------------------------

    def anchors(self, features: list[Tensor]) -> list[Tensor]:
        """Per level [H*W*3, 4], as detectron2's DefaultAnchorGenerator (offset 0), cached per grid size."""
        key = tuple(tuple(f.shape[-2:]) for f in features)
        cached = self._anchors.get(key)
        if cached is None:
            cached = []
            for feature, stride, cell in zip(features, ANCHOR_STRIDES, self.cell_anchors):
                grid_h, grid_w = feature.shape[-2], feature.shape[-1]
                shifts_x = torch.arange(0.0, grid_w * stride, step=stride, dtype=torch.float32, device=cell.device)
                shifts_y = torch.arange(0.0, grid_h * stride, step=stride, dtype=torch.float32, device=cell.device)
                shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
                shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
                shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
                cached.append((shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4))
            self._anchors = {key: cached}  # one video: one size
        return cached

    def proposals(self, images: Tensor, features: list[Tensor], image_hw: tuple[int, int]) -> list[Tensor]:
        """Per frame: the RPN's proposal boxes [R, 4] (top 1000 per level, clip, drop empty, NMS, top 1000)."""
        settings = self.settings
        rpn = "model.proposal_generator.rpn_head"
        batch = images.shape[0]
        level_boxes, level_scores, level_ids = [], [], []
        for level, (feature, anchors) in enumerate(zip(features, self.anchors(features))):
            t = F.relu(self._conv(feature, f"{rpn}.conv", padding=1))
            logits = self._conv(t, f"{rpn}.objectness_logits")
            deltas = self._conv(t, f"{rpn}.anchor_deltas")
            scores = logits.permute(0, 2, 3, 1).flatten(1)  # [B, H*W*A]
            deltas = deltas.view(batch, -1, 4, deltas.shape[-2], deltas.shape[-1]).permute(0, 3, 4, 1, 2)
            deltas = deltas.flatten(1, -2)  # [B, H*W*A, 4]
            boxes = apply_deltas(deltas.reshape(-1, 4), anchors.repeat(batch, 1), RPN_BOX_WEIGHTS)
            boxes = boxes.view(batch, -1, 4)
            k = min(scores.shape[1], settings.rpn_pre_nms_topk)
            top_scores, top_index = scores.topk(k, dim=1)
            level_boxes.append(torch.gather(boxes, 1, top_index[:, :, None].expand(-1, -1, 4)))
            level_scores.append(top_scores)
            level_ids.append(torch.full_like(top_index[0], level))
        boxes, scores, levels = torch.cat(level_boxes, 1), torch.cat(level_scores, 1), torch.cat(level_ids)
        if self.quirks:  # the releases clip to the padded size given as (w, h) and read as (h, w)
            x_max, y_max = images.shape[2], images.shape[3]
        else:
            x_max, y_max = image_hw[1], image_hw[0]
        out = []
        for b in range(batch):
            frame_boxes, frame_scores, frame_levels = boxes[b], scores[b], levels
            valid = torch.isfinite(frame_boxes).all(dim=1) & torch.isfinite(frame_scores)
            if not bool(valid.all()):
                frame_boxes, frame_scores, frame_levels = frame_boxes[valid], frame_scores[valid], frame_levels[valid]
            frame_boxes = clip_xyxy(frame_boxes, x_max, y_max)
            keep = nonempty(frame_boxes, self.quirks)
            frame_boxes, frame_scores, frame_levels = frame_boxes[keep], frame_scores[keep], frame_levels[keep]
            keep = batched_nms(frame_boxes.float(), frame_scores, frame_levels, settings.rpn_nms,
                               settings.vanilla_nms_above)[:settings.rpn_post_nms_topk]
            out.append(frame_boxes[keep])
        return out

    # --- ROI heads ---------------------------------------------------------------------------------------

    @staticmethod
    def _rois(boxes: list[Tensor]) -> Tensor:
        """[R, 5] RoIs: each frame's index, then its boxes."""
        return torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])

    def _box_pool(self, features: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """RoIAlign 7x7 (sampling 2, unaligned) from the level a box's size picks (canonical 224 on level 4)."""
        rois = self._rois(boxes)
        flat = rois[:, 1:]
        sizes = torch.sqrt((flat[:, 2] - flat[:, 0]) * (flat[:, 3] - flat[:, 1]))
        levels = torch.floor(4 + torch.log2(sizes / 224 + 1e-8))
        levels = torch.clamp(levels, min=2, max=5).to(torch.int64) - 2
        output = features[0].new_zeros((rois.shape[0], features[0].shape[1], 7, 7))
        for level in range(4):
            index = (levels == level).nonzero().reshape(-1)
            pooled = roi_align(features[level], rois[index].to(features[level].dtype), 1.0 / ANCHOR_STRIDES[level], 7)
            output.index_put_((index,), pooled)
        return output

    def detections(self, features: list[Tensor], proposals: list[Tensor], image_hw: tuple[int, int]
                   ) -> list[tuple[Tensor, Tensor]]:
        """Per frame: (boxes, scores) after the box head, the score threshold and NMS (top 100)."""
        settings, roi = self.settings, "model.roi_heads"
        x = self._box_pool(features[:4], proposals).flatten(1)
        x = F.relu(F.linear(x, self.w[f"{roi}.box_head.fc1.weight"], self.w[f"{roi}.box_head.fc1.bias"]))
        x = F.relu(F.linear(x, self.w[f"{roi}.box_head.fc2.weight"], self.w[f"{roi}.box_head.fc2.bias"]))
        class_logits = F.linear(x, self.w[f"{roi}.box_predictor.cls_score.weight"],
                                self.w[f"{roi}.box_predictor.cls_score.bias"])
        box_deltas = F.linear(x, self.w[f"{roi}.box_predictor.bbox_pred.weight"],
                              self.w[f"{roi}.box_predictor.bbox_pred.bias"])
        counts = [p.shape[0] for p in proposals]
        all_boxes = apply_deltas(box_deltas, torch.cat(proposals), ROI_BOX_WEIGHTS)
        all_scores = F.softmax(class_logits, dim=-1)
        out = []
        for boxes, scores in zip(all_boxes.split(counts), all_scores.split(counts)):
            valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
            if not bool(valid.all()):
                boxes, scores = boxes[valid], scores[valid]
            scores = scores[:, :-1]
            boxes = boxes.reshape(-1, 4)
            if not self.quirks:  # the releases compute this clip and throw it away
                boxes = clip_xyxy(boxes, image_hw[1], image_hw[0])
            boxes = boxes.view(-1, 1, 4)
            candidates = (scores > settings.score_threshold).nonzero()
            boxes = boxes[candidates[:, 0], 0]
            scores = scores[candidates[:, 0], candidates[:, 1]]
            classes = candidates[:, 1]
            keep = batched_nms(boxes.float(), scores, classes, settings.box_nms,
                               settings.vanilla_nms_above)[:settings.detections_per_image]
            out.append((boxes[keep], scores[keep]))
        return out

    def _decoder(self, features: list[Tensor]) -> Tensor:
        """The Panoptic-FPN decoder: per level 3x3 convs + ReLU and 2x upsamplings to stride 4, summed, 1x1."""
        decoder = "model.roi_heads.decoder"
        total = None
        for level, feature in zip((2, 3, 4, 5), features):
            x = feature
            for k in range(max(1, level - 2)):
                x = F.relu(self._conv(x, f"{decoder}.p{level}.{2 * k if level != 2 else k}", padding=1))
                if level != 2:
                    x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            total = x if total is None else total + x
        return self._conv(total, f"{decoder}.predictor")

    def densepose(self, decoded: Tensor, boxes: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The DensePose branch on every frame's boxes at once: RoIAlign 28x28 on the decoder's output, the
        DeepLab head (ASPP, 8 x conv + GroupNorm), the predictor (4x4 stride-2 transposed convs, 2x bilinear)."""
        head = "model.roi_heads.densepose_head"
        rois = self._rois(boxes)
        x = roi_align(decoded, rois.to(decoded.dtype), 1.0 / 4, 28)
        aspp = f"{head}.ASPP.convs"
        branches = [F.relu(self._gn(F.conv2d(x, self.w[f"{aspp}.0.0.weight"]), f"{aspp}.0.1"))]
        for index, rate in enumerate(ASPP_RATES, 1):
            y = F.conv2d(x, self.w[f"{aspp}.{index}.0.weight"], None, 1, rate, rate)
            branches.append(F.relu(self._gn(y, f"{aspp}.{index}.1")))
        pooled = F.adaptive_avg_pool2d(x, 1)
        pooled = F.relu(self._gn(F.conv2d(pooled, self.w[f"{aspp}.4.1.weight"]), f"{aspp}.4.2"))
        branches.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
        x = F.relu(F.conv2d(torch.cat(branches, dim=1), self.w[f"{head}.ASPP.project.0.weight"]))
        for index in range(1, 9):
            prefix = f"{head}.body_conv_fcn{index}"
            x = F.relu(self._gn(F.conv2d(x, self.w[f"{prefix}.weight"], None, 1, 1), f"{prefix}.norm"))
        predictor = "model.roi_heads.densepose_predictor"
        maps = []
        for name in ("ann_index_lowres", "index_uv_lowres", "u_lowres", "v_lowres"):
            y = F.conv_transpose2d(x, self.w[f"{predictor}.{name}.weight"], self.w[f"{predictor}.{name}.bias"], 2, 1)
            maps.append(F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False))
        return tuple(maps)

    # --- the whole ---------------------------------------------------------------------------------------

    def preprocess(self, images: Tensor) -> tuple[Tensor, tuple[int, int], tuple[int, int]]:
        """uint8 [B, 3, H, W] -> (normalised and padded float batch, the model's image size (h, w), the
        output size (h, w)): the dict style resizes inside first, as the releases do."""
        out_hw = (images.shape[2], images.shape[3])
        if self.quirks:
            height, width = out_hw
            settings = self.settings
            k = min(settings.min_size / min(height, width), settings.max_size / max(height, width))
            images = F.interpolate(images, scale_factor=k, mode="bilinear", align_corners=False)
        x = (images.to(self.pixel_mean.device) - self.pixel_mean) / self.pixel_std
        image_hw = (x.shape[2], x.shape[3])
        d = SIZE_DIVISIBILITY
        pad_h, pad_w = -image_hw[0] % d, -image_hw[1] % d
        x = F.pad(x, [0, pad_w, 0, pad_h], value=0.0).contiguous(memory_format=self.memory_format)
        return x, image_hw, out_hw

    def forward(self, images: Tensor) -> list[tuple[Tensor, ...]]:
        x, image_hw, out_hw = self.preprocess(images)
        features = self.backbone(x)
        detections = self.detections(features, self.proposals(x, features, image_hw), image_hw)
        boxes = [b for b, _ in detections]
        if sum(b.shape[0] for b in boxes):
            coarse, fine, u, v = self.densepose(self._decoder(features[:4]), boxes)
        else:  # nobody in the batch: nothing to pool
            empty = features[0].new_zeros((0, 1, 112, 112))
            coarse, fine, u, v = (empty.expand(0, c, 112, 112) for c in (2, 25, 25, 25))
        counts = [b.shape[0] for b in boxes]
        outputs = []
        for (frame_boxes, frame_scores), charts in zip(detections, zip(*(m.split(counts) for m in
                                                                          (coarse, fine, u, v)))):
            outputs.append(self._postprocess(frame_boxes, frame_scores, charts, image_hw, out_hw))
        return outputs

    def _postprocess(self, boxes: Tensor, scores: Tensor, charts, image_hw, out_hw) -> tuple[Tensor, ...]:
        """Boxes to the output size's coordinates, as the file does: tuple style scale, clip, drop empty; the
        releases scale by the output over the resized size, keep zero-size boxes, then clip."""
        out_h, out_w = out_hw
        scale_x = torch.tensor(float(out_w), device=boxes.device) / image_hw[1]
        scale_y = torch.tensor(float(out_h), device=boxes.device) / image_hw[0]
        boxes = boxes * torch.stack([scale_x, scale_y, scale_x, scale_y])
        if self.quirks:
            keep = nonempty(boxes, True)
            boxes = clip_xyxy(boxes[keep], out_w, out_h)
        else:
            boxes = clip_xyxy(boxes, out_w, out_h)
            keep = nonempty(boxes, False)
            boxes = boxes[keep]
        return (boxes, scores[keep], *(c[keep] for c in charts))
