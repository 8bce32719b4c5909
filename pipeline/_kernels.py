"""The sibling ``kernels`` package, found under whichever name it was imported.

Installed normally, densevid's packages are the top-level ``pipeline`` and ``kernels``. Inside
ComfyUI, the repository's ``__init__.py`` loads them as ``densevid_pipeline`` and
``densevid_kernels`` so they cannot shadow another package called ``kernels``; this module is the
one place that knows about both names.
"""

from __future__ import annotations

import importlib

_name = "densevid_kernels" if __package__ == "densevid_pipeline" else "kernels"
kernels = importlib.import_module(_name)

hint_lut = kernels.hint_lut
render_hint = kernels.render_hint
background_rgb = kernels.background_rgb
render_labels = kernels.render_labels
colorize = kernels.colorize  # the fast table lookup on CPU, plain indexing on other devices
prepare_backend = kernels.prepare_backend
render_iuv = importlib.import_module(_name + ".iuv").render_iuv
frame_maps = importlib.import_module(_name + ".framing").frame_maps
TemporalSmoother = importlib.import_module(_name + ".smooth").TemporalSmoother
