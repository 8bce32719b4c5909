"""The engine: wiring only. A decode thread, the compute loop, an encode thread, bounded queues.

    decode thread:  PyAV -> [--fps: drop] -> [crop] -> resize+pad (OpenCV, exact) ──► PreparedBatch (bounded queue)
    compute (caller's thread): upload -> model per frame -> render -> post-stages -> one copy to host ──► HintBatch
    encode thread:  HintBatch -> [--fps: repeat] -> OutputBatch -> sinks (temporary files, renamed when complete)

A job is settled before any work (``prepare_job``: its output paths checked and its framing planned,
once), then run (``encode_job``) with a loaded estimator and one config: every setting of the run
(colormap, resolution, framing, ...) comes from that config; the estimator contributes the loaded
model (model, device, precision). An image input is a one-frame video whose sink is a PNG.

Post-stages (only with --smooth, --iuv, or a --size framing that resamples or pads): the compute
stage renders uint8 label maps instead of coloured hints, then on the device: temporal smoothing
(stateful across batches, K//2 frames of lookahead), framing (nearest resize, centred pad with
label 0), the colormap LUT, and the one device-to-host copy. Without them the fused render_hint
path runs unchanged.

On CUDA the frames of a batch are issued round-robin on ``CUDA_STREAMS`` streams (the exports
take one image per call, so streams are how several model calls overlap), hints are rendered
into one device buffer per batch and copied to the host once, into pinned buffers from a small
ring that is reused (never more buffers than can be in flight). The CPU path is the same code
with no streams and plain buffers.

Memory does not grow with video length: at most ``QUEUE_DEPTH`` batches wait between stages.
Any stage's exception stops the others and is re-raised in the caller's thread; the sinks then
remove their temporary files.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ._api import DensePoseEstimator
from ._config import EncodeConfig
from ._decode import VideoInfo, iter_frame_batches, probe_video
from ._fps import resample
from ._framing import FramePlan, plan_framing
from ._preprocess import resize_and_pad
from ._sinks import OutputBatch, OutputTargets, check_targets, open_sinks
from ._threads import StageThread, Stopped, get, put
from ._types import FrameBatch
from ..kernels.framing import frame_maps
from ..kernels.smooth import TemporalSmoother

QUEUE_DEPTH = 2
CUDA_STREAMS = 4
# host buffers in flight: QUEUE_DEPTH queued + 1 being encoded + 1 being filled
_HOST_RING = QUEUE_DEPTH + 2
_END = object()


@dataclass(frozen=True)
class EncodeResult:
    input_path: Path
    output_path: Path
    frames: int
    seconds: float
    # busy seconds per stage: decode (incl. resize+pad), compute (upload, model, render, copy), encode;
    # on CUDA also model_gpu (device time of the model calls, from CUDA events)
    stage_seconds: dict = field(default_factory=dict)
    # one-line notes about the input that did not stop the encode (e.g. a truncated MKV/TS)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class EncodeJob:
    """One input, settled before any work: its probe, config, framing and checked output paths."""

    input_path: Path
    info: VideoInfo
    config: EncodeConfig
    plan: FramePlan
    targets: OutputTargets

    @property
    def render_mode(self) -> str:
        """"hint": the fused render of coloured hints; "labels": label maps for the post-stages;
        "iuv": labels with U and V."""
        if self.targets.iuv is not None:
            return "iuv"
        return "labels" if (self.config.smooth > 1 or self.plan.needs_label_stage) else "hint"

    @property
    def time_base(self) -> Fraction:
        """Of the output's timestamps: 1/F with --fps, else the input's."""
        return 1 / self.config.fps if self.config.fps is not None else self.info.time_base

    @property
    def fps_hint(self) -> Fraction | None:
        return self.config.fps if self.config.fps is not None else self.info.fps


def frame_plan(info: VideoInfo, config) -> FramePlan:
    """The framing of this input under this config (ConfigError for a crop box that does not fit)."""
    return plan_framing(info.height, info.width, size=config.size, fit=config.fit, crop_box=config.crop_box,
                        resolution=config.resolution)


def prepare_job(input_path: str | Path, output_path: str | Path | None, config: EncodeConfig,
                info: VideoInfo | None = None) -> EncodeJob:
    """Probe the input (unless ``info`` is given), check every output path and plan the framing:
    the cheap refusals, before any model is loaded or frame decoded."""
    input_path = Path(input_path)
    info = info if info is not None else probe_video(input_path)
    targets = check_targets(input_path, Path(output_path) if output_path else None, info, config)
    return EncodeJob(input_path, info, config, frame_plan(info, config), targets)


def encode_video(input_path: str | Path, output_path: str | Path | None, estimator: DensePoseEstimator,
                 progress: Callable[[int], None] | None = None, info: VideoInfo | None = None,
                 config: EncodeConfig | None = None) -> EncodeResult:
    """Render the hint video of ``input_path`` into ``output_path`` (default: beside the input).

    ``config``: the settings of this call (colormap, resolution, outputs, framing, fps, smoothing,
    batch size ...), default the estimator's. The estimator contributes only its loaded model
    (model, device, precision), so a batch shares one estimator across inputs with their own
    configs. ``progress(n)`` is called after every n frames written.
    """
    config = config if config is not None else estimator.config
    return encode_job(prepare_job(input_path, output_path, config, info), estimator, progress)


def encode_job(job: EncodeJob, estimator: DensePoseEstimator, progress: Callable[[int], None] | None = None
               ) -> EncodeResult:
    """Run a prepared job with a loaded model (see ``encode_video``)."""
    with _compute_threads(estimator.device):
        return _VideoRun(job, estimator.with_config(job.config), progress).run()


# torch threads for the compute stage on the CPU. Measured (scripts/bench.py, dance clip, 2 cores):
# with 2 intra-op threads the model and render fight the decode thread and x264 for the cores,
# with 1 the stages overlap instead and total CPU time drops a third.
CPU_COMPUTE_THREADS = 1


@contextlib.contextmanager
def _compute_threads(device: torch.device):
    """Run torch single-threaded on the CPU for one encode, then restore the caller's setting."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(min(CPU_COMPUTE_THREADS, previous))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --- what travels between the stages ---------------------------------------------------------------


@dataclass
class PreparedBatch:
    """Decode -> compute: frames resized and padded for the model."""

    padded_rgb: list[np.ndarray]
    # per frame: the output pts that show it (one per frame without --fps; none, one or more with --fps)
    out_pts: list[tuple[int, ...]]
    previews: list[np.ndarray] | None = None  # per frame: the source framed like the hint (--preview)


@dataclass
class HintBatch:
    """Compute -> encode: a batch's hints (and IUV) on the host, one row per distinct frame."""

    hints: torch.Tensor  # uint8 [B, h, w, 3], a host buffer of the ring
    out_pts: list[tuple[int, ...]]
    previews: list[np.ndarray] | None = None
    iuv: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # I uint8, U, V float16 [B, h, w]
    copied: "torch.cuda.Event | None" = None  # CUDA: set when the asynchronous copy to the host has landed

    def output(self) -> OutputBatch:
        """The frames in output order: --fps repeats a frame (or shows it zero times)."""
        if self.copied is not None:
            self.copied.synchronize()
        hints = self.hints.numpy()
        pts = tuple(p for shown in self.out_pts for p in shown)
        if all(len(shown) == 1 for shown in self.out_pts):
            return OutputBatch(hints, pts, np.stack(self.previews) if self.previews else None, self.iuv)
        index = [j for j, shown in enumerate(self.out_pts) for _ in shown]
        previews = np.stack([self.previews[j] for j in index]) if self.previews and index else None
        iuv = tuple(a[index] for a in self.iuv) if self.iuv is not None else None
        return OutputBatch(hints[index], pts, previews, iuv)


class _HostRing:
    """Reusable host buffers for hint batches (pinned on CUDA, for asynchronous copies)."""

    def __init__(self, pinned: bool) -> None:
        self._pinned = pinned
        self._buffers: list[torch.Tensor] = []
        self._next = 0

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        if len(self._buffers) < _HOST_RING:
            buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=self._pinned)
            self._buffers.append(buffer)
        else:
            buffer = self._buffers[self._next % _HOST_RING]
            if tuple(buffer.shape[1:]) != tuple(shape[1:]) or buffer.shape[0] < shape[0]:
                buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=self._pinned)
                self._buffers[self._next % _HOST_RING] = buffer
        self._next += 1
        return buffer[: shape[0]]


def _kept_batches(batches, info: VideoInfo, config) -> "Iterator[tuple[FrameBatch, list[tuple[int, ...]]]]":
    """Decoded batches -> (batch of the frames that are shown, their output pts); --fps drops/repeats here."""
    if config.fps is None:
        for batch in batches:
            yield batch, [(p,) for p in batch.pts]
        return

    def frames():
        for batch in batches:
            for j in range(len(batch)):
                yield batch.pts[j], (batch.frames_rgb[j], batch.pts[j], batch.time_base, batch.start_index + j)

    nominal = 1 / info.fps if info.fps else None
    kept: list = []

    def flush():
        frames_rgb = torch.stack([k[0][0] for k in kept])
        batch = FrameBatch(frames_rgb, tuple(k[0][1] for k in kept), kept[0][0][2], kept[0][0][3])
        out = (batch, [k[1] for k in kept])
        kept.clear()
        return out

    for payload, out_pts in resample(frames(), info.time_base, config.fps, nominal):
        kept.append((payload, out_pts))
        if len(kept) >= config.batch_size:
            yield flush()
    if kept:
        yield flush()


# --- one run ---------------------------------------------------------------------------------------


class _VideoRun:
    """The stages of one job and what they share: the queues, the stop flag, the stage timings."""

    def __init__(self, job: EncodeJob, estimator: DensePoseEstimator, progress) -> None:
        self.job = job
        self.estimator = estimator
        self.progress = progress
        self.stop = threading.Event()
        self.prepared_q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.hints_q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.timings: dict = {"decode": 0.0, "compute": 0.0, "encode": 0.0}
        self.warnings: list[str] = []
        self.frames_written = 0
        self.on_cuda = estimator.device.type == "cuda"
        self.streams = [torch.cuda.Stream(estimator.device) for _ in range(CUDA_STREAMS)] if self.on_cuda else []
        self.ring = _HostRing(pinned=self.on_cuda)
        self.model_events: list = []

    def run(self) -> EncodeResult:
        job = self.job
        started = time.perf_counter()
        try:
            with open_sinks(job.targets, job.config, job.plan.out_hw, job.time_base, job.fps_hint) as self.sinks:
                self._run_stages()
        finally:
            self.stop.set()
        if self.model_events:
            torch.cuda.synchronize(self.estimator.device)
            self.timings["model_gpu"] = sum(start.elapsed_time(end) for start, end in self.model_events) / 1000.0
        return EncodeResult(job.input_path, job.targets.hint, self.frames_written, time.perf_counter() - started,
                            self.timings, tuple(self.warnings))

    def _run_stages(self) -> None:
        decoder = StageThread("densevid-decode", self.decode_stage, self.stop)
        encoder = StageThread("densevid-encode", self.encode_stage, self.stop)
        decoder.start()
        encoder.start()
        try:
            self.compute_stage()
            put(self.hints_q, _END, self.stop)
            encoder.join()
        except Stopped:
            pass
        except BaseException:
            self.stop.set()
            raise
        finally:
            decoder.join()
            encoder.join() if not self.stop.is_set() else encoder.join(timeout=5)
        for stage in (decoder, encoder):
            if stage.error is not None:
                raise stage.error

    # decode thread: frames -> PreparedBatch
    def decode_stage(self) -> None:
        job, plan = self.job, self.job.plan
        want_preview = job.targets.preview is not None
        try:
            batches = _kept_batches(iter_frame_batches(job.input_path, batch_size=job.config.batch_size,
                                                       warnings_out=self.warnings), job.info, job.config)
            while True:
                t0 = time.perf_counter()
                item = next(batches, None)
                if item is None:
                    break
                batch, out_pts = item
                sources = [plan.crop_frame(frame) for frame in batch.frames_rgb.numpy()]
                padded = [resize_and_pad(frame, plan.resolution)[0] for frame in sources]
                previews = [plan.preview_source(frame) for frame in sources] if want_preview else None
                self.timings["decode"] += time.perf_counter() - t0
                put(self.prepared_q, PreparedBatch(padded, out_pts, previews), self.stop)
        finally:
            if not self.stop.is_set():
                put(self.prepared_q, _END, self.stop)

    # the caller's thread: PreparedBatch -> model -> render -> post-stages -> HintBatch
    def compute_stage(self) -> None:
        mode = self.job.render_mode
        smoother = TemporalSmoother(self.job.config.smooth) if self.job.config.smooth > 1 else None
        while True:
            item = get(self.prepared_q, self.stop)
            if item is _END:
                break
            t0 = time.perf_counter()
            rendered = self._render_batch(item, mode)
            previews = item.previews or [None] * len(item.out_pts)
            if mode == "hint":
                self._emit_hints(rendered[0], item.out_pts, item.previews)
            elif smoother is not None:
                labels, metas = smoother.push(rendered[0], list(zip(item.out_pts, previews)))
                self._emit_maps((labels,), metas)
            else:
                self._emit_maps(rendered, list(zip(item.out_pts, previews)))
            self.timings["compute"] += time.perf_counter() - t0
        if smoother is not None:
            t0 = time.perf_counter()
            labels, metas = smoother.flush()
            if labels is not None:
                self._emit_maps((labels,), metas)
            self.timings["compute"] += time.perf_counter() - t0

    def _render_batch(self, prepared: PreparedBatch, mode: str) -> tuple[torch.Tensor, ...]:
        """Model + render for every frame of a batch into device tensors, one per output kind.

        ``mode``: "hint" -> (uint8 [B, h, w, 3] RGB,) through the fused render; "labels" -> (uint8
        [B, h, w],); "iuv" -> (labels, U float32 [B, h, w], V float32 [B, h, w]).
        """
        estimator, device = self.estimator, self.estimator.device
        h, w = hint_hw = self.job.plan.hint_hw
        b = len(prepared.padded_rgb)
        if mode == "hint":
            outputs = (torch.empty((b, h, w, 3), dtype=torch.uint8, device=device),)
        elif mode == "labels":
            outputs = (torch.empty((b, h, w), dtype=torch.uint8, device=device),)
        else:
            outputs = (torch.empty((b, h, w), dtype=torch.uint8, device=device),
                       torch.empty((b, h, w), dtype=torch.float32, device=device),
                       torch.empty((b, h, w), dtype=torch.float32, device=device))

        def fill(j: int, detections) -> None:
            if mode == "hint":
                outputs[0][j] = estimator.render(detections, hint_hw)
            elif mode == "labels":
                outputs[0][j] = estimator.render_labels(detections, hint_hw)
            else:
                for out, value in zip(outputs, estimator.render_iuv(detections, hint_hw)):
                    out[j] = value

        if not self.streams:
            for j, padded in enumerate(prepared.padded_rgb):
                fill(j, estimator.detect(torch.from_numpy(padded)))
            return outputs
        current = torch.cuda.current_stream(device)
        for stream in self.streams:
            stream.wait_stream(current)  # the outputs were allocated on the current stream
        for j, padded in enumerate(prepared.padded_rgb):
            stream = self.streams[j % len(self.streams)]
            with torch.cuda.stream(stream):
                image = torch.from_numpy(padded).pin_memory().to(device, non_blocking=True)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record(stream)
                detections = estimator.detect(image)
                end.record(stream)
                fill(j, detections)
                self.model_events.append((start, end))
        for stream in self.streams:
            current.wait_stream(stream)
        for out in outputs:
            out.record_stream(current)
        return outputs

    def _emit_maps(self, maps: tuple[torch.Tensor, ...], metas: list) -> None:
        """Post-stages on the device: framing, colormap, then the copy to the host."""
        if not metas:
            return
        plan = self.job.plan
        framed = [frame_maps(m, plan.content_hw, plan.out_hw, 0) for m in maps]
        iuv = None
        if self.job.render_mode == "iuv":
            iuv = (framed[0].cpu().numpy(), framed[1].to(torch.float16).cpu().numpy(),
                   framed[2].to(torch.float16).cpu().numpy())
        previews = [m[1] for m in metas] if self.job.targets.preview is not None else None
        self._emit_hints(self.estimator.colorize(framed[0]), [m[0] for m in metas], previews, iuv)

    def _emit_hints(self, hints: torch.Tensor, out_pts, previews, iuv=None) -> None:
        host = self.ring.take(tuple(hints.shape))
        host.copy_(hints, non_blocking=self.on_cuda)  # the one device-to-host copy per batch
        copied = None
        if self.on_cuda:
            copied = torch.cuda.Event()
            copied.record(torch.cuda.current_stream(self.estimator.device))
        put(self.hints_q, HintBatch(host, out_pts, previews, iuv, copied), self.stop)

    # encode thread: HintBatch -> sinks
    def encode_stage(self) -> None:
        while True:
            item = get(self.hints_q, self.stop)
            if item is _END:
                return
            t0 = time.perf_counter()
            batch = item.output()
            if batch.pts:
                self.sinks.write(batch)
            self.timings["encode"] += time.perf_counter() - t0
            self.frames_written += len(batch.pts)
            if self.progress:
                self.progress(len(item.out_pts))
