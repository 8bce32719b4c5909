"""An independent transcription of the ComfyUI DensePose Estimator node, for parity tests.

Written from the node's semantics (comfyui_controlnet_aux: resize_image_with_pad, the
DensePose chart extractor, detectron2's MatrixVisualizer, the viridis fix, remove_pad), in
numpy + OpenCV + F.interpolate, sharing no code with densevid. It calls a *tuple-style* model
exactly as the node does: one CHW uint8 RGB tensor in, (boxes, coarse, fine, u, v) out.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def node_resize_image_with_pad(img: np.ndarray, resolution: int):
    h_raw, w_raw, _ = img.shape
    k = float(resolution) / float(min(h_raw, w_raw))
    h_target = int(np.round(float(h_raw) * k))
    w_target = int(np.round(float(w_raw) * k))
    img = cv2.resize(img, (w_target, h_target), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)

    def pad64(x):
        return int(np.ceil(float(x) / 64.0) * 64 - x)

    img_padded = np.pad(img, [[0, pad64(h_target)], [0, pad64(w_target)], [0, 0]], mode="edge")
    return img_padded, (lambda x: x[:h_target, :w_target, ...])


def _extract_labels(box_xywh: torch.Tensor, coarse: torch.Tensor, fine: torch.Tensor) -> np.ndarray:
    # densepose_chart_predictor_output_to_result: resample to the box size, at least 1x1
    w = max(int(box_xywh[2]), 1)
    h = max(int(box_xywh[3]), 1)
    coarse_bbox = F.interpolate(coarse, (h, w), mode="bilinear", align_corners=False)
    fine_bbox = F.interpolate(fine, (h, w), mode="bilinear", align_corners=False)
    labels = fine_bbox.argmax(dim=1) * (coarse_bbox.argmax(dim=1) > 0).long()
    return labels.squeeze(0).cpu().numpy().astype(np.uint8)


def _matrix_visualize(image_bgr: np.ndarray, mask: np.ndarray, matrix: np.ndarray, bbox_xywh, cmap: int) -> np.ndarray:
    # detectron2 MatrixVisualizer(inplace=True, val_scale=255/24, alpha=1.0)
    x, y, w, h = [int(v) for v in bbox_xywh]
    if w <= 0 or h <= 0:
        return image_bgr
    if mask.shape != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        matrix = cv2.resize(matrix, (w, h), interpolation=cv2.INTER_NEAREST)
    mask_bg = np.tile((mask == 0)[:, :, np.newaxis], [1, 1, 3])
    matrix_scaled = matrix.astype(np.float32) * (255.0 / 24)
    matrix_vis = cv2.applyColorMap(matrix_scaled.clip(0, 255).astype(np.uint8), cmap)
    target = image_bgr[y:y + h, x:x + w, :]
    matrix_vis[mask_bg] = target[mask_bg]
    image_bgr[y:y + h, x:x + w, :] = target * 0.0 + matrix_vis * 1.0
    return image_bgr.astype(np.uint8)


def node_hint(image_rgb: np.ndarray, tuple_model, cmap: str = "viridis", resolution: int = 512) -> np.ndarray:
    """The node's hint for one uint8 HxWx3 RGB image (uint8 hxwx3 RGB, short side = resolution)."""
    padded, remove_pad = node_resize_image_with_pad(image_rgb, resolution)
    height, width = padded.shape[:2]
    canvas = np.tile(np.zeros([height, width], dtype=np.uint8)[:, :, np.newaxis], [1, 1, 3])
    image_chw = torch.from_numpy(padded).permute(2, 0, 1).contiguous()
    with torch.no_grad():
        boxes, coarse, fine, u, v = tuple_model(image_chw)
    cmap_id = cv2.COLORMAP_VIRIDIS if cmap == "viridis" else cv2.COLORMAP_PARULA
    for i in range(len(boxes)):
        box_xywh = boxes[i].clone()
        box_xywh[2] -= box_xywh[0]
        box_xywh[3] -= box_xywh[1]
        labels = _extract_labels(box_xywh, coarse[i:i + 1], fine[i:i + 1])
        mask = np.zeros(labels.shape, dtype=np.uint8)
        mask[labels > 0] = 1
        canvas = _matrix_visualize(canvas, mask, labels, box_xywh.tolist(), cmap_id)
    hint = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    if cmap == "viridis":
        hint[:, :, 0][hint[:, :, 0] == 0] = 68
        hint[:, :, 1][hint[:, :, 1] == 0] = 1
        hint[:, :, 2][hint[:, :, 2] == 0] = 84
    return np.ascontiguousarray(remove_pad(hint))


def blob_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, H, W, 3] frames: bright moving blobs on a dark, slightly noisy background; frame 0 is black."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.zeros((n, height, width, 3), np.uint8)
    centres = rng.uniform(0, 1, size=(3, 2))
    velocity = rng.uniform(-0.05, 0.05, size=(3, 2))
    for t in range(1, n):
        image = rng.uniform(0, 20, size=(height, width, 3)).astype(np.float32)
        for b in range(1 + t % 3):
            cy, cx = (centres[b] + t * velocity[b]) % 1.0
            radius = (0.15 + 0.1 * b) * min(height, width)
            blob = np.exp(-(((yy - cy * height) ** 2 + (xx - cx * width) ** 2) / (2 * radius ** 2)))
            image += blob[..., None] * rng.uniform(120, 235, size=3)
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    return frames
