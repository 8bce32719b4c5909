"""Exceptions that reach the user as one-line messages, and the formatters that make those lines.

Every error caused by user input (a missing file, a bad flag, an unusable model) is a
``DensevidError``; the CLI prints ``str(error)`` on one line and exits non-zero. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

from ..._base import DensevidNote, DensevidWarning

__all__ = ["DensevidError", "InputError", "OutputError", "ModelError", "ConfigError", "UsageError",
           "DensevidWarning", "DensevidNote", "one_line", "os_reason", "root_cause"]


class DensevidError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class InputError(DensevidError):
    """The input video/image is missing, unreadable or has no usable video stream."""


class OutputError(DensevidError):
    """The output cannot be written (exists, same as input, unwritable, disk full)."""


class ModelError(DensevidError):
    """The model cannot be found, downloaded, loaded, or does not honour the contract."""


class ConfigError(DensevidError):
    """An option value is out of range or unknown."""


class UsageError(DensevidError):
    """The command line names no usable inputs or contradictory outputs (exit code 2, like a bad flag)."""


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` on one line; beyond ``limit`` characters cut after a whole word (a path, URL or command
    has no spaces, so it is never cut in half)."""
    line = " ".join(str(text).split())
    if limit is None or len(line) <= limit:
        return line
    cut = line.rfind(" ", 0, limit - 3)
    return (line[:cut] if cut > 0 else line.split(" ", 1)[0]) + " ..."


def os_reason(error: BaseException) -> str:
    """What went wrong in an I/O error, in a few words: "File too large", not "[Errno 27] ... '<a hidden
    temporary file>'" (OSError and PyAV's FFmpegError both carry ``strerror``), else its first line."""
    strerror = getattr(error, "strerror", None)
    if isinstance(strerror, str) and strerror.strip():
        return strerror.strip()
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# the line a Python or TorchScript traceback ends with: "RuntimeError: ...", "builtins.ValueError: ..."
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Warning|Interrupt|Exit)\b:?")


def root_cause(exc: BaseException) -> str:
    """The root cause of ``exc`` on one line, whole: the exception line a TorchScript traceback ends with
    (e.g. ``RuntimeError: Input type (float) and bias type (c10::Half) should be the same``), or the
    exception's own message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for index in range(len(lines) - 1, -1, -1):
        if _EXCEPTION_LINE.match(lines[index]):
            return one_line(" ".join(lines[index:]))
    if not lines:
        return type(exc).__name__
    if len(lines) > 1 and lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return f"{type(exc).__name__}: {lines[-1]}"
    return f"{type(exc).__name__}: {one_line(' '.join(lines))}"
