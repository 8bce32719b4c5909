"""densevid: DensePose conditioning videos, identical to the ComfyUI DensePose Estimator node.

Public API (everything else is private and may change)::

    DensePoseEstimator   load a model once, call it on RGB images
    encode_video         one video (or image) in, its hint video (or PNG) out
    render_frames        frames already in memory in, their hints out, in order
    EncodeConfig         the frozen run configuration
    build_plan, run_batch, BatchReport, InputResult, Job, Plan
                         many inputs: expand/shard them, run them with one model, the report
    run_on_ray           the same on Ray (imports ray only when called)
    EncodeResult, FrameBatch, Detections
    DensevidError (+ InputError, OutputError, ModelError, ConfigError, UsageError; BatchStopped, a ModelError
                   raised by run_batch/run_on_ray when the model cannot load), DensevidWarning

This folder is the package ``densevid`` (pip installs it under that one name; its sub-packages are
``densevid.pipeline`` and ``densevid.kernels``) and, as it is, a ComfyUI custom node: ComfyUI
imports it as a package (under whatever name the folder has) and reads ``NODE_CLASS_MAPPINGS``.
Names are imported on first use, so ``import densevid`` (and ``densevid --help``) stays cheap.
"""

from __future__ import annotations

import importlib

# public name -> the private module that defines it
_EXPORTS = {
    "DensePoseEstimator": ".pipeline._api",
    "EncodeConfig": ".pipeline._config",
    "EncodeResult": ".pipeline._engine",
    "encode_video": ".pipeline._engine",
    "render_frames": ".pipeline._engine",
    "BatchReport": ".pipeline._batch",
    "BatchStopped": ".pipeline._batch",
    "InputResult": ".pipeline._batch",
    "run_batch": ".pipeline._batch",
    "run_on_ray": ".pipeline._ray",
    "Job": ".pipeline._inputs",
    "Plan": ".pipeline._inputs",
    "build_plan": ".pipeline._inputs",
    "Detections": ".pipeline._types",
    "FrameBatch": ".pipeline._types",
    "DensevidError": ".pipeline._errors",
    "ConfigError": ".pipeline._errors",
    "InputError": ".pipeline._errors",
    "ModelError": ".pipeline._errors",
    "OutputError": ".pipeline._errors",
    "UsageError": ".pipeline._errors",
    "DensevidWarning": ".pipeline._errors",
    # the ComfyUI node
    "NODE_CLASS_MAPPINGS": ".pipeline.comfy",
    "NODE_DISPLAY_NAME_MAPPINGS": ".pipeline.comfy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
