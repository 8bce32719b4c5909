"""The real-cost stand-in: a DensePose R-CNN with the real exports' architecture and cost, random weights.

The cheap stand-ins (``_standin``) are for exactness; this one is for speed. It is the network of
``densepose_rcnn_R_50_FPN_DL`` (and R_101) as detectron2 builds it, put together from torchvision's
building blocks, scripted like the real exports, in both contract styles:

* every image is resized inside the model to short side 800 (long side at most 1,333), normalised
  with detectron2's BGR pixel mean and padded to a multiple of 32;
* ResNet-50 (or 101) of torchvision ``Bottleneck`` blocks with frozen batch norm, and an FPN (P2-P6);
* an RPN (3 anchors per position on 5 levels, 1,000 proposals per level before NMS and 1,000 after,
  at test time), RoIAlign 7x7 and a two-FC box head with its score threshold, NMS and top 100;
* a DeepLab DensePose head (ASPP with rates 6/12/56, then 8 GroupNorm 3x3 convs of 512 channels on a
  28x28 RoIAlign), and a predictor of four stride-2 transposed convs upsampled 2x: coarse 2, fine 25,
  u 25, v 25 channels of 112 x 112 per instance.

The whole network runs on the real data path for every frame. Which people come out (0-3 boxes,
content-dependent, in the input image's coordinates) is decided as in the cheap stand-ins (their blob
detector), so the outputs mean something with random weights: the DensePose head runs on those boxes
and its logits move the cheap stand-in's part pattern (``NET_GAIN``), and the box head's person scores
shift the foreground logit slightly, so no part of the network is dead code.

Random weights are seeded; the backbone's frozen batch norms are calibrated once on a seeded image so
activations stay in range through 101 layers (float16 included). ``dtype=torch.float16`` gives what
the DensePose-TorchScript ``--fp16`` export gives: the scripted model converted with ``.half()``.
``rpn_size="wh"`` reproduces the dict-style releases' RPN, which is given the image size as (w, h)
where detectron2 means (h, w): boxes of a non-square frame are clipped to its short side.

``width`` scales every channel count and ``min_size``/``max_size`` the internal resize: reduced
variants of the same graph for fast tests. Benchmarks use the defaults.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.resnet import Bottleneck
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.ops import Conv2dNormActivation, FrozenBatchNorm2d, MultiScaleRoIAlign

from ._standin import StandinCore, dict_outputs, rgb_chw

MIN_SIZE, MAX_SIZE = 800, 1333  # detectron2's INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST
SIZE_DIVISIBILITY = 32
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
PIXEL_STD = (1.0, 1.0, 1.0)
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))
ASPECT_RATIOS = (0.5, 1.0, 2.0)
PROPOSALS = 1000  # RPN: per level before NMS, in total after NMS (test time)
RPN_NMS = 0.7
BOX_SCORE_THRESH, BOX_NMS, DETECTIONS_PER_IMAGE = 0.05, 0.5, 100
ASPP_RATES = (6, 12, 56)
DENSEPOSE_CONVS = 8
DENSEPOSE_POOL = 28  # RoIAlign side for the DensePose head; outputs are 4x that (112)
NET_GAIN = 0.25  # how far the network's logits (tanh) move the stand-in's part pattern
EVIDENCE_GAIN = 0.01  # how far the box head's mean person score moves the foreground logit
RPN_SIZE_ORDERS = ("hw", "wh")
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def _channels(full: int, width: float) -> int:
    """A channel count scaled by ``width``, a multiple of 32 (GroupNorm's groups) from 32 up."""
    return max(32, int(round(full * width / 32)) * 32)


def _resnet_body(depth: int, width: float) -> Tuple[nn.Module, List[int]]:
    """Stem and four stages of torchvision Bottleneck blocks with frozen BN; returns (body, stage channels)."""

    if depth not in STAGE_BLOCKS:
        raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {depth!r}")
    base = max(8, int(64 * width))
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    layers["conv1"] = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
    layers["bn1"] = FrozenBatchNorm2d(base)
    layers["relu"] = nn.ReLU(inplace=True)
    layers["maxpool"] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    inplanes, out_channels = base, []
    for index, blocks in enumerate(STAGE_BLOCKS[depth]):
        planes, stride = base * 2 ** index, 1 if index == 0 else 2
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                   FrozenBatchNorm2d(planes * 4))
        stage = [Bottleneck(inplanes, planes, stride, downsample, norm_layer=FrozenBatchNorm2d)]
        inplanes = planes * 4
        stage += [Bottleneck(inplanes, planes, norm_layer=FrozenBatchNorm2d) for _ in range(blocks - 1)]
        layers[f"layer{index + 1}"] = nn.Sequential(*stage)
        out_channels.append(inplanes)
    return nn.Sequential(layers), out_channels


class ProposalGenerator(nn.Module):
    """torchvision's RPN, given the padded image's size as (h, w) the way detectron2 means it."""

    def __init__(self, fpn_channels: int, proposals: int) -> None:
        super().__init__()

        anchors = AnchorGenerator(ANCHOR_SIZES, (ASPECT_RATIOS,) * len(ANCHOR_SIZES))
        self.rpn = RegionProposalNetwork(anchors, RPNHead(fpn_channels, len(ASPECT_RATIOS)), 0.7, 0.3, 256, 0.5,
                                         {"training": 2000, "testing": proposals},
                                         {"training": 2000, "testing": proposals}, RPN_NMS)

    def forward(self, images: torch.Tensor, features: Dict[str, torch.Tensor]
                ) -> Tuple[List[torch.Tensor], List[Tuple[int, int]]]:

        image_sizes = self.image_sizes(images)
        proposals, _ = self.rpn(ImageList(images, image_sizes), features)
        return proposals, image_sizes

    def image_sizes(self, images: torch.Tensor) -> List[Tuple[int, int]]:
        size = torch.tensor([images.shape[2], images.shape[3]], dtype=torch.int64)
        return [(int(size[0]), int(size[1]))]


class ProposalGeneratorWH(ProposalGenerator):
    """The dict-style releases' RPN: the size goes in as (w, h), so boxes are clipped to the short side."""

    def image_sizes(self, images: torch.Tensor) -> List[Tuple[int, int]]:
        size = torch.tensor([images.shape[3], images.shape[2]], dtype=torch.int64)
        return [(int(size[0]), int(size[1]))]


class DensePoseDeepLabHead(nn.Module):
    """ASPP (torchvision's) then stacked 3x3 conv + GroupNorm + ReLU layers."""

    def __init__(self, in_channels: int, hidden: int, n_convs: int = DENSEPOSE_CONVS) -> None:
        super().__init__()

        self.aspp = ASPP(in_channels, ASPP_RATES, in_channels)
        convs = [Conv2dNormActivation(in_channels if i == 0 else hidden, hidden, 3,
                                      norm_layer=lambda c: nn.GroupNorm(32, c)) for i in range(n_convs)]
        self.convs = nn.Sequential(*convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.aspp(x))


class DensePoseChartPredictor(nn.Module):
    """Four stride-2 transposed convs (coarse 2, fine 25, u 25, v 25), each upsampled 2x bilinearly."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.coarse = nn.ConvTranspose2d(in_channels, 2, 4, stride=2, padding=1)
        self.fine = nn.ConvTranspose2d(in_channels, 25, 4, stride=2, padding=1)
        self.u = nn.ConvTranspose2d(in_channels, 25, 4, stride=2, padding=1)
        self.v = nn.ConvTranspose2d(in_channels, 25, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self._up(self.coarse(x)), self._up(self.fine(x)), self._up(self.u(x)), self._up(self.v(x)))

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class RealCostCore(nn.Module):
    """RGB CHW uint8 image -> (boxes, scores, coarse, fine, u, v); shared by both export styles."""

    def __init__(self, depth: int = 50, seed: int = 0, width: float = 1.0, min_size: int = MIN_SIZE,
                 max_size: int = MAX_SIZE, proposals: int = PROPOSALS, rpn_size: str = "hw") -> None:
        super().__init__()

        if rpn_size not in RPN_SIZE_ORDERS:
            raise ValueError(f"rpn_size must be one of {RPN_SIZE_ORDERS}, got {rpn_size!r}")
        self.min_size = float(min_size)
        self.size_divisibility = SIZE_DIVISIBILITY
        self.net_gain = NET_GAIN
        self.evidence_gain = EVIDENCE_GAIN
        self.max_size = float(max_size)
        fpn_channels = _channels(256, width)
        box_dim = _channels(1024, width)
        head_dim = _channels(512, width)
        levels = ["0", "1", "2", "3"]
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN_BGR).view(3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(3, 1, 1))
        self.people = StandinCore(seed, 4 * DENSEPOSE_POOL)
        body, stage_channels = _resnet_body(depth, width)
        self.backbone = BackboneWithFPN(body, {f"layer{i + 1}": name for i, name in enumerate(levels)},
                                        stage_channels, fpn_channels)
        generator = ProposalGeneratorWH if rpn_size == "wh" else ProposalGenerator
        self.proposal_generator = generator(fpn_channels, proposals)
        self.roi_heads = RoIHeads(MultiScaleRoIAlign(levels, 7, 2), TwoMLPHead(fpn_channels * 49, box_dim),
                                  FastRCNNPredictor(box_dim, 2), 0.5, 0.5, 512, 0.25, None,
                                  BOX_SCORE_THRESH, BOX_NMS, DETECTIONS_PER_IMAGE)
        self.densepose_pooler = MultiScaleRoIAlign(levels, DENSEPOSE_POOL, 2)
        self.densepose_head = DensePoseDeepLabHead(fpn_channels, head_dim)
        self.densepose_predictor = DensePoseChartPredictor(head_dim)

    def preprocess(self, image_rgb: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        """Resize to short side min_size (long side at most max_size), normalise, pad to 32: (x, h', w')."""
        h = image_rgb.shape[1]
        w = image_rgb.shape[2]
        k = min(self.min_size / min(h, w), self.max_size / max(h, w))
        bgr = image_rgb.flip(0).to(self.pixel_mean.dtype)[None]
        x = F.interpolate(bgr, scale_factor=k, mode="bilinear", align_corners=False)
        x = (x - self.pixel_mean) / self.pixel_std
        resized_h = x.shape[2]
        resized_w = x.shape[3]
        d = self.size_divisibility
        pad_h = (resized_h + d - 1) // d * d
        pad_w = (resized_w + d - 1) // d * d
        return F.pad(x, [0, pad_w - resized_w, 0, pad_h - resized_h]), resized_h, resized_w

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                    torch.Tensor, torch.Tensor, torch.Tensor]:
        boxes, scores, coarse, fine, u, v = self.people(image)  # which checks the image is CHW RGB
        h = image.shape[1]
        w = image.shape[2]
        x, resized_h, resized_w = self.preprocess(image)
        dtype = x.dtype
        features = self.backbone(x)
        proposals, rpn_sizes = self.proposal_generator(x, features)
        detections, _ = self.roi_heads(features, proposals, [(resized_h, resized_w)])
        person_scores = detections[0]["scores"].float()
        evidence = person_scores.sum() / (person_scores.numel() + 1)

        # the people's boxes in the resized image, clipped as the RPN's image size says
        scale = torch.tensor([resized_w / w, resized_h / h, resized_w / w, resized_h / h], device=image.device)
        clip_h, clip_w = rpn_sizes[0]
        resized = boxes * scale
        resized = torch.stack([resized[:, 0].clamp(0.0, float(clip_w)), resized[:, 1].clamp(0.0, float(clip_h)),
                               resized[:, 2].clamp(0.0, float(clip_w)), resized[:, 3].clamp(0.0, float(clip_h))], 1)
        if resized.shape[0] > 0:
            pooled = self.densepose_pooler(features, [resized.to(dtype)], [(resized_h, resized_w)])
            net_coarse, net_fine, net_u, net_v = self.densepose_predictor(self.densepose_head(pooled))
        else:  # nobody: nothing to pool (an empty RoIAlign has failed in TorchScript's optimised CUDA graphs)
            net_coarse, net_fine, net_u, net_v = coarse, fine, u, v
        foreground = torch.zeros_like(coarse)
        foreground[:, 1] = self.evidence_gain * evidence
        coarse = coarse + foreground + self.net_gain * torch.tanh(net_coarse.float())
        fine = fine + self.net_gain * torch.tanh(net_fine.float())
        u = u + self.net_gain * torch.tanh(net_u.float())
        v = v + self.net_gain * torch.tanh(net_v.float())
        boxes = (resized / scale).to(dtype)
        keep = ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).nonzero().reshape(-1)
        return (boxes[keep].contiguous(), scores[keep].to(dtype), coarse[keep].to(dtype).contiguous(),
                fine[keep].to(dtype).contiguous(), u[keep].to(dtype).contiguous(), v[keep].to(dtype).contiguous())


class TupleRealCost(nn.Module):
    """Tuple-style export: ``forward(image CHW uint8 RGB) -> (boxes, coarse, fine, u, v)``."""

    def __init__(self, core: RealCostCore) -> None:
        super().__init__()
        self.model = core

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                    torch.Tensor, torch.Tensor]:
        boxes, scores, coarse, fine, u, v = self.model(image)
        return boxes, coarse, fine, u, v


class DictRealCost(nn.Module):
    """Dict-style export: ``forward(image HWC uint8, bgr: bool = True) -> Dict[str, Tensor]``."""

    def __init__(self, core: RealCostCore) -> None:
        super().__init__()
        self.model = core

    def forward(self, image: torch.Tensor, bgr: bool = True) -> Dict[str, torch.Tensor]:
        boxes, scores, coarse, fine, u, v = self.model(rgb_chw(image, bgr))
        return dict_outputs(boxes, scores, coarse, fine, u, v)


def _calibration_image(seed: int, side: int = 320) -> torch.Tensor:
    """A seeded, smooth uint8 RGB CHW picture (low-frequency noise): something like a photo's statistics."""
    g = torch.Generator().manual_seed(seed + 1)
    coarse = torch.rand(1, 3, 10, 10, generator=g)
    fine = torch.rand(1, 3, 40, 40, generator=g)
    image = 0.75 * F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False) + \
        0.25 * F.interpolate(fine, size=(side, side), mode="bilinear", align_corners=False)
    return (image[0].clamp(0, 1) * 255).round().to(torch.uint8)


@torch.no_grad()
def _calibrate_frozen_batch_norms(core: RealCostCore, seed: int) -> None:
    """Set every frozen BN's statistics to those of its input on a seeded picture, layer by layer."""

    def set_statistics(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))

    hooks = [m.register_forward_pre_hook(set_statistics) for m in core.modules() if isinstance(m, FrozenBatchNorm2d)]
    try:
        x, _, _ = core.preprocess(_calibration_image(seed))
        core.backbone(x)
    finally:
        for hook in hooks:
            hook.remove()


def realcost_core(depth: int = 50, seed: int = 0, width: float = 1.0, min_size: int = MIN_SIZE,
                  max_size: int = MAX_SIZE, rpn_size: str = "hw") -> RealCostCore:
    """The eager core with its seeded random weights and calibrated batch norms, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        core = RealCostCore(depth, seed, width, min_size, max_size, rpn_size=rpn_size).eval()
    _calibrate_frozen_batch_norms(core, seed)
    return core


def build_realcost(style: str = "tuple", depth: int = 50, dtype: torch.dtype = torch.float32, seed: int = 0,
                   width: float = 1.0, min_size: int = MIN_SIZE, max_size: int = MAX_SIZE,
                   rpn_size: str = "hw") -> torch.jit.ScriptModule:
    """The scripted real-cost stand-in of the given export style, in eval mode, weights in ``dtype``."""
    if style not in ("tuple", "dict"):
        raise ValueError(f"unknown stand-in style {style!r}; expected 'tuple' or 'dict'")
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be torch.float32 or torch.float16, got {dtype!r}")
    core = realcost_core(depth, seed, width, min_size, max_size, rpn_size)
    module = TupleRealCost(core) if style == "tuple" else DictRealCost(core)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated (still what the real exports are)
        scripted = torch.jit.script(module.eval())
    return scripted.half() if dtype == torch.float16 else scripted  # as the --fp16 export does it


def save_realcost(path, style: str = "tuple", depth: int = 50, dtype: torch.dtype = torch.float32, seed: int = 0,
                  width: float = 1.0, min_size: int = MIN_SIZE, max_size: int = MAX_SIZE,
                  rpn_size: str = "hw") -> Path:
    """Build the real-cost stand-in and save it as a TorchScript file at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_realcost(style, depth, dtype, seed, width, min_size, max_size, rpn_size).save(str(path))
    return path
