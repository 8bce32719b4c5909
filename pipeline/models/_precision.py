"""Which precision a loaded model runs in: from its weights' dtype, the device, ``--half`` and the CPU.

* CUDA: a float16/bfloat16 export runs as it is; a float32 export in float32, or with ``half`` in float16
  (autocast, which reaches the ops inside a TorchScript model, or "native": the weights converted).
* CPU: float32 (torchvision's CPU nms has no float16: low-precision weights are converted, as the exports'
  own runner does). With ``half``, on a CPU that computes bfloat16 natively (AVX512-BF16 or AMX), the model
  runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``; where the CPU lacks it, ``half`` is ignored
  (emulated bfloat16 is slower than float32) and ``Precision.note`` says so.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

HALF_ROUTES = ("autocast", "native")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Precision:
    """How a model runs: ``weights`` as stored in the file, ``runs`` the dtype its convolutions compute in,
    ``convert_to`` the dtype the weights are converted to at load (None: as stored), ``autocast`` (on the
    model's device type, in ``runs``); ``note``: why a request was not followed (one line, or "")."""

    weights: torch.dtype | None
    runs: torch.dtype
    convert_to: torch.dtype | None = None
    autocast: bool = False
    note: str = ""

    def describe(self) -> str:
        """E.g. "float16 weights, run in float32" or "float32 weights, run in bfloat16 (autocast)"."""
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


@functools.lru_cache(maxsize=1)
def cpu_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), as torch itself checks it."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


NO_NATIVE_BF16 = ("--half is ignored on this CPU: it has no native bfloat16 (AVX512-BF16 or AMX), where emulated "
                  "bfloat16 is slower than float32; running in float32")


def plan_precision(weights: torch.dtype | None, device: torch.device, half: bool | str = False,
                   native_bf16: bool | None = None) -> Precision:
    """The precision a model with ``weights`` runs in on ``device`` (``half``: see the module docstring;
    ``native_bf16``: whether the CPU has it, default ``cpu_native_bfloat16()``)."""
    low = weights in _LOW_PRECISION
    if device.type != "cuda":
        convert = torch.float32 if low else None
        if not half:
            return Precision(weights, torch.float32, convert_to=convert)
        if cpu_native_bfloat16() if native_bf16 is None else native_bf16:
            return Precision(weights, torch.bfloat16, convert_to=convert, autocast=True)
        return Precision(weights, torch.float32, convert_to=convert, note=NO_NATIVE_BF16)
    if low:
        return Precision(weights, weights)
    if half == "native":
        return Precision(weights, torch.float16, convert_to=torch.float16)
    if half:
        return Precision(weights, torch.float16, autocast=True)
    return Precision(weights, torch.float32)


def half_applies(device: str, half: bool) -> bool:
    """Whether ``half`` changes what runs for the device spelling ``device`` ("auto", "cpu", "cuda[:N]"): on
    the CPU only where it has native bfloat16; with "auto" as asked (a Ray driver without a GPU decides for
    workers with one)."""
    if not half:
        return False
    return cpu_native_bfloat16() if device == "cpu" else True
