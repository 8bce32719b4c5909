"""Finding, loading and calling the DensePose TorchScript models.

Two export styles exist and both are supported, each with its own adapter to ``Detections``:

* "tuple" (the hub files ``densepose_r50_fpn_dl.torchscript`` / ``densepose_r101_fpn_dl.torchscript``
  used by the ComfyUI node): ``forward(image)`` with ``image`` a CHW uint8 RGB tensor, returning
  ``(boxes_xyxy [N,4], coarse_segm [N,2,S,S], fine_segm [N,25,S,S], u [N,25,S,S], v [N,25,S,S])``.
* "dict" (DensePose-TorchScript releases): ``forward(image, bgr: bool = True)`` with ``image`` HWC
  uint8 BGR, returning a dict with ``pred_boxes``, ``scores``, ``pred_classes``,
  ``pred_densepose_coarse_segm``, ``pred_densepose_fine_segm``, ``pred_densepose_u``,
  ``pred_densepose_v``. All instances the model returns are kept (no extra score filter).

The style is read from the TorchScript forward schema, never guessed by running the model; one small
probe call on a black image then checks the output contract before any real frame is processed.

Hub access goes through ``huggingface_hub`` (which honours ``HF_HOME`` / ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE``). ``huggingface_hub`` reads those variables once, at import; this module re-reads
them on every call, so a change made after import (e.g. by a test) is honoured too, and the cache is
always checked first, so a cached file works offline. ``DENSEVID_MODEL_DIR`` is read here too, when the
caller passes no ``model_dir``: every entry point (CLI, Python API, batch, Ray, ComfyUI) honours it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import torch

from ._errors import ModelError
from ._types import N_COARSE_CHANNELS, N_FINE_CHANNELS, Detections

MODEL_REPO = "LayerNorm/DensePose-TorchScript-with-hint-image"
MODEL_FILES = {"r50": "densepose_r50_fpn_dl.torchscript", "r101": "densepose_r101_fpn_dl.torchscript"}
DEFAULT_MODEL = "r50"
PATH_SUFFIXES = (".pt", ".pth", ".torchscript", ".ts")
PROBE_SIZE = 64  # side of the black probe image

TUPLE_CONTRACT = ("forward(image: uint8 CHW RGB) -> (boxes_xyxy [N,4], coarse_segm [N,2,S,S], "
                  "fine_segm [N,25,S,S], u [N,25,S,S], v [N,25,S,S]), all float")
DICT_KEYS = ("pred_boxes", "pred_densepose_coarse_segm", "pred_densepose_fine_segm", "pred_densepose_u",
             "pred_densepose_v")
DICT_CONTRACT = ("forward(image: uint8 HWC BGR, bgr: bool = True) -> dict with pred_boxes [N,4], "
                 "pred_densepose_coarse_segm [N,2,S,S], pred_densepose_fine_segm/u/v [N,25,S,S], all float")
STYLES = ("tuple", "dict")

_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def _hub_cli() -> str:
    """The command-line tool the installed huggingface_hub provides: ``hf`` (>= 0.34) or ``huggingface-cli``."""
    try:
        from importlib.metadata import distribution
        scripts = {ep.name for ep in distribution("huggingface_hub").entry_points if ep.group == "console_scripts"}
    except Exception:
        return "hf"
    return "huggingface-cli" if "hf" not in scripts and "huggingface-cli" in scripts else "hf"


def download_command(filename: str) -> str:
    """The shell command that puts ``filename`` into the hub cache, for the installed huggingface_hub."""
    return f"{_hub_cli()} download {MODEL_REPO} {filename}"


# --- resolution -----------------------------------------------------------------------------------

def _one_line(text: object, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _hf_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub understands it, read now.

    huggingface_hub evaluates these once at import (``huggingface_hub.constants.HF_HUB_OFFLINE``); a
    variable present in the environment now wins, otherwise the import-time value is used.
    """
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(name)
        if value:
            return value.strip().upper() in _TRUE_VALUES
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _hf_cache_dir() -> Path:
    """The hub cache directory huggingface_hub would use, from the environment as it is now."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(name)
        if value:
            return Path(os.path.expandvars(os.path.expanduser(value)))
    home = os.environ.get("HF_HOME")
    if not home:
        home = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "huggingface")
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or (os.altsep is not None and os.altsep in spec) or "/" in spec or spec.startswith("~")


def _allowed_specs() -> str:
    names = list(MODEL_FILES) + list(MODEL_FILES.values())
    return ", ".join(names) + f", or a path to a TorchScript file ({'/'.join(PATH_SUFFIXES)})"


def _local_file(spec: str) -> Path:
    path = Path(os.path.expanduser(spec))
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    return path


def resolve_model_path(spec: str, model_dir: str | os.PathLike | None, offline: bool | None = None) -> Path:
    """Path of the model file named by ``spec``, finding or downloading it if needed.

    ``spec`` is "r50", "r101", one of their file names, or a path to a local TorchScript file. A name
    is looked up in ``model_dir`` first (default: $DENSEVID_MODEL_DIR), then in the Hugging Face
    cache, then downloaded from ``MODEL_REPO`` unless offline (``offline=None``: HF_HUB_OFFLINE decides).
    Raises ModelError (one line) when the file cannot be found or obtained.
    """
    spec = str(spec).strip()
    if not spec:
        raise ModelError(f"empty model name; use one of: {_allowed_specs()}")
    if _looks_like_path(spec):
        return _local_file(spec)
    known = {**MODEL_FILES, **{name: name for name in MODEL_FILES.values()}}
    if spec not in known:
        if spec.lower().endswith(PATH_SUFFIXES):
            return _local_file(spec)
        raise ModelError(f"unknown model {spec!r}; use one of: {_allowed_specs()}")
    if Path(spec).is_file():  # a file name that exists in the working directory is a path
        return Path(spec)
    filename = known[spec]

    looked: list[str] = []
    if model_dir is None:
        model_dir = os.environ.get("DENSEVID_MODEL_DIR") or None
    if model_dir:
        directory = Path(os.path.expanduser(str(model_dir)))
        candidate = directory / filename
        if candidate.is_file():
            return candidate
        looked.append(f"DENSEVID_MODEL_DIR {directory}")

    cache_dir = _hf_cache_dir()
    looked.append(f"hub cache {cache_dir}")
    is_offline = _hf_offline() if offline is None else bool(offline)
    reason = ("offline: HF_HUB_OFFLINE is set" if offline is None else "offline") if is_offline else ""
    try:
        import huggingface_hub
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        huggingface_hub = None
        reason = reason or f"huggingface_hub is not installed ({_one_line(exc, 80)})"
    if huggingface_hub is not None:
        cached = huggingface_hub.try_to_load_from_cache(MODEL_REPO, filename, cache_dir=str(cache_dir))
        if isinstance(cached, str) and Path(cached).is_file():
            return Path(cached)
        if not is_offline:
            try:
                downloaded = huggingface_hub.hf_hub_download(MODEL_REPO, filename, cache_dir=str(cache_dir))
                return Path(downloaded)
            except Exception as exc:  # network, HTTP, disk and offline-mode errors all end here
                if type(exc).__name__ == "LocalEntryNotFoundError":  # what huggingface_hub raises with no network
                    reason = "download failed: the hub is unreachable (no network?)"
                else:
                    reason = f"download failed: {type(exc).__name__}: {_one_line(exc, 120)}"
    raise ModelError(
        f"model file {filename} not found (looked in {'; '.join(looked)}) and not downloaded ({reason}); "
        f"provide it with --model PATH, put it in the directory named by DENSEVID_MODEL_DIR, "
        f"or download it with: {download_command(filename)}"
    )


# --- loading --------------------------------------------------------------------------------------

def _torchvision_version() -> str:
    try:
        from importlib.metadata import version
        return version("torchvision")
    except Exception:
        return "unknown"


def _version_mismatch(path: Path | None, detail: str) -> ModelError:
    where = f"cannot load {path.name}: " if path is not None else ""
    return ModelError(
        f"{where}torchvision's operators are unavailable ({_one_line(detail, 100)}): torch {torch.__version__} and "
        f"torchvision {_torchvision_version()} versions don't match; install the torchvision release built for "
        f"this torch"
    )


def _import_torchvision(path: Path | None = None) -> None:
    """The models call torchvision::nms: torchvision must register its ops before torch.jit.load."""
    try:
        import torchvision  # noqa: F401
    except Exception as exc:
        raise _version_mismatch(path, f"import torchvision failed: {type(exc).__name__}: {exc}") from exc


def _is_unknown_op_error(message: str) -> bool:
    return "torchvision::" in message or "Unknown builtin op" in message or "torchvision.ops" in message


def detect_style(module: torch.jit.ScriptModule, path: Path) -> str:
    """"tuple" or "dict", from the TorchScript forward schema (argument names and return type)."""
    try:
        schema = module.forward.schema
    except Exception as exc:
        raise ModelError(f"{path} has no scripted forward method; expected {TUPLE_CONTRACT}") from exc
    arguments = [a.name for a in schema.arguments if a.name != "self"]
    returns = [r.type for r in schema.returns]
    if len(returns) == 1 and isinstance(returns[0], torch._C.DictType):
        return "dict"
    if len(returns) == 1 and isinstance(returns[0], torch._C.TupleType) and "bgr" not in arguments:
        return "tuple"
    if "bgr" in arguments:
        raise ModelError(f"{path} does not honour the model contract: forward{tuple(arguments)} returns "
                         f"{', '.join(map(str, returns))}; expected {DICT_CONTRACT}")
    raise ModelError(f"{path} does not honour the model contract: forward returns "
                     f"{', '.join(map(str, returns)) or 'nothing'}; expected {TUPLE_CONTRACT} "
                     f"or {DICT_CONTRACT}")


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", half: bool = False) -> "DensePoseModel":
    """Load a DensePose TorchScript model onto ``device``, detect its export style and probe its contract."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    device = torch.device(device)
    _import_torchvision(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated but is the format
            module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        message = str(exc)
        if _is_unknown_op_error(message):
            raise _version_mismatch(path, message.strip().splitlines()[0] if message.strip() else message) from exc
        raise ModelError(
            f"{path} is not a TorchScript model ({type(exc).__name__}: {_one_line(message, 100)}); expected a "
            f"TorchScript DensePose export such as {MODEL_FILES[DEFAULT_MODEL]} from {MODEL_REPO}"
        ) from exc
    if not isinstance(module, torch.jit.ScriptModule):  # pragma: no cover - torch.jit.load always gives one
        raise ModelError(f"{path} did not load as a TorchScript module")
    module.eval()
    style = detect_style(module, path)
    model = DensePoseModel(module, path, style, device, half=half)
    model.probe()
    return model


# --- calling --------------------------------------------------------------------------------------

class DensePoseModel:
    """A loaded DensePose TorchScript model of a known export style; ``detect`` gives ``Detections``.

    ``half=True`` runs the model under ``torch.autocast("cuda", dtype=torch.float16)`` on CUDA (the
    models take uint8 images, so ``module.half()`` is not an option); the logits then come back in
    the dtype the model produced (often float16). On CPU ``half`` is ignored: everything runs in float32.
    """

    def __init__(self, module: torch.jit.ScriptModule, path: Path, style: str, device: torch.device | str,
                 half: bool = False) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.module = module
        self.path = Path(path)
        self.style = style
        self.device = torch.device(device)
        self.half = bool(half) and self.device.type == "cuda"

    @property
    def contract(self) -> str:
        return TUPLE_CONTRACT if self.style == "tuple" else DICT_CONTRACT

    def __repr__(self) -> str:
        return f"DensePoseModel({self.path.name}, style={self.style}, device={self.device}, half={self.half})"

    def _autocast(self):
        if self.half:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def detect(self, image_rgb_hwc: torch.Tensor) -> Detections:
        """Run the model on one uint8 HWC RGB image (already on ``self.device``)."""
        if not isinstance(image_rgb_hwc, torch.Tensor) or image_rgb_hwc.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 tensor, got {getattr(image_rgb_hwc, 'dtype', type(image_rgb_hwc))}")
        if image_rgb_hwc.ndim != 3 or image_rgb_hwc.shape[-1] != 3:
            raise ValueError(f"expected an [H, W, 3] image, got {list(image_rgb_hwc.shape)}")
        with torch.inference_mode(), self._autocast():
            if self.style == "tuple":
                output = self.module(image_rgb_hwc.permute(2, 0, 1))
                return self._adapt_tuple(output)
            output = self.module(image_rgb_hwc.flip(-1).contiguous(), True)
            return self._adapt_dict(output)

    def probe(self) -> None:
        """One call on a small black image: the outputs must honour the contract (ModelError if not)."""
        image = torch.zeros((PROBE_SIZE, PROBE_SIZE, 3), dtype=torch.uint8, device=self.device)
        try:
            detections = self.detect(image)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"{self.path} failed on a {PROBE_SIZE}x{PROBE_SIZE} probe image as a {self.style}-style model "
                f"({type(exc).__name__}: {_one_line(exc, 100)}); expected {self.contract}"
            ) from exc
        if not bool(torch.isfinite(detections.boxes_xyxy).all()):
            raise ModelError(f"{self.path} returned non-finite boxes on a probe image; expected {self.contract}")

    # adapters: one per style, both ending in _validated
    def _adapt_tuple(self, output: object) -> Detections:
        if not isinstance(output, (tuple, list)) or len(output) != 5:
            raise self._broken(f"returned {_describe(output)}")
        return self._validated(*output)

    def _adapt_dict(self, output: object) -> Detections:
        if not isinstance(output, dict):
            raise self._broken(f"returned {_describe(output)}")
        missing = [key for key in DICT_KEYS if key not in output]
        if missing:
            raise self._broken(f"returned a dict without {', '.join(missing)}")
        return self._validated(*(output[key] for key in DICT_KEYS))

    def _broken(self, what: str) -> ModelError:
        return ModelError(f"{self.path} does not honour the {self.style}-style model contract: it {what}; "
                          f"expected {self.contract}")

    def _validated(self, boxes: object, coarse: object, fine: object, u: object, v: object) -> Detections:
        names = ("boxes", "coarse_segm", "fine_segm", "u", "v")
        tensors = (boxes, coarse, fine, u, v)
        for name, t in zip(names, tensors):
            if not isinstance(t, torch.Tensor):
                raise self._broken(f"returned {_describe(t)} as {name}")
            if not t.is_floating_point():
                raise self._broken(f"returned {name} of dtype {t.dtype}")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise self._broken(f"returned boxes of shape {list(boxes.shape)}")
        n = int(boxes.shape[0])
        dense = []
        spatial = None
        for name, t, channels in zip(names[1:], tensors[1:], (N_COARSE_CHANNELS,) + (N_FINE_CHANNELS,) * 3):
            if n == 0 and t.numel() == 0 and not (t.ndim == 4 and t.shape[1] == channels):
                t = t.new_zeros((0, channels, 1, 1))  # some exports return bare empties when nobody is found
            elif t.ndim != 4 or t.shape[0] != n or t.shape[1] != channels:
                raise self._broken(f"returned {name} of shape {list(t.shape)} for {n} boxes")
            if n and spatial is None:
                spatial = tuple(t.shape[2:])
            elif n and tuple(t.shape[2:]) != spatial:
                raise self._broken(f"returned {name} of size {list(t.shape[2:])}, not {list(spatial)}")
            dense.append(t)
        return Detections(boxes.to(torch.float32), *dense)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    return f"a {type(value).__name__}"
