"""torchvision's C++ operators (``torchvision::nms``, ``roi_align``), which the DensePose exports call.

They must be registered before ``torch.jit.load``. Loading torchvision's C++ extension is all that needs;
``import torchvision`` would also import its Python packages and torch._dynamo, seconds of start-up.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..core import ModelError, one_line, root_cause


def _torchvision_version() -> str:
    try:
        from importlib.metadata import version
        return version("torchvision")
    except Exception:
        return "unknown"


def version_mismatch(path: Path | None, detail: str) -> ModelError:
    where = f"cannot load {path.name}: " if path is not None else ""
    return ModelError(
        f"{where}torchvision's operators are unavailable ({one_line(detail, 320)}): torch {torch.__version__} and "
        f"torchvision {_torchvision_version()} versions don't match; install the torchvision release built for "
        f"this torch"
    )


_TORCHVISION_EXTENSIONS = ("_C_stable", "_C")  # the C++ operator library's name, newest torchvision first


def _torchvision_ops_registered() -> bool:
    try:
        torch.ops.torchvision.nms  # resolving the op is the check
        torch.ops.torchvision.roi_align
    except (AttributeError, RuntimeError):
        return False
    return True


def _torchvision_extension() -> Path | None:
    """torchvision's C++ extension file, found without running torchvision/__init__.py."""
    from importlib.machinery import EXTENSION_SUFFIXES
    from importlib.util import find_spec

    spec = find_spec("torchvision")  # a top-level package: found, not imported
    for directory in (spec.submodule_search_locations or []) if spec is not None else []:
        for name in _TORCHVISION_EXTENSIONS:
            for suffix in EXTENSION_SUFFIXES:
                candidate = Path(directory) / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
    return None


def register_torchvision_ops(path: Path | None = None) -> None:
    """Register torchvision's operators (torchvision::nms, roi_align), which the models call, before torch.jit.load.

    Loading torchvision's C++ extension is all that needs: ``import torchvision`` would also import its
    Python packages and torch._dynamo, a second or two of start-up. Where the extension cannot be loaded
    directly (an unusual install), importing torchvision is tried; if both fail, the versions don't match.
    """
    if _torchvision_ops_registered():
        return
    library = _torchvision_extension()
    failure = "torchvision's C++ extension was not found"
    if library is not None:
        try:
            torch.ops.load_library(str(library))
        except (OSError, RuntimeError) as exc:
            failure = f"loading {library.name} failed: {one_line(root_cause(exc), 150)}"
        else:
            if _torchvision_ops_registered():
                return
            failure = f"{library.name} registered no torchvision::nms"
    try:
        import torchvision  # noqa: F401  (registers the operators)
    except Exception as exc:
        raise version_mismatch(path, f"{failure}; import torchvision failed: {root_cause(exc)}") from exc
    if not _torchvision_ops_registered():
        raise version_mismatch(path, failure)


def is_unknown_op_error(message: str) -> bool:
    return "torchvision::" in message or "Unknown builtin op" in message or "torchvision.ops" in message
