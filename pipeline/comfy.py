"""The ComfyUI node: a drop-in for comfyui_controlnet_aux's "DensePose Estimator", over densevid's API.

Works without ComfyUI installed (for tests and scripts); inside ComfyUI it runs on ComfyUI's device.
IMAGE tensors are float32 [B, H, W, 3] in [0, 1]. Like the original node, frames are converted
with truncation (uint8(image * 255)) and hints returned as hint / 255 at the resized size.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from ._api import DensePoseEstimator
from ..kernels.colormaps import COLORMAPS
from ._config import MAX_RESOLUTION, MIN_RESOLUTION, EncodeConfig
from ._models import MODEL_FILES, load_model, resolve_model_path

MODEL_CHOICES = [MODEL_FILES["r50"], MODEL_FILES["r101"]]
CMAP_BY_LABEL = {label: name for name, (_, label) in COLORMAPS.items()}

_loaded_models: dict[tuple[str, str], object] = {}
_lock = threading.Lock()


def _comfy_device() -> str:
    try:
        from comfy import model_management  # only present inside ComfyUI
    except ImportError:
        return "auto"
    return str(model_management.get_torch_device())


def _estimator(model: str, cmap: str, resolution: int, device: str) -> DensePoseEstimator:
    config = EncodeConfig(model=model, cmap=cmap, resolution=resolution, device=device)
    key = (model, str(config.torch_device))
    with _lock:  # load each model once per process and device
        if key not in _loaded_models:
            _loaded_models[key] = load_model(resolve_model_path(model, config.model_dir), config.torch_device)
        return DensePoseEstimator.from_model(_loaded_models[key], config)


class DensePose_Preprocessor:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"image": ("IMAGE",)},
            "optional": {
                "model": (MODEL_CHOICES, {"default": MODEL_CHOICES[0]}),
                "cmap": (list(CMAP_BY_LABEL), {"default": COLORMAPS["viridis"][1]}),
                "resolution": ("INT", {"default": 512, "min": MIN_RESOLUTION, "max": MAX_RESOLUTION, "step": 64}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "execute"
    CATEGORY = "ControlNet Preprocessors/Faces and Poses Estimators"

    def execute(self, image: torch.Tensor, model: str = MODEL_CHOICES[0], cmap: str = COLORMAPS["viridis"][1],
                resolution: int = 512):
        if cmap not in CMAP_BY_LABEL:
            raise ValueError(f"unknown colormap {cmap!r}; allowed: {', '.join(CMAP_BY_LABEL)}")
        estimator = _estimator(model, CMAP_BY_LABEL[cmap], int(resolution), _comfy_device())
        hints = []
        for frame in image:
            frame_u8 = np.asarray(frame.cpu().numpy() * 255.0, dtype=np.uint8)  # truncation, as the node
            hint = estimator.hint(frame_u8).cpu().numpy()
            hints.append(torch.from_numpy(hint.astype(np.float32) / 255.0))
        return (torch.stack(hints),)


NODE_CLASS_MAPPINGS = {"Inference_Core_DensePosePreprocessor": DensePose_Preprocessor}
NODE_DISPLAY_NAME_MAPPINGS = {"Inference_Core_DensePosePreprocessor": "[Inference.Core] DensePose Estimator"}
