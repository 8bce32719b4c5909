"""Exceptions that reach the user as one-line messages.

Every error caused by user input (a missing file, a bad flag, an unusable model) is a
``DensevidError``; the CLI prints ``str(error)`` on one line and exits non-zero. Anything else
is a bug and keeps its traceback.
"""


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


class DensevidWarning(RuntimeWarning):
    """densevid's own warnings: the CLI shows these (one line each), not other libraries' warnings."""


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
