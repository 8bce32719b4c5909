"""The node's loaded models, kept between runs, and freed the way ComfyUI frees its own.

Inside ComfyUI each loaded model is handed to ComfyUI's memory management as a ModelPatcher
(``comfy.model_management.load_models_gpu``), like ComfyUI's CLIP vision or VAE: ComfyUI then
unloads it when it needs the room on that device (before loading a diffusion model that does not
fit beside it), on "Unload models" / ``POST /free``, and on every prompt with
``--disable-smart-memory``. Unloading drops it from here, so the weights are freed, not moved.

A TorchScript module cannot be split between devices the way ModelPatcher splits ComfyUI's own
models (lowvram), so the patcher is all or nothing: loaded whole on its device while registered,
gone once unloaded, reloaded from its file on the next run that needs it.

Outside ComfyUI (tests, scripts) the models are simply kept until ``clear``.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

import torch

from ..core import ModelError
from ..models import DensePoseModel, load_model

log = logging.getLogger(__name__)
# a model ComfyUI unloads again right after registering it for a run is not getting the room it needs
LOAD_ROUNDS = 3


class DensePoseTorchScript(torch.nn.Module):
    """The TorchScript module as ComfyUI's ModelPatcher holds it (ComfyUI logs models by class name)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.densepose = module


@functools.lru_cache(maxsize=None)
def patcher_class(model_patcher_base: type) -> type:
    """A ModelPatcher subclass (ComfyUI's ``comfy.model_patcher.ModelPatcher``, passed in) for one loaded
    DensePose model; ``on_unload(patcher)`` is called once when ComfyUI unloads it."""

    class DensePosePatcher(model_patcher_base):
        def __init__(self, densepose: DensePoseModel, on_unload) -> None:
            super().__init__(DensePoseTorchScript(densepose.module), load_device=densepose.device,
                             offload_device=torch.device("cpu"))
            self.densepose: DensePoseModel | None = densepose
            self._on_unload = on_unload
            self.model.device = densepose.device  # loaded there by load_model, and it stays there while registered

        # ComfyUI's accounting: the whole model is on its device until unloaded
        def loaded_size(self) -> int:
            return self.model_size() if getattr(self, "densepose", None) is not None else 0

        def current_loaded_device(self):
            return self.load_device

        def partially_load(self, device_to, extra_memory=0, force_patch_weights=False) -> int:
            return 0  # already whole on its device: nothing more to load

        def partially_unload(self, device_to, memory_to_free=0) -> int:
            return 0  # never in part: ComfyUI then unloads it whole (detach)

        def detach(self, unpatch_all=True):
            # unpatch_all=True: ComfyUI unloads it (LoadedModel.model_unload). False: it is taken out of the
            # list to be loaded again at once (load_models_gpu), or the patcher is being collected: keep it
            densepose = getattr(self, "densepose", None)
            if unpatch_all and densepose is not None:
                self.densepose = None
                self.model.densepose = None  # the weights go with the last reference
                self._on_unload(self)
            return self.model

    return DensePosePatcher


class ResidentModels:
    """One loaded model per (file, device), kept between runs of the node."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], object] = {}  # DensePoseModel, or its patcher inside ComfyUI
        # unloaded patchers (their weights already freed), kept until the next run: ComfyUI walks its list of
        # loaded models by index while it unloads them, and a patcher collected then takes its entry out of
        # that list under ComfyUI's feet (its finalizer)
        self._retired: list = []
        self._lock = threading.RLock()  # ComfyUI may unload one model (a callback here) while another loads

    def get(self, path: Path, device: torch.device, comfy=None, memory_required: int = 0) -> DensePoseModel:
        """The model of ``path`` on ``device``, loaded once. ``comfy``: ComfyUI's modules (``model_management``,
        ``model_patcher``) to register it with; ``memory_required``: bytes the run needs beside the weights
        (ComfyUI unloads other models on that device to make room)."""
        with self._lock:
            self._retired.clear()
        for _ in range(LOAD_ROUNDS):
            entry = self._entry(path, device, comfy, memory_required)
            if comfy is None:
                return entry
            # registered (again) with ComfyUI: in use now, and from now on ComfyUI may unload it
            comfy.model_management.load_models_gpu([entry], memory_required=memory_required)
            if entry.densepose is not None:
                return entry.densepose
            # ComfyUI unloaded this registered model to make room for the run itself; a new one is not
            # registered yet, so the next round keeps it
        raise ModelError(f"ComfyUI unloaded {path.name} from {device} {LOAD_ROUNDS} times while loading it for "
                         f"this run: not enough memory there for the model and "
                         f"{memory_required / 2**20:.0f} MiB of working memory; free memory or run ComfyUI on the CPU")

    def _entry(self, path: Path, device: torch.device, comfy, memory_required: int):
        key = (str(path), str(device))
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if comfy is not None and device.type != "cpu":
                    # room for the weights (about the file's size) and the run, before they land on the device
                    comfy.model_management.free_memory(path.stat().st_size + memory_required, device)
                model = load_model(path, device)
                entry = model if comfy is None else patcher_class(comfy.model_patcher.ModelPatcher)(model, self._forget)
                self._entries[key] = entry
                log.info("densevid: loaded %s from %s", model.describe(), path.parent)
            return entry

    def _forget(self, patcher) -> None:
        with self._lock:
            for key, entry in list(self._entries.items()):
                if entry is patcher:
                    del self._entries[key]
                    self._retired.append(patcher)
                    log.info("densevid: unloaded %s", Path(key[0]).name)

    def loaded(self) -> list[tuple[str, str]]:
        """(file, device) of every model kept now."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            if hasattr(entry, "detach"):
                entry.detach()
