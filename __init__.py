"""densevid: DensePose conditioning videos, identical to the ComfyUI DensePose Estimator node.

Public API (everything else is private and may change)::

    DensePoseEstimator   load a model once, call it on RGB images
    encode_video         one video (or image) in, its hint video (or PNG) out
    render_frames        frames already in memory in, their hints out, in order
    EncodeConfig         the frozen run configuration
    build_plan, run_batch, BatchReport, InputResult, Job, Plan
                         many inputs: expand/shard them, run them with one model, the report
    run_on_ray           the same on Ray (imports ray only when called)
    EncodeResult, FrameBatch, Frame, Detections
    DensevidError (+ InputError, OutputError, ModelError, ConfigError, UsageError; BatchStopped, a ModelError
                   raised by run_batch/run_on_ray when the model cannot load), DensevidWarning

This folder is the package ``densevid`` (pip installs it under that one name; its sub-packages are
``densevid.pipeline`` — the layered stages, see its docstring — and ``densevid.kernels``, the pixel
maths) and, as it is, a ComfyUI custom node: ComfyUI
imports it as a package (under whatever name the folder has) and reads ``NODE_CLASS_MAPPINGS``.
Names are imported on first use, so ``import densevid`` (and ``densevid --help``) stays cheap.
"""

from __future__ import annotations

from ._base import lazy_exports

# public name -> the package of the pipeline that offers it
_EXPORTS = {
    "DensePoseEstimator": ".pipeline.engine",
    "EncodeResult": ".pipeline.engine",
    "encode_video": ".pipeline.engine",
    "render_frames": ".pipeline.engine",
    "EncodeConfig": ".pipeline.config",
    "BatchReport": ".pipeline.batch",
    "BatchStopped": ".pipeline.batch",
    "InputResult": ".pipeline.batch",
    "run_batch": ".pipeline.batch",
    "run_on_ray": ".pipeline.batch",
    "Job": ".pipeline.batch",
    "Plan": ".pipeline.batch",
    "build_plan": ".pipeline.batch",
    "Detections": ".pipeline.core",
    "Frame": ".pipeline.core",
    "FrameBatch": ".pipeline.core",
    "DensevidError": ".pipeline.core",
    "ConfigError": ".pipeline.core",
    "InputError": ".pipeline.core",
    "ModelError": ".pipeline.core",
    "OutputError": ".pipeline.core",
    "UsageError": ".pipeline.core",
    "DensevidWarning": ".pipeline.core",
    # the ComfyUI node
    "NODE_CLASS_MAPPINGS": ".pipeline.comfyui",
    "NODE_DISPLAY_NAME_MAPPINGS": ".pipeline.comfyui",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
