"""Value types that travel between the stages: decoded frames, and one image's detections."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import torch

from ...kernels.parts import check_charts


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``frame_rgb`` uint8 [H, W, 3], its ``pts`` (in its batch's time base) and its
    ``index`` in the source."""

    frame_rgb: torch.Tensor
    pts: int
    index: int


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive decoded frames of one video, upright, as uint8 RGB.

    ``pts`` are the frames' presentation timestamps in units of ``time_base`` (seconds =
    pts * time_base); ``start_index`` is the index of the first frame in the source. A batch is a
    sequence: ``batch[i]`` is a ``Frame``, ``batch[i:j]`` a ``FrameBatch``, iterating yields ``Frame``s;
    ``FrameBatch.of(frames)`` puts consecutive ``Frame``s of one time base back into a batch.
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

    @classmethod
    def of(cls, frames: list[Frame], time_base: Fraction) -> "FrameBatch":
        """A batch of ``frames`` (at least one; consecutive in the source: the first one's index starts it)."""
        if not frames:
            raise ValueError("a FrameBatch needs at least one frame")
        return cls(torch.stack([f.frame_rgb for f in frames]), tuple(f.pts for f in frames), time_base,
                   frames[0].index)

    def __len__(self) -> int:
        return int(self.frames_rgb.shape[0])

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, _, step = key.indices(len(self))
            if step != 1:
                raise ValueError("a FrameBatch holds consecutive frames: slice it without a step")
            return FrameBatch(self.frames_rgb[key], self.pts[key], self.time_base, self.start_index + start)
        index = range(len(self))[key]  # IndexError past the end, negative indices as for a list
        return Frame(self.frames_rgb[index], self.pts[index], self.start_index + index)

    def __iter__(self) -> Iterator[Frame]:
        for index in range(len(self)):
            yield self[index]

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
        check_charts(self.boxes_xyxy, self.coarse_segm, self.fine_segm, self.u, self.v)

    def __len__(self) -> int:
        return int(self.boxes_xyxy.shape[0])

    def to(self, device: torch.device | str) -> "Detections":
        return Detections(*(getattr(self, f).to(device) for f in ("boxes_xyxy", "coarse_segm", "fine_segm", "u", "v")))

    def __repr__(self) -> str:
        s = self.fine_segm.shape[-1] if len(self) else "-"
        return f"Detections(n={len(self)}, S={s}, device={self.boxes_xyxy.device})"
