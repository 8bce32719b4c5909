"""Known bugs of published exports, found in a loaded module's TorchScript code and told to the user once."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from ..core import DensevidWarning


class ModelWarning(DensevidWarning):
    """Something about a loaded model the user should know: a precision it cannot run in here, a known bug.
    A ``DensevidWarning``, so the CLI shows it."""


# detectron2 gives the RPN the padded image's size as (h, w); the dict-style releases build it as
# torch.tensor([images.shape[3], images.shape[2]]), which TorchScript prints like this
_RPN_SIZE_WH = re.compile(r"\(torch\.size\((\w+)\)\)\[3\], \(torch\.size\(\1\)\)\[2\]|"
                          r"torch\.size\((\w+), 3\), torch\.size\(\2, 2\)")
_warned_rpn_size: set[str] = set()


def rpn_size_order_bug(module: torch.jit.ScriptModule) -> str | None:
    """Where (a submodule name) the RPN of ``module`` builds the image size as (w, h); None if it does not."""
    for name, submodule in module.named_modules():
        kind = getattr(submodule, "original_name", "")
        if not (name.split(".")[-1] in ("proposal_generator", "rpn") or "RPN" in kind or "Proposal" in kind):
            continue
        try:
            methods = submodule._c._method_names()
            codes = [getattr(submodule, method).code for method in methods]
        except Exception:  # no TorchScript source kept (e.g. a module of C++ methods only)
            continue
        if any(_RPN_SIZE_WH.search(code) for code in codes):
            return name or kind
    return None


def warn_rpn_size_order(module: torch.jit.ScriptModule, path: Path) -> None:
    """Say once per model file that its RPN clips every box of a non-square frame to the short side."""
    where = rpn_size_order_bug(module)
    if where is None or str(path) in _warned_rpn_size:
        return
    _warned_rpn_size.add(str(path))
    warnings.warn(ModelWarning(
        f"{path.name}: its RPN ({where}) takes the image size as (w, h) where detectron2 means (h, w), so on a "
        f"non-square frame every box is clipped to the short side (in a portrait frame nobody is found below "
        f"y = width); a square frame avoids it: --size 512 --fit crop gives the model a 512x512 square (--fit pad "
        f"does not)"), stacklevel=3)
