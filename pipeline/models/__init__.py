"""models: finding, loading and calling the DensePose models, and the stand-ins the tests run.

Offers: the hub files and their lookup (``MODEL_REPO``, ``MODEL_FILES``, ``DEFAULT_MODEL``, ``PATH_SUFFIXES``,
``resolve_model_path``, ``find_hub_file``, ``HubSearch``, ``hub_file_url``, ``hub_cli``, ``hf_cache_dir``,
``hf_offline``, ``looks_like_path``, ``download_command``); loading (``load_model`` → ``DensePoseModel``, whose
``detect`` / ``detect_batch`` give ``Detections``; ``register_torchvision_ops``); the engines (``ENGINES``,
``choose_engine``, ``EnginePlan``, ``EngineNote``) and the native model built from a file's weights
(``read_spec`` → ``NativeSpec``, ``NativeDensePose``, ``NativeRunner``); the export styles' contracts (``STYLES``,
``TUPLE_CONTRACT``, ``DICT_CONTRACT``, ``DICT_KEYS``, ``detect_style``); precision (``Precision``,
``plan_precision``, ``weights_dtype``, ``HALF_ROUTES``); known export bugs (``rpn_size_order_bug``,
``ModelWarning``); the weights on disk (``download_model``, ``cached_models``, ``stored_precision``,
``format_size``, ``PRECISION_RULE``); stand-ins (``build_standin``, ``save_standin``: cheap, for exactness;
``build_standin_rcnn``, ``save_standin_rcnn``, ``state_dict_layout``, ``standin_core``: the hub files' and the
releases' architecture, names and cost; ``write_model_files``).
May import: ``core``. Never ``io``, ``engine`` or anything above.
"""

from ..._base import lazy_exports

_EXPORTS = {name: "._hub" for name in (
    "MODEL_REPO", "MODEL_FILES", "DEFAULT_MODEL", "PATH_SUFFIXES", "resolve_model_path", "find_hub_file", "HubSearch",
    "hub_file_url", "hub_cli", "hf_cache_dir", "hf_offline", "hub_endpoint", "hub_problem", "looks_like_path",
    "download_command")}
_EXPORTS.update({name: "._loading" for name in ("load_model", "DensePoseModel", "EngineNote")})
_EXPORTS.update({name: "._engines" for name in ("ENGINES", "EnginePlan", "choose_engine", "NativeRunner")})
_EXPORTS.update({name: "._native_spec" for name in ("read_spec", "NativeSpec", "NativeSettings")})
_EXPORTS.update({"NativeDensePose": "._native_rcnn"})
_EXPORTS.update({name: "._contract" for name in (
    "STYLES", "TUPLE_CONTRACT", "DICT_CONTRACT", "DICT_KEYS", "detect_style", "adapt_output")})
_EXPORTS.update({name: "._precision" for name in (
    "Precision", "plan_precision", "weights_dtype", "HALF_ROUTES", "cpu_native_bfloat16", "dtype_name",
    "half_applies")})
_EXPORTS.update({name: "._export_bugs" for name in ("rpn_size_order_bug", "ModelWarning")})
_EXPORTS.update({"register_torchvision_ops": "._ops"})
_EXPORTS.update({name: "._store" for name in (
    "download_model", "cached_models", "stored_precision", "format_size", "PRECISION_RULE", "ModelEntry",
    "native_summary")})
_EXPORTS.update({name: "._standin" for name in ("build_standin", "save_standin", "write_model_files")})
_EXPORTS.update({name: "._standin_rcnn" for name in (
    "build_standin_rcnn", "save_standin_rcnn", "state_dict_layout", "standin_core")})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
