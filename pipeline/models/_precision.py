"""Which precision a loaded model runs in: from its weights' dtype, the device and ``--half``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

HALF_ROUTES = ("autocast", "native")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Precision:
    """How a model runs: ``weights`` as stored in the file, ``runs`` the dtype its convolutions compute in,
    ``convert_to`` the dtype the weights are converted to at load (None: as stored), ``autocast``."""

    weights: torch.dtype | None
    runs: torch.dtype
    convert_to: torch.dtype | None = None
    autocast: bool = False

    def describe(self) -> str:
        """E.g. "float16 weights, run in float32" or "float32 weights, run in float16 (autocast)"."""
        weights = dtype_name(self.weights) if self.weights is not None else "no floating-point"
        route = " (autocast)" if self.autocast else ""
        return f"{weights} weights, run in {dtype_name(self.runs)}{route}"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def weights_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """The dtype of most of a module's floating-point weights (parameters and buffers); None if it has none."""
    counts: dict[torch.dtype, int] = {}
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            counts[tensor.dtype] = counts.get(tensor.dtype, 0) + tensor.numel()
    return max(counts, key=counts.get) if counts else None


def plan_precision(weights: torch.dtype | None, device: torch.device, half: bool | str = False) -> Precision:
    """The precision a model with ``weights`` runs in on ``device`` (``half``: see ``load_model``).

    On the CPU everything runs in float32 (torchvision's CPU kernels, e.g. nms, have no float16): float16
    or bfloat16 weights are converted, which is exactly what the exports' own runner does. On CUDA a
    float16/bfloat16 export runs as it is; a float32 export runs in float32, or in float16 with ``half``.
    """
    low = weights in _LOW_PRECISION
    if device.type != "cuda":
        return Precision(weights, torch.float32, convert_to=torch.float32 if low else None)
    if low:
        return Precision(weights, weights)
    if half == "native":
        return Precision(weights, torch.float16, convert_to=torch.float16)
    if half:
        return Precision(weights, torch.float16, autocast=True)
    return Precision(weights, torch.float32)
