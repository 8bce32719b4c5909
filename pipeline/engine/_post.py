"""Post-stages, in the caller's thread: frames in order -> batches -> [smoothing, framing, colormap] ->
the one copy to the host -> ``HintBatch``.

Only with --smooth, --iuv, or a --size framing that resamples or pads do the workers render label maps
(``RenderMode.LABELS`` / ``IUV``) instead of coloured hints; then, per batch on the device: temporal
smoothing (stateful across batches, K//2 frames of lookahead), framing (nearest resize, centred pad with
label 0), the colormap LUT. The copy to the host goes, on CUDA, into pinned buffers from a small ring that
is reused (never more buffers than can be in flight: ``HOST_RING``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch

from ...kernels.framing import frame_maps
from ...kernels.smooth import TemporalSmoother
from ..io import OutputBatch
from ._framing import FramePlan
from ._workers import RenderedFrame, RenderMode

QUEUE_DEPTH = 2  # batches waiting for the encoder
HOST_RING = QUEUE_DEPTH + 2  # host buffers in flight: QUEUE_DEPTH queued + 1 being encoded + 1 being filled


@dataclass
class HintBatch:
    """A batch's hints (and IUV) on the host, one row per distinct frame, in order."""

    hints: torch.Tensor  # uint8 [B, h, w, 3] on the host (CUDA: a buffer of the ring)
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


class HostRing:
    """Reusable pinned host buffers for hint batches (CUDA: the target of asynchronous copies)."""

    def __init__(self, size: int = HOST_RING) -> None:
        self.size = size
        self._buffers: list[torch.Tensor] = []
        self._next = 0

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        if len(self._buffers) < self.size:
            buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            self._buffers.append(buffer)
        else:
            buffer = self._buffers[self._next % self.size]
            if tuple(buffer.shape[1:]) != tuple(shape[1:]) or buffer.shape[0] < shape[0]:
                buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
                self._buffers[self._next % self.size] = buffer
        self._next += 1
        return buffer[: shape[0]]


class PostStages:
    """Ordered ``RenderedFrame``s -> ``HintBatch``es of ``batch_size`` frames (the last one shorter).

    ``estimator`` colours labels (its LUT) and names the device; ``smooth`` is the --smooth window (1: off).
    ``seconds`` is the busy time (ordering excluded).
    """

    def __init__(self, estimator, plan: FramePlan, mode: RenderMode, batch_size: int, smooth: int,
                 want_preview: bool) -> None:
        self.estimator, self.plan, self.mode = estimator, plan, mode
        self.batch_size, self.want_preview = batch_size, want_preview
        self.smoother = TemporalSmoother(smooth) if smooth > 1 else None
        self.on_cuda = estimator.device.type == "cuda"
        self.ring = HostRing() if self.on_cuda else None
        self.seconds = 0.0

    def batches(self, frames: Iterable[RenderedFrame]) -> Iterator[HintBatch]:
        group: list[RenderedFrame] = []
        frames = iter(frames)
        while True:
            frame = next(frames, None)
            if frame is not None:
                group.append(frame)
                if len(group) < self.batch_size:
                    continue
            if group:
                t0 = time.perf_counter()
                batch = self._post(group)
                self.seconds += time.perf_counter() - t0
                group = []
                if batch is not None:
                    yield batch
            if frame is None:
                break
        if self.smoother is not None:
            t0 = time.perf_counter()
            labels, metas = self.smoother.flush()
            batch = self._emit_maps((labels,), metas) if labels is not None else None
            self.seconds += time.perf_counter() - t0
            if batch is not None:
                yield batch

    def _post(self, group: list[RenderedFrame]) -> HintBatch | None:
        if self.on_cuda:
            current = torch.cuda.current_stream(self.estimator.device)
            for frame in group:
                current.wait_event(frame.ready)  # the worker's stream has rendered it
                for t in frame.maps:
                    t.record_stream(current)  # made on the worker's stream, used (and freed) on this one
        maps = tuple(torch.stack(parts) for parts in zip(*(frame.maps for frame in group)))
        metas = [(frame.out_pts, frame.preview) for frame in group]
        if self.mode is RenderMode.HINT:
            return self._emit(maps[0], metas)
        if self.smoother is not None:
            labels, metas = self.smoother.push(maps[0], metas)
            return self._emit_maps((labels,), metas)
        return self._emit_maps(maps, metas)

    def _emit_maps(self, maps: tuple[torch.Tensor, ...], metas: list) -> HintBatch | None:
        """Post-stages on the device: framing, colormap, then the copy to the host."""
        if not metas:
            return None
        plan = self.plan
        framed = [frame_maps(m, plan.content_hw, plan.out_hw, 0) for m in maps]
        iuv = None
        if self.mode is RenderMode.IUV:
            iuv = (framed[0].cpu().numpy(), framed[1].to(torch.float16).cpu().numpy(),
                   framed[2].to(torch.float16).cpu().numpy())
        return self._emit(self.estimator.colorize(framed[0]), metas, iuv)

    def _emit(self, hints: torch.Tensor, metas: list, iuv=None) -> HintBatch:
        host, copied = hints, None  # on the CPU the batch is already a fresh host tensor
        if self.on_cuda:
            host = self.ring.take(tuple(hints.shape))
            host.copy_(hints, non_blocking=True)  # the one device-to-host copy per batch
            copied = torch.cuda.Event()
            copied.record(torch.cuda.current_stream(self.estimator.device))
        previews = [preview for _, preview in metas] if self.want_preview else None
        return HintBatch(host, [out_pts for out_pts, _ in metas], previews, iuv, copied)
