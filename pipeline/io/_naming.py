"""The names of outputs: the default output name, the fingerprint's key, and the hidden partial names.

One rule each, used by every writer, by the batch plan and by the clean-up of stale partial files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

OUTPUT_MARK = "_densepose"  # outputs are <stem>_densepose.<ext>; a directory walk never takes them as inputs
FINGERPRINT_TAG = "densevid_fingerprint"  # container tag, PNG tEXt keyword, .npz entry

# a writer's temporary file (or directory) beside its output: .<stem>.<8 hex>.partial<suffix>
PARTIAL_TOKEN_HEX = 8


def output_name(input_name: str, lossless: bool, image: bool) -> str:
    """The one rule for an output's file name: ``<stem>_densepose.mp4``, ``.mkv`` (lossless) or ``.png``
    (image input)."""
    ext = ".png" if image else (".mkv" if lossless else ".mp4")
    return f"{PurePosixPath(input_name).stem}{OUTPUT_MARK}{ext}"


def default_output_path(input_path: str | os.PathLike, lossless: bool = False, image: bool = False) -> Path:
    """``<stem>_densepose.mp4`` / ``.mkv`` (lossless) / ``.png`` (image input), next to the input."""
    path = Path(input_path)
    return path.with_name(output_name(path.name, lossless, image))


def partial_name(final: Path, token: str) -> str:
    """The hidden name of ``final`` while it is written: ``.<stem>.<token>.partial<suffix>`` (a directory such
    as --frames DIR has no suffix: ``.<name>.<token>.partial``)."""
    return f".{final.stem}.{token}.partial{final.suffix}"


def partial_pattern(final: Path) -> re.Pattern:
    """What ``partial_name`` gives for ``final`` with any token (and nothing else)."""
    return re.compile(rf"\.{re.escape(final.stem)}\.[0-9a-f]{{{PARTIAL_TOKEN_HEX}}}\.partial{re.escape(final.suffix)}")
