"""Where the ComfyUI node finds its weights, the way ComfyUI users keep them.

In order: ComfyUI's ``densepose`` model folders (``ComfyUI/models/densepose/`` and whatever
``extra_model_paths.yaml`` adds under ``densepose:``), then the folder where comfyui_controlnet_aux
keeps the same files (``ckpts/LayerNorm/DensePose-TorchScript-with-hint-image/``), then densevid's
own places (``DENSEVID_MODEL_DIR``, the Hugging Face cache), and last a download of a hub file into
the first densepose folder, where the user sees and manages it like every other model (the hub cache
is still read first, so a file the CLI fetched is not fetched twice).

``folder_paths`` is ComfyUI's module of that name, passed in (tests pass a stand-in).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..core import ModelError
from ..models import MODEL_FILES, MODEL_REPO, PATH_SUFFIXES, find_hub_file, hub_cli, hub_file_url

FOLDER = "densepose"  # ComfyUI's model folder name: models/densepose, `densepose:` in extra_model_paths.yaml
HUB_FILES = tuple(MODEL_FILES.values())  # always offered: found, or downloaded on first use
# comfyui_controlnet_aux downloads a hub file to <its ckpts>/<repo id>/<file>
AUX_SUBDIR = Path(*MODEL_REPO.split("/"))
AUX_PATTERN = f"custom_nodes/*/ckpts/{MODEL_REPO}"

log = logging.getLogger(__name__)


def register_folder(folder_paths) -> None:
    """Make ``densepose`` one of ComfyUI's model folders (idempotent).

    ComfyUI reads extra_model_paths.yaml before it loads custom nodes, so a ``densepose:`` entry
    there already made the folder: its paths are kept (first), models/densepose is added after them,
    and the file types are the TorchScript suffixes (not every file, e.g. huggingface_hub's
    download metadata beside a downloaded model).
    """
    default = os.path.join(folder_paths.models_dir, FOLDER)
    folder_paths.add_model_folder_path(FOLDER, default)
    paths, extensions = folder_paths.folder_names_and_paths[FOLDER]
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(extensions) | set(PATH_SUFFIXES))
    try:
        os.makedirs(default, exist_ok=True)  # so users find where the files go, as for ComfyUI's own folders
    except OSError:
        pass


def densepose_folders(folder_paths) -> list[Path]:
    return [Path(p) for p in folder_paths.get_folder_paths(FOLDER)]


def aux_folders(folder_paths) -> list[Path]:
    """comfyui_controlnet_aux's folders of the DensePose files that exist: the one its config names
    (it sets AUX_ANNOTATOR_CKPTS_PATH when ComfyUI loads it), and ``ckpts/`` in every custom node
    folder (its default, found also when it is disabled)."""
    roots = []
    configured = os.environ.get("AUX_ANNOTATOR_CKPTS_PATH")
    if configured:
        roots.append(Path(configured))
    for custom_nodes in folder_paths.get_folder_paths("custom_nodes"):
        try:
            nodes = sorted(entry.path for entry in os.scandir(custom_nodes) if entry.is_dir())
        except OSError:
            continue
        roots.extend(Path(node) / "ckpts" for node in nodes)
    found: list[Path] = []
    for root in roots:
        folder = root / AUX_SUBDIR
        if folder.is_dir() and folder not in found:
            found.append(folder)
    return found


def _model_files(folder: Path) -> list[str]:
    try:
        return [p.name for p in folder.iterdir() if p.suffix.lower() in PATH_SUFFIXES and p.is_file()]
    except OSError:
        return []


def model_choices(folder_paths) -> list[str]:
    """The model combo: the two hub files first (saved workflows name them; a missing one is
    downloaded), then every other model file present, by name (relative to its densepose folder)."""
    present = set(folder_paths.get_filename_list(FOLDER))
    for folder in aux_folders(folder_paths):
        present.update(_model_files(folder))
    return list(HUB_FILES) + sorted(present - set(HUB_FILES))


def resolve_model(name: str, folder_paths, offline: bool | None = None) -> Path:
    """The file of the combo value ``name``; a hub file that is nowhere is downloaded into the first
    densepose folder. ModelError (one line, for a ComfyUI user) when it cannot be had."""
    path = folder_paths.get_full_path(FOLDER, name)
    if path is not None:
        return Path(path)
    if Path(name).name == name:  # the aux folders are listed by bare file name
        for folder in aux_folders(folder_paths):
            if (folder / name).is_file():
                return folder / name
    folders = densepose_folders(folder_paths)
    if name not in HUB_FILES:
        raise ModelError(f"model file {name} is no longer in ComfyUI's densepose folders ({_join(folders)}): put it "
                         f"back, or pick another model (press R in ComfyUI to refresh the list)")
    download_dir = folders[0] if folders else None
    found = find_hub_file(name, offline=offline, download_dir=download_dir)
    if found.path is not None:
        if download_dir is not None and found.path.parent == download_dir:  # it was not there a moment ago
            log.info("densevid: downloaded %s into %s", name, download_dir)
        return found.path
    raise ModelError(missing_model_message(name, folders, found.reason))


def missing_model_message(name: str, folders: list[Path], reason: str) -> str:
    """Where a ComfyUI user puts ``name`` (with the URL and a command that fetch it), on one line."""
    target = folders[0] if folders else Path("ComfyUI") / "models" / FOLDER
    others = [str(f) for f in folders[1:]] + [AUX_PATTERN]
    return (f"DensePose model file {name} not found and not downloaded ({reason}): download "
            f"{hub_file_url(name)} into ComfyUI's densepose model folder {target} (or: {hub_cli()} download "
            f"{MODEL_REPO} {name} --local-dir {target}), then run the workflow again; also searched: "
            f"{', '.join(others)}")


def _join(folders: list[Path]) -> str:
    return ", ".join(str(f) for f in folders) or "none registered"
