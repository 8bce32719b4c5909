"""The console: tqdm progress bars (videos, and frames of the current video), one-line messages, the summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from ..batch import BatchReport, InputResult, Job


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
