"""Backend dispatch for the label render and the hint (labels coloured through a LUT).

Backends:

* ``"reference"`` -- :func:`kernels.reference.render_labels_reference` (slow, the definition).
* ``"cpu"`` -- :func:`kernels.render_cpu.render_labels_cpu`, bit-exact with the reference
  (numba-compiled kernels; the reference itself where numba is unusable).
* ``"device"`` -- :func:`kernels.render_device.render_labels_device`: the reference's method in torch
  ops on the logits' device (CUDA without Triton). Exact on the CPU; on a GPU its float rounding may
  flip near-ties, and agreement >= ``GPU_MIN_AGREEMENT`` is the contract.
* ``"triton"`` -- :func:`kernels.render_triton.render_labels_triton` (CUDA tensors, or CPU tensors
  under ``TRITON_INTERPRET=1``); agreement >= ``GPU_MIN_AGREEMENT`` is the contract.
* ``"auto"`` -- on CUDA: triton when it imports, else device; elsewhere: cpu.

(``GPU_MIN_AGREEMENT`` is the tests' tolerance policy, tests/helpers.py.)

Inputs: ``boxes_xyxy`` [N, 4], ``coarse_segm`` [N, 2, S, S], ``fine_segm`` [N, 25, S, S] (S >= 1;
N may be 0), float16 or float32 logits, always computed in float32 (``.float()``, as the
reference). The cpu/reference backends compute on the CPU and return the result on the logits'
device. Inputs are never modified.
"""

from __future__ import annotations

import torch

from . import render_cpu
from .parts import N_PART_LABELS, check_charts
from .reference import colorize_reference, render_labels_reference
from .render_cpu import render_labels_cpu

BACKENDS = ("auto", "reference", "cpu", "device", "triton")
_WORD_TABLES: dict[bytes, torch.Tensor] = {}


def _validate(boxes_xyxy, coarse_segm, fine_segm, height, width, backend) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    for name, t in (("boxes_xyxy", boxes_xyxy), ("coarse_segm", coarse_segm), ("fine_segm", fine_segm)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"height and width must be >= 1, got {height}x{width}")
    check_charts(boxes_xyxy, coarse_segm, fine_segm)
    if coarse_segm.shape[2:] != fine_segm.shape[2:] or min(coarse_segm.shape[2:]) < 1:
        # the renders need one grid even for no instances (N = 0)
        raise ValueError(f"coarse_segm and fine_segm must share a spatial size S x S >= 1, "
                         f"got {list(coarse_segm.shape[2:])} and {list(fine_segm.shape[2:])}")
    for name, t in (("coarse_segm", coarse_segm), ("fine_segm", fine_segm)):
        if not t.is_floating_point():
            raise ValueError(f"{name} must hold float logits, got {t.dtype}")


def _triton_importable() -> bool:
    from .render_triton import triton_available

    return triton_available()


def _resolve(backend: str, device: torch.device) -> str:
    if backend == "auto" and device.type == "cuda":
        return "triton" if _triton_importable() else "device"
    return "cpu" if backend == "auto" else backend


def prepare_backend(backend: str, device: torch.device | str) -> None:
    """Make the render that ``backend`` resolves to on ``device`` ready now: the CPU path compiles
    (or loads from numba's cache) its kernels, Triton compiles its kernel, so that this happens once
    before a video, not in the middle of its first batch (in every model worker at once)."""
    resolved = _resolve(backend, torch.device(device))
    if resolved == "cpu":
        render_cpu.compiled_kernels()
    elif resolved == "triton":
        from .render_triton import warm_up

        warm_up(device)


def _word_table(lut_rgb: torch.Tensor) -> torch.Tensor:
    """int32 [3 * n * n] table for the compiled :func:`colorize`: the 4-byte words of RGB rows of label pairs.

    Four pixels p0..p3 are 12 bytes = 3 int32 words: (R0 G0 B0 R1), (G1 B1 R2 G2), (B2 R3 G3 B3);
    word k depends on labels (p_k, p_k+1) only. Built with uint8 views, so byte order is native.
    """
    key = lut_rgb.numpy().tobytes()
    table = _WORD_TABLES.get(key)
    if table is None:
        n = lut_rgb.shape[0]
        first, second = lut_rgb.repeat_interleave(n, 0), lut_rgb.repeat(n, 1)  # row a * n + b: (a, b)
        words = torch.cat([torch.cat([first, second[:, :1]], 1), torch.cat([first[:, 1:], second[:, :2]], 1),
                           torch.cat([first[:, 2:], second], 1)])
        table = _WORD_TABLES[key] = words.contiguous().view(torch.int32).view(-1)
    return table


def colorize(labels: torch.Tensor, lut_rgb: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] = ``lut_rgb[labels]`` (labels uint8 [..., H, W]: one map or a batch of them, lut
    uint8 [n, 3]); a label past the table raises IndexError.

    Labels on the CPU use the compiled kernel: one int32 lookup per 4 pixels (3 words of
    :func:`_word_table`) instead of one 3-byte row gather per pixel; a batch is one [B * H, W] map to it.
    Elsewhere, or without numba, the plain lookup (:func:`kernels.reference.colorize_reference`).
    """
    lut_rgb = lut_rgb.to(dtype=torch.uint8)
    kernels = render_cpu.compiled_kernels() if labels.device.type == "cpu" else None
    if kernels is None or labels.dim() < 2 or labels.dtype != torch.uint8 or labels.numel() == 0:
        return colorize_reference(labels, lut_rgb)
    lut_rgb = lut_rgb.cpu().contiguous()
    out = torch.empty((*labels.shape, 3), dtype=torch.uint8)
    rows = labels.contiguous().reshape(-1, labels.shape[-1])  # the kernel's one compiled form: 2-D
    kernels.colorize_into(rows.numpy(), lut_rgb.numpy(), _word_table(lut_rgb).numpy(), out.view(-1, rows.shape[1], 3)
                          .numpy())
    return out


def render_labels(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                  height: int, width: int, backend: str = "auto") -> torch.Tensor:
    """uint8 [height, width] part labels (0 = background), on the logits' device."""
    _validate(boxes_xyxy, coarse_segm, fine_segm, height, width, backend)
    height, width = int(height), int(width)
    device = coarse_segm.device
    chosen = _resolve(backend, device)
    if chosen == "triton":
        from .render_triton import render_labels_triton

        return render_labels_triton(boxes_xyxy, coarse_segm, fine_segm, height, width)
    if chosen == "device":
        from .render_device import render_labels_device

        return render_labels_device(boxes_xyxy, coarse_segm, fine_segm, height, width)
    fn = render_labels_reference if chosen == "reference" else render_labels_cpu
    return fn(boxes_xyxy, coarse_segm, fine_segm, height, width).to(device)


def render_hint(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                height: int, width: int, lut_rgb: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """uint8 [height, width, 3] RGB hint (``lut_rgb[labels]``), on the logits' device.

    With the triton backend the colouring is fused into the kernel.
    """
    _validate(boxes_xyxy, coarse_segm, fine_segm, height, width, backend)
    if not isinstance(lut_rgb, torch.Tensor) or lut_rgb.shape != (N_PART_LABELS, 3):
        raise ValueError(f"lut_rgb must be a [{N_PART_LABELS}, 3] tensor, "
                         f"got {getattr(lut_rgb, 'shape', type(lut_rgb))}")
    height, width = int(height), int(width)
    device = coarse_segm.device
    if _resolve(backend, device) == "triton":
        from .render_triton import render_hint_triton

        return render_hint_triton(boxes_xyxy, coarse_segm, fine_segm, height, width, lut_rgb.to(torch.uint8))
    labels = render_labels(boxes_xyxy, coarse_segm, fine_segm, height, width, backend)
    return colorize(labels, lut_rgb.to(device=labels.device, dtype=torch.uint8))
