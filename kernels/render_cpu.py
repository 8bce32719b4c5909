"""Fast CPU label render, bit-exact with :func:`kernels.reference.render_labels_reference`.

The pixels are painted by numba-compiled kernels (``kernels/_render_numba.py``, which describes the
method). This module decides who renders what, and loads the kernels:

* An instance goes to the compiled kernel when its logits are finite and PyTorch's CPU bilinear
  resize runs its generic kernel for the box, the one whose rounding the compiled kernel
  reproduces (out_h + out_w > 128 and the logits not channels-last contiguous). The others --
  small boxes, channels-last logits such as S == 1, NaN / inf logits -- use the reference's
  ``F.interpolate`` and argmax; they are small or rare.
* That reproduction matches a build detail of PyTorch, so it is verified at first use
  (:func:`emulation_matches_torch`, per thread count). Where it does not hold (another torch build
  or CPU), every instance uses the reference's ``F.interpolate``: slower, still exact.
* Without numba (not installed, JIT disabled, unable to compile) the frame is rendered by the
  reference: slower, same output; a warning says so once.

Instances are composited in order (later ones win where their label > 0). Inputs are never
modified; logits are computed in float32 (float16 inputs converted with ``.float()``, as the
reference does).
"""
from __future__ import annotations

import functools
import importlib.util
import sys
import threading
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from .._base import DensevidWarning
from .parts import N_FINE_CHANNELS
from .reference import instance_labels_reference, render_labels_reference, visible_box

_REL_MARGIN = 1e-5  # >> the few float32 ulps of error of a 4-tap bilinear value
_ABS_MARGIN = 1e-30  # covers underflow to subnormals/zero in products

# numba's on-disk cache is keyed by the source file, and a cached function is re-linked by importing
# its module by name. This package is ``densevid.kernels`` for the CLI but is named after its folder's
# path inside ComfyUI, so the kernels module always gets this one name: each process can load what
# the other cached (under two names, one of them would fail to load and compile again).
_KERNELS_MODULE = "_densevid_render_kernels"
# The kernels are prepared in a background thread beside the model's load while the first render may ask
# for them too: one thread loads them, the others wait (without it, a second thread found the module
# half-executed in sys.modules, failed on its missing warm_up and fell back to the slow reference).
_LOAD_LOCK = threading.Lock()


def _load_kernels_module(cache: bool):
    """``_render_numba.py`` executed as the module ``_KERNELS_MODULE``, its kernels cached on disk or
    not; one already loaded the same way (by another copy of this package) is reused."""
    module = sys.modules.get(_KERNELS_MODULE)
    if module is not None and module._CACHE == cache and getattr(module, "_LOADED", False):
        return module
    spec = importlib.util.spec_from_file_location(_KERNELS_MODULE, Path(__file__).with_name("_render_numba.py"))
    module = importlib.util.module_from_spec(spec)
    module._CACHE = cache
    sys.modules[_KERNELS_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_KERNELS_MODULE]
        raise
    module._LOADED = True
    return module


def _cache_unusable(exc: Exception) -> bool:
    """Whether ``exc`` says numba cannot keep its cache: nowhere writable to put it ("cannot cache",
    at decoration), or a failed write (disk full, file size limit, a directory made read-only)."""
    return isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and "cannot cache" in str(exc))


def compiled_kernels():
    """The numba-compiled kernels, loaded once per process whichever thread asks first (see
    ``_compiled_kernels``)."""
    with _LOAD_LOCK:
        return _compiled_kernels()


@functools.lru_cache(maxsize=1)
def _compiled_kernels():
    """The numba-compiled kernels (``kernels/_render_numba.py``), or None -- then the CPU render is
    the reference (same output, slower) -- when numba cannot be imported or compile (a warning says
    so), or JIT is disabled (``NUMBA_DISABLE_JIT=1``: the kernels would run as slow Python).
    Compiled (or loaded from numba's cache) on first use, with a tiny warm-up call so that a
    failure shows here, not mid-video. Where numba cannot keep its cache, they compile uncached."""
    try:
        import numba
    except ImportError:
        warnings.warn("numba is not installed: the CPU render runs the plain reference render (slower, same "
                      "output; pip install numba)", DensevidWarning, stacklevel=2)
        return None
    if numba.config.DISABLE_JIT:
        return None
    try:
        try:
            kernels = _load_kernels_module(cache=True)
            kernels.warm_up()
        except Exception as exc:
            if not _cache_unusable(exc):
                raise
            kernels = _load_kernels_module(cache=False)  # compile in each process instead
            kernels.warm_up()
    except Exception as exc:  # any failure means: use the reference (same output)
        warnings.warn(f"the compiled CPU render is unavailable ({type(exc).__name__}: {exc}): the CPU render "
                      "runs the plain reference render (slower, same output)", DensevidWarning, stacklevel=2)
        return None
    return kernels


_EMULATION_OK: dict[tuple[int, int], bool] = {}


def emulation_matches_torch(n_fine: int = N_FINE_CHANNELS) -> bool:
    """Whether the compiled kernels' exact bilinear values equal this torch build's ``F.interpolate``
    for the coarse (2) and fine (``n_fine``) channel counts, at the current ``torch.get_num_threads()``
    (False without the compiled kernels).

    Probed on adversarial inputs (magnitudes over many binades, up- and downscales) and cached per
    (threads, n_fine): PyTorch's loop specialisation can depend on both (measured on torch 2.14:
    with 1 thread, 3-channel inputs round differently from this model, while 1, 2, 5, 24 and 25
    channels match at 1 and 2 threads), so a thread-count change re-probes.
    """
    kernels = compiled_kernels()
    if kernels is None:
        return False
    key = (torch.get_num_threads(), n_fine)
    ok = _EMULATION_OK.get(key)
    if ok is None:
        gen = torch.Generator().manual_seed(1234)
        ok = True
        for n_channels, s, h, w in ((n_fine, 112, 173, 61), (2, 112, 301, 97), (n_fine, 13, 90, 211),
                                    (2, 37, 129, 5), (n_fine, 112, 112, 40), (2, 13, 211, 90)):
            x = torch.randn(n_channels, s, s, generator=gen)
            x *= torch.exp(torch.randn(n_channels, s, s, generator=gen) * 8)  # magnitudes over many binades
            expected = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            if not torch.equal(torch.from_numpy(kernels.interpolate_exact(x.numpy(), h, w)), expected):
                ok = False
                break
        _EMULATION_OK[key] = ok
    return ok


def _margins(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """float32 [2, n]: the coarse and fine decision margins of each instance (NaN / inf when a
    logit is not finite: such instances take the reference path)."""
    n = coarse.shape[0]
    c_abs = torch.maximum(coarse.reshape(n, -1).amax(1), -coarse.reshape(n, -1).amin(1))
    f_abs = torch.maximum(fine.reshape(n, -1).amax(1), -fine.reshape(n, -1).amin(1))
    return _REL_MARGIN * torch.stack([c_abs, f_abs]) + _ABS_MARGIN


def _uses_generic_kernel(x: torch.Tensor, h: int, w: int) -> bool:
    """Whether PyTorch's CPU upsample_bilinear2d runs its generic (emulated) kernel for x[None]."""
    xb = x[None]
    vectorized = (xb.is_contiguous(memory_format=torch.channels_last) and xb.shape[1] > 3) or (h + w <= 128)
    return not vectorized


def _boxes_xywh_int(boxes_xyxy: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """:func:`kernels.reference.box_xywh_int` of every box, in three tensor ops (tested equal)."""
    b = boxes_xyxy.detach().to(device="cpu", dtype=torch.float32)
    wh = b[:, 2:] - b[:, :2]  # float32 subtraction, as the reference
    return [(int(x0), int(y0), int(w), int(h)) for (x0, y0), (w, h) in zip(b[:, :2].tolist(), wh.tolist())]


def render_labels_cpu(boxes_xyxy: torch.Tensor, coarse_segm: torch.Tensor, fine_segm: torch.Tensor,
                      height: int, width: int) -> torch.Tensor:
    """uint8 [height, width] part labels on the CPU, bit-exact with ``render_labels_reference``."""
    kernels = compiled_kernels()
    if kernels is None:
        return render_labels_reference(boxes_xyxy, coarse_segm, fine_segm, height, width)
    canvas = torch.zeros((height, width), dtype=torch.uint8)
    places = []
    for i, (x, y, w, h) in enumerate(_boxes_xywh_int(boxes_xyxy)):
        visible = visible_box(x, y, w, h, height, width)
        if visible is not None:
            places.append((i, (x, y, w, h), visible))
    if not places:
        return canvas
    coarse = coarse_segm.detach().cpu().float()
    fine = fine_segm.detach().cpu().float()
    margin = _margins(coarse, fine)
    finite = torch.isfinite(margin).all(0).tolist()
    c_margin, f_margin = margin.tolist()
    exact_model = emulation_matches_torch(fine.shape[1])
    coarse_np, fine_np, canvas_np = coarse.contiguous().numpy(), fine.contiguous().numpy(), canvas.numpy()
    for i, (x, y, w, h), (cx0, cy0, cx1, cy1) in places:  # in order: later instances win where label > 0
        eligible = finite[i] and _uses_generic_kernel(coarse[i], h, w) and _uses_generic_kernel(fine[i], h, w)
        if exact_model and eligible:
            kernels.render_instance(coarse_np[i], fine_np[i], x, y, w, h, cx0, cy0, cx1, cy1,
                                    c_margin[i], f_margin[i], canvas_np)
        else:
            labels = instance_labels_reference(coarse[i], fine[i], h, w)[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
            target = canvas[cy0:cy1, cx0:cx1]
            target.copy_(torch.where(labels > 0, labels, target))
    return canvas
