"""densevid: DensePose conditioning videos, identical to the ComfyUI DensePose Estimator node.

Public API (everything else is private and may change):

    DensePoseEstimator   load a model once, call it on RGB images
    encode_video         one video (or image) in, its hint video (or PNG) out
    EncodeConfig         the frozen run configuration
    build_plan, run_batch, BatchReport, InputResult, Job
                         many inputs: expand/shard them, run them with one model, the report
    run_on_ray           the same on Ray (pipeline._ray imports ray only when called)
    FrameBatch, Detections, DensevidError (+ InputError, OutputError, ModelError, ConfigError)
"""

from ._api import DensePoseEstimator
from ._batch import BatchReport, InputResult, run_batch
from ._config import EncodeConfig
from ._engine import EncodeResult, encode_video
from ._errors import ConfigError, DensevidError, InputError, ModelError, OutputError, UsageError
from ._inputs import Job, Plan, build_plan
from ._types import Detections, FrameBatch



def run_on_ray(*args, **kwargs):
    """``run_batch`` on Ray actors (see ``pipeline._ray``); needs ``pip install "densevid[ray]"``."""
    from ._ray import run_on_ray as _run_on_ray

    return _run_on_ray(*args, **kwargs)


__all__ = [
    "BatchReport", "ConfigError", "DensePoseEstimator", "DensevidError", "Detections", "EncodeConfig",
    "EncodeResult", "FrameBatch", "InputError", "InputResult", "Job", "ModelError", "OutputError", "Plan",
    "UsageError", "build_plan", "encode_video", "run_batch", "run_on_ray",
]
