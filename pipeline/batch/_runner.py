"""Run a list of jobs with one model per process: resume, per-input isolation, the summary and the report.

Resume (``_resume``): an input whose outputs all exist, made from it with these settings and model, is
"skipped" without decoding anything (``--overwrite`` redoes it); a stale one fails that input. The
suffix of the input decides whether the output is a video or a PNG for that check; the probe
corrects it for a file whose suffix lies.

Isolation: every problem that belongs to one input (unreadable, corrupt, unwritable output, even an
unexpected exception) is recorded as that input's one-line failure and the batch goes on. Only what
makes every input fail stops the batch: the model cannot be found or loaded (``BatchReport.fatal``);
``run_batch`` then raises ``BatchStopped`` (a ``ModelError`` carrying the report).
Ctrl-C / SIGTERM (KeyboardInterrupt) stops it too: the encode in flight removes its temporary file,
and the report lists what finished; unfinished inputs are "pending".

The model is loaded lazily, once per process, by the first input that needs it: a batch whose
inputs are all skipped (or all fail before encoding) never loads it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Sequence

from ..config import EncodeConfig
from ..core import DensevidError, ModelError, OutputError, one_line, os_reason
from ..io import same_file
from ._inputs import Job
from ._report import BatchReport, InputResult
from ._resume import BatchAbort, resume_check, skip_check

# progress_factory(job, frame_count or None) -> per-frame callback (or None)
ProgressFactory = Callable[[Job, "int | None"], "Callable[[int], None] | None"]


class BatchStopped(ModelError):
    """The batch stopped because no input could succeed: the model (or its device) cannot be found or
    loaded, or no Ray worker can start. ``str()`` is the one-line reason; ``report`` is the batch's
    report (``fatal`` set, inputs not reached "pending"), so a caller can still write it."""

    def __init__(self, report: BatchReport) -> None:
        super().__init__(report.fatal)
        self.report = report


class EstimatorCache:
    """Builds the DensePoseEstimator on first use and keeps it: one model load per process."""

    def __init__(self, config: EncodeConfig) -> None:
        self.config = config
        self._estimator = None
        self.loads = 0

    def __call__(self):
        if self._estimator is None:
            from ..engine import DensePoseEstimator

            try:
                self._estimator = DensePoseEstimator.from_config(self.config)
            except DensevidError as error:
                raise BatchAbort(one_line(error)) from error  # whole (no limit): it names the fix
            self.loads += 1
        return self._estimator


def pending_result(job: Job, config: EncodeConfig) -> InputResult:
    return InputResult(str(job.input_path), str(job.output_path(config.lossless)), "pending")


def job_config(job: Job, config: EncodeConfig) -> EncodeConfig:
    """The config of one input: its own --frames/--preview/--iuv paths (planned in ``_inputs``)."""
    return replace(config, frames_dir=job.frames_dir, preview_path=job.preview_path, iuv_path=job.iuv_path)


def run_job(job: Job, config: EncodeConfig, estimator: Callable[[], object],
            progress_factory: ProgressFactory | None = None) -> InputResult:
    """Encode one input; every failure that belongs to it becomes its InputResult.

    Raises BatchAbort (the model cannot be loaded) and KeyboardInterrupt; nothing else.
    """
    from ..engine import encode_job, prepare_job
    from ..io import probe_video

    config = job_config(job, config)
    early = skip_check(job, config)
    if early is not None:
        return early
    started = time.perf_counter()
    out = job.output_path(config.lossless)
    try:
        info = probe_video(job.input_path)
        if info.is_image != job.looks_like_image:  # a suffix that lies: the probe decides
            out = job.output_path(config.lossless, image=info.is_image)
            if not same_file(out, job.input_path):
                settled = resume_check(job, out, config)
                if settled is not None:
                    return settled
        mirrored = [out] if job.output_dir is not None else []
        if job.extras_mirrored:
            mirrored += job.extra_outputs()
        for path in mirrored:  # mirrored sub-directories are created on demand
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputError(f"cannot create the output directory {path.parent}: {os_reason(err)}") from None
        # every output path checked and the framing planned (a crop box that does not fit fails here),
        # once, before the model load
        encode = prepare_job(job.input_path, out, config, info)
        out = encode.targets.hint
        model = estimator()  # loaded here, after the cheap refusals, once per process
        total = info.frame_count if config.fps is None else None  # --fps changes the count
        progress = progress_factory(job, total) if progress_factory else None
        result = encode_job(encode, model, progress)
    except DensevidError as error:
        return InputResult(str(job.input_path), str(out), "failed", seconds=time.perf_counter() - started,
                           error=one_line(error))
    except (BatchAbort, KeyboardInterrupt):
        raise
    except Exception as error:  # a bug, but it belongs to this input: the batch goes on
        return InputResult(str(job.input_path), str(out), "failed", seconds=time.perf_counter() - started,
                           error=one_line(f"unexpected {type(error).__name__}: {error}", 300))
    notes = [f"{job.input_path.name} has audio; the hint video has none (densevid writes video only)"] \
        if info.has_audio else []
    return InputResult(str(job.input_path), str(result.output_path), "done", frames=result.frames,
                       seconds=time.perf_counter() - started, warnings=list(result.warnings), notes=notes)


def run_batch(jobs: Sequence[Job], config: EncodeConfig, *, progress_factory: ProgressFactory | None = None,
              on_result: Callable[[Job, InputResult], None] | None = None,
              estimator: Callable[[], object] | None = None) -> BatchReport:
    """Run ``jobs`` in order in this process with one estimator; never raises for one input's sake.

    Raises BatchStopped (a ModelError, with the report) when the model cannot be found or loaded:
    then no input can succeed. An interruption (Ctrl-C, SIGTERM) returns the report with
    ``interrupted`` set."""
    started = time.perf_counter()
    estimator = estimator or EstimatorCache(config)
    results: list[InputResult | None] = [None] * len(jobs)
    report = BatchReport([])
    stopped_by: BaseException | None = None
    try:
        for i, job in enumerate(jobs):
            try:
                results[i] = run_job(job, config, estimator, progress_factory)
            except BatchAbort as abort:
                report.fatal, stopped_by = abort.reason, abort.__cause__
                break
            if on_result:
                on_result(job, results[i])
    except KeyboardInterrupt:
        report.interrupted = True
    report.results = [r if r is not None else pending_result(job, config) for job, r in zip(jobs, results)]
    report.seconds = time.perf_counter() - started
    if report.fatal:
        raise BatchStopped(report) from stopped_by
    return report
