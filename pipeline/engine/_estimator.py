"""The Python API: load a model once, turn RGB images into hint images.

    from densevid import DensePoseEstimator
    estimator = DensePoseEstimator("r50", cmap="viridis", resolution=512)
    hint = estimator(image_rgb)          # uint8 HxWx3 -> uint8 hxwx3 (short side = resolution)
    hints = estimator(frames_rgb)        # uint8 BxHxWx3 -> list of hints (sizes may differ)
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from ...kernels import colorize, hint_lut, prepare_backend, render_hint, render_labels
from ...kernels.iuv import render_iuv
from ..config import DEFAULT_RESOLUTION, EncodeConfig
from ..core import Detections
from ..models import DensePoseModel, load_model, resolve_model_path
from ._preprocess import resize_and_pad


class _Background:
    """``fn()`` in a thread; ``result()`` waits and re-raises its exception. Any thread may call ``result()``,
    any number of times.

    What ``fn`` warns goes out from its own thread when it happens (the filters and the display of warnings
    are the process's). It is not recorded here to be re-emitted later: ``warnings.catch_warnings`` swaps
    process-wide state, and one in this thread overlapping one in another (the model's load has one) can
    leave the recorder installed for good; re-emitting then recorded each warning again, without end (a
    CLI run with numba missing grew to 23 GB before the OOM killer stopped it).
    """

    def __init__(self, fn) -> None:
        self._error: BaseException | None = None

        def run() -> None:
            try:
                fn()
            except BaseException as error:
                self._error = error

        self._thread = threading.Thread(target=run, name="densevid-prepare", daemon=True)
        self._thread.start()

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


class DensePoseEstimator:
    """A loaded DensePose model plus the node's pre- and post-processing.

    ``model``: 'r50', 'r101', a hub file name, or a path to a TorchScript file.
    ``device``: 'auto', 'cpu', 'cuda', 'cuda:N'. ``half`` runs the model in float16 autocast on CUDA (bfloat16
    on a CPU that has it). ``engine``: 'auto', 'native' or 'torchscript' (see ``models.choose_engine``);
    ``batch_size``: frames per call of a native model that batches.
    """

    def __init__(self, model: str = "r50", *, cmap: str = "viridis", resolution: int = DEFAULT_RESOLUTION,
                 device: str = "auto", half: bool = False, engine: str = "auto", batch_size: int = 8,
                 model_dir: str | Path | None = None,
                 render_backend: str = "auto", _config: EncodeConfig | None = None) -> None:
        config = _config or EncodeConfig(model=model, cmap=cmap, resolution=resolution, device=device, half=half,
                                         engine=engine, batch_size=batch_size,
                                         model_dir=Path(model_dir) if model_dir else None)
        self.config = config
        self.device = config.torch_device
        self.render_backend = render_backend
        path = resolve_model_path(config.model, config.model_dir)
        # the render kernels (numba's cache, or Triton's compile) get ready beside the model's load and the
        # first frame's model call: the first render waits for them (``_kernels_ready``)
        self._kernels = _Background(lambda: prepare_backend(render_backend, self.device))
        try:
            self.model: DensePoseModel = load_model(path, self.device, half=config.half, engine=config.engine,
                                                    batch_size=config.batch_size)
        except BaseException:
            self._kernels.result()
            raise
        self._lut = hint_lut(config.cmap, self.device)

    @classmethod
    def from_config(cls, config: EncodeConfig, render_backend: str = "auto") -> "DensePoseEstimator":
        """Build from a validated config (the CLI's way in)."""
        return cls(config.model, cmap=config.cmap, resolution=config.resolution, device=config.device,
                   half=config.half, engine=config.engine, batch_size=config.batch_size, model_dir=config.model_dir,
                   render_backend=render_backend, _config=config)

    @classmethod
    def from_model(cls, model: DensePoseModel, config: EncodeConfig, render_backend: str = "auto",
                   _kernels: "_Background | None" = None) -> "DensePoseEstimator":
        """Wrap an already loaded model (one load per process for many videos)."""
        self = cls.__new__(cls)
        self.config = config
        self.device = model.device
        self.render_backend = render_backend
        self.model = model
        self._lut = hint_lut(config.cmap, self.device)
        self._kernels = _kernels or _Background(lambda: prepare_backend(render_backend, self.device))
        return self

    def with_config(self, config: EncodeConfig) -> "DensePoseEstimator":
        """This loaded model under another run's settings (colormap, resolution ...), without reloading it."""
        if config == self.config:
            return self
        return DensePoseEstimator.from_model(self.model, config, self.render_backend, self._kernels)

    def prepare(self, image_rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """CPU: resize + pad as the node does. Returns (padded image, hint size (h, w))."""
        return resize_and_pad(image_rgb, self.config.detection_resolution)

    def detect(self, padded_rgb: torch.Tensor) -> Detections:
        """Run the model on one padded uint8 HWC RGB image (any device)."""
        return self.model.detect(padded_rgb.to(self.device, non_blocking=True))

    def detect_batch(self, padded_rgb: torch.Tensor) -> list[Detections]:
        """Run the model on padded uint8 [B, H, W, 3] RGB images of one size (any device), B per call where the
        model batches (``model.model_batch``)."""
        return self.model.detect_batch(padded_rgb.to(self.device, non_blocking=True))

    def render(self, detections: Detections, hint_hw: tuple[int, int]) -> torch.Tensor:
        """uint8 [h, w, 3] RGB hint on the model's device."""
        self._kernels.result()
        return render_hint(detections.boxes_xyxy, detections.coarse_segm, detections.fine_segm,
                           hint_hw[0], hint_hw[1], self._lut, backend=self.render_backend)

    def render_labels(self, detections: Detections, hint_hw: tuple[int, int]) -> torch.Tensor:
        """uint8 [h, w] part labels (0 = background) on the model's device: the hint before colouring."""
        self._kernels.result()
        return render_labels(detections.boxes_xyxy, detections.coarse_segm, detections.fine_segm,
                             hint_hw[0], hint_hw[1], backend=self.render_backend)

    def render_iuv(self, detections: Detections, hint_hw: tuple[int, int]):
        """(I uint8 [h, w], U float32 [h, w], V float32 [h, w]) on the model's device; I equals render_labels."""
        self._kernels.result()
        return render_iuv(detections.boxes_xyxy, detections.coarse_segm, detections.fine_segm, detections.u,
                          detections.v, hint_hw[0], hint_hw[1], backend=self.render_backend)

    def colorize(self, labels: torch.Tensor) -> torch.Tensor:
        """uint8 labels [..., h, w] -> uint8 RGB [..., h, w, 3] through the colormap, on the labels' device."""
        self._kernels.result()
        return colorize(labels, self._lut)

    def hint(self, image_rgb: np.ndarray) -> torch.Tensor:
        """One uint8 HxWx3 RGB image -> its hint as a uint8 [h, w, 3] tensor on the device."""
        padded, hint_hw = self.prepare(image_rgb)
        return self.render(self.detect(torch.from_numpy(padded)), hint_hw)

    def __call__(self, images_rgb):
        """uint8 RGB image [H,W,3] or batch [B,H,W,3] (numpy or torch) -> hint(s) of the same kind, on the CPU."""
        as_numpy = isinstance(images_rgb, np.ndarray)
        array = images_rgb if as_numpy else torch.as_tensor(images_rgb).cpu().numpy()
        if array.dtype != np.uint8 or array.ndim not in (3, 4) or array.shape[-1] != 3:
            raise ValueError(f"expected uint8 RGB [H,W,3] or [B,H,W,3], got {array.dtype} {list(array.shape)}")
        single = array.ndim == 3
        hints = [self.hint(image).cpu() for image in (array[None] if single else array)]
        out = [h.numpy() if as_numpy else h for h in hints]
        return out[0] if single else out
