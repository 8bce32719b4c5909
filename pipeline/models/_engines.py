"""Which engine runs a loaded file: the TorchScript file itself, one image per call, or the native model built
from its weights (``_native_rcnn``), B frames per call.

``choose_engine`` decides for ``engine="auto"``:

* the native model when the file's weights map onto the architecture it knows (else the TorchScript file,
  with a one-line note of why);
* on the CPU: one frame per call, in several model workers (measured on a 2-core CPU: a batch of two frames
  per call was slower per frame than one frame in each of two workers; docs/speed.md). In float32 the
  file's own arithmetic (one frame through it is the file's output bit for bit, tested); in bfloat16
  (``--half``), where exactness is gone anyway, the faster form: FrozenBN folded into the convolutions,
  channels-last;
* on CUDA it batches, B = the run's ``--batch-size``, in float16 (``--half``) the faster form.

``engine="native"`` asks for the native model at B = ``--batch-size`` wherever it maps (a ModelError where it
does not); ``engine="torchscript"`` keeps the file. ``NativeRunner`` runs the native model: under the
precision's autocast, and on CUDA a batch that runs out of memory is split in halves and retried (the smaller
size kept for the next batches); at B = 1 it is a one-line error naming the device's free memory.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import torch

from ..config import ENGINES
from ..core import Detections, ModelError
from ._native_rcnn import NativeDensePose
from ._native_spec import NativeSpec
from ._precision import Precision


@dataclass(frozen=True)
class EnginePlan:
    engine: str  # "native" or "torchscript"
    batch: int  # frames per model call
    note: str = ""  # why auto did not take the native model (one line), or ""
    exact: bool = True  # the native model keeps the file's ops (else FrozenBN folded, channels-last)

    def describe(self) -> str:
        return f"{self.engine} engine, {self.batch} frame{'s' if self.batch != 1 else ''} per call"


def choose_engine(requested: str, spec: NativeSpec | str, device: torch.device, precision: Precision,
                  batch_size: int) -> EnginePlan:
    """The engine for ``requested`` ("auto", "native", "torchscript"); ``spec``: the file's native spec, or
    why its weights do not map."""
    if requested not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {requested!r}")
    if requested == "torchscript":
        return EnginePlan("torchscript", 1)
    if isinstance(spec, str):
        if requested == "native":
            raise ModelError(f"--engine native: the file's weights are not a DensePose R-CNN R50/R101-FPN-DL "
                             f"({spec}); use --engine torchscript (or auto)")
        return EnginePlan("torchscript", 1, note=f"runs the TorchScript file, one frame per call: its weights are "
                                                 f"not the DensePose R-CNN the native model knows ({spec})")
    float32 = precision.runs == torch.float32
    batch = max(1, int(batch_size))
    if device.type == "cpu":
        return EnginePlan("native", batch if requested == "native" else 1, exact=float32)
    return EnginePlan("native", batch, exact=float32)


class NativeRunner:
    """The native model of one file on one device: ``detect_batch`` gives one ``Detections`` per frame."""

    def __init__(self, spec: NativeSpec, device: torch.device, precision: Precision, batch: int,
                 exact: bool = True) -> None:
        self.spec, self.device, self.precision = spec, torch.device(device), precision
        self.network = NativeDensePose(spec, self.device, exact=exact)
        self.batch = batch
        self._lock = threading.Lock()  # the batch size shrinks for every worker at once

    def _autocast(self):
        if self.precision.autocast:
            return torch.autocast(self.device.type, dtype=self.precision.runs)
        return contextlib.nullcontext()

    def _input(self, images_rgb_hwc: torch.Tensor) -> torch.Tensor:
        """[B, H, W, 3] RGB -> [B, 3, H, W] in the file's channel order (the releases take BGR)."""
        chw = images_rgb_hwc.permute(0, 3, 1, 2)
        return (chw.flip(1) if self.spec.style == "dict" else chw).contiguous()

    def detect_batch(self, images_rgb_hwc: torch.Tensor) -> list[Detections]:
        """uint8 [B, H, W, 3] RGB frames of one size (on ``device``) -> their detections, in order."""
        frames = self._input(images_rgb_hwc)
        out: list[Detections] = []
        start = 0
        while start < len(frames):
            step = min(self.batch, len(frames) - start)
            try:
                out += self._run(frames[start:start + step])
            except torch.cuda.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if step == 1:
                    free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else None
                    room = f" ({free / 2**20:.0f} MiB free there)" if free is not None else ""
                    raise ModelError(f"the native model ran out of memory on {self.device} with one frame of "
                                     f"{frames.shape[3]}x{frames.shape[2]}{room}: lower --resolution, free GPU memory, "
                                     f"or use --device cpu") from None
                with self._lock:
                    self.batch = max(1, min(self.batch, step) // 2)
                continue
            start += step
        return out

    def _run(self, frames: torch.Tensor) -> list[Detections]:
        with torch.inference_mode(), self._autocast():
            outputs = self.network.forward(frames)
        return [Detections(boxes.to(torch.float32), coarse, fine, u, v)
                for boxes, _, coarse, fine, u, v in outputs]
