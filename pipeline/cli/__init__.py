"""cli: the ``densevid`` command (``main``, the click group; ``run``, the command as a process: ``main`` and a
quick exit, ``exit_process``): ``encode``, ``models download|standin|list``, ``presets``.

Thin: each command parses its flags, builds an ``EncodeConfig`` and calls the layer below; errors are
one line (``densevid: error: ...``) with exit codes 1 (failed), 2 (usage), 130 (interrupted). Importing it
costs click and the settings table only (``densevid --help`` starts without torch).
May import: every package below it.
"""

from . import _encode, _models  # noqa: F401  (they add their commands to main)
from ._app import exit_process, main, run

__all__ = ["exit_process", "main", "run"]
