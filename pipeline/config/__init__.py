"""config: the settings of a run — one table (``SETTINGS``), the frozen ``EncodeConfig`` built from it,
the named presets (``configs/*.toml``) and the device spelling.

Offers: ``SETTINGS``, ``SETTINGS_BY_NAME``, ``WINDOW_SETTINGS`` (the frame window's names), ``Setting``,
``EncodeConfig``, ``PRESET_KEYS``, ``flag_of``, the
parsers (``parse_fps``, ``parse_crop_box``, ``parse_device``), ``resolve_device``, the ranges and defaults
(``DEFAULT_RESOLUTION``, ``DEFAULT_FIT``, ``FITS``, ``MIN_RESOLUTION``, ``MAX_RESOLUTION``), and the presets
(``list_presets``, ``load_preset``, ``load_config_file``, ``presets_dir``, ``describe_preset``).
May import: ``core``, ``kernels.colormaps``. Nothing here imports torch at module level (``--help`` stays fast).
"""

from ..._base import lazy_exports

_EXPORTS = {name: "._settings" for name in (
    "SETTINGS", "SETTINGS_BY_NAME", "Setting", "EncodeConfig", "PRESET_KEYS", "FLAG_NAMES", "flag_of", "parse_fps",
    "parse_crop_box", "parse_device", "resolve_device", "DEFAULT_RESOLUTION", "DEFAULT_FIT", "FITS", "ENGINES",
    "MIN_RESOLUTION", "MAX_RESOLUTION", "MIN_SIZE", "MAX_SIZE", "DEVICE_SPELLING", "WINDOW_SETTINGS")}
_EXPORTS.update({name: "._presets" for name in (
    "list_presets", "load_preset", "load_config_file", "presets_dir", "describe_preset")})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
