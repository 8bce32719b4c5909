"""The cheap stand-in DensePose TorchScript models: honour the real exports' contracts exactly.

The real models (``LayerNorm/DensePose-TorchScript-with-hint-image``) cannot be downloaded in tests,
so these small, deterministic TorchScript modules stand in for them:

* "tuple" style (the hub files): ``forward(image)`` with ``image`` a CHW uint8 RGB tensor, returning
  ``(boxes_xyxy [N,4] f32, coarse_segm [N,2,S,S], fine_segm [N,25,S,S], u [N,25,S,S], v [N,25,S,S])``.
* "dict" style (DensePose-TorchScript releases): ``forward(image, bgr: bool = True)`` with ``image``
  HWC uint8 (BGR unless ``bgr=False``; a CHW image is accepted too), returning a dict with
  ``pred_boxes``, ``scores``, ``pred_classes``, ``pred_densepose_coarse_segm``,
  ``pred_densepose_fine_segm``, ``pred_densepose_u``, ``pred_densepose_v``.

Both wrap one core, so for the same picture they give the same detections. The core is a toy
detector whose output depends on the content: it finds blobs that stand out from the frame's mean
brightness on a coarse grid, turns each into a box from the blob's moments (fractional, clipped to
the image like real detectors), suppresses duplicates with ``torchvision::nms`` (so loading needs
torchvision's ops, like the real models), keeps at most 3 people, and derives smooth part/UV logits
from a RoIAlign crop of the box mixed with fixed seeded weights plus a fixed low-frequency pattern.
A uniform (e.g. black) frame has nobody in it. The core computes in float32 whatever the dtype of
its buffers.

The real-cost stand-ins (the real exports' architecture, names and cost) are in ``_standin_rcnn``;
``write_model_files`` (``densevid models standin``) saves either kind under the real file names.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

GRID = 16  # coarse analysis grid (cells per side)
POOL = 8  # RoIAlign output size for the dense heads
MAX_PEOPLE = 3
SALIENCY_THRESHOLD = 0.08  # |cell gray - frame mean gray|, on a 0..1 scale
NMS_IOU = 0.5
N_FINE = 25


class StandinCore(nn.Module):
    """RGB CHW uint8 image -> (boxes, scores, coarse, fine, u, v). Shared by both export styles."""

    def __init__(self, seed: int = 0, size: int = 112) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        self.size = int(size)
        self.grid = GRID
        self.pool = POOL
        self.max_people = MAX_PEOPLE
        self.saliency_threshold = SALIENCY_THRESHOLD
        self.nms_iou = NMS_IOU
        n_feat = 5  # r, g, b, gray contrast to the box mean, constant 1
        # content mixing weights (small: the fixed pattern dominates, content shifts the blobs)
        self.register_buffer("w_coarse", torch.randn(2, n_feat, generator=g) * 0.6)
        self.register_buffer("w_fine", torch.randn(N_FINE, n_feat, generator=g) * 0.8)
        self.register_buffer("w_u", torch.randn(N_FINE, n_feat, generator=g) * 0.1)
        self.register_buffer("w_v", torch.randn(N_FINE, n_feat, generator=g) * 0.1)

        s = self.size
        ys = (torch.arange(s, dtype=torch.float32) + 0.5) / s
        yy, xx = torch.meshgrid(ys, ys, indexing="ij")
        # coarse: a person-shaped ellipse (foreground) against background, with a seeded wobble
        phase = torch.rand(2, generator=g) * 2 * math.pi
        r2 = ((xx - 0.5) / 0.36) ** 2 + ((yy - 0.5) / 0.46) ** 2
        wobble = 0.15 * torch.sin(2 * math.pi * xx + phase[0]) * torch.cos(2 * math.pi * yy + phase[1])
        fg = 4.0 * (1.0 - r2 + wobble)
        self.register_buffer("p_coarse", torch.stack([-0.5 * fg, 0.5 * fg]).contiguous())
        # fine: 24 parts as Voronoi-like blobs around seeded centres inside the ellipse, background weak
        centres = torch.rand(N_FINE, 2, generator=g) * torch.tensor([0.6, 0.8]) + torch.tensor([0.2, 0.1])
        d2 = (xx[None] - centres[:, 0, None, None]) ** 2 + (yy[None] - centres[:, 1, None, None]) ** 2
        fine = -d2 / 0.02
        fine[0] = -3.0  # the fine background channel is rarely the argmax inside the person
        self.register_buffer("p_fine", fine.contiguous())
        # u, v: smooth ramps in 0..1 with a seeded direction per part
        angles = torch.rand(N_FINE, generator=g) * 2 * math.pi
        ramp_u = 0.5 + 0.45 * ((xx[None] - 0.5) * torch.cos(angles)[:, None, None]
                               + (yy[None] - 0.5) * torch.sin(angles)[:, None, None]) * 1.4
        ramp_v = 0.5 + 0.45 * ((yy[None] - 0.5) * torch.cos(angles)[:, None, None]
                               - (xx[None] - 0.5) * torch.sin(angles)[:, None, None]) * 1.4
        self.register_buffer("p_u", ramp_u.clamp(0, 1).contiguous())
        self.register_buffer("p_v", ramp_v.clamp(0, 1).contiguous())
        # deterministic tie-breaker between equally salient cells (earlier cells first)
        self.register_buffer("tie", -1e-6 * torch.arange(GRID * GRID, dtype=torch.float32) / (GRID * GRID))

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                    torch.Tensor, torch.Tensor, torch.Tensor]:
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError("expected a CHW image with 3 channels")
        h = image.shape[1]
        w = image.shape[2]
        device = image.device
        # work on a subsampled copy (short side ~128 px): cheap whatever the frame size
        stride = max(1, min(h, w) // 128)
        img = image[:, ::stride, ::stride].to(torch.float32) * (1.0 / 255.0)  # [3, h', w']
        gray = img.mean(dim=0)
        g = self.grid
        grid = F.adaptive_avg_pool2d(gray[None, None], (g, g))[0, 0]  # [G, G]
        saliency = (grid - grid.median()).abs().reshape(-1)  # [G*G], how much a cell stands out from the background

        # connected components of the salient cells (label propagation by 3x3 max-pooling)
        cells = torch.arange(g * g, device=device)
        cyx = torch.stack([(cells // g).to(torch.float32), (cells % g).to(torch.float32)], dim=1) + 0.5
        mask = (saliency > self.saliency_threshold).reshape(1, 1, g, g)
        labels = torch.where(mask, (cells + 1).to(torch.float32).reshape(1, 1, g, g),
                             torch.zeros(1, 1, g, g, device=device))
        for _ in range(2 * g):
            labels = torch.where(mask, F.max_pool2d(labels, 3, stride=1, padding=1), labels)
        ids = torch.unique(labels[mask])  # sorted component ids (largest member cell index + 1)
        member = (labels.reshape(1, -1) == ids[:, None]).to(torch.float32)  # [C, G*G]
        count = member.sum(dim=1)
        wgt = member * saliency[None, :]
        mass = wgt.sum(dim=1) + 1e-9
        pos = (wgt @ cyx) / mass[:, None]  # saliency-weighted centroid, in cells
        var = (wgt @ (cyx * cyx)) / mass[:, None] - pos * pos
        spread = var.clamp(min=0.0).sqrt()
        strong = ((count >= 2) & (mass / count.clamp(min=1.0) > self.saliency_threshold)).nonzero().reshape(-1)
        last_cell = ids[strong].to(torch.int64) - 1
        scores = (mass[strong] / float(g * g)).sqrt() + self.tie.float()[last_cell]
        pos = pos[strong]
        spread = spread[strong]

        cell_h = float(h) / g
        cell_w = float(w) / g
        ccy = pos[:, 0] * cell_h
        ccx = pos[:, 1] * cell_w
        half_h = (1.9 * spread[:, 0] + 0.6) * cell_h
        half_w = (1.9 * spread[:, 1] + 1.0) * cell_w
        boxes = torch.stack([(ccx - half_w).clamp(0.0, float(w)), (ccy - half_h).clamp(0.0, float(h)),
                             (ccx + half_w).clamp(0.0, float(w)), (ccy + half_h).clamp(0.0, float(h))], dim=1)
        keep = torch.ops.torchvision.nms(boxes, scores, self.nms_iou)[:self.max_people]
        boxes = boxes[keep].contiguous()
        scores = scores[keep].contiguous()
        n = boxes.shape[0]

        # dense heads: RoIAlign crop of the box -> seeded channel mix -> upsample -> + fixed pattern
        feats_in = torch.cat([img, gray[None]], dim=0)[None]  # [1, 4, h', w']
        rois = torch.cat([torch.zeros(n, 1, device=device), boxes], dim=1)
        crops = torch.ops.torchvision.roi_align(feats_in, rois, 1.0 / stride, self.pool, self.pool, 2, True)
        contrast = crops[:, 3:4] - crops[:, 3:4].mean(dim=(2, 3), keepdim=True)
        feats = torch.cat([crops[:, 0:3], contrast * 4.0, torch.ones_like(contrast)], dim=1)  # [N, 5, P, P]
        s = self.size
        # .float(): the buffers are float16 in a half-precision model; the people it finds must not change
        coarse = self._head(feats, self.w_coarse.float(), s) + self.p_coarse.float()[None]
        fine = self._head(feats, self.w_fine.float(), s) + self.p_fine.float()[None]
        u = self._head(feats, self.w_u.float(), s) + self.p_u.float()[None]
        v = self._head(feats, self.w_v.float(), s) + self.p_v.float()[None]
        return boxes, scores, coarse.contiguous(), fine.contiguous(), u.contiguous(), v.contiguous()

    def _head(self, feats: torch.Tensor, weight: torch.Tensor, size: int) -> torch.Tensor:
        mixed = torch.einsum("oc,nchw->nohw", weight, feats)
        if mixed.shape[0] == 0:
            return torch.zeros(0, weight.shape[0], size, size, dtype=torch.float32, device=feats.device)
        return F.interpolate(mixed, size=(size, size), mode="bilinear", align_corners=False)


class TupleStandin(nn.Module):
    """Tuple-style export: ``forward(image CHW uint8 RGB) -> (boxes, coarse, fine, u, v)``."""

    def __init__(self, seed: int = 0, size: int = 112) -> None:
        super().__init__()
        self.core = StandinCore(seed, size)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                    torch.Tensor, torch.Tensor]:
        boxes, scores, coarse, fine, u, v = self.core(image)
        return boxes, coarse, fine, u, v


class DictStandin(nn.Module):
    """Dict-style export: ``forward(image HWC uint8, bgr: bool = True) -> Dict[str, Tensor]``."""

    def __init__(self, seed: int = 0, size: int = 112) -> None:
        super().__init__()
        self.core = StandinCore(seed, size)

    def forward(self, image: torch.Tensor, bgr: bool = True) -> Dict[str, torch.Tensor]:
        boxes, scores, coarse, fine, u, v = self.core(rgb_chw(image, bgr))
        return dict_outputs(boxes, scores, coarse, fine, u, v)


def rgb_chw(image: torch.Tensor, bgr: bool) -> torch.Tensor:
    """The dict-style input (HWC, or CHW; BGR unless ``bgr`` is False) as a contiguous CHW RGB image."""
    if image.dim() != 3:
        raise ValueError("expected an HWC (or CHW) image")
    if image.shape[-1] == 3:
        chw = image.permute(2, 0, 1)
        if bgr:
            chw = chw.flip(0)
    elif image.shape[0] == 3:
        chw = image.flip(0) if bgr else image
    else:
        raise ValueError("expected 3 colour channels")
    return chw.contiguous()


def dict_outputs(boxes: torch.Tensor, scores: torch.Tensor, coarse: torch.Tensor, fine: torch.Tensor,
                 u: torch.Tensor, v: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The dict-style export's result: every instance is a person (class 0)."""
    out: Dict[str, torch.Tensor] = {
        "pred_boxes": boxes,
        "scores": scores,
        "pred_classes": torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device),
        "pred_densepose_coarse_segm": coarse,
        "pred_densepose_fine_segm": fine,
        "pred_densepose_u": u,
        "pred_densepose_v": v,
    }
    return out


def build_standin(style: str = "tuple", seed: int = 0, size: int = 112) -> torch.jit.ScriptModule:
    """A scripted stand-in of the given export style ("tuple" or "dict"), in eval mode."""
    import torchvision  # noqa: F401  (registers torch.ops.torchvision.*, needed to script)

    if style == "tuple":
        module: nn.Module = TupleStandin(seed, size)
    elif style == "dict":
        module = DictStandin(seed, size)
    else:
        raise ValueError(f"unknown stand-in style {style!r}; expected 'tuple' or 'dict'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated; the real exports use it
        return torch.jit.script(module.eval())


def save_standin(path, style: str = "tuple", seed: int = 0, size: int = 112) -> Path:
    """Build a stand-in and save it as a TorchScript file at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_standin(style, seed, size).save(str(path))
    return path




def write_model_files(directory, real_cost: bool = False, overwrite: bool = False, seed: int = 0) -> list[Path]:
    """Stand-ins under the file names DENSEVID_MODEL_DIR is searched for (``MODEL_FILES``), in ``directory``.

    The cheap stand-in (tuple style, both names) by default; ``real_cost``: the hub-like stand-ins (tuple style,
    as the hub files are), R50 under the r50 name and R101 under the r101 name. An existing file is an
    OutputError unless ``overwrite``: it may be the real weights.
    """
    from ..core import OutputError, os_reason
    from ._hub import MODEL_FILES

    directory = Path(directory)
    targets = {name: directory / filename for name, filename in MODEL_FILES.items()}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not overwrite:
        raise OutputError(f"{existing[0]} exists (it may be the real weights); choose another directory, or use "
                          f"--force to replace it with a stand-in")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {directory}: {os_reason(exc)}") from None
    written = []
    for name, path in targets.items():
        if real_cost:
            from ._standin_rcnn import save_standin_rcnn

            save_standin_rcnn(path, "tuple", depth=int(name[1:]), seed=seed)
        else:
            save_standin(path, "tuple", seed=seed)
        written.append(path)
    return written
