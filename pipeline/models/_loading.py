"""Loading and calling a DensePose TorchScript model: ``load_model`` -> ``DensePoseModel.detect`` -> ``Detections``.

The export style comes from the module's forward schema (``_contract``), the precision from its weights and
the device (``_precision``), torchvision's operators are registered first (``_ops``), and known export bugs
are told once (``_export_bugs``). Nothing runs at load: the output contract is checked on every call's
output, so the first real frame finds a broken export (one line naming the file and the contract) before any
output is in place. (A probe frame would cost a whole forward pass of a model that resizes to 800 inside.)
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path

import torch

from ..core import DensevidNote, Detections, ModelError, one_line, prefetch_sha256, root_cause
from ._contract import CONTRACTS, STYLES, adapt_output, detect_style
from ._engines import ENGINES, EnginePlan, NativeRunner, choose_engine
from ._export_bugs import ModelWarning, warn_rpn_size_order
from ._hub import DEFAULT_MODEL, MODEL_FILES, MODEL_REPO
from ._native_spec import read_spec
from ._ops import is_unknown_op_error, register_torchvision_ops, version_mismatch
from ._precision import HALF_ROUTES, Precision, dtype_name, plan_precision, weights_dtype


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", half: bool | str = False,
               engine: str = "auto", batch_size: int = 8) -> "DensePoseModel":
    """Load a DensePose TorchScript model onto ``device`` and detect its export style (nothing runs yet).

    ``engine``: "auto" (the native model built from the file's weights where they map, see ``_engines``),
    "native" or "torchscript"; ``batch_size``: frames per call of a native model that batches.

    The precision it runs in follows the weights, the device and ``half`` (see ``plan_precision``): float16
    exports (``--fp16`` releases) run in float32 on the CPU, natively in float16 on CUDA. ``half`` asks for
    float16 on CUDA: True or "autocast" (torch.autocast, which reaches the scripted ops), or "native" (the
    weights converted with ``.half()``, as the float16 exports run); on a CPU with native bfloat16 it runs
    the model under bfloat16 autocast, elsewhere on the CPU it is ignored with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    device = torch.device(device)
    if half not in (False, True) + HALF_ROUTES:
        raise ValueError(f"half must be a bool or one of {HALF_ROUTES}, got {half!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    prefetch_sha256(path)  # every encode fingerprints its model: hash it beside the load
    register_torchvision_ops(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated but is the format
            module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        message = str(exc)
        if is_unknown_op_error(message):
            raise version_mismatch(path, message.strip().splitlines()[0] if message.strip() else message) from exc
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
        runs = dtype_name(precision.runs)
        warnings.warn(ModelWarning(f"{path.name} has {dtype_name(stored)} weights: on the CPU they run in {runs} "
                                   f"({dtype_name(stored)} runs on CUDA)"), stacklevel=2)
    if precision.note:
        _warn_once(precision.note)
    style = detect_style(module, path)
    spec = read_spec(module, style, path) if engine != "torchscript" else "not asked for"
    plan = choose_engine(engine, spec, device, precision, batch_size)
    if plan.note:
        _warn_once(f"{path.name} {plan.note}", EngineNote)
    if plan.engine == "torchscript" and device.type == "cpu" and precision.autocast:
        # the files call torchvision's CPU nms with float32 boxes and, under bfloat16 autocast, bfloat16 scores,
        # which it refuses ("dets should have the same type as scores"): the file itself runs in float32
        precision = Precision(precision.weights, torch.float32, precision.convert_to, note=TORCHSCRIPT_CPU_HALF)
        _warn_once(f"{path.name}: {TORCHSCRIPT_CPU_HALF}")
    model = DensePoseModel(module, path, style, device, precision=precision)
    warn_rpn_size_order(module, path)
    if plan.engine == "native":
        model.native = NativeRunner(spec, device, precision, plan.batch, exact=plan.exact)
    model.engine_plan = plan
    return model


_warned: set[str] = set()
TORCHSCRIPT_CPU_HALF = ("--half is ignored for the TorchScript file on the CPU: it cannot run under bfloat16 autocast "
                        "(torchvision's CPU nms refuses bfloat16 scores with float32 boxes); the native model "
                        "(--engine auto or native) runs in bfloat16; running the file in float32")


def _warn_once(message: str, category: type = ModelWarning) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(category(message), stacklevel=3)


class EngineNote(DensevidNote):
    """Information about the engine a model runs on (the CLI prints it as a note, not with -q)."""


class DensePoseModel:
    """A loaded DensePose TorchScript model of a known export style; ``detect`` gives ``Detections``.

    ``precision`` (see ``plan_precision``) says how it runs; with ``precision.autocast`` every call runs
    under ``torch.autocast("cuda", dtype=torch.float16)``: autocast is thread-local dispatcher state, so it
    reaches the ops inside the TorchScript interpreter too. In float16 the logits come back in float16.
    """

    def __init__(self, module: torch.jit.ScriptModule, path: Path, style: str, device: torch.device | str,
                 precision: Precision | None = None) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.module = module
        self.path = Path(path)
        self.style = style
        self.device = torch.device(device)
        self.precision = precision or plan_precision(torch.float32, self.device)
        self.native: NativeRunner | None = None  # the native model, when it runs this file
        self.engine_plan = EnginePlan("torchscript", 1)
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
        return CONTRACTS[self.style]

    @property
    def engine(self) -> str:
        return self.engine_plan.engine

    @property
    def model_batch(self) -> int:
        """Frames per model call (1 for the TorchScript file)."""
        return self.native.batch if self.native is not None else 1

    def describe(self) -> str:
        """One line for the user: file, style, device, precision and engine."""
        return (f"{self.path.name} ({self.style}-style) on {self.device}: {self.precision.describe()}; "
                f"{self.engine_plan.describe()}")

    def detect_batch(self, images_rgb_hwc: torch.Tensor) -> list[Detections]:
        """uint8 [B, H, W, 3] RGB frames of one size (on ``self.device``) -> one ``Detections`` each; the native
        model runs them ``model_batch`` at a time, the TorchScript file one by one. Thread-safe."""
        if images_rgb_hwc.dtype != torch.uint8 or images_rgb_hwc.ndim != 4 or images_rgb_hwc.shape[-1] != 3:
            raise ValueError(f"expected uint8 [B, H, W, 3] frames, got {images_rgb_hwc.dtype} "
                             f"{list(images_rgb_hwc.shape)}")
        if self.native is None:
            return [self.detect(image) for image in images_rgb_hwc]
        try:
            return self.native.detect_batch(images_rgb_hwc)
        except ModelError:
            raise
        except Exception as exc:
            height, width = images_rgb_hwc.shape[1:3]
            raise ModelError(f"{self.path} failed on a {width}x{height} frame in the native model on {self.device} "
                             f"({self.precision.describe()}): {root_cause(exc)}; --engine torchscript runs the file "
                             f"itself") from exc

    def __repr__(self) -> str:
        return (f"DensePoseModel({self.path.name}, style={self.style}, device={self.device}, "
                f"precision={self.precision.describe()!r})")

    def _autocast(self):
        if self.precision.autocast:  # float16 on CUDA, bfloat16 on a CPU that has it
            return torch.autocast(self.device.type, dtype=self.precision.runs)
        return contextlib.nullcontext()

    def detect(self, image_rgb_hwc: torch.Tensor) -> Detections:
        """Run the model on one uint8 HWC RGB image (already on ``self.device``); thread-safe."""
        if not isinstance(image_rgb_hwc, torch.Tensor) or image_rgb_hwc.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 tensor, got {getattr(image_rgb_hwc, 'dtype', type(image_rgb_hwc))}")
        if image_rgb_hwc.ndim != 3 or image_rgb_hwc.shape[-1] != 3:
            raise ValueError(f"expected an [H, W, 3] image, got {list(image_rgb_hwc.shape)}")
        if self.native is not None:
            return self.detect_batch(image_rgb_hwc[None])[0]
        if self._first_calls > 0:
            with self._first_calls_lock:
                if self._first_calls > 0:
                    detections = self._detect(image_rgb_hwc)
                    self._first_calls -= 1
                    return detections
        return self._detect(image_rgb_hwc)

    def _detect(self, image_rgb_hwc: torch.Tensor) -> Detections:
        try:
            with torch.inference_mode(), self._autocast():
                if self.style == "tuple":
                    output = self.module(image_rgb_hwc.permute(2, 0, 1))
                else:
                    output = self.module(image_rgb_hwc.flip(-1).contiguous(), True)
        except Exception as exc:
            # the root cause first and whole: the contract is only a guess at what went wrong
            height, width = image_rgb_hwc.shape[:2]
            raise ModelError(
                f"{self.path} failed on a {width}x{height} frame as a {self.style}-style model on {self.device} "
                f"({self.precision.describe()}): {root_cause(exc)}; expected {self.contract}"
            ) from exc
        with torch.inference_mode():
            return adapt_output(output, self.style, self.path)
