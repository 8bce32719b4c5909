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
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ._errors import ModelError, one_line
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

# the line a Python or TorchScript traceback ends with: "RuntimeError: ...", "builtins.ValueError: ..."
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Warning|Interrupt|Exit)\b:?")


def root_cause(exc: BaseException) -> str:
    """The root cause of ``exc`` on one line, whole: the exception line a TorchScript traceback ends with
    (e.g. ``RuntimeError: Input type (float) and bias type (c10::Half) should be the same``), or the
    exception's own message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for index in range(len(lines) - 1, -1, -1):
        if _EXCEPTION_LINE.match(lines[index]):
            return one_line(" ".join(lines[index:]))
    if not lines:
        return type(exc).__name__
    if len(lines) > 1 and lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return f"{type(exc).__name__}: {lines[-1]}"
    return f"{type(exc).__name__}: {one_line(' '.join(lines))}"


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
    found = find_hub_file(filename, model_dir, offline)
    if found.path is not None:
        return found.path
    name = next((short for short, file in MODEL_FILES.items() if file == filename), filename)
    raise ModelError(
        f"model file {filename} not found (looked in {'; '.join(found.looked)}) and not downloaded ({found.reason}); "
        f"provide it with --model PATH, put it in the directory named by DENSEVID_MODEL_DIR, "
        f"or download it where there is internet with: densevid models download {name} (or: "
        f"{download_command(filename)})"
    )


@dataclass(frozen=True)
class HubSearch:
    """A hub model file looked for: ``path`` (None: neither found nor downloaded, ``reason`` says why),
    where it was looked for, in words, and where it was found: ``source`` "DENSEVID_MODEL_DIR", "hub cache"
    or "downloaded"."""

    path: Path | None
    looked: tuple[str, ...]
    reason: str = ""
    source: str = ""


def find_hub_file(filename: str, model_dir: str | os.PathLike | None = None, offline: bool | None = None,
                  download_dir: str | os.PathLike | None = None) -> HubSearch:
    """``filename`` (a file of MODEL_REPO) from ``model_dir`` (default: $DENSEVID_MODEL_DIR), the hub cache, or
    downloaded unless offline (``offline=None``: HF_HUB_OFFLINE decides): into the hub cache, or with
    ``download_dir`` as a plain file in that directory (huggingface_hub writes it under a temporary name
    there and renames it when complete)."""
    looked: list[str] = []
    if model_dir is None:
        model_dir = os.environ.get("DENSEVID_MODEL_DIR") or None
    if model_dir:
        directory = Path(os.path.expanduser(str(model_dir)))
        candidate = directory / filename
        if candidate.is_file():
            return HubSearch(candidate, tuple(looked), source="DENSEVID_MODEL_DIR")
        looked.append(f"DENSEVID_MODEL_DIR {directory}")
    else:
        looked.append("DENSEVID_MODEL_DIR (not set)")

    cache_dir = _hf_cache_dir()
    looked.append(f"hub cache {cache_dir}")
    is_offline = _hf_offline() if offline is None else bool(offline)
    reason = ("offline: HF_HUB_OFFLINE is set" if offline is None else "offline") if is_offline else ""
    try:
        import huggingface_hub
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        huggingface_hub = None
        reason = reason or f"huggingface_hub is not installed ({one_line(exc, 80)})"
    if huggingface_hub is not None:
        cached = huggingface_hub.try_to_load_from_cache(MODEL_REPO, filename, cache_dir=str(cache_dir))
        if isinstance(cached, str) and Path(cached).is_file():
            return HubSearch(Path(cached), tuple(looked), source="hub cache")
        if not is_offline:
            endpoint = hub_endpoint()
            problem = hub_problem(filename, endpoint)
            if problem is None:
                # cache_dir also with local_dir: huggingface_hub copies from that cache when the file is
                # there, and its own default is the cache of HF_HOME as it was at its import
                target = {"local_dir": str(download_dir)} if download_dir is not None else {}
                try:
                    downloaded = huggingface_hub.hf_hub_download(MODEL_REPO, filename, endpoint=endpoint,
                                                                 cache_dir=str(cache_dir), **target)
                    return HubSearch(Path(downloaded), tuple(looked), source="downloaded")
                except Exception as exc:  # network, HTTP, disk and offline-mode errors all end here
                    problem = root_cause(exc)
            reason = f"download failed: {one_line(problem, 200)}"
    return HubSearch(None, tuple(looked), reason)


def hub_file_url(filename: str) -> str:
    """The address of ``filename`` of MODEL_REPO on the hub, to download with a browser."""
    from huggingface_hub import hf_hub_url

    return hf_hub_url(MODEL_REPO, filename, endpoint=hub_endpoint())


# --- the hub ----------------------------------------------------------------------------------------

HUB_PROBE_TIMEOUT = 5.0  # seconds for one HEAD request; HF_HUB_ETAG_TIMEOUT overrides it


def hub_endpoint() -> str:
    """The hub's URL: HF_ENDPOINT as it is now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_problem(filename: str, endpoint: str | None = None) -> str | None:
    """Why the hub cannot serve ``filename`` of MODEL_REPO right now (one line), or None when it can.

    One HEAD request, no retries: where nothing is cached huggingface_hub retries a failed metadata
    request with backoff (tens of seconds, a log line per try), so an unreachable hub is found out here
    first, in seconds.
    """
    import huggingface_hub

    endpoint = endpoint or hub_endpoint()
    timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or HUB_PROBE_TIMEOUT)
    url = huggingface_hub.hf_hub_url(MODEL_REPO, filename, endpoint=endpoint)
    try:
        huggingface_hub.get_hf_file_metadata(url, timeout=timeout)
    except Exception as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(status, int):
            return f"the hub at {endpoint} answered HTTP {status} for {filename}"
        return f"the hub at {endpoint} is unreachable ({one_line(root_cause(exc), 120)})"
    return None


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
        f"{where}torchvision's operators are unavailable ({one_line(detail, 320)}): torch {torch.__version__} and "
        f"torchvision {_torchvision_version()} versions don't match; install the torchvision release built for "
        f"this torch"
    )


_TORCHVISION_EXTENSIONS = ("_C_stable", "_C")  # the C++ operator library's name, newest torchvision first


def _torchvision_ops_registered() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018  (resolving the op is the check)
        torch.ops.torchvision.roi_align  # noqa: B018
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
        import torchvision  # noqa: F401
    except Exception as exc:
        raise _version_mismatch(path, f"{failure}; import torchvision failed: {root_cause(exc)}") from exc
    if not _torchvision_ops_registered():
        raise _version_mismatch(path, failure)


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


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", half: bool | str = False
               ) -> "DensePoseModel":
    """Load a DensePose TorchScript model onto ``device``, detect its export style and probe its contract.

    The precision it runs in follows the weights and the device (see ``plan_precision``): float16 exports
    (``--fp16`` releases) run in float32 on the CPU, natively in float16 on CUDA. ``half`` asks for float16
    on CUDA for float32 exports: True or "autocast" (torch.autocast, which reaches the scripted ops), or
    "native" (the weights converted with ``.half()``, as the float16 exports run). Ignored on the CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    device = torch.device(device)
    if half not in (False, True) + HALF_ROUTES:
        raise ValueError(f"half must be a bool or one of {HALF_ROUTES}, got {half!r}")
    register_torchvision_ops(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated but is the format
            module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        message = str(exc)
        if _is_unknown_op_error(message):
            raise _version_mismatch(path, message.strip().splitlines()[0] if message.strip() else message) from exc
        raise ModelError(
            f"{path} is not a TorchScript model ({one_line(root_cause(exc), 160)}); expected a "
            f"TorchScript DensePose export such as {MODEL_FILES[DEFAULT_MODEL]} from {MODEL_REPO}"
        ) from exc
    if not isinstance(module, torch.jit.ScriptModule):  # pragma: no cover - torch.jit.load always gives one
        raise ModelError(f"{path} did not load as a TorchScript module")
    module.eval()
    if device.type == "cuda":
        # TorchScript's CUDA fuser (NNC) compiles elementwise groups of a graph after its first runs and
        # failed on some ("Global alloc not supported yet", a stand-in on an H100); unfused, the graph has
        # no shape guards either, so no later re-profiling. The time is in convolutions. Process-wide.
        torch._C._jit_set_texpr_fuser_enabled(False)
    stored = weights_dtype(module)
    precision = plan_precision(stored, device, half)
    if precision.convert_to is not None:
        module = module.to(precision.convert_to)  # only floating-point weights change dtype
    if precision.convert_to == torch.float32:
        warnings.warn(ModelWarning(f"{path.name} has {_dtype_name(stored)} weights: on the CPU they run in float32 "
                                   f"({_dtype_name(stored)} runs on CUDA)"), stacklevel=2)
    style = detect_style(module, path)
    model = DensePoseModel(module, path, style, device, precision=precision)
    model.probe()
    _warn_rpn_size_order(module, path)
    return model


# --- precision ------------------------------------------------------------------------------------

HALF_ROUTES = ("autocast", "native")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Precision:
    """How a model runs: ``weights`` as stored in the file, ``runs`` the dtype its convolutions compute in,
    ``convert_to`` the dtype the weights are converted to at load (None: as stored), ``autocast``."""

    weights: torch.dtype | None
    runs: torch.dtype
    convert_to: torch.dtype | None = None
    autocast: bool = False

    def describe(self) -> str:
        """E.g. "float16 weights, run in float32" or "float32 weights, run in float16 (autocast)"."""
        weights = _dtype_name(self.weights) if self.weights is not None else "no floating-point"
        route = " (autocast)" if self.autocast else ""
        return f"{weights} weights, run in {_dtype_name(self.runs)}{route}"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def weights_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """The dtype of most of a module's floating-point weights (parameters and buffers); None if it has none."""
    counts: dict[torch.dtype, int] = {}
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            counts[tensor.dtype] = counts.get(tensor.dtype, 0) + tensor.numel()
    return max(counts, key=counts.get) if counts else None


def plan_precision(weights: torch.dtype | None, device: torch.device, half: bool | str = False) -> Precision:
    """The precision a model with ``weights`` runs in on ``device`` (``half``: see ``load_model``).

    On the CPU everything runs in float32 (torchvision's CPU kernels, e.g. nms, have no float16): float16
    or bfloat16 weights are converted, which is exactly what the exports' own runner does. On CUDA a
    float16/bfloat16 export runs as it is; a float32 export runs in float32, or in float16 with ``half``.
    """
    low = weights in _LOW_PRECISION
    if device.type != "cuda":
        return Precision(weights, torch.float32, convert_to=torch.float32 if low else None)
    if low:
        return Precision(weights, weights)
    if half == "native":
        return Precision(weights, torch.float16, convert_to=torch.float16)
    if half:
        return Precision(weights, torch.float16, autocast=True)
    return Precision(weights, torch.float32)


# --- known export bugs ----------------------------------------------------------------------------

# detectron2 gives the RPN the padded image's size as (h, w); the dict-style releases build it as
# torch.tensor([images.shape[3], images.shape[2]]), which TorchScript prints like this
_RPN_SIZE_WH = re.compile(r"\(torch\.size\((\w+)\)\)\[3\], \(torch\.size\(\1\)\)\[2\]|"
                          r"torch\.size\((\w+), 3\), torch\.size\(\2, 2\)")
_warned_rpn_size: set[str] = set()


def rpn_size_order_bug(module: torch.jit.ScriptModule) -> str | None:
    """Where (a submodule name) the RPN of ``module`` builds the image size as (w, h); None if it does not."""
    for name, submodule in module.named_modules():
        kind = getattr(submodule, "original_name", "")
        if not (name.split(".")[-1] in ("proposal_generator", "rpn") or "RPN" in kind or "Proposal" in kind):
            continue
        try:
            methods = submodule._c._method_names()
            codes = [getattr(submodule, method).code for method in methods]
        except Exception:  # no TorchScript source kept (e.g. a module of C++ methods only)
            continue
        if any(_RPN_SIZE_WH.search(code) for code in codes):
            return name or kind
    return None


def _warn_rpn_size_order(module: torch.jit.ScriptModule, path: Path) -> None:
    """Say once per model file that its RPN clips every box of a non-square frame to the short side."""
    where = rpn_size_order_bug(module)
    if where is None or str(path) in _warned_rpn_size:
        return
    _warned_rpn_size.add(str(path))
    warnings.warn(ModelWarning(
        f"{path.name}: its RPN ({where}) takes the image size as (w, h) where detectron2 means (h, w), so on a "
        f"non-square frame every box is clipped to the short side (in a portrait frame nobody is found below "
        f"y = width); a square frame avoids it: --size 512 --fit crop gives the model a 512x512 square (--fit pad "
        f"does not)"), stacklevel=3)


class ModelWarning(UserWarning):
    """Something about a loaded model the user should know: a precision it cannot run in here, a known bug."""


# --- calling --------------------------------------------------------------------------------------

class DensePoseModel:
    """A loaded DensePose TorchScript model of a known export style; ``detect`` gives ``Detections``.

    ``precision`` (see ``plan_precision``) says how it runs; with ``precision.autocast`` every call runs
    under ``torch.autocast("cuda", dtype=torch.float16)``: autocast is thread-local dispatcher state, so it
    reaches the ops inside the TorchScript interpreter too. In float16 the logits come back in float16.
    """

    def __init__(self, module: torch.jit.ScriptModule, path: Path, style: str, device: torch.device | str,
                 half: bool = False, precision: Precision | None = None) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.module = module
        self.path = Path(path)
        self.style = style
        self.device = torch.device(device)
        self.precision = precision or plan_precision(torch.float32, self.device, half)
        # TorchScript profiles a graph's first runs, then builds its optimised plan; the profiling is
        # not thread-safe (concurrent first calls from model workers segfaulted), so the first calls
        # run one at a time and the rest concurrently
        self._first_calls = torch._C._jit_get_num_profiled_runs() + 1
        self._first_calls_lock = threading.Lock()

    @property
    def half(self) -> bool:
        """Whether the model computes in float16 (a float16 export on CUDA, or ``half`` there)."""
        return self.precision.runs == torch.float16

    @property
    def contract(self) -> str:
        return TUPLE_CONTRACT if self.style == "tuple" else DICT_CONTRACT

    def describe(self) -> str:
        """One line for the user: file, style, device and precision."""
        return f"{self.path.name} ({self.style}-style) on {self.device}: {self.precision.describe()}"

    def __repr__(self) -> str:
        return (f"DensePoseModel({self.path.name}, style={self.style}, device={self.device}, "
                f"precision={self.precision.describe()!r})")

    def _autocast(self):
        if self.precision.autocast:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def detect(self, image_rgb_hwc: torch.Tensor) -> Detections:
        """Run the model on one uint8 HWC RGB image (already on ``self.device``); thread-safe."""
        if not isinstance(image_rgb_hwc, torch.Tensor) or image_rgb_hwc.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 tensor, got {getattr(image_rgb_hwc, 'dtype', type(image_rgb_hwc))}")
        if image_rgb_hwc.ndim != 3 or image_rgb_hwc.shape[-1] != 3:
            raise ValueError(f"expected an [H, W, 3] image, got {list(image_rgb_hwc.shape)}")
        if self._first_calls > 0:
            with self._first_calls_lock:
                if self._first_calls > 0:
                    detections = self._detect(image_rgb_hwc)
                    self._first_calls -= 1
                    return detections
        return self._detect(image_rgb_hwc)

    def _detect(self, image_rgb_hwc: torch.Tensor) -> Detections:
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
            # the root cause first and whole: the contract is only a guess at what went wrong
            raise ModelError(
                f"{self.path} failed on a {PROBE_SIZE}x{PROBE_SIZE} probe image as a {self.style}-style model "
                f"on {self.device} ({self.precision.describe()}): {root_cause(exc)}; expected {self.contract}"
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
