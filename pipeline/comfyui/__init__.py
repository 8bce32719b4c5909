"""comfyui: the ComfyUI nodes — the IMAGE drop-in for comfyui_controlnet_aux's "DensePose Estimator" and the
streaming VIDEO node (V3 schema, where ComfyUI has it) — where they find their weights in ComfyUI's model
folders, and how their loaded models join ComfyUI's memory management.

Offers: ``NODE_CLASS_MAPPINGS``, ``NODE_DISPLAY_NAME_MAPPINGS`` (both nodes), ``clash_message`` (the drop-in's
id shared with ComfyUI-Inference-Core-Nodes), ``DensePose_Preprocessor``; the VIDEO node (``video_node_class``,
``widget_specs``, ``node_config``, ``encode_file``, ``file_source``, ``trim_of``, ``FrameProgress``); the model folders
(``register_folder``, ``model_choices``, ``resolve_model``, ``missing_model_message``, ``HUB_FILES``); the
resident models (``resident_models``, ``ResidentModels``). Works without ComfyUI installed.
May import: ``core``, ``config``, ``io``, ``models``, ``engine``, ``kernels``.
"""

from ..._base import lazy_exports

_EXPORTS = {name: "._node" for name in ("DensePose_Preprocessor", "resident_models", "comfyui", "hint_to_image")}
_EXPORTS.update({name: "._registry" for name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS",
                                                  "clash_message", "DROP_IN_ID")})
_EXPORTS.update({name: "._video_node" for name in (
    "video_node_class", "widget_specs", "node_config", "encode_file", "file_source", "trim_of", "FrameProgress",
    "WidgetSpec", "NODE_ID", "DISPLAY_NAME", "PREVIEW_EVERY_SECONDS")})
_EXPORTS.update({name: "._model_folders" for name in (
    "register_folder", "model_choices", "resolve_model", "missing_model_message", "HUB_FILES", "FOLDER",
    "aux_folders", "densepose_folders")})
_EXPORTS.update({name: "._memory" for name in ("ResidentModels", "LOAD_ROUNDS", "patcher_class")})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
