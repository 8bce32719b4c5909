"""Named presets: TOML files of encode settings (``configs/NAME.toml``), validated on load.

Where presets are found: the repository's ``configs/`` directory (a source checkout or an
editable install), else the copy installed as package data (``pipeline/presets/*.toml``, put
there by ``pip install .``; see pyproject.toml). ``--config FILE`` loads any file of the same form.

Precedence (``cli.build_config``): built-in defaults < preset / config file < flags given on the
command line.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

from ._config import CMAP_CHOICES, FIT_CHOICES, MAX_BATCH_SIZE, MAX_RESOLUTION, MAX_SIZE, MAX_SMOOTH, MIN_RESOLUTION, MIN_SIZE
from ._errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SUFFIX = ".toml"


def _int_in(lo: int, hi: int, even: bool = False, odd: bool = False):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            return f"an integer in {lo}..{hi}"
        if even and value % 2:
            return f"an even integer in {lo}..{hi}"
        if odd and value % 2 == 0:
            return f"an odd integer in {lo}..{hi}"
        return None
    return check


def _choice(choices):
    return lambda value: None if value in choices else f"one of {', '.join(choices)}"


def _type(kind, what):
    return lambda value: None if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)) else what


def _fps(value):
    from ._fps import parse_fps

    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return "a positive number or a string like \"30000/1001\""
    try:
        parse_fps(value)
    except ConfigError:
        return "a positive number (at most 1000) or a string like \"30000/1001\""
    return None


def _crop_box(value):
    from ._framing import parse_crop_box

    if isinstance(value, (list, str)):
        try:
            parse_crop_box(value)
            return None
        except ConfigError:
            pass
    return "four integers [x, y, w, h] (x, y >= 0; w, h >= 1) or a string \"x,y,w,h\""


# key -> validator (returns None when fine, else what is allowed)
KEYS = {
    "description": _type(str, "a string"),
    "model": _type(str, "a string (r50, r101, a hub file name or a path)"),
    "cmap": _choice(CMAP_CHOICES),
    "resolution": _int_in(MIN_RESOLUTION, MAX_RESOLUTION),
    "size": _int_in(MIN_SIZE, MAX_SIZE, even=True),
    "fit": _choice(FIT_CHOICES),
    "crop_box": _crop_box,
    "fps": _fps,
    "smooth": _int_in(1, MAX_SMOOTH, odd=True),
    "lossless": _type(bool, "true or false"),
    "half": _type(bool, "true or false"),
    "batch_size": _int_in(1, MAX_BATCH_SIZE),
}


def presets_dir() -> Path | None:
    """The directory holding the named presets: the repository's configs/, else the installed package data."""
    repo = Path(__file__).resolve().parent.parent / "configs"
    if repo.is_dir():
        return repo
    installed = Path(__file__).resolve().parent / "presets"
    return installed if installed.is_dir() else None


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
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    for key, value in data.items():
        if key not in KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}; allowed: {', '.join(KEYS)}")
        problem = KEYS[key](value)
        if problem:
            raise ConfigError(f"{path}: {key} = {value!r} is not allowed; expected {problem}")
    if "fps" in data:
        data["fps"] = Fraction(str(data["fps"]))
    if "crop_box" in data:
        from ._framing import parse_crop_box

        data["crop_box"] = parse_crop_box(data["crop_box"])
    if "fit" in data and "size" not in data:
        raise ConfigError(f"{path}: fit needs size")
    return data


def load_preset(name: str) -> dict:
    presets = list_presets()
    if name not in presets:
        allowed = ", ".join(presets) or "none installed"
        raise ConfigError(f"unknown preset {name!r}; available: {allowed} (or use --config FILE)")
    return load_config_file(presets[name])


def describe(settings: dict) -> str:
    """'cmap=viridis size=512 ...' for listings."""
    return " ".join(f"{k}={v}" for k, v in settings.items() if k != "description")
