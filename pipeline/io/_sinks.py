"""A job's outputs as sinks: their paths, checked once, and the one factory that opens them.

A job writes the hint video (a PNG for an image input) and, when asked, the numbered PNG frames
(--frames), the side-by-side preview (--preview) and the IUV arrays (--iuv). ``check_targets``
settles and checks every path once, before any work. ``open_sinks`` is the one place the writers
are built; the result is fed every ``OutputBatch`` in order by the engine's encode thread, then
closed (each output renamed into place, the hint last) or aborted (temporary files removed).

A new output kind: its writer (``_video``, ``_png`` or ``_training``), a sink class here (what it takes from a
batch), its path in ``OutputTargets`` and ``check_targets``, and one branch in ``open_sinks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..core import ConfigError, OutputError
from ._atomic import AtomicOutput, check_dir_target, check_file_target, check_output_dir, exists_message, same_file
from ._decode import VideoInfo
from ._naming import default_output_path
from ._png import write_png
from ._training import IUV_SUFFIXES, FramesDirWriter, IuvWriter
from ._video import VideoWriter

PREVIEW_SUFFIXES = (".mp4", ".m4v", ".mov")


@dataclass(frozen=True)
class OutputTargets:
    """Where a job's outputs go, checked by ``check_targets``."""

    hint: Path  # the hint video, or the PNG of an image input
    image: bool
    frames_dir: Path | None = None
    preview: Path | None = None
    iuv: Path | None = None

    @property
    def extras(self) -> list[Path]:
        return [p for p in (self.frames_dir, self.preview, self.iuv) if p is not None]


def check_targets(input_path: Path, output_path: Path | None, info: VideoInfo, config) -> OutputTargets:
    """Every output path of a job, refused before any work when it would clobber the input or an
    existing file (without ``overwrite``), has the wrong suffix, or goes into an unusable directory."""
    input_path = Path(input_path)
    hint = Path(output_path) if output_path is not None else \
        default_output_path(input_path, lossless=config.lossless, image=info.is_image)
    if same_file(hint, input_path):
        raise OutputError(f"output {hint} is the input file; choose another output path")
    if hint.exists() and not config.overwrite:
        raise OutputError(exists_message(hint))
    check_output_dir(hint.parent)
    targets = OutputTargets(hint, info.is_image, config.frames_dir, config.preview_path, config.iuv_path)
    if info.is_image and (targets.extras or config.fps or config.smooth > 1):
        raise ConfigError("--fps, --smooth, --frames, --preview and --iuv need a video input, not an image")
    for path in targets.extras:
        if same_file(path, input_path):
            raise OutputError(f"output {path} is the input file; choose another output path")
    paths = [hint] + targets.extras
    if len({p.resolve() for p in paths}) != len(paths):
        raise OutputError("the output, --frames, --preview and --iuv paths must all differ")
    if targets.frames_dir is not None:
        check_dir_target(targets.frames_dir, config.overwrite)
    if targets.preview is not None:
        check_file_target(targets.preview, config.overwrite, PREVIEW_SUFFIXES, "preview output")
    if targets.iuv is not None:
        check_file_target(targets.iuv, config.overwrite, IUV_SUFFIXES, "IUV output")
    return targets


@dataclass(frozen=True)
class OutputBatch:
    """Consecutive output frames, as the sinks take them (--fps repeats already expanded)."""

    hints: np.ndarray  # uint8 [B, h, w, 3]
    pts: tuple[int, ...]  # in the sinks' time base
    previews: np.ndarray | None = None  # uint8 [B, h, w, 3]: the source framed like the hint (--preview)
    iuv: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # I uint8, U, V float16 [B, h, w] (--iuv)


class _Sink:
    """One open output: ``write`` batches in order, then ``close`` (commit) or ``abort``."""

    def __init__(self, writer) -> None:
        self.writer = writer

    def write(self, batch: OutputBatch) -> None:  # pragma: no cover - every sink defines it
        raise NotImplementedError

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


class _HintVideo(_Sink):
    def write(self, batch: OutputBatch) -> None:
        self.writer.write(batch.hints, batch.pts)


class _HintPng(_Sink):
    """An image input's hint: kept until ``close``, then written atomically (``write_png``)."""

    def __init__(self, path: Path, overwrite: bool, fingerprint: str | None = None) -> None:
        super().__init__(None)
        self.path, self.overwrite, self.fingerprint = path, overwrite, fingerprint
        self._image: np.ndarray | None = None

    def write(self, batch: OutputBatch) -> None:
        if len(batch.hints):
            self._image = batch.hints[-1].copy()

    def close(self) -> None:
        if self._image is None:
            raise OutputError(f"cannot write {self.path}: no frame was decoded")
        write_png(self.path, self._image, overwrite=self.overwrite, fingerprint=self.fingerprint)

    def abort(self) -> None:
        self._image = None


class _Frames(_Sink):
    def write(self, batch: OutputBatch) -> None:
        self.writer.write(batch.hints)


class _Preview(_Sink):
    def write(self, batch: OutputBatch) -> None:
        self.writer.write(np.concatenate([batch.previews, batch.hints], axis=2), batch.pts)


class _Iuv(_Sink):
    def __init__(self, writer: IuvWriter, time_base: Fraction) -> None:
        super().__init__(writer)
        self.time_base = time_base

    def write(self, batch: OutputBatch) -> None:
        labels, u, v = batch.iuv
        self.writer.write(labels, u, v, [float(p * self.time_base) for p in batch.pts])


class Sinks(AtomicOutput):
    """A job's open outputs. As a context manager: success closes them all (the hint last, so
    that it only appears when the extras are in place), an exception aborts them all."""

    def __init__(self, sinks: list[_Sink]) -> None:
        self._sinks = sinks

    def write(self, batch: OutputBatch) -> None:
        for sink in self._sinks:
            sink.write(batch)

    def close(self) -> None:
        pending = list(reversed(self._sinks))
        while pending:
            sink = pending.pop(0)
            try:
                sink.close()
            except BaseException:
                for rest in pending:
                    rest.abort()
                raise

    def abort(self) -> None:
        for sink in self._sinks:
            sink.abort()


def open_sinks(targets: OutputTargets, config, out_hw: tuple[int, int], time_base: Fraction,
               fps_hint: Fraction | None, fingerprint: str | None = None) -> Sinks:
    """Open every output of a job (temporary files beside the targets): the one place writers are built.

    ``out_hw``: the hint's size; ``time_base``: of the pts the sinks get; ``fps_hint``: the nominal rate;
    ``fingerprint``: what made the outputs, stored in each (see ``_fingerprint``).
    """
    height, width = out_hw
    opened: list[_Sink] = []
    try:
        if targets.image:
            opened.append(_HintPng(targets.hint, config.overwrite, fingerprint))
        else:
            opened.append(_HintVideo(VideoWriter(targets.hint, width=width, height=height, time_base=time_base,
                                                 fps_hint=fps_hint, lossless=config.lossless,
                                                 overwrite=config.overwrite, fingerprint=fingerprint)))
        if targets.frames_dir is not None:
            opened.append(_Frames(FramesDirWriter(targets.frames_dir, config.overwrite, fingerprint)))
        if targets.preview is not None:
            opened.append(_Preview(VideoWriter(targets.preview, width=2 * width, height=height, time_base=time_base,
                                               fps_hint=fps_hint, lossless=False, overwrite=config.overwrite,
                                               fingerprint=fingerprint)))
        if targets.iuv is not None:
            opened.append(_Iuv(IuvWriter(targets.iuv, height, width, config.overwrite, fingerprint), time_base))
    except BaseException:
        for sink in opened:
            sink.abort()
        raise
    return Sinks(opened)
