"""densevid kernels: DensePose label render (reference, fast exact CPU, Triton) and hint colouring."""

from .colormaps import CMAP_NAMES, background_rgb, hint_lut
from .reference import render_labels_reference
from .render import BACKENDS, colorize, prepare_backend, render_hint, render_labels

__all__ = ["BACKENDS", "CMAP_NAMES", "background_rgb", "colorize", "hint_lut", "prepare_backend", "render_hint",
           "render_labels", "render_labels_reference"]
