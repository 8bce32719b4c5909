"""ComfyUI custom-node entry point (ComfyUI imports this file from custom_nodes/densevid/).

densevid's packages have generic names (``pipeline``, ``kernels``), and ComfyUI environments may
already hold other packages with those names. So they are loaded here under private names,
``densevid_kernels`` and ``densevid_pipeline``, without touching ``sys.path``.
"""

import importlib.util
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent


def _load_private(package: str, alias: str):
    if alias in sys.modules:
        return sys.modules[alias]
    spec = importlib.util.spec_from_file_location(alias, _ROOT / package / "__init__.py",
                                                  submodule_search_locations=[str(_ROOT / package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[alias]
        raise
    return module


_load_private("kernels", "densevid_kernels")
_load_private("pipeline", "densevid_pipeline")
_comfy = importlib.import_module("densevid_pipeline.comfy")

NODE_CLASS_MAPPINGS = _comfy.NODE_CLASS_MAPPINGS
NODE_DISPLAY_NAME_MAPPINGS = _comfy.NODE_DISPLAY_NAME_MAPPINGS
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
