"""``python -m densevid.pipeline.cli``: the ``densevid`` command."""

from . import run

run()
