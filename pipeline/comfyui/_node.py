"""The ComfyUI node: a drop-in for comfyui_controlnet_aux's "DensePose Estimator", over densevid's engine.

Works without ComfyUI installed (for tests and scripts). Inside ComfyUI it uses the parts of ComfyUI a
well-made node uses: its device (``comfy.model_management.get_torch_device``), its model folders
(``folder_paths``: see ``_model_folders``), its memory management (``_memory``), its progress bar
(``comfy.utils.ProgressBar``, one step per frame) and its interrupt
(``throw_exception_if_processing_interrupted``, checked between frames and while waiting for one).

IMAGE tensors are float32 [B, H, W, 3] in [0, 1]. Like the original node, frames are converted with
truncation (uint8(image * 255)) and hints returned as hint / 255 at the resized size. A batch (a whole
video) goes through ``render_frames``: the engine's model workers, with at most a few frames in flight;
each frame is converted when the engine reads it and each hint written into the one output tensor.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from types import SimpleNamespace

import numpy as np
import torch

from ...kernels.colormaps import COLORMAPS
from ..config import MAX_RESOLUTION, MIN_RESOLUTION, EncodeConfig
from ..engine import DensePoseEstimator, padded_size, plan_workers, render_frames, resized_size
from ..models import resolve_model_path
from ._memory import ResidentModels
from ._model_folders import HUB_FILES, model_choices, register_folder, resolve_model

log = logging.getLogger(__name__)

CMAP_BY_LABEL = {label: name for name, (_, label) in COLORMAPS.items()}
# hints leave the engine one at a time, so ComfyUI's progress bar moves (and an interrupt is seen) per frame
NODE_BATCH_SIZE = 1
# a generous guess at a DensePose R-CNN's working memory per pixel of its padded input, per frame in flight:
# on a GPU, ComfyUI unloads other models until this much is free besides the weights
ACTIVATION_BYTES_PER_PIXEL = 1024

resident_models = ResidentModels()
_warned_devices: set[str] = set()


def comfyui():
    """The parts of ComfyUI the node uses (None outside ComfyUI); registers the densepose model folder."""
    try:
        modules = SimpleNamespace(
            folder_paths=importlib.import_module("folder_paths"),
            model_management=importlib.import_module("comfy.model_management"),
            model_patcher=importlib.import_module("comfy.model_patcher"),
            utils=importlib.import_module("comfy.utils"),
        )
    except ImportError:
        return None
    register_folder(modules.folder_paths)
    return modules


def _device(comfy) -> str:
    """ComfyUI's device where densevid can run on it (CPU or CUDA), else the CPU."""
    if comfy is None:
        return "auto"
    device = torch.device(comfy.model_management.get_torch_device())
    if device.type in ("cpu", "cuda"):
        return str(device)
    if device.type not in _warned_devices:
        _warned_devices.add(device.type)
        log.warning("densevid: the DensePose node runs on the CPU (it runs on CPU or CUDA, ComfyUI's device is %s)",
                    device)
    return "cpu"


class _NodeFrames:
    """An IMAGE batch as uint8 RGB frames, each converted as the engine reads it (never a second copy of the
    batch), exactly as the original node converts them."""

    def __init__(self, image: torch.Tensor) -> None:
        self.image = image

    def __len__(self) -> int:
        return len(self.image)

    def __iter__(self):
        for frame in self.image:
            yield np.asarray(frame.cpu() * 255.0, dtype=np.uint8)  # truncation, as the node


def hint_to_image(hint: np.ndarray, out: np.ndarray) -> None:
    """A uint8 hint into a row of the IMAGE output: hint.astype(float32) / 255, as the node, in place."""
    np.divide(hint, 255.0, out=out, dtype=np.float32)


def _working_memory(image: torch.Tensor, resolution: int, device: torch.device) -> int:
    if device.type == "cpu":
        return 0
    padded_h, padded_w = padded_size(*resized_size(image.shape[1], image.shape[2], resolution))
    workers = plan_workers(device, frames=len(image)).workers
    return workers * padded_h * padded_w * ACTIVATION_BYTES_PER_PIXEL


class DensePose_Preprocessor:
    @classmethod
    def INPUT_TYPES(cls):
        comfy = comfyui()
        models = model_choices(comfy.folder_paths) if comfy is not None else list(HUB_FILES)
        return {
            "required": {"image": ("IMAGE",)},
            "optional": {
                "model": (models, {"default": HUB_FILES[0]}),
                "cmap": (list(CMAP_BY_LABEL), {"default": COLORMAPS["viridis"][1]}),
                "resolution": ("INT", {"default": 512, "min": MIN_RESOLUTION, "max": MAX_RESOLUTION, "step": 64}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "execute"
    CATEGORY = "ControlNet Preprocessors/Faces and Poses Estimators"

    def execute(self, image: torch.Tensor, model: str = HUB_FILES[0], cmap: str = COLORMAPS["viridis"][1],
                resolution: int = 512):
        if cmap not in CMAP_BY_LABEL:
            raise ValueError(f"unknown colormap {cmap!r}; allowed: {', '.join(CMAP_BY_LABEL)}")
        comfy = comfyui()
        config = EncodeConfig(model=model, cmap=CMAP_BY_LABEL[cmap], resolution=int(resolution), device=_device(comfy),
                              batch_size=NODE_BATCH_SIZE)
        frames, height, width = len(image), image.shape[1], image.shape[2]
        if frames == 0:
            return (torch.empty((0, *resized_size(height, width, config.detection_resolution), 3)),)
        # inside ComfyUI the model is a name from its folders; outside, anything densevid's --model takes
        path = resolve_model(model, comfy.folder_paths) if comfy is not None else resolve_model_path(model, None)
        device = config.torch_device
        memory = _working_memory(image, config.detection_resolution, device)
        densepose = resident_models.get(path, device, comfy, memory)
        estimator = DensePoseEstimator.from_model(densepose, config)
        progress = comfy.utils.ProgressBar(frames) if comfy is not None else None
        cancel_check = comfy.model_management.throw_exception_if_processing_interrupted if comfy is not None else None
        out = None
        frames_u8 = _NodeFrames(image)
        with contextlib.closing(render_frames(estimator, frames_u8, config, cancel_check=cancel_check)) as hints:
            for index, hint in enumerate(hints):
                if out is None:
                    out = torch.empty((frames, *hint.shape), dtype=torch.float32)
                hint_to_image(hint, out[index].numpy())
                if progress is not None:
                    progress.update(1)
        return (out,)


NODE_CLASS_MAPPINGS = {"Inference_Core_DensePosePreprocessor": DensePose_Preprocessor}
NODE_DISPLAY_NAME_MAPPINGS = {"Inference_Core_DensePosePreprocessor": "[Inference.Core] DensePose Estimator"}

comfyui()  # inside ComfyUI: the densepose folder exists from start-up (for extra_model_paths.yaml and other nodes)
