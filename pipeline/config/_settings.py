"""The settings of a run: one table, one frozen config built from it.

``SETTINGS`` is the one place where a setting is defined: its default, how a value is parsed and
checked (the same for a command-line flag, a preset key, a Python argument and the ComfyUI node),
its help text, whether a preset may set it, and whether it changes what an output holds (the
output's fingerprint, for resume). The CLI builds its ``encode`` options from it, presets
validate their keys with it, ``EncodeConfig`` validates its fields with it. Adding a setting means
one row here plus the code that uses it.

Nothing here reads the environment or imports torch (``densevid --help`` stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ...kernels.colormaps import CMAP_NAMES
from ..core import ConfigError

if TYPE_CHECKING:
    import torch

FITS = ("crop", "pad", "stretch")
ENGINES = ("auto", "native", "torchscript")
DEFAULT_FIT = "crop"  # what --size frames with when --fit is not given
DEVICE_SPELLING = "auto, cpu, cuda or cuda:N"
DEFAULT_RESOLUTION = 512
MAX_FPS = 1000


# --- parsers: raw value (a command-line string, a TOML value, a Python value) -> typed value -------
# Each raises ConfigError saying what is allowed; callers add where the value came from.

def _int_in(lo: int, hi: int, parity: str | None = None, why: str = "") -> Callable[[Any], int]:
    allowed = f"an {parity + ' ' if parity else ''}integer in {lo}..{hi}"

    def parse(value):
        number = value
        if isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, int) or not lo <= number <= hi:
            raise ConfigError(f"{value!r} is not {allowed}")
        if (parity == "even" and number % 2) or (parity == "odd" and number % 2 == 0):
            raise ConfigError(f"{number} is {'odd' if number % 2 else 'even'}: it must be {parity}{why}")
        return number
    parse.allowed = allowed
    parse.bounds = (lo, hi)  # for widgets (the ComfyUI node's INT inputs)
    return parse


def _choice(choices) -> Callable[[Any], str]:
    def parse(value):
        if value not in choices:
            raise ConfigError(f"{value!r} is not one of {', '.join(choices)}")
        return value
    parse.allowed = f"one of {', '.join(choices)}"
    return parse


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{value!r} is not true or false")


_bool.allowed = "true or false"


def _text(value) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ConfigError(f"{value!r} is not a non-empty string")


_text.allowed = "a non-empty string"


def _path(value) -> Path:
    if isinstance(value, (str, Path)) and str(value).strip():
        return Path(value)
    raise ConfigError(f"{value!r} is not a path")


_path.allowed = "a path"


def parse_device(value) -> str:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N', lower-cased (spelling only; see ``resolve_device``)."""
    spec = str(value).strip().lower() if isinstance(value, str) else None
    if spec in ("auto", "cpu", "cuda") or (spec and spec.startswith("cuda:") and spec[5:].isdigit()):
        return spec
    raise ConfigError(f"{value!r} is not a device; allowed: {DEVICE_SPELLING}")


parse_device.allowed = DEVICE_SPELLING


def parse_fps(value) -> Fraction:
    """'25', '29.97', '30000/1001' (or a number) -> a positive Fraction."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Fraction)):
        raise ConfigError(f"{value!r} is not a frame rate like 25, 29.97 or 30000/1001")
    try:
        fps = value if isinstance(value, Fraction) else Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{value!r} is not a frame rate like 25, 29.97 or 30000/1001") from None
    if not 0 < fps <= MAX_FPS:
        raise ConfigError(f"{value!r} is out of range: a frame rate must be in (0, {MAX_FPS}]")
    return fps


parse_fps.allowed = f"a frame rate in (0, {MAX_FPS}] like 25, 29.97 or \"30000/1001\""


def parse_crop_box(value) -> tuple[int, int, int, int]:
    """'x,y,w,h' (or a sequence of 4 ints) -> a validated tuple (x, y >= 0; w, h >= 1)."""
    parts = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
    try:
        numbers = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != 4:
        raise ConfigError(f"{value!r} is not a crop box: four integers x,y,w,h")
    x, y, w, h = numbers
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise ConfigError(f"crop box {x},{y},{w},{h}: x and y must be >= 0, w and h >= 1")
    return numbers


parse_crop_box.allowed = "four integers x,y,w,h (x, y >= 0; w, h >= 1), or [x, y, w, h] in a preset"


# --- the table ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    name: str  # EncodeConfig field, preset key; the flag is --name-with-dashes
    default: Any
    parse: Callable[[Any], Any]
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None  # shown as a choice list (CLI) or a combo (node)
    flag: bool = True  # an option of `densevid encode`
    preset: bool = True  # a preset may set it
    output: bool = False  # changes what an output holds (pixels or timing): part of its fingerprint

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_switch(self) -> bool:
        return self.parse is _bool

    def check(self, value):
        """The parsed value; ConfigError naming the setting and what is allowed otherwise."""
        if value is None and self.default is None:
            return None
        try:
            return self.parse(value)
        except ConfigError as error:
            raise ConfigError(f"{self.name}: {error}") from None


# the original node's range (ComfyUI's MAX_RESOLUTION): saved workflows with large values stay valid
MIN_RESOLUTION, MAX_RESOLUTION = 64, 16384
MIN_SIZE, MAX_SIZE = 64, 4096
MAX_BATCH_SIZE = 256
MAX_SMOOTH = 255
MAX_WORKERS = 64
MAX_FRAMES = 10**9  # a frame index or count (a day at 10,000 frames/s fits)
MAX_EVERY_NTH = 1000

SETTINGS: tuple[Setting, ...] = (
    Setting("model", "r50", _text, metavar="NAME|PATH", output=True,
            help="r50, r101, a hub file name (densepose_r50_fpn_dl.torchscript), or a path to a TorchScript file."),
    Setting("cmap", "viridis", _choice(CMAP_NAMES), choices=CMAP_NAMES, output=True,
            help="viridis on a (68,1,84) background (MagicAnimate) or parula on black (CivitAI)."),
    Setting("resolution", None, _int_in(MIN_RESOLUTION, MAX_RESOLUTION), metavar="N", output=True,
            help=f"Short side of the image the model sees, and of the output [default: {DEFAULT_RESOLUTION}]. "
                 "With --size, the model sees what --fit says unless --resolution is given too."),
    Setting("device", "auto", parse_device, metavar="DEVICE", preset=False,
            help=f"Where the model runs: {DEVICE_SPELLING} (auto: CUDA when available)."),
    Setting("engine", "auto", _choice(ENGINES), choices=ENGINES, preset=True,
            help="What runs the model: native (the DensePose R-CNN built from the file's weights, --batch-size "
                 "frames per call), torchscript (the file itself, one frame per call) or auto: native where the "
                 "file's weights map onto it (else the file, with a note); on the CPU in float32 one frame per "
                 "call, which is the file's output bit for bit."),
    Setting("batch_size", 8, _int_in(1, MAX_BATCH_SIZE), metavar="N",
            help="Frames per batch moved between pipeline stages, and per call of a native model that batches "
                 "(halved on CUDA when a batch does not fit)."),
    Setting("workers", None, _int_in(1, MAX_WORKERS), metavar="N", preset=False,
            help="Model calls at once, each in its own thread (its own CUDA stream on a GPU; on the CPU "
                 "the cores are split between them). The output is the same for every N. Default: 4 on CUDA "
                 "(2 for a native model that batches); on the CPU one per core (torch's thread count) up to 4, "
                 "then more threads per worker."),
    Setting("half", False, _bool, output=True,
            help="Run the model in half precision: float16 on CUDA, bfloat16 on a CPU that has it natively "
                 "(AVX512-BF16 or AMX; ignored on other CPUs, with a warning). Float32 is the node's output."),
    Setting("lossless", False, _bool, output=True,
            help="Write lossless RGB (FFV1 in .mkv) that decodes to exactly the rendered pixels."),
    Setting("overwrite", False, _bool, preset=False,
            help="Redo inputs whose output exists (default: an output made from the same input with the same "
                 "settings and model is skipped; one made otherwise is refused)."),
    # framing, frame rate, smoothing
    Setting("size", None, _int_in(MIN_SIZE, MAX_SIZE, "even", " (the output is SIZE x SIZE H.264: yuv420p "
                                                             "needs even sides)"),
            metavar="SIZE", output=True, help="Output exactly SIZE x SIZE (even). See --fit. MagicAnimate wants 512."),
    Setting("fit", None, _choice(FITS), choices=FITS, output=True,
            help="How --size frames a non-square video. crop (default): a centred square (or --crop-box) is cut "
                 "from the SOURCE before detection, so the model sees the person at SIZE. pad: the model sees the "
                 "whole frame (long side SIZE); the hint is centred on the background colour. stretch: the hint "
                 "is resized to SIZE x SIZE (nearest), as MagicAnimate's demo does."),
    Setting("crop_box", None, parse_crop_box, metavar="X,Y,W,H", output=True,
            help="Crop this box of the upright source before detection (square with --fit crop)."),
    Setting("fps", None, parse_fps, metavar="F", output=True,
            help="Resample to F frames/s by dropping or repeating frames (25, 29.97, 30000/1001); dropped frames "
                 "are never detected. Default: keep the source's timestamps."),
    Setting("smooth", 1, _int_in(1, MAX_SMOOTH, "odd", " (the window is centred; 1 = off)"), metavar="K", output=True,
            help="Per-pixel temporal majority vote of part labels over K frames (odd, centred; 1 = off, the "
                 "node's exact output)."),
    # the frame window: which source frames are encoded, before --fps resamples them
    Setting("skip_frames", 0, _int_in(0, MAX_FRAMES), metavar="N", output=True,
            help="Skip the first N frames of the source; the output starts with frame N, at time 0."),
    Setting("every_nth", 1, _int_in(1, MAX_EVERY_NTH), metavar="K", output=True,
            help="Keep every K-th frame (after --skip-frames); each kept frame lasts until the next kept one, "
                 "so the video keeps its length and speed at 1/K of the frame rate."),
    Setting("max_frames", None, _int_in(1, MAX_FRAMES), metavar="M", output=True,
            help="Encode at most M frames (counted after --skip-frames and --every-nth). Default: all."),
    # extra outputs (paths: not preset keys; with several inputs they name directories)
    Setting("frames_dir", None, _path, metavar="DIR", preset=False,
            help="Also write the hint frames as numbered lossless PNGs DIR/000000.png ..."),
    Setting("preview_path", None, _path, metavar="PATH.mp4", preset=False,
            help="Also write a side-by-side H.264 video: source (framed the same way) | hint."),
    Setting("iuv_path", None, _path, metavar="PATH.npz", preset=False,
            help="Also write I (uint8 part index), U, V (float16 in [0,1]) and pts_seconds per frame as a "
                 "compressed .npz (numpy.load)."),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
WINDOW_SETTINGS = ("skip_frames", "every_nth", "max_frames")  # which source frames are encoded
PRESET_KEYS = ("description",) + tuple(s.name for s in SETTINGS if s.preset)
# the CLI spells three outputs differently from their field names
FLAG_NAMES = {"frames_dir": "--frames", "preview_path": "--preview", "iuv_path": "--iuv"}


def flag_of(name: str) -> str:
    return FLAG_NAMES.get(name, SETTINGS_BY_NAME[name].option)


@dataclass(frozen=True)
class EncodeConfig:
    """Everything a run needs, validated on construction (every field through ``SETTINGS``).

    ``resolution=None`` (the default) means "not chosen": 512, or what ``size``/``fit`` imply.
    ``model_dir=None``: the model resolver reads DENSEVID_MODEL_DIR (see ``_models``).
    """

    model: str = "r50"
    cmap: str = "viridis"
    resolution: int | None = None
    device: str = "auto"
    engine: str = "auto"
    batch_size: int = 8
    workers: int | None = None
    half: bool = False
    lossless: bool = False
    overwrite: bool = False
    size: int | None = None
    fit: str | None = None
    crop_box: tuple[int, int, int, int] | None = None
    fps: Fraction | None = None
    smooth: int = 1
    skip_frames: int = 0
    every_nth: int = 1
    max_frames: int | None = None
    frames_dir: Path | None = None
    preview_path: Path | None = None
    iuv_path: Path | None = None
    # not a setting of the table: where to look for model files first
    model_dir: Path | None = None

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            object.__setattr__(self, setting.name, setting.check(getattr(self, setting.name)))
        if self.model_dir is not None:
            object.__setattr__(self, "model_dir", _path(self.model_dir))
        if self.fit is not None and self.size is None:
            raise ConfigError(f"fit {self.fit!r} needs a size (--size N)")
        if self.iuv_path is not None and self.smooth > 1:
            raise ConfigError("--iuv records the model's per-frame output and cannot be combined with --smooth "
                              "(smoothed labels have no U/V)")

    @property
    def detection_resolution(self) -> int:
        """The short side the model sees without framing (``resolution`` or the default)."""
        return self.resolution if self.resolution is not None else DEFAULT_RESOLUTION

    @property
    def framing_resolution(self) -> int | None:
        """The resolution the framing is planned with: with ``size`` None unless given (the framing implies
        it from the input's size), else ``detection_resolution``."""
        return self.resolution if self.size is not None else self.detection_resolution

    @property
    def effective_fit(self) -> str | None:
        """How ``size`` frames the video (``fit``, by default ``DEFAULT_FIT``); None without ``size``."""
        return (self.fit or DEFAULT_FIT) if self.size is not None else None

    @property
    def torch_device(self) -> "torch.device":
        return resolve_device(self.device)



def resolve_device(spec: str) -> "torch.device":
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device; auto picks CUDA when available."""
    import torch  # here, not at the top: the CLI's --help and argument errors need no torch

    spec = parse_device(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} requested but CUDA is not available (torch {torch.__version__}); "
                          f"use --device cpu")
    device = torch.device(spec)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    return device
