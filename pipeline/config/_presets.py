"""Named presets: TOML files of encode settings (``configs/NAME.toml``), validated on load.

Where presets are found: ``configs/`` at the package root, beside ``pipeline/`` (the repository's folder in
a checkout or an editable install, ``densevid/configs/`` as package data in a wheel; see pyproject.toml).
``--config FILE`` loads any file of the same form.

Precedence (the CLI's ``build_config``): built-in defaults < preset / config file < flags given on the
command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core import ConfigError, UsageError, os_reason
from ._settings import PRESET_KEYS, SETTINGS_BY_NAME

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SUFFIX = ".toml"


def presets_dir() -> Path | None:
    """The directory holding the named presets (``densevid/configs``), or None when it is missing."""
    directory = Path(__file__).resolve().parents[2] / "configs"
    return directory if directory.is_dir() else None


def list_presets() -> dict[str, Path]:
    directory = presets_dir()
    if directory is None:
        return {}
    return {p.stem: p for p in sorted(directory.glob(f"*{SUFFIX}"))}


def load_config_file(path: str | Path) -> dict:
    """Read and validate one preset file; ConfigError naming the file and key on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {os_reason(err)}") from None
    settings = {}
    for key, value in data.items():
        if key not in PRESET_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}; allowed: {', '.join(PRESET_KEYS)}")
        if key == "description":
            if not isinstance(value, str):
                raise ConfigError(f"{path}: description = {value!r} is not allowed; expected a string")
            settings[key] = value
            continue
        setting = SETTINGS_BY_NAME[key]
        try:
            settings[key] = setting.parse(value)
        except ConfigError:
            raise ConfigError(f"{path}: {key} = {value!r} is not allowed; expected {setting.parse.allowed}") from None
    if "fit" in settings and "size" not in settings:
        raise ConfigError(f"{path}: fit needs size")
    return settings


def load_preset(name: str) -> dict:
    presets = list_presets()
    if name not in presets:
        allowed = ", ".join(presets) or "none installed"
        raise UsageError(f"unknown preset {name!r}; available: {allowed} (or use --config FILE)")
    return load_config_file(presets[name])


def describe_preset(settings: dict) -> str:
    """'cmap=viridis size=512 ...' for listings."""
    return " ".join(f"{k}={v}" for k, v in settings.items() if k != "description")
