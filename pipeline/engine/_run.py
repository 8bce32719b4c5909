"""Running the engine: one video (or image) in, its outputs out (``encode_video``), or frames already in
memory in, their hints out (``render_frames``).

A job is settled before any work (``prepare_job``: its output paths checked and its framing planned,
once), then run (``encode_job``) with a loaded estimator and one config: every setting of the run
(colormap, resolution, framing, ...) comes from that config; the estimator contributes the loaded
model (model, device, precision). An image input is a one-frame video whose sink is a PNG.

Threads: the source thread decodes and prepares frames, N model workers run the model and the render,
the caller's thread puts the results back in order and runs the post-stages (``_pipeline``), and an
encode thread feeds the sinks (``_encoder``). Output order, timestamps and pixels do not depend on N.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..config import EncodeConfig
from ..core import ConfigError, InputError
from ..io import OutputTargets, VideoInfo, check_targets, make_fingerprint, open_sinks, probe_video
from ..models import dtype_name, half_applies
from ._encoder import Encoder
from ._estimator import DensePoseEstimator
from ._framing import FramePlan, plan_framing
from ._pipeline import Pipeline, RunSpec
from ._source import SourceFrame, video_frames
from ._window import Trim, WindowStart, windowed_count


@dataclass(frozen=True)
class EncodeResult:
    input_path: Path
    output_path: Path
    frames: int
    seconds: float
    # busy seconds per stage: decode (incl. crop, resize+pad), model and render (summed over the
    # workers), post (ordering, post-stages, copy to the host), encode (the sinks); on CUDA also
    # model_gpu: seconds in which at least one model call was running on the device, and model_gpu_sum:
    # the model calls' device seconds added up (from CUDA events; their ratio is the calls' mean overlap)
    stage_seconds: dict = field(default_factory=dict)
    # one-line notes about the input that did not stop the encode (e.g. a truncated MKV/TS)
    warnings: tuple[str, ...] = ()
    workers: int = 1
    engine: str = "torchscript"  # what ran the model: "native" or "torchscript" (models.choose_engine)
    # where the output starts in the input: seconds after its first frame (the frame window moves it)
    source_start: float = 0.0


@dataclass(frozen=True)
class EncodeJob:
    """One input, settled before any work: its probe, config, framing and checked output paths."""

    input_path: Path
    info: VideoInfo
    config: EncodeConfig
    plan: FramePlan
    targets: OutputTargets

    @property
    def time_base(self) -> Fraction:
        """Of the output's timestamps: 1/F with --fps, else the input's."""
        return 1 / self.config.fps if self.config.fps is not None else self.info.time_base

    @property
    def fps_hint(self) -> Fraction | None:
        """The output's nominal rate: --fps, else the input's (over --every-nth)."""
        if self.config.fps is not None:
            return self.config.fps
        return self.info.fps / self.config.every_nth if self.info.fps else None


def frame_plan(height: int, width: int, config: EncodeConfig) -> FramePlan:
    """The framing of height x width frames under this config (ConfigError for a crop box that does not fit)."""
    return plan_framing(height, width, size=config.size, fit=config.effective_fit, crop_box=config.crop_box,
                        resolution=config.framing_resolution)


def prepare_job(input_path: str | Path, output_path: str | Path | None, config: EncodeConfig,
                info: VideoInfo | None = None) -> EncodeJob:
    """Probe the input (unless ``info`` is given), check every output path and plan the framing:
    the cheap refusals, before any model is loaded or frame decoded."""
    input_path = Path(input_path)
    info = info if info is not None else probe_video(input_path)
    targets = check_targets(input_path, Path(output_path) if output_path else None, info, config)
    return EncodeJob(input_path, info, config, frame_plan(info.height, info.width, config), targets)


def encode_video(input_path: str | Path, output_path: str | Path | None, estimator: DensePoseEstimator,
                 progress: Callable[[int], None] | None = None, info: VideoInfo | None = None,
                 config: EncodeConfig | None = None, *, trim: Trim | None = None,
                 cancel_check: Callable[[], None] | None = None,
                 on_written: Callable[[np.ndarray], None] | None = None) -> EncodeResult:
    """Render the hint video of ``input_path`` into ``output_path`` (default: beside the input).

    ``config``: the settings of this call (colormap, resolution, outputs, framing, fps, smoothing,
    batch size, workers ...), default the estimator's. The estimator contributes only its loaded
    model (model, device, precision), so a batch shares one estimator across inputs with their own
    configs. ``progress(n)`` is called (in the encode thread) after every n frames written.
    ``trim``: encode only this time window of the input (before the config's frame window).
    ``cancel_check()``: called in the caller's thread between frames and while waiting for one; whatever
    it raises stops the run (no output is left) and propagates. ``on_written(hints)``: called in the
    encode thread with each batch of hints (uint8 [B, h, w, 3]) once written; it must not keep them.
    """
    config = config if config is not None else estimator.config
    return encode_job(prepare_job(input_path, output_path, config, info), estimator, progress, trim=trim,
                      cancel_check=cancel_check, on_written=on_written)


def encode_job(job: EncodeJob, estimator: DensePoseEstimator, progress: Callable[[int], None] | None = None, *,
               trim: Trim | None = None, cancel_check: Callable[[], None] | None = None,
               on_written: Callable[[np.ndarray], None] | None = None) -> EncodeResult:
    """Run a prepared job with a loaded model (see ``encode_video``)."""
    started = time.perf_counter()
    warnings: list[str] = []
    start = WindowStart()
    frame_count = windowed_count(job.info.frame_count, job.config) if trim is None else None
    spec = RunSpec(estimator.with_config(job.config), job.config, job.plan, RunSpec.mode_for(job.config, job.plan),
                   want_preview=job.targets.preview is not None,
                   frame_count=frame_count if job.config.fps is None else None)
    pipeline = Pipeline(spec, lambda: video_frames(job.input_path, job.info, job.config, warnings, trim, start),
                        cancel_check=cancel_check)
    encoder = Encoder(pipeline.state, progress, on_written)
    model = estimator.model
    # the first frames go into the model while the fingerprint (the model file's hash) is made and the
    # outputs are opened: on a short video that wait is a good part of the run
    pipeline.start()
    try:
        # stored with every output, for resume: this run's settings and the loaded model's file
        fingerprint = make_fingerprint(job.input_path, job.config, model.path, half_applies(job.config.device,
                                       job.config.half), ran={"device": model.device.type,
                                                              "precision": dtype_name(model.precision.runs),
                                                              "engine": model.engine, "batch": model.model_batch})
        with open_sinks(job.targets, job.config, job.plan.out_hw, job.time_base, job.fps_hint, fingerprint) as sinks:
            encoder.run(pipeline.batches(), sinks)
    finally:
        pipeline.close()
    return EncodeResult(job.input_path, job.targets.hint, encoder.frames_written, time.perf_counter() - started,
                        {**pipeline.timings, "encode": encoder.seconds}, tuple(warnings),
                        pipeline.workers.plan.workers, model.engine, start.seconds)


def render_frames(estimator: DensePoseEstimator, frames_rgb: Iterable, config: EncodeConfig | None = None, *,
                  progress: Callable[[int], None] | None = None,
                  cancel_check: Callable[[], None] | None = None) -> Iterator[np.ndarray]:
    """Hints of frames already in memory, in order, through the same workers as a video.

    ``frames_rgb``: uint8 RGB frames [H, W, 3] (numpy arrays or CPU tensors, e.g. the rows of a
    [B, H, W, 3] batch), all of one size; read lazily, so memory stays bounded whatever their number.
    Yields one uint8 [h, w, 3] numpy hint per frame, in order. ``config`` (default the estimator's):
    colormap, resolution, framing, smoothing, batch size, workers; --fps and the file outputs need a
    video. ``progress(n)``: called as n more hints are ready. ``cancel_check()``: called between
    frames and while waiting for one; whatever it raises (e.g. ComfyUI's
    ``throw_exception_if_processing_interrupted``) stops the workers and propagates.
    """
    config = config if config is not None else estimator.config
    if config.fps is not None or config.frames_dir or config.preview_path or config.iuv_path:
        raise ConfigError("render_frames takes frames without timestamps and returns the hints: fps, frames_dir, "
                          "preview_path and iuv_path need a video file (encode_video)")
    frames = iter(frames_rgb)
    first = next(frames, None)
    if first is None:
        return
    first = _as_frame(first, 0)
    plan = frame_plan(first.shape[0], first.shape[1], config)

    def source() -> Iterator[SourceFrame]:
        yield first, (0,)
        for seq, frame in enumerate(frames, 1):
            frame = _as_frame(frame, seq)
            if frame.shape != first.shape:
                raise InputError(f"frame {seq} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is "
                                 f"{first.shape[1]}x{first.shape[0]}: all frames must have one size")
            yield frame, (seq,)

    spec = RunSpec(estimator.with_config(config), config, plan, RunSpec.mode_for(config, plan),
                   frame_count=_length(frames_rgb))
    pipeline = Pipeline(spec, source, cancel_check=cancel_check)
    with contextlib.closing(pipeline.batches()) as batches:
        for batch in batches:
            hints = batch.output().hints
            if progress:
                progress(len(hints))
            for hint in hints:
                if cancel_check:
                    cancel_check()
                yield hint.copy()  # a row of a batch (on CUDA, of a host buffer that is reused)


def _length(frames_rgb) -> int | None:
    try:
        return len(frames_rgb)
    except TypeError:  # an iterator
        return None


def _as_frame(frame, seq: int) -> np.ndarray:
    array = frame.numpy() if isinstance(frame, torch.Tensor) and frame.device.type == "cpu" else frame
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        what = f"{getattr(array, 'dtype', type(array).__name__)} {list(getattr(array, 'shape', []))}"
        raise InputError(f"frame {seq} is {what}; expected a uint8 RGB [H, W, 3] array or CPU tensor")
    return array
