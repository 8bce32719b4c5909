"""densevid: DensePose conditioning videos, identical to the ComfyUI DensePose Estimator node.

Public API (everything else is private and may change):

    DensePoseEstimator   load a model once, call it on RGB images
    encode_video         one video (or image) in, its hint video (or PNG) out
    EncodeConfig         the frozen run configuration
    FrameBatch, Detections, DensevidError (+ InputError, OutputError, ModelError, ConfigError)
"""

from ._api import DensePoseEstimator
from ._config import EncodeConfig
from ._engine import EncodeResult, encode_video
from ._errors import ConfigError, DensevidError, InputError, ModelError, OutputError
from ._types import Detections, FrameBatch

__all__ = [
    "ConfigError", "DensePoseEstimator", "DensevidError", "Detections", "EncodeConfig", "EncodeResult",
    "FrameBatch", "InputError", "ModelError", "OutputError", "encode_video",
]
