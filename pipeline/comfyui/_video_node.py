"""The VIDEO node: ComfyUI's VIDEO in, its DensePose hint video out, streamed by densevid's engine.

A file-backed video (``LoadVideo`` gives ``VideoFromFile(path)``) goes straight through ``encode_video``:
frames are decoded, detected and encoded a few at a time, never held as an IMAGE batch, so memory does not
grow with the video's length. The hint video is written to ComfyUI's temp folder (an H.264 MP4, or FFV1 in
MKV with ``lossless``), with the source's frame timing and its audio, and returned as ``VideoFromFile`` with
a preview in the node. A video held in memory (any other VideoInput) is rendered from its components.

The node is a V3 node (``comfy_api.latest``), so its class is built only where ComfyUI is installed
(``video_node_class``); its inputs come from densevid's settings table, like the command line's options
(``widget_specs``), and are checked by ``EncodeConfig`` with the same messages.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import DEFAULT_FIT, DEFAULT_RESOLUTION, FITS, SETTINGS_BY_NAME, EncodeConfig, list_presets, load_preset
from ..core import ConfigError, InputError
from ..engine import DensePoseEstimator, Trim, encode_video, render_frames, windowed_count
from ..io import mux_audio, probe_video
from ..models import resolve_model_path
from ._model_folders import HUB_FILES, model_choices, resolve_model
from ._node import ACTIVATION_BYTES_PER_PIXEL, NODE_BATCH_SIZE, _device, _NodeFrames, comfyui, resident_models

log = logging.getLogger(__name__)

NODE_ID = "DensevidDensePoseVideo"
DISPLAY_NAME = "DensePose Video (densevid)"
CATEGORY = "ControlNet Preprocessors/Faces and Poses Estimators"
NO_PRESET = "none"
# a preview is a JPEG sent over the websocket: at most this often, so it costs nothing measurable
PREVIEW_EVERY_SECONDS = 0.5
PREVIEW_MAX_SIZE = 512  # ComfyUI's default --preview-size


@dataclass(frozen=True)
class WidgetSpec:
    """One input of the node, independent of ComfyUI's classes: ``kind`` is COMBO, INT, BOOLEAN or STRING."""

    name: str
    kind: str
    default: Any
    tooltip: str
    options: tuple = ()
    min: int | None = None
    max: int | None = None
    step: int | None = None


def _tooltip(name: str, prefix: str = "") -> str:
    """The setting's help as the CLI shows it, with its flags spelled as the node's inputs."""
    text = re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), SETTINGS_BY_NAME[name].help)
    return f"{prefix} {text}".strip()


def widget_specs(models: list[str]) -> list[WidgetSpec]:
    """The node's inputs after ``video``: the CLI's encode options that make sense on a node, built from the
    settings table (defaults, ranges, choices, help)."""
    def bounds(name):
        return SETTINGS_BY_NAME[name].parse.bounds

    cmap = SETTINGS_BY_NAME["cmap"]
    return [
        WidgetSpec("model", "COMBO", HUB_FILES[0], "The DensePose TorchScript file: one in ComfyUI's models/densepose "
                   "folder, or a hub file, downloaded there on first use.", tuple(models)),
        WidgetSpec("preset", "COMBO", NO_PRESET, "A named preset (magicanimate: 512x512 centre crop at 25 fps; "
                   "civitai: parula). Its settings replace the inputs below for the keys it sets.",
                   (NO_PRESET, *list_presets())),
        WidgetSpec("cmap", "COMBO", cmap.default, _tooltip("cmap"), cmap.choices),
        WidgetSpec("resolution", "INT", 0, _tooltip("resolution", f"0: {DEFAULT_RESOLUTION}, or what size implies."),
                   min=0, max=bounds("resolution")[1], step=1),
        WidgetSpec("size", "INT", 0, _tooltip("size", "0: off (the hint keeps the video's shape)."), min=0,
                   max=bounds("size")[1], step=2),
        WidgetSpec("fit", "COMBO", DEFAULT_FIT, _tooltip("fit"), FITS),
        WidgetSpec("fps", "STRING", "", _tooltip("fps", "Empty: the source's frame timing.")),
        WidgetSpec("smooth", "INT", SETTINGS_BY_NAME["smooth"].default, _tooltip("smooth"), min=1,
                   max=bounds("smooth")[1], step=2),
        WidgetSpec("half", "BOOLEAN", False, _tooltip("half")),
        WidgetSpec("lossless", "BOOLEAN", False, _tooltip("lossless", "The browser may not preview it.")),
        WidgetSpec("skip_frames", "INT", 0, _tooltip("skip_frames"), min=0, max=bounds("skip_frames")[1]),
        WidgetSpec("every_nth", "INT", 1, _tooltip("every_nth"), min=1, max=bounds("every_nth")[1]),
        WidgetSpec("max_frames", "INT", 0, _tooltip("max_frames", "0: all frames."), min=0,
                   max=bounds("max_frames")[1]),
    ]


def node_config(model: str = HUB_FILES[0], preset: str = NO_PRESET, cmap: str = "viridis", resolution: int = 0,
                size: int = 0, fit: str = DEFAULT_FIT, fps: str = "", smooth: int = 1, half: bool = False,
                lossless: bool = False, skip_frames: int = 0, every_nth: int = 1, max_frames: int = 0,
                device: str = "auto") -> EncodeConfig:
    """The node's inputs as an ``EncodeConfig`` (0 and "" mean "not set", as the widgets show them); a preset's
    settings replace the inputs it sets. Bad values raise ``ConfigError`` saying what is allowed."""
    values = {"model": model, "cmap": cmap, "resolution": resolution or None, "size": size or None,
              "fit": fit if size else None, "fps": fps.strip() or None if isinstance(fps, str) else fps,
              "smooth": smooth, "half": half, "lossless": lossless, "skip_frames": skip_frames,
              "every_nth": every_nth, "max_frames": max_frames or None}
    if preset != NO_PRESET:
        if preset not in list_presets():
            raise ConfigError(f"unknown preset {preset!r}; allowed: {', '.join((NO_PRESET, *list_presets()))}")
        values.update({key: value for key, value in load_preset(preset).items() if key != "description"})
    return EncodeConfig(**values, device=device, batch_size=NODE_BATCH_SIZE)


# --- the source ---------------------------------------------------------------------------------------

def trim_of(video) -> Trim | None:
    """The trim window of a ComfyUI VideoFromFile that has one (newer ComfyUI versions), else None."""
    for start_name, duration_name in (("start_time", "duration"), ("_VideoFromFile__start_time",
                                                                     "_VideoFromFile__duration")):
        start = getattr(video, start_name, None)
        if isinstance(start, (int, float)) and not callable(start):
            duration = getattr(video, duration_name, None)
            duration = float(duration) if isinstance(duration, (int, float)) and duration > 0 else None
            trim = Trim(float(start), duration)
            return trim if trim != Trim() else None
    return None


@contextlib.contextmanager
def file_source(video, spool_dir: str):
    """The path of the file behind ``video`` (a BytesIO is spooled to a temporary file, removed after), or
    None when the video is not file-backed."""
    get_source = getattr(video, "get_stream_source", None)
    source = get_source() if callable(get_source) else None
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source):
        yield Path(source)
        return
    if source is None or not hasattr(source, "read"):
        yield None
        return
    source.seek(0)
    handle, spooled = tempfile.mkstemp(prefix="densevid_source_", dir=spool_dir)
    try:
        with os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        yield Path(spooled)
    finally:
        os.unlink(spooled)


# --- progress -----------------------------------------------------------------------------------------

class FrameProgress:
    """ComfyUI's progress bar moved per frame written, with the latest hint as its preview at most every
    ``PREVIEW_EVERY_SECONDS``. Hints arrive in the encode thread (``on_written``); the bar is moved and the
    interrupt checked in the caller's thread (``check``, the engine's cancel_check)."""

    def __init__(self, comfy, total: int | None) -> None:
        self.comfy = comfy
        self.total = max(total or 0, 1)
        self.bar = comfy.utils.ProgressBar(self.total)
        self.written = 0
        self.reported = 0
        self.preview: np.ndarray | None = None
        self.preview_taken = -math.inf
        self.lock = threading.Lock()

    def on_written(self, hints: np.ndarray) -> None:
        now = time.monotonic()
        with self.lock:
            if now - self.preview_taken >= PREVIEW_EVERY_SECONDS:
                self.preview, self.preview_taken = hints[-1].copy(), now  # the batch's buffer is reused
            self.written += len(hints)

    def check(self) -> None:
        self.comfy.model_management.throw_exception_if_processing_interrupted()
        with self.lock:
            written, preview, self.preview = self.written, self.preview, None
        # one update per frame (a few bytes on the websocket each); the preview goes with the latest
        while self.reported < written:
            self.reported += 1
            self.total = max(self.total, self.reported)  # an estimated frame count can be short
            self.bar.update_absolute(self.reported, self.total,
                                     _preview(preview) if self.reported == written else None)

    def finish(self) -> None:
        self.check()
        if self.reported < self.total:
            self.total = self.reported = max(self.reported, 1)
            self.bar.update_absolute(self.reported, self.total)


def _preview(hint: np.ndarray | None):
    """A hint as ComfyUI's preview: ("JPEG", PIL image, max size), as its samplers send theirs."""
    if hint is None:
        return None
    from PIL import Image  # ComfyUI's own dependency

    return ("JPEG", Image.fromarray(hint), PREVIEW_MAX_SIZE)


# --- running ------------------------------------------------------------------------------------------

def _estimator(comfy, config: EncodeConfig, height: int, width: int) -> DensePoseEstimator:
    from ..engine import padded_size, plan_workers, resized_size

    path = resolve_model(config.model, comfy.folder_paths) if comfy is not None else \
        resolve_model_path(config.model, None)
    device = config.torch_device
    memory = 0
    if device.type != "cpu":
        padded_h, padded_w = padded_size(*resized_size(height, width, config.detection_resolution))
        memory = plan_workers(device).workers * padded_h * padded_w * ACTIVATION_BYTES_PER_PIXEL
    return DensePoseEstimator.from_model(resident_models.get(path, device, comfy, memory), config)


def encode_file(source: Path, out_dir: Path, config: EncodeConfig, comfy, trim: Trim | None = None
                ) -> tuple[Path, int]:
    """The hint video of ``source`` in ``out_dir`` (a fresh name), with the source's audio; returns its path
    and the number of frames. Progress and interrupt go through ``comfy`` (None outside ComfyUI)."""
    info = probe_video(source)
    if info.is_image:
        raise InputError(f"{source.name} is a still image; the DensePose Video node takes a video "
                         f"(the DensePose Estimator node takes images)")
    estimator = _estimator(comfy, config, info.height, info.width)
    suffix = ".mkv" if config.lossless else ".mp4"
    name = f"densevid_{source.stem[:40]}_{uuid.uuid4().hex[:8]}"
    video_only = out_dir / f".{name}_video{suffix}"  # the hint alone, until the audio joins it
    output = out_dir / f"{name}{suffix}"
    total = windowed_count(info.estimated_frames, config) if trim is None and config.fps is None else None
    progress = FrameProgress(comfy, total) if comfy is not None else None
    try:
        result = encode_video(source, video_only, estimator, info=info, config=config, trim=trim,
                              cancel_check=progress.check if progress else None,
                              on_written=progress.on_written if progress else None)
        if progress:
            progress.finish()
        if info.has_audio:
            mux_audio(video_only, source, output, start=result.source_start)
        else:
            os.replace(video_only, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(video_only)
    return output, result.frames


def render_components(video, config: EncodeConfig, comfy):
    """The hints of a video held in memory (its components), in the same VideoComponents shape: frames at the
    source's rate, the window applied, the audio cut to match."""
    if config.fps is not None:
        raise ConfigError("fps needs a file-backed video (from Load Video); this video is held in memory: "
                          "set fps empty, or resample it before this node")
    components = video.get_components()
    images, rate = components.images, components.frame_rate
    stop = None if config.max_frames is None else config.skip_frames + config.max_frames * config.every_nth
    kept = images[config.skip_frames:stop:config.every_nth]
    if len(kept) == 0:
        raise InputError(f"the frame window keeps no frame of the video's {len(images)} frame(s) "
                         f"(skip_frames {config.skip_frames})")
    estimator = _estimator(comfy, config, images.shape[1], images.shape[2])
    progress = FrameProgress(comfy, len(kept)) if comfy is not None else None
    out = None
    with contextlib.closing(render_frames(estimator, _NodeFrames(kept), config,
                                          cancel_check=progress.check if progress else None)) as hints:
        for index, hint in enumerate(hints):
            if out is None:
                out = torch.empty((len(kept), *hint.shape), dtype=torch.float32)
            np.divide(hint, 255.0, out=out[index].numpy(), dtype=np.float32)
            if progress:
                progress.on_written(hint[None])
    if progress:
        progress.finish()
    audio = components.audio
    if audio is not None and config.skip_frames:
        start = round(config.skip_frames / float(rate) * audio["sample_rate"])
        audio = {**audio, "waveform": audio["waveform"][..., start:]}
    return out, audio, rate / config.every_nth


# --- the V3 class -------------------------------------------------------------------------------------

def _comfy_api():
    try:
        return importlib.import_module("comfy_api.latest")
    except ImportError:
        return None


def _input(io, spec: WidgetSpec):
    common = {"tooltip": spec.tooltip, "optional": True}
    if spec.kind == "COMBO":
        return io.Combo.Input(spec.name, options=list(spec.options), default=spec.default, **common)
    if spec.kind == "INT":
        return io.Int.Input(spec.name, default=spec.default, min=spec.min, max=spec.max, step=spec.step, **common)
    if spec.kind == "BOOLEAN":
        return io.Boolean.Input(spec.name, default=spec.default, **common)
    return io.String.Input(spec.name, default=spec.default, **common)


def video_node_class():
    """The VIDEO node's class (a ``comfy_api.latest.io.ComfyNode``), or None where ComfyUI's API is missing."""
    api = _comfy_api()
    if api is None:
        return None
    io, ui = api.io, api.ui

    class DensePoseVideo(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            comfy = comfyui()
            models = model_choices(comfy.folder_paths) if comfy is not None else list(HUB_FILES)
            return io.Schema(
                node_id=NODE_ID, display_name=DISPLAY_NAME, category=CATEGORY,
                description="DensePose hint video of a video (viridis/parula part-index hints), streamed: "
                            "frames are never held in memory all at once. Keeps the source's timing and audio.",
                inputs=[io.Video.Input("video", tooltip="The video, e.g. from Load Video (streamed from its file).")]
                + [_input(io, spec) for spec in widget_specs(models)],
                outputs=[io.Video.Output(tooltip="The hint video (in ComfyUI's temp folder; Save Video keeps it).")],
                # it shows its video, as a preview node does: it runs (and previews) with nothing connected too
                is_output_node=True,
            )

        @classmethod
        def execute(cls, video, **inputs):
            comfy = comfyui()
            config = node_config(**inputs, device=_device(comfy))
            temp = Path(comfy.folder_paths.get_temp_directory() if comfy is not None else tempfile.gettempdir())
            temp.mkdir(parents=True, exist_ok=True)
            with file_source(video, str(temp)) as source:
                if source is None:
                    hints, audio, rate = render_components(video, config, comfy)
                    return io.NodeOutput(api.InputImpl.VideoFromComponents(
                        api.Types.VideoComponents(images=hints, audio=audio, frame_rate=rate)))
                output, _ = encode_file(source, temp, config, comfy, trim_of(video))
            preview = ui.PreviewVideo([ui.SavedResult(output.name, "", io.FolderType.temp)])
            return io.NodeOutput(api.InputImpl.VideoFromFile(str(output)), ui=preview)

    return DensePoseVideo
