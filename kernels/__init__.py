"""densevid kernels: DensePose label render (reference, fast exact CPU, Triton) and hint colouring."""

from .colormaps import CMAP_NAMES, background_rgb, hint_lut
from .reference import render_labels_reference
from .render import BACKENDS, render_hint, render_labels

__all__ = ["BACKENDS", "CMAP_NAMES", "background_rgb", "hint_lut", "render_hint", "render_labels",
           "render_labels_reference"]
