"""Value types that travel between the stages: a batch of decoded frames, and one frame's detections."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch

from ..kernels.parts import N_COARSE_CHANNELS, N_FINE_CHANNELS


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive decoded frames of one video, upright, as uint8 RGB.

    ``pts`` are the frames' presentation timestamps in units of ``time_base`` (seconds =
    pts * time_base); ``start_index`` is the index of the first frame in the source.
    """

    frames_rgb: torch.Tensor  # uint8 [B, H, W, 3]
    pts: tuple[int, ...]
    time_base: Fraction
    start_index: int = 0

    def __post_init__(self) -> None:
        frames = self.frames_rgb
        if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8:
            raise TypeError(f"frames_rgb must be a uint8 tensor, got {getattr(frames, 'dtype', type(frames))}")
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames_rgb must have shape [B, H, W, 3], got {list(frames.shape)}")
        if len(self.pts) != frames.shape[0]:
            raise ValueError(f"got {len(self.pts)} pts for {frames.shape[0]} frames")
        if not isinstance(self.time_base, Fraction) or self.time_base <= 0:
            raise ValueError(f"time_base must be a positive Fraction, got {self.time_base!r}")

    def __len__(self) -> int:
        return int(self.frames_rgb.shape[0])

    @property
    def pts_seconds(self) -> tuple[float, ...]:
        return tuple(float(p * self.time_base) for p in self.pts)

    def __repr__(self) -> str:
        return (
            f"FrameBatch(frames_rgb={list(self.frames_rgb.shape)} {self.frames_rgb.device}, "
            f"pts={self.pts[:3]}{'...' if len(self.pts) > 3 else ''}, time_base={self.time_base}, "
            f"start_index={self.start_index})"
        )


@dataclass(frozen=True)
class Detections:
    """DensePose chart outputs for the people in one image, in the model's (padded) pixel frame.

    Whatever the export style, its adapter produces this. Instances are in the model's order;
    when rendering, later instances paint over earlier ones.
    """

    boxes_xyxy: torch.Tensor  # float [N, 4]
    coarse_segm: torch.Tensor  # float [N, 2, S, S]
    fine_segm: torch.Tensor  # float [N, 25, S, S]
    u: torch.Tensor  # float [N, 25, S, S]
    v: torch.Tensor  # float [N, 25, S, S]

    def __post_init__(self) -> None:
        n = self.boxes_xyxy.shape[0] if self.boxes_xyxy.ndim == 2 else -1
        if self.boxes_xyxy.ndim != 2 or self.boxes_xyxy.shape[1] != 4:
            raise ValueError(f"boxes_xyxy must be [N, 4], got {list(self.boxes_xyxy.shape)}")
        for name, channels in (("coarse_segm", N_COARSE_CHANNELS), ("fine_segm", N_FINE_CHANNELS),
                               ("u", N_FINE_CHANNELS), ("v", N_FINE_CHANNELS)):
            t = getattr(self, name)
            if t.ndim != 4 or t.shape[0] != n or t.shape[1] != channels:
                raise ValueError(f"{name} must be [{n}, {channels}, S, S], got {list(t.shape)}")

    def __len__(self) -> int:
        return int(self.boxes_xyxy.shape[0])

    def to(self, device: torch.device | str) -> "Detections":
        return Detections(*(getattr(self, f).to(device) for f in ("boxes_xyxy", "coarse_segm", "fine_segm", "u", "v")))

    def __repr__(self) -> str:
        s = self.fine_segm.shape[-1] if len(self) else "-"
        return f"Detections(n={len(self)}, S={s}, device={self.boxes_xyxy.device})"
