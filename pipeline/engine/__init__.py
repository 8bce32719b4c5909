"""engine: the stages of a run and their wiring — one video (or frames in memory) through the model.

Offers: the entry points (``encode_video``, ``encode_job``, ``prepare_job``, ``render_frames``, ``EncodeResult``,
``EncodeJob``, ``frame_plan``); the estimator (``DensePoseEstimator``: a loaded model plus the node's
pre-processing, render and colormap); the node's resize + pad (``resize_and_pad``, ``resized_size``,
``padded_size``); the frame window (``Trim``, ``window_batches``, ``windowed_count``); framing
(``FramePlan``, ``plan_framing``); frame-rate resampling (``resample``,
``resample_pts``); model workers (``plan_workers``, ``WorkerPlan``, ``cpu_threads``, ``CPU_MAX_WORKERS``,
``CUDA_WORKERS``, ``BusyClock``, ``RenderMode``) and the wiring (``Pipeline``, ``RunSpec``).
May import: ``core``, ``config``, ``io``, ``models``, ``kernels``. Never ``batch``, ``cli`` or ``comfyui``.
"""

from ..._base import lazy_exports

_EXPORTS = {name: "._run" for name in (
    "encode_video", "encode_job", "prepare_job", "render_frames", "EncodeResult", "EncodeJob", "frame_plan")}
_EXPORTS.update({"DensePoseEstimator": "._estimator"})
_EXPORTS.update({name: "._window" for name in ("Trim", "window_batches", "windowed_count")})
_EXPORTS.update({name: "._preprocess" for name in ("resize_and_pad", "resized_size", "padded_size")})
_EXPORTS.update({name: "._framing" for name in ("FramePlan", "plan_framing")})
_EXPORTS.update({name: "._fps" for name in ("resample", "resample_pts")})
_EXPORTS.update({name: "._workers" for name in (
    "plan_workers", "WorkerPlan", "cpu_threads", "CPU_MAX_WORKERS", "CUDA_WORKERS", "BusyClock", "RenderMode")})
_EXPORTS.update({name: "._pipeline" for name in ("Pipeline", "RunSpec")})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
