"""What happened to each input of a batch: ``InputResult`` per input, ``BatchReport`` for the batch (its
counts, exit code and the JSON report written atomically with ``--report``)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core import OutputError, os_reason
from ..io import Partial

STATUSES = ("done", "skipped", "failed", "pending")
REPORT_VERSION = 1



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
        """Write the JSON report atomically and durably (a partial file beside it, fsync, rename)."""
        path = Path(path)
        data = json.dumps(self.to_dict(), indent=2) + "\n"
        try:
            partial = Partial(path, overwrite=True)
        except OutputError as error:
            raise OutputError(f"cannot write the report {path}: {error}") from None
        try:
            with open(partial.path, "w", encoding="utf-8") as f:
                f.write(data)
        except OSError as err:
            partial.discard()
            raise OutputError(f"cannot write the report {path}: {os_reason(err)}") from None
        except BaseException:
            partial.discard()
            raise
        return partial.commit()
