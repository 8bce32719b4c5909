"""densevid kernels: the DensePose label render (reference, fast exact CPU, torch on the device, Triton)
and hint colouring, and the post-stages (framing, smoothing, IUV). Pure tensor-to-tensor functions; no I/O.

Names are imported on first use: the colormap table (``kernels.colormaps``) is read by the CLI,
which starts without importing torch.
"""

from __future__ import annotations

from .._base import lazy_exports

_EXPORTS = {
    "CMAP_NAMES": ".colormaps", "COLORMAPS": ".colormaps", "background_rgb": ".colormaps", "hint_lut": ".colormaps",
    "render_labels_reference": ".reference",
    "BACKENDS": ".render", "colorize": ".render", "prepare_backend": ".render", "render_hint": ".render",
    "render_labels": ".render",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
