"""Stand-ins for the parts of ComfyUI the node uses, with ComfyUI's semantics (Comfy-Org/ComfyUI, Oct 2025):

* ``folder_paths``: model folders (add_model_folder_path, get_folder_paths, get_filename_list, get_full_path),
  ``models_dir``, the ``custom_nodes`` folder;
* ``comfy.model_management``: the device, the interrupt flag and its exception, and the registry of loaded
  models as ComfyUI keeps it (LoadedModel: weak references, a finalizer that drops entries whose model was
  collected; load_models_gpu takes a registered model out with ``detach(unpatch_all=False)`` and loads it
  again; free_memory / unload_all_models unload with ``detach(True)``, walking the list by index);
* ``comfy.model_patcher.ModelPatcher``: the constructor and model_size;
* ``comfy.utils.ProgressBar``: update() calls the hook, which (as ComfyUI's main.py hook does) raises when an
  interrupt is pending, and records every update (and every preview);
* ``comfy_api.latest`` (``install(..., api=True)``): the parts of the V3 API the VIDEO node uses, as ComfyUI
  0.3.64 has them: ``io.ComfyNode``, ``io.Schema``, the inputs (``Video``, ``Combo``, ``Int``, ``Boolean``,
  ``String``) recording their arguments, ``io.NodeOutput``, ``io.FolderType``, ``ui.PreviewVideo``,
  ``ui.SavedResult``, ``InputImpl.VideoFromFile`` (a path or a BytesIO; ``get_components`` decodes every frame
  as ComfyUI's does), ``InputImpl.VideoFromComponents``, ``Types.VideoComponents``.

``install(monkeypatch, base)`` puts them in sys.modules with ``base`` as ComfyUI's folder.
"""

from __future__ import annotations

import enum
import io as _bytes_io
import os
import sys
import types
import weakref
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch


class InterruptProcessingException(Exception):
    pass


def make_folder_paths(base) -> types.ModuleType:
    fp = types.ModuleType("folder_paths")
    fp.base_path = str(base)
    fp.models_dir = os.path.join(str(base), "models")
    fp.folder_names_and_paths = {
        "checkpoints": ([os.path.join(fp.models_dir, "checkpoints")], {".safetensors", ".ckpt"}),
        "custom_nodes": ([os.path.join(str(base), "custom_nodes")], set()),
    }

    def add_model_folder_path(folder_name, full_folder_path, is_default=False):
        if folder_name in fp.folder_names_and_paths:
            paths, _ = fp.folder_names_and_paths[folder_name]
            if full_folder_path not in paths:
                paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)
        else:
            fp.folder_names_and_paths[folder_name] = ([full_folder_path], set())

    def get_folder_paths(folder_name):
        return fp.folder_names_and_paths[folder_name][0][:]

    def get_filename_list(folder_name):
        paths, extensions = fp.folder_names_and_paths[folder_name]
        names = set()
        for folder in paths:
            for dirpath, subdirs, files in os.walk(folder, followlinks=True):
                subdirs[:] = [d for d in subdirs if d != ".git"]
                for name in files:
                    relative = os.path.relpath(os.path.join(dirpath, name), folder)
                    if not extensions or os.path.splitext(name)[1].lower() in extensions:
                        names.add(relative)
        return sorted(names)

    def get_full_path(folder_name, filename):
        if folder_name not in fp.folder_names_and_paths:
            return None
        filename = os.path.relpath(os.path.join("/", filename), "/")
        for folder in fp.folder_names_and_paths[folder_name][0]:
            full_path = os.path.join(folder, filename)
            if os.path.isfile(full_path):
                return full_path
        return None

    def get_temp_directory():
        return os.path.join(str(base), "temp")

    def get_output_directory():
        return os.path.join(str(base), "output")

    fp.get_temp_directory = get_temp_directory
    fp.get_output_directory = get_output_directory
    fp.add_model_folder_path = add_model_folder_path
    fp.get_folder_paths = get_folder_paths
    fp.get_filename_list = get_filename_list
    fp.get_full_path = get_full_path
    return fp


class LoadedModel:
    """comfy.model_management.LoadedModel: a weak reference to a registered patcher, and a finalizer on its
    model that removes the entry when that model is collected."""

    def __init__(self, model, registry):
        self._model = weakref.ref(model)
        self.device = model.load_device
        self.registry = registry
        self.real_model = None
        self.model_finalizer = None

    @property
    def model(self):
        return self._model()

    def model_load(self):
        self.model.partially_load(self.device, 1e32)
        real_model = self.model.model
        self.real_model = weakref.ref(real_model)
        self.model_finalizer = weakref.finalize(real_model, self.registry.cleanup_models)
        return real_model

    def model_unload(self, memory_to_free=None, unpatch_weights=True):
        if memory_to_free is not None and memory_to_free < self.model.loaded_size():
            freed = self.model.partially_unload(self.model.offload_device, memory_to_free)
            if freed >= memory_to_free:
                return False
        self.model.detach(unpatch_weights)
        self.model_finalizer.detach()
        self.model_finalizer = None
        self.real_model = None
        return True

    def __eq__(self, other):
        return self.model is other.model

    def is_dead(self):
        return self.real_model() is not None and self.model is None


def make_model_management(device="cpu") -> types.ModuleType:
    mm = types.ModuleType("comfy.model_management")
    mm.InterruptProcessingException = InterruptProcessingException
    mm.interrupt_processing = False
    mm.current_loaded_models = []  # LoadedModel entries, most recently loaded first

    def get_torch_device():
        return torch.device(device)

    def interrupt_current_processing(value=True):
        mm.interrupt_processing = value

    def throw_exception_if_processing_interrupted():
        if mm.interrupt_processing:
            mm.interrupt_processing = False
            raise InterruptProcessingException()

    def cleanup_models():
        for i in [i for i, loaded in enumerate(mm.current_loaded_models) if loaded.real_model() is None][::-1]:
            mm.current_loaded_models.pop(i)

    def loaded_models():
        return [loaded.model for loaded in mm.current_loaded_models]

    def free_memory(memory_required, device, keep_loaded=()):
        # by index into the live list, as ComfyUI does: an entry that vanishes meanwhile breaks it
        current = mm.current_loaded_models
        can_unload = [i for i in range(len(current) - 1, -1, -1)
                      if current[i].device == device and current[i] not in keep_loaded and not current[i].is_dead()]
        unloaded = [i for i in sorted(can_unload) if current[i].model_unload(memory_required)]
        for i in sorted(unloaded, reverse=True):
            current.pop(i)

    def load_models_gpu(models, memory_required=0, **kwargs):
        to_load = []
        for model in models:
            loaded = LoadedModel(model, mm)
            if loaded in mm.current_loaded_models:
                loaded = mm.current_loaded_models[mm.current_loaded_models.index(loaded)]
            to_load.append(loaded)
        for loaded in to_load:  # a model already registered is taken out and detached to be loaded again
            for i in [i for i, other in enumerate(mm.current_loaded_models) if other.model is loaded.model][::-1]:
                taken = mm.current_loaded_models.pop(i)
                taken.model.detach(unpatch_all=False)
                taken.model_finalizer.detach()
        for loaded in to_load:
            if loaded.device.type != "cpu":
                free_memory(loaded.model.model_size() + memory_required, loaded.device)
        for loaded in to_load:
            loaded.model_load()
            mm.current_loaded_models.insert(0, loaded)

    def unload_all_models():
        free_memory(1e30, get_torch_device())

    mm.get_torch_device = get_torch_device
    mm.interrupt_current_processing = interrupt_current_processing
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    mm.cleanup_models = cleanup_models
    mm.loaded_models = loaded_models
    mm.load_models_gpu = load_models_gpu
    mm.free_memory = free_memory
    mm.unload_all_models = unload_all_models
    return mm


def make_model_patcher() -> types.ModuleType:
    module = types.ModuleType("comfy.model_patcher")

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
            self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size
            self.parent = None
            if getattr(self.model, "device", None) is None:
                self.model.device = offload_device
            self.model_size()

        def model_size(self):
            if self.size <= 0:
                self.size = sum(t.nelement() * t.element_size() for t in self.model.state_dict().values())
            return self.size

        def loaded_size(self):
            return 0

        def detach(self, unpatch_all=True):
            return self.model

        def __del__(self):
            self.detach(unpatch_all=False)

    module.ModelPatcher = ModelPatcher
    return module


def make_utils(model_management) -> types.ModuleType:
    utils = types.ModuleType("comfy.utils")
    utils.progress = []  # (value, total) of every update, as the websocket's "progress" messages
    utils.previews = []  # (value, preview) of every update that carried a preview

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total, self.current = total, 0

        def update_absolute(self, value, total=None, preview=None):
            if total is not None:
                self.total = total
            self.current = min(value, self.total)
            model_management.throw_exception_if_processing_interrupted()  # as ComfyUI's hook does
            utils.progress.append((self.current, self.total))
            if preview is not None:
                utils.previews.append((self.current, preview))

        def update(self, value):
            self.update_absolute(self.current + value)

    utils.ProgressBar = ProgressBar
    return utils


@dataclass
class VideoComponents:
    images: torch.Tensor  # float32 [N, H, W, 3] in [0, 1]
    audio: dict | None  # {"waveform": [1, C, S], "sample_rate": int}
    frame_rate: Fraction
    metadata: dict | None = None


class VideoInput:
    pass


class VideoFromFile(VideoInput):
    def __init__(self, file):
        self.__file = file

    def get_stream_source(self):
        if isinstance(self.__file, _bytes_io.BytesIO):
            self.__file.seek(0)
        return self.__file

    def get_components(self) -> VideoComponents:
        with av.open(self.get_stream_source()) as container:
            images = [torch.from_numpy(f.to_ndarray(format="rgb24")) / 255.0 for f in container.decode(video=0)]
            stream = container.streams.video[0]
            rate = Fraction(stream.average_rate) if stream.average_rate else Fraction(1)
            audio = None
            if container.streams.audio:
                container.seek(0)
                audio_stream = container.streams.audio[0]
                chunks = [f.to_ndarray() for p in container.demux(audio_stream) for f in p.decode()]
                audio = {"waveform": torch.from_numpy(np.concatenate(chunks, axis=1)).unsqueeze(0),
                         "sample_rate": int(audio_stream.sample_rate)}
        return VideoComponents(torch.stack(images), audio, rate)


class VideoFromComponents(VideoInput):
    def __init__(self, components: VideoComponents):
        self.components = components

    def get_components(self) -> VideoComponents:
        return self.components


def make_comfy_api() -> types.ModuleType:
    latest = types.ModuleType("comfy_api.latest")
    io = types.SimpleNamespace()
    ui = types.SimpleNamespace()

    class ComfyNode:
        pass

    class Schema:
        def __init__(self, **fields):
            self.__dict__.update(fields)

    def kind(io_type):
        class Input:
            def __init__(self, id, **options):
                self.id, self.io_type, self.options = id, io_type, options

        class Output:
            def __init__(self, id=None, **options):
                self.id, self.io_type, self.options = id, io_type, options

        return types.SimpleNamespace(Input=Input, Output=Output, io_type=io_type)

    class NodeOutput:
        def __init__(self, *args, ui=None, expand=None, block_execution=None):
            self.args, self.ui = args, ui

        @property
        def result(self):
            return self.args if self.args else None

    class FolderType(str, enum.Enum):
        input = "input"
        output = "output"
        temp = "temp"

    class SavedResult(dict):
        def __init__(self, filename, subfolder, type):
            super().__init__(filename=filename, subfolder=subfolder, type=type.value)

    class PreviewVideo:
        def __init__(self, values, **kwargs):
            self.values = values

        def as_dict(self):
            return {"images": self.values, "animated": (True,)}

    io.ComfyNode, io.Schema, io.NodeOutput, io.FolderType = ComfyNode, Schema, NodeOutput, FolderType
    for name, io_type in (("Video", "VIDEO"), ("Combo", "COMBO"), ("Int", "INT"), ("Boolean", "BOOLEAN"),
                          ("String", "STRING")):
        setattr(io, name, kind(io_type))
    ui.SavedResult, ui.PreviewVideo = SavedResult, PreviewVideo
    latest.io, latest.ui = io, ui
    latest.InputImpl = types.SimpleNamespace(VideoFromFile=VideoFromFile, VideoFromComponents=VideoFromComponents)
    latest.Input = types.SimpleNamespace(VideoInput=VideoInput)
    latest.Types = types.SimpleNamespace(VideoComponents=VideoComponents)
    return latest


def install(monkeypatch, base, device="cpu", api=False) -> types.SimpleNamespace:
    """Fake ComfyUI rooted at ``base`` in sys.modules (undone by monkeypatch); returns its modules. ``api``:
    with ``comfy_api.latest`` too (ComfyUI 0.3.64's V3 node API)."""
    folder_paths = make_folder_paths(base)
    model_management = make_model_management(device)
    comfy = types.ModuleType("comfy")
    comfy.__path__ = []
    comfy.model_management = model_management
    comfy.model_patcher = make_model_patcher()
    comfy.utils = make_utils(model_management)
    modules = {"folder_paths": folder_paths, "comfy": comfy, "comfy.model_management": model_management,
               "comfy.model_patcher": comfy.model_patcher, "comfy.utils": comfy.utils}
    latest = None
    if api:
        latest = make_comfy_api()
        comfy_api = types.ModuleType("comfy_api")
        comfy_api.__path__ = []
        comfy_api.latest = latest
        modules.update({"comfy_api": comfy_api, "comfy_api.latest": latest})
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(folder_paths=folder_paths, model_management=model_management,
                                 model_patcher=comfy.model_patcher, utils=comfy.utils, base=base, api=latest)
