"""Run a list of jobs with one model per process: resume, per-input isolation, the summary and the report.

Resume rule: outputs only ever appear under their final name complete (temporary file + atomic
rename, see ``_encode``), and each carries the fingerprint of what made it (``_fingerprint``). An
input whose outputs all exist with the fingerprint this run would write is "skipped" without
decoding anything (``--overwrite`` redoes it). An output made from another input, with other
settings or another model, or without a fingerprint (an older densevid, another tool), is never
taken for finished: that input fails with a line saying what differs and how to proceed. The
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

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from ._config import EncodeConfig
from ._errors import DensevidError, ModelError, OutputError, one_line
from ._inputs import Job

STATUSES = ("done", "skipped", "failed", "pending")
REPORT_VERSION = 1

# progress_factory(job, frame_count or None) -> per-frame callback (or None)
ProgressFactory = Callable[[Job, "int | None"], "Callable[[int], None] | None"]


@dataclass
class InputResult:
    """What happened to one input (one entry of the JSON report)."""

    input: str
    output: str | None
    status: str  # done | skipped | failed | pending
    frames: int | None = None
    seconds: float | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # information, not a problem (e.g. the audio is not copied)

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.seconds is not None:
            data["seconds"] = round(self.seconds, 3)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "InputResult":
        return cls(**data)


@dataclass
class BatchReport:
    results: list[InputResult]
    interrupted: bool = False
    fatal: str | None = None  # the one-line reason the whole batch stopped (model not loadable)
    seconds: float = 0.0
    shard: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in STATUSES}
        for result in self.results:
            counts[result.status] += 1
        return counts

    @property
    def exit_code(self) -> int:
        """130 interrupted, 1 when anything failed (or the batch stopped), else 0."""
        if self.interrupted:
            return 130
        counts = self.counts
        return 1 if self.fatal or counts["failed"] or counts["pending"] else 0

    def to_dict(self) -> dict:
        return {"version": REPORT_VERSION, "counts": self.counts, "interrupted": self.interrupted,
                "error": self.fatal, "shard": self.shard, "seconds": round(self.seconds, 3),
                "inputs": [r.to_dict() for r in self.results]}

    def write(self, path: str | os.PathLike) -> Path:
        """Write the JSON report atomically (temporary file beside it, then rename)."""
        path = Path(path)
        data = json.dumps(self.to_dict(), indent=2) + "\n"
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        except OSError as err:
            raise OutputError(f"cannot write the report {path}: {err.strerror or err}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException as err:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            if isinstance(err, OSError):
                raise OutputError(f"cannot write the report {path}: {err.strerror or err}") from None
            raise
        return path


class BatchAbort(Exception):
    """The model cannot be loaded: no input can succeed, so the batch stops (one-line ``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
            from ._api import DensePoseEstimator

            try:
                self._estimator = DensePoseEstimator.from_config(self.config)
            except DensevidError as error:
                raise BatchAbort(one_line(error)) from error  # whole (no limit): it names the fix
            self.loads += 1
        return self._estimator


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def pending_result(job: Job, config: EncodeConfig) -> InputResult:
    return InputResult(str(job.input_path), str(job.output_path(config.lossless)), "pending")


def skip_check(job: Job, config: EncodeConfig) -> InputResult | None:
    """The cheap part of a job (no decoding): a planning error, output = input, or outputs that exist
    (finished: "skipped"; stale or of unknown origin: "failed", see ``resume_check``).

    Raises BatchAbort when outputs exist but the model to compare them with cannot be found."""
    out = job.output_path(config.lossless)
    if job.error:
        return InputResult(str(job.input_path), str(out), "failed", seconds=0.0, error=job.error)
    if out.exists() and _same_file(out, job.input_path):
        return InputResult(str(job.input_path), str(out), "failed", seconds=0.0,
                           error=f"output {out} is the input file; choose another output path")
    return resume_check(job, out, config)


def _outputs_of(job: Job, out: Path) -> list[tuple[Path, str]]:
    """Every output of ``job`` with the flag that names it."""
    named = [(out, "-o"), (job.frames_dir, "--frames"), (job.preview_path, "--preview"), (job.iuv_path, "--iuv")]
    return [(path, flag) for path, flag in named if path is not None]


def resume_check(job: Job, out: Path, config: EncodeConfig) -> InputResult | None:
    """None when there is work to do (nothing exists yet, or --overwrite); "skipped" when every
    output exists with the fingerprint this run would write; "failed" with what differs otherwise."""
    if config.overwrite:
        return None
    outputs = _outputs_of(job, out)
    existing = [(path, flag) for path, flag in outputs if path.exists()]
    if not existing:
        return None
    from ._fingerprint import expected_fingerprint, mismatch, stored_fingerprint

    try:
        expected = expected_fingerprint(job.input_path, config)
    except ModelError as error:  # the same stop as a model that cannot load
        raise BatchAbort(one_line(error)) from error
    except OSError:
        return None  # the input cannot be read: the encode fails it with the proper reason

    def failed(error: str) -> InputResult:
        return InputResult(str(job.input_path), str(out), "failed", seconds=0.0, error=error)

    for path, flag in existing:
        reason = mismatch(stored_fingerprint(path), expected)
        if reason is not None:
            return failed(f"{path} exists but {reason}; pass --overwrite to replace it, or choose another {flag}")
    if len(existing) < len(outputs):
        missing = next(path for path, _ in outputs if not path.exists())
        return failed(f"{missing} does not exist but {existing[0][0]} does (made from this input with these settings): "
                      f"pass --overwrite to write all outputs of this input again")
    return InputResult(str(job.input_path), str(out), "skipped")


def job_config(job: Job, config: EncodeConfig) -> EncodeConfig:
    """The config of one input: its own --frames/--preview/--iuv paths (planned in ``_inputs``)."""
    return replace(config, frames_dir=job.frames_dir, preview_path=job.preview_path, iuv_path=job.iuv_path)


def run_job(job: Job, config: EncodeConfig, estimator: Callable[[], object],
            progress_factory: ProgressFactory | None = None) -> InputResult:
    """Encode one input; every failure that belongs to it becomes its InputResult.

    Raises BatchAbort (the model cannot be loaded) and KeyboardInterrupt; nothing else.
    """
    from ._decode import probe_video
    from ._engine import encode_job, prepare_job

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
            if not _same_file(out, job.input_path):
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
                raise OutputError(f"cannot create the output directory {path.parent}: {err.strerror or err}") from None
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


# --- the console: progress bars, one-line messages, the summary --------------------------------------


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class ConsoleProgress:
    """tqdm bars (videos, and frames of the current video) and one-line messages.

    ``single``: one input given as a file: no videos bar, no summary, errors exactly as
    ``densevid: error: <reason>``. ``quiet``: no bars, no per-input "done" lines, no summary;
    errors and warnings are always printed. ``interactive`` (default: stderr is a terminal): bars;
    otherwise (a log file, a pipe, a CI job) plain lines only, one per finished input: a bar
    redrawn with carriage returns is noise there.
    """

    def __init__(self, total: int, quiet: bool = False, single: bool = False, interactive: bool | None = None) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.quiet = quiet
        self.single = single
        self.bars = not quiet and (_stderr_is_terminal() if interactive is None else interactive)
        self._videos = tqdm(total=total, unit="video", desc="densevid", disable=not self.bars or single or total == 0,
                            dynamic_ncols=True)
        self._frames = None

    def _write(self, text: str, err: bool = True) -> None:
        self._tqdm.write(text, file=sys.stderr if err else sys.stdout)

    def frames(self, job: Job, total: int | None) -> Callable[[int], None] | None:
        self._close_frames()
        if not self.bars:
            return None
        self._frames = self._tqdm(total=total, unit="frame", desc=Path(job.rel).name, leave=False,
                                  position=0 if self.single else 1, dynamic_ncols=True)
        return self._frames.update

    def _close_frames(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None

    def result(self, job: Job, result: InputResult) -> None:
        self._close_frames()
        for warning in result.warnings:  # about the output's content: printed even with --quiet
            self._write(f"densevid: warning: {warning}")
        if result.status == "failed":
            named = self.single or result.input in (result.error or "")
            self._write(f"densevid: error: {result.error}" if named
                        else f"densevid: error: {result.input}: {result.error}")
        elif not self.quiet and result.status == "skipped":
            self._write(f"densevid: skipped {result.input}: {result.output} exists, made from this input with these "
                        f"settings (--overwrite redoes it)")
        elif not self.quiet and result.status == "done":
            fps = result.frames / result.seconds if result.seconds else float("inf")
            self._write(f"{result.output}  ({result.frames} frames encoded in {result.seconds:.1f} s, "
                        f"{fps:.1f} frames/s)", err=False)
        if not self.quiet:
            for note in result.notes:
                self._write(f"densevid: note: {note}")
        self._videos.update(1)

    def close(self) -> None:
        self._close_frames()
        self._videos.close()

    def summary(self, report: BatchReport) -> None:
        """The end-of-batch summary (not for a single input, not with --quiet)."""
        if self.single or self.quiet:
            return
        c = report.counts
        text = f"densevid: {len(report.results)} inputs: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed"
        if c["pending"]:
            text += f", {c['pending']} not finished"
        self._write(text + f" ({report.seconds:.1f} s)")
        for result in report.results:
            if result.status == "failed":
                named = result.input in (result.error or "")
                self._write(f"densevid:   failed: {result.error}" if named
                            else f"densevid:   failed: {result.input}: {result.error}")

