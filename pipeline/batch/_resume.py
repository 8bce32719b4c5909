"""Resume: which inputs are already done, decided without decoding anything.

Outputs only ever appear under their final name complete (a partial file moved into place, see
``io``), and each carries the fingerprint of what made it. An input whose outputs all exist with the
fingerprint this run would write is "skipped"; one made from another input, with other settings or
another model, or without a fingerprint (an older densevid, another tool), is never taken for
finished: that input fails with a line saying what differs and how to proceed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import EncodeConfig
from ..core import ModelError, one_line
from ..io import make_fingerprint, mismatch, same_file, stored_fingerprint
from ..models import half_applies, resolve_model_path
from ._inputs import Job
from ._report import InputResult


class BatchAbort(Exception):
    """The model cannot be loaded (or found): no input can succeed, so the batch stops (one-line ``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def expected_fingerprint(input_path: str | os.PathLike, config: EncodeConfig) -> str:
    """The fingerprint an encode of ``input_path`` with ``config`` would write, without loading the
    model (its file is found, not loaded). ModelError when the model cannot be found."""
    return make_fingerprint(input_path, config, resolve_model_path(config.model, config.model_dir),
                            half_applies(config.device, config.half))


def skip_check(job: Job, config: EncodeConfig) -> InputResult | None:
    """The cheap part of a job (no decoding): a planning error, output = input, or outputs that exist
    (finished: "skipped"; stale or of unknown origin: "failed", see ``resume_check``).

    Raises BatchAbort when outputs exist but the model to compare them with cannot be found."""
    out = job.output_path(config.lossless)
    if job.error:
        return InputResult(str(job.input_path), str(out), "failed", seconds=0.0, error=job.error)
    if out.exists() and same_file(out, job.input_path):
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
