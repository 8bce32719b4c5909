"""The engine: wiring only. A decode thread, the compute loop, an encode thread, bounded queues.

    decode thread:  PyAV -> FrameBatch -> [--fps: drop] -> [crop] -> resize+pad (OpenCV, exact)  ──► queue (bounded)
    compute (caller's thread): upload -> model per frame -> render kernel -> one copy to host ──► queue (bounded)
    encode thread:  hint batches -> [--fps: repeat] -> writer(s) (temporary files, renamed when complete)

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
Any stage's exception stops the others and is re-raised in the caller's thread; the writer then
removes its temporary file.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ._api import DensePoseEstimator
from ._config import EncodeConfig
from ._decode import VideoInfo, iter_frame_batches, probe_video
from ._encode import VideoWriter, check_output_dir, default_output_path, write_png
from ._errors import ConfigError, OutputError
from ._fingerprint import run_fingerprint
from ._fps import resample
from ._framing import FramePlan, plan_framing
from ..kernels.framing import frame_maps
from ..kernels.smooth import TemporalSmoother
from ._outputs import FramesDirWriter, IuvWriter
from ._preprocess import resize_and_pad
from ._types import FrameBatch

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


def _render_batch(estimator: DensePoseEstimator, prepared: "_Prepared", streams: list, timings: dict,
                  mode: str = "hint") -> tuple[torch.Tensor, ...]:
    """Model + render for every frame of a batch into device tensors, one per output kind.

    ``mode``: "hint" -> (uint8 [B, h, w, 3] RGB,) through the fused render; "labels" -> (uint8
    [B, h, w],); "iuv" -> (labels, U float32 [B, h, w], V float32 [B, h, w]).
    """
    device = estimator.device
    h, w = prepared.hint_hw
    b = len(prepared.padded_rgb)
    if mode == "hint":
        outputs = (torch.empty((b, h, w, 3), dtype=torch.uint8, device=device),)
        render = estimator.render
    elif mode == "labels":
        outputs = (torch.empty((b, h, w), dtype=torch.uint8, device=device),)

        def render(detections, hw):
            return (estimator.render_labels(detections, hw),)
    else:
        outputs = (torch.empty((b, h, w), dtype=torch.uint8, device=device),
                   torch.empty((b, h, w), dtype=torch.float32, device=device),
                   torch.empty((b, h, w), dtype=torch.float32, device=device))
        render = estimator.render_iuv

    def fill(j: int, detections) -> None:
        rendered = render(detections, prepared.hint_hw)
        if mode == "hint":
            outputs[0][j] = rendered
        else:
            for out, value in zip(outputs, rendered):
                out[j] = value

    if not streams:
        for j, padded in enumerate(prepared.padded_rgb):
            fill(j, estimator.detect(torch.from_numpy(padded)))
        return outputs
    current = torch.cuda.current_stream(device)
    events = []
    for stream in streams:
        stream.wait_stream(current)  # the outputs were allocated on the current stream
    for j, padded in enumerate(prepared.padded_rgb):
        stream = streams[j % len(streams)]
        with torch.cuda.stream(stream):
            image = torch.from_numpy(padded).pin_memory().to(device, non_blocking=True)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            detections = estimator.detect(image)
            end.record(stream)
            fill(j, detections)
            events.append((start, end))
    for stream in streams:
        current.wait_stream(stream)
    for out in outputs:
        out.record_stream(current)
    timings["_model_events"] = timings.get("_model_events", []) + events
    return outputs


@dataclass
class _Prepared:
    batch: FrameBatch
    padded_rgb: list[np.ndarray]
    hint_hw: tuple[int, int]
    # per frame: the output pts that show it (one per frame without --fps; 0.. with --fps)
    out_pts: list[tuple[int, ...]] = field(default_factory=list)
    previews: list[np.ndarray] | None = None  # per frame: the source framed like the hint (--preview)


class _Stop(Exception):
    """Raised inside a stage when another stage failed."""


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


class _StageThread(threading.Thread):
    """A daemon thread that records its exception and raises the shared stop flag on failure."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._stop_event = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except _Stop:
            pass
        except BaseException as error:  # re-raised in the caller's thread
            self.error = error
            self._stop_event.set()


def resolve_output_path(input_path: Path, output_path: Path | None, info: VideoInfo, lossless: bool, overwrite: bool) -> Path:
    """The output's final path, refused early when it would clobber the input or an existing file."""
    out = Path(output_path) if output_path is not None else default_output_path(input_path, lossless=lossless, image=info.is_image)
    if out.exists() and out.resolve() == input_path.resolve():
        raise OutputError(f"output {out} is the input file; choose another output path")
    if out.exists() and not overwrite:
        raise OutputError(f"output {out} already exists; pass --overwrite to replace it")
    check_output_dir(out.parent)
    return out


def check_outputs(input_path: Path, output_path: Path | None, info: VideoInfo, config) -> Path:
    """Refuse bad output paths (main output and --frames/--preview/--iuv) before any work; returns the main output."""
    from ._outputs import check_dir_target, check_file_target

    out = resolve_output_path(input_path, output_path, info, config.lossless, config.overwrite)
    extra = [p for p in (config.frames_dir, config.preview_path, config.iuv_path) if p is not None]
    if info.is_image and (extra or config.fps or config.smooth > 1):
        raise ConfigError("--fps, --smooth, --frames, --preview and --iuv need a video input, not an image")
    paths = [out] + extra
    for p in extra:
        if Path(p).exists() and Path(p).resolve() == input_path.resolve():
            raise OutputError(f"output {p} is the input file; choose another output path")
    if len({Path(p).resolve() for p in paths}) != len(paths):
        raise OutputError("the output, --frames, --preview and --iuv paths must all differ")
    if config.frames_dir is not None:
        check_dir_target(config.frames_dir, config.overwrite)
    if config.preview_path is not None:
        check_file_target(config.preview_path, config.overwrite, (".mp4", ".m4v", ".mov"), "preview output")
    if config.iuv_path is not None:
        check_file_target(config.iuv_path, config.overwrite, (".npz",), "IUV output")
    return out


def frame_plan(info: VideoInfo, config) -> FramePlan:
    """The framing of this input under this config (ConfigError for a crop box that does not fit)."""
    return plan_framing(info.height, info.width, size=config.size, fit=config.fit, crop_box=config.crop_box,
                        resolution=config.resolution)


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

    time_base = info.time_base
    for payload, out_pts in resample(frames(), time_base, config.fps, nominal):
        kept.append((payload, out_pts))
        if len(kept) >= config.batch_size:
            yield flush()
    if kept:
        yield flush()


def _encode_image(input_path: Path, out: Path, estimator: DensePoseEstimator, plan: FramePlan, config, progress,
                  started, fingerprint: str):
    batch = next(iter_frame_batches(input_path, batch_size=1))
    frame = plan.crop_frame(batch.frames_rgb[0].numpy())
    padded, hint_hw = resize_and_pad(frame, plan.resolution)  # this call's resolution, not the estimator's
    detections = estimator.detect(torch.from_numpy(padded))
    if plan.needs_label_stage:
        labels = frame_maps(estimator.render_labels(detections, hint_hw), plan.content_hw, plan.out_hw, 0)
        hint = estimator.colorize(labels)
    else:
        hint = estimator.render(detections, hint_hw)
    write_png(out, hint.cpu().numpy(), overwrite=config.overwrite, fingerprint=fingerprint)
    if progress:
        progress(1)
    return EncodeResult(input_path, out, 1, time.perf_counter() - started)


def encode_video(input_path: str | Path, output_path: str | Path | None, estimator: DensePoseEstimator,
                 progress: Callable[[int], None] | None = None, info: VideoInfo | None = None,
                 config: EncodeConfig | None = None) -> EncodeResult:
    """Render the hint video of ``input_path`` into ``output_path`` (default: beside the input).

    ``config``: this video's settings (outputs, framing, fps, smoothing, batch size ...), default
    the estimator's; a batch passes one per input (e.g. its own --frames directory) while sharing
    the estimator, whose model, device, precision, colormap and resolution always apply.

    With the issue-6 options of the config (framing, --fps, --smooth, --frames, --preview, --iuv)
    the compute stage renders uint8 label maps and applies the post-stages on the device (smoothing,
    then framing, then the colormap) before its one device-to-host copy; without them it renders
    the coloured hint directly (the fused path).
    """
    with _compute_threads(estimator.device):
        return _encode_video(input_path, output_path, estimator, progress, info, config)


# torch threads for the compute stage on the CPU. Measured (scripts/bench.py, dance clip, 2 cores):
# with 2 intra-op threads the model and render fight the decode thread and x264 for the cores
# (0.71x the I/O floor); with 1 the stages overlap instead (0.94x) and total CPU time drops a third.
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


def _encode_video(input_path, output_path, estimator: DensePoseEstimator, progress, info, config) -> EncodeResult:
    config = config if config is not None else estimator.config
    input_path = Path(input_path)
    info = info if info is not None else probe_video(input_path)
    out = check_outputs(input_path, Path(output_path) if output_path else None, info, config)
    plan = frame_plan(info, config)
    started = time.perf_counter()
    fingerprint = run_fingerprint(input_path, config, estimator)  # stored with every output, for resume

    if info.is_image:
        return _encode_image(input_path, out, estimator, plan, config, progress, started, fingerprint)

    stop = threading.Event()
    prepared_q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
    hints_q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
    frames_written = 0
    warnings: list[str] = []
    want_iuv = config.iuv_path is not None
    want_preview = config.preview_path is not None
    mode = "iuv" if want_iuv else ("labels" if (config.smooth > 1 or plan.needs_label_stage) else "hint")

    timings: dict = {"decode": 0.0, "compute": 0.0, "encode": 0.0}

    def decode_stage() -> None:
        try:
            batches = _kept_batches(iter_frame_batches(input_path, batch_size=config.batch_size,
                                                       warnings_out=warnings), info, config)
            while True:
                t0 = time.perf_counter()
                item = next(batches, None)
                if item is None:
                    break
                batch, out_pts = item
                sources = [plan.crop_frame(frame) for frame in batch.frames_rgb.numpy()]
                padded = [resize_and_pad(frame, plan.resolution)[0] for frame in sources]
                previews = [plan.preview_source(frame) for frame in sources] if want_preview else None
                timings["decode"] += time.perf_counter() - t0
                _put(prepared_q, _Prepared(batch, padded, plan.hint_hw, out_pts, previews), stop)
        finally:
            if not stop.is_set():
                _put(prepared_q, _END, stop)

    out_h, out_w = plan.out_hw
    if config.fps is not None:
        time_base, fps_hint = 1 / config.fps, config.fps
    else:
        time_base, fps_hint = info.time_base, info.fps
    writer = VideoWriter(out, width=out_w, height=out_h, time_base=time_base, fps_hint=fps_hint,
                         lossless=config.lossless, overwrite=config.overwrite, fingerprint=fingerprint)
    extra: list = []

    def encode_stage() -> None:
        nonlocal frames_written
        frames_writer, preview_writer, iuv_writer = extra
        while True:
            item = _get(hints_q, stop)
            if item is _END:
                return
            hints_rgb, iuv_host, out_pts, previews, copied = item
            t0 = time.perf_counter()
            if copied is not None:
                copied.synchronize()  # the asynchronous device-to-host copy has landed
            hints = hints_rgb.numpy()
            pts = [p for shown in out_pts for p in shown]
            if len(pts) != len(out_pts) or any(len(shown) != 1 for shown in out_pts):  # --fps repeats/drops
                index = [j for j, shown in enumerate(out_pts) for _ in shown]
                hints = hints[index]
            else:
                index = None
            if pts:
                writer.write(hints, pts)
                if frames_writer is not None:
                    frames_writer.write(hints)
                if preview_writer is not None:
                    sources = np.stack(previews) if index is None else np.stack([previews[j] for j in index])
                    preview_writer.write(np.concatenate([sources, hints], axis=2), pts)
                if iuv_writer is not None:
                    labels, u, v = (a if index is None else a[index] for a in iuv_host)
                    iuv_writer.write(labels, u, v, [float(p * time_base) for p in pts])
            timings["encode"] += time.perf_counter() - t0
            frames_written += len(pts)
            if progress:
                progress(len(out_pts))

    on_cuda = estimator.device.type == "cuda"
    streams = [torch.cuda.Stream(estimator.device) for _ in range(CUDA_STREAMS)] if on_cuda else []
    ring = _HostRing(pinned=on_cuda)
    smoother = TemporalSmoother(config.smooth) if config.smooth > 1 else None

    def emit_hints(hints: torch.Tensor, iuv_host, out_pts, previews) -> None:
        host = ring.take(tuple(hints.shape))
        host.copy_(hints, non_blocking=on_cuda)  # the one device-to-host copy per batch
        copied = None
        if on_cuda:
            copied = torch.cuda.Event()
            copied.record(torch.cuda.current_stream(estimator.device))
        _put(hints_q, (host, iuv_host, out_pts, previews, copied), stop)

    def emit_maps(maps: tuple[torch.Tensor, ...], metas: list) -> None:
        """Post-stages on the device: framing, colormap, then the copy to the host."""
        if not metas:
            return
        framed = [frame_maps(m, plan.content_hw, plan.out_hw, 0) for m in maps]
        hints = estimator.colorize(framed[0])
        iuv_host = None
        if want_iuv:
            iuv_host = (framed[0].cpu().numpy(), framed[1].to(torch.float16).cpu().numpy(),
                        framed[2].to(torch.float16).cpu().numpy())
        out_pts = [m[0] for m in metas]
        previews = [m[1] for m in metas] if want_preview else None
        emit_hints(hints, iuv_host, out_pts, previews)

    decoder = _StageThread("densevid-decode", decode_stage, stop)
    encoder = _StageThread("densevid-encode", encode_stage, stop)
    try:
        with contextlib.ExitStack() as outputs:
            outputs.enter_context(writer)
            extra.append(outputs.enter_context(FramesDirWriter(config.frames_dir, config.overwrite, fingerprint))
                         if config.frames_dir is not None else None)
            extra.append(outputs.enter_context(VideoWriter(config.preview_path, width=2 * out_w, height=out_h,
                                                           time_base=time_base, fps_hint=fps_hint, lossless=False,
                                                           overwrite=config.overwrite, fingerprint=fingerprint))
                         if want_preview else None)
            extra.append(outputs.enter_context(IuvWriter(config.iuv_path, out_h, out_w, config.overwrite, fingerprint))
                         if want_iuv else None)
            decoder.start()
            encoder.start()
            try:
                while True:
                    item = _get(prepared_q, stop)
                    if item is _END:
                        break
                    t0 = time.perf_counter()
                    rendered = _render_batch(estimator, item, streams, timings, mode)
                    previews = item.previews or [None] * len(item.out_pts)
                    if mode == "hint":
                        emit_hints(rendered[0], None, item.out_pts, item.previews)
                    elif smoother is not None:
                        labels, metas = smoother.push(rendered[0], list(zip(item.out_pts, previews)))
                        emit_maps((labels,), metas)
                    else:
                        emit_maps(rendered, list(zip(item.out_pts, previews)))
                    timings["compute"] += time.perf_counter() - t0
                if smoother is not None:
                    t0 = time.perf_counter()
                    labels, metas = smoother.flush()
                    if labels is not None:
                        emit_maps((labels,), metas)
                    timings["compute"] += time.perf_counter() - t0
                _put(hints_q, _END, stop)
                encoder.join()
            except _Stop:
                pass
            except BaseException:
                stop.set()
                raise
            finally:
                decoder.join()
                encoder.join() if not stop.is_set() else encoder.join(timeout=5)
            for stage in (decoder, encoder):
                if stage.error is not None:
                    raise stage.error
    finally:
        stop.set()
    events = timings.pop("_model_events", [])
    if events:
        torch.cuda.synchronize(estimator.device)
        timings["model_gpu"] = sum(start.elapsed_time(end) for start, end in events) / 1000.0
    return EncodeResult(input_path, out, frames_written, time.perf_counter() - started, timings, tuple(warnings))
