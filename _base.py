"""What every layer of densevid shares, kernels and pipeline alike: its warning class and lazy re-exports.

Kept at the package root because ``kernels`` (the pixel maths) must not import ``pipeline`` (the stages),
yet both raise densevid's own warnings, and every package re-exports its public names the same way.
"""

from __future__ import annotations

import importlib
from typing import Callable


class DensevidWarning(RuntimeWarning):
    """densevid's own warnings: the CLI shows these (one line each), not other libraries' warnings."""


class DensevidNote(DensevidWarning):
    """Information rather than a problem (e.g. which engine runs a model): the CLI shows it as a note, not
    with --quiet."""


def lazy_exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose public names live in its private modules.

    ``table`` maps each public name to the module (relative to ``package``) that defines it. A name is
    imported on first use, so importing a package costs nothing until one of its names is needed (the
    CLI's ``--help`` starts without torch). Use: ``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)``.
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
