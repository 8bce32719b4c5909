"""The two export styles' contracts, read from a module's forward schema, and their adapters to ``Detections``.

* "tuple" (the hub files ``densepose_r50_fpn_dl.torchscript`` / ``densepose_r101_fpn_dl.torchscript``
  used by the ComfyUI node): ``forward(image)`` with ``image`` a CHW uint8 RGB tensor, returning
  ``(boxes_xyxy [N,4], coarse_segm [N,2,S,S], fine_segm [N,25,S,S], u [N,25,S,S], v [N,25,S,S])``.
* "dict" (DensePose-TorchScript releases): ``forward(image, bgr: bool = True)`` with ``image`` HWC
  uint8 BGR, returning a dict with ``pred_boxes``, ``scores``, ``pred_classes``,
  ``pred_densepose_coarse_segm``, ``pred_densepose_fine_segm``, ``pred_densepose_u``,
  ``pred_densepose_v``. All instances the model returns are kept (no extra score filter).

The style is read from the TorchScript forward schema, never guessed by running the model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...kernels.parts import N_COARSE_CHANNELS, N_FINE_CHANNELS, check_charts
from ..core import Detections, ModelError

TUPLE_CONTRACT = ("forward(image: uint8 CHW RGB) -> (boxes_xyxy [N,4], coarse_segm [N,2,S,S], "
                  "fine_segm [N,25,S,S], u [N,25,S,S], v [N,25,S,S]), all float")
DICT_KEYS = ("pred_boxes", "pred_densepose_coarse_segm", "pred_densepose_fine_segm", "pred_densepose_u",
             "pred_densepose_v")
DICT_CONTRACT = ("forward(image: uint8 HWC BGR, bgr: bool = True) -> dict with pred_boxes [N,4], "
                 "pred_densepose_coarse_segm [N,2,S,S], pred_densepose_fine_segm/u/v [N,25,S,S], all float")
STYLES = ("tuple", "dict")
CONTRACTS = {"tuple": TUPLE_CONTRACT, "dict": DICT_CONTRACT}
_CHANNELS = (N_COARSE_CHANNELS, N_FINE_CHANNELS, N_FINE_CHANNELS, N_FINE_CHANNELS)


def detect_style(module: torch.jit.ScriptModule, path: Path) -> str:
    """"tuple" or "dict", from the TorchScript forward schema (argument names and return type)."""
    try:
        schema = module.forward.schema
    except Exception as exc:
        raise ModelError(f"{path} has no scripted forward method; expected {TUPLE_CONTRACT}") from exc
    arguments = [a.name for a in schema.arguments if a.name != "self"]
    returns = [r.type for r in schema.returns]
    if len(returns) == 1 and isinstance(returns[0], torch._C.DictType):
        return "dict"
    if len(returns) == 1 and isinstance(returns[0], torch._C.TupleType) and "bgr" not in arguments:
        return "tuple"
    if "bgr" in arguments:
        raise ModelError(f"{path} does not honour the model contract: forward{tuple(arguments)} returns "
                         f"{', '.join(map(str, returns))}; expected {DICT_CONTRACT}")
    raise ModelError(f"{path} does not honour the model contract: forward returns "
                     f"{', '.join(map(str, returns)) or 'nothing'}; expected {TUPLE_CONTRACT} "
                     f"or {DICT_CONTRACT}")


def contract_error(path: Path, style: str, what: str) -> ModelError:
    """``path`` broke the ``style`` contract: it ``what`` (e.g. "returned a tuple of 3 items")."""
    return ModelError(f"{path} does not honour the {style}-style model contract: it {what}; "
                      f"expected {CONTRACTS[style]}")


def adapt_output(output: object, style: str, path: Path) -> Detections:
    """A model's output in its style's form -> ``Detections`` (ModelError naming ``path`` when it breaks the
    contract). Boxes become float32 on the device of the dense outputs' first tensor; the charts keep their
    dtype (float16 from a half-precision model)."""
    if style == "tuple":
        if not isinstance(output, (tuple, list)) or len(output) != 5:
            raise contract_error(path, style, f"returned {_describe(output)}")
        return _validated(tuple(output), style, path)
    if not isinstance(output, dict):
        raise contract_error(path, style, f"returned {_describe(output)}")
    missing = [key for key in DICT_KEYS if key not in output]
    if missing:
        raise contract_error(path, style, f"returned a dict without {', '.join(missing)}")
    return _validated(tuple(output[key] for key in DICT_KEYS), style, path)


def _validated(tensors: tuple, style: str, path: Path) -> Detections:
    names = ("boxes", "coarse_segm", "fine_segm", "u", "v")
    for name, t in zip(names, tensors):
        if not isinstance(t, torch.Tensor):
            raise contract_error(path, style, f"returned {_describe(t)} as {name}")
        if not t.is_floating_point():
            raise contract_error(path, style, f"returned {name} of dtype {t.dtype}")
    boxes, *dense = tensors
    if boxes.ndim == 2 and boxes.shape[0] == 0:  # some exports return bare empties when nobody is found
        dense = [t.new_zeros((0, c, 1, 1)) if t.numel() == 0 and not (t.ndim == 4 and t.shape[1] == c) else t
                 for t, c in zip(dense, _CHANNELS)]
    try:
        check_charts(boxes, *dense)
    except ValueError as error:
        raise contract_error(path, style, f"returned charts that do not fit: {error}") from None
    return Detections(boxes.to(torch.float32), *dense)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    return f"a {type(value).__name__}"
