"""comfyui: the ComfyUI node (a drop-in for comfyui_controlnet_aux's "DensePose Estimator"), where it finds
its weights in ComfyUI's model folders, and how its loaded models join ComfyUI's memory management.

Offers: ``NODE_CLASS_MAPPINGS``, ``NODE_DISPLAY_NAME_MAPPINGS``, ``DensePose_Preprocessor``; the model folders
(``register_folder``, ``model_choices``, ``resolve_model``, ``missing_model_message``, ``HUB_FILES``); the
resident models (``resident_models``, ``ResidentModels``). Works without ComfyUI installed.
May import: ``core``, ``config``, ``models``, ``engine``, ``kernels``.
"""

from ..._base import lazy_exports

_EXPORTS = {name: "._node" for name in (
    "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "DensePose_Preprocessor", "resident_models", "comfyui",
    "hint_to_image")}
_EXPORTS.update({name: "._model_folders" for name in (
    "register_folder", "model_choices", "resolve_model", "missing_model_message", "HUB_FILES", "FOLDER",
    "aux_folders", "densepose_folders")})
_EXPORTS.update({name: "._memory" for name in ("ResidentModels", "LOAD_ROUNDS", "patcher_class")})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
