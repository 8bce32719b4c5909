"""The run configuration: built once (from flags, later from presets), frozen, passed down.

No stage reads the command line or the environment by itself; ``EncodeConfig.from_env`` is the
one place that reads ``DENSEVID_MODEL_DIR``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import torch

from ._errors import ConfigError

CMAP_CHOICES = ("viridis", "parula")
MIN_RESOLUTION, MAX_RESOLUTION = 64, 4096
MAX_BATCH_SIZE = 256
FIT_CHOICES = ("crop", "pad", "stretch")
MIN_SIZE, MAX_SIZE = 64, 4096
MAX_SMOOTH = 255


def parse_device(spec: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device; auto picks CUDA when available."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available (torch {torch.__version__}); use --device cpu")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
        return device
    raise ConfigError(f"unknown device {spec!r}; allowed: auto, cpu, cuda, cuda:N")


@dataclass(frozen=True)
class EncodeConfig:
    """Everything a run needs, validated on construction."""

    model: str = "r50"
    cmap: str = "viridis"
    resolution: int = 512
    device: str = "auto"
    batch_size: int = 8
    lossless: bool = False
    overwrite: bool = False
    half: bool = False
    model_dir: Path | None = None
    progress: bool = True
    # --- issue 6: framing, frame rate, smoothing, extra outputs (all off by default) ---
    size: int | None = None  # output N x N (even)
    fit: str | None = None  # crop (default with size) | pad | stretch
    crop_box: tuple[int, int, int, int] | None = None  # x, y, w, h of the upright source
    auto_resolution: bool = False  # with size: the detection resolution follows from size, not `resolution`
    fps: Fraction | None = None  # resample to this constant rate
    smooth: int = 1  # temporal majority window (odd); 1 = off
    frames_dir: Path | None = None  # numbered PNGs
    preview_path: Path | None = None  # side-by-side H.264 (source | hint)
    iuv_path: Path | None = None  # I, U, V arrays (.npz)

    def __post_init__(self) -> None:
        if self.cmap not in CMAP_CHOICES:
            raise ConfigError(f"unknown colormap {self.cmap!r}; allowed: {', '.join(CMAP_CHOICES)}")
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int):
            raise ConfigError(f"resolution must be an integer, got {self.resolution!r}")
        if not MIN_RESOLUTION <= self.resolution <= MAX_RESOLUTION:
            raise ConfigError(f"resolution {self.resolution} is out of range; allowed: {MIN_RESOLUTION}..{MAX_RESOLUTION}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(f"batch size must be an integer in 1..{MAX_BATCH_SIZE}, got {self.batch_size!r}")
        parse_device(self.device)  # validates the spelling (and CUDA presence) early
        self._validate_framing()

    def _validate_framing(self) -> None:
        from ._fps import parse_fps
        from ._framing import parse_crop_box

        if self.size is not None:
            if isinstance(self.size, bool) or not isinstance(self.size, int) or not MIN_SIZE <= self.size <= MAX_SIZE:
                raise ConfigError(f"size must be an integer in {MIN_SIZE}..{MAX_SIZE}, got {self.size!r}")
            if self.size % 2:
                raise ConfigError(f"size must be even (H.264 yuv420p needs even sides), got {self.size}")
        if self.fit is not None:
            if self.fit not in FIT_CHOICES:
                raise ConfigError(f"unknown fit {self.fit!r}; allowed: {', '.join(FIT_CHOICES)}")
            if self.size is None:
                raise ConfigError(f"fit {self.fit!r} needs a size (--size N)")
        if self.crop_box is not None:
            object.__setattr__(self, "crop_box", parse_crop_box(self.crop_box))
        if self.fps is not None:
            object.__setattr__(self, "fps", parse_fps(self.fps))
        if isinstance(self.smooth, bool) or not isinstance(self.smooth, int) or not 1 <= self.smooth <= MAX_SMOOTH \
                or self.smooth % 2 == 0:
            raise ConfigError(f"smooth must be an odd integer in 1..{MAX_SMOOTH}, got {self.smooth!r}")
        if self.iuv_path is not None and self.smooth > 1:
            raise ConfigError("--iuv records the model's per-frame output and cannot be combined with --smooth "
                              "(smoothed labels have no U/V)")

    @property
    def torch_device(self) -> torch.device:
        return parse_device(self.device)

    def with_env(self) -> "EncodeConfig":
        """Fill ``model_dir`` from DENSEVID_MODEL_DIR when not given explicitly."""
        if self.model_dir is None and os.environ.get("DENSEVID_MODEL_DIR"):
            return replace(self, model_dir=Path(os.environ["DENSEVID_MODEL_DIR"]))
        return self
