"""The run configuration: built once (from flags, later from presets), frozen, passed down.

No stage reads the command line or the environment by itself; ``EncodeConfig.from_env`` is the
one place that reads ``DENSEVID_MODEL_DIR``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ._errors import ConfigError

CMAP_CHOICES = ("viridis", "parula")
MIN_RESOLUTION, MAX_RESOLUTION = 64, 4096
MAX_BATCH_SIZE = 256


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

    @property
    def torch_device(self) -> torch.device:
        return parse_device(self.device)

    def with_env(self) -> "EncodeConfig":
        """Fill ``model_dir`` from DENSEVID_MODEL_DIR when not given explicitly."""
        if self.model_dir is None and os.environ.get("DENSEVID_MODEL_DIR"):
            return replace(self, model_dir=Path(os.environ["DENSEVID_MODEL_DIR"]))
        return self
