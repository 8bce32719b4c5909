"""What ComfyUI registers from this package: the drop-in IMAGE node (``Inference_Core_DensePosePreprocessor``,
for saved workflows) and, where ComfyUI has its V3 API (0.3.64 and later), the VIDEO node.

ComfyUI's loader takes V3 classes from ``NODE_CLASS_MAPPINGS`` as it takes V1 ones, and display names
from ``NODE_DISPLAY_NAME_MAPPINGS``. LykosAI's ComfyUI-Inference-Core-Nodes registers the same id as the
drop-in; ComfyUI keeps whichever package it loads last (in its folder listing's order), silently, so at
start-up one line says which one that is and how to choose (``clash_message``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ._node import NODE_CLASS_MAPPINGS as IMAGE_NODES
from ._node import NODE_DISPLAY_NAME_MAPPINGS as IMAGE_NAMES
from ._node import comfyui
from ._video_node import DISPLAY_NAME, NODE_ID, video_node_class

log = logging.getLogger(__name__)

DROP_IN_ID = "Inference_Core_DensePosePreprocessor"
OTHER_PACK_MARK = "inference-core-nodes"  # LykosAI's folder: ComfyUI-Inference-Core-Nodes (any case, - or _)
PACKAGE_DIR = Path(__file__).resolve().parents[2]  # the folder ComfyUI loads: custom_nodes/<name>


def clash_message(custom_nodes_dirs: list[str], package_dir: Path = PACKAGE_DIR) -> str | None:
    """One line naming the package whose drop-in node ComfyUI keeps, when ComfyUI-Inference-Core-Nodes is
    installed beside densevid (None otherwise). ComfyUI loads each custom_nodes folder's entries in
    ``os.listdir`` order, skipping ``*.disabled``; the last one to register an id keeps it."""
    order: list[str] = []  # "densevid" / the other pack's folder, in load order
    other = None
    for directory in custom_nodes_dirs:
        try:
            entries = os.listdir(os.path.realpath(directory))
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(directory, entry)
            if entry.endswith(".disabled"):
                continue
            if os.path.realpath(path) == str(package_dir):
                order.append("densevid")
            elif OTHER_PACK_MARK in entry.lower().replace("_", "-"):
                order.append(entry)
                other = entry
    if other is None:
        return None
    active = next(name for name in reversed(order) if name == "densevid" or name == other)
    choose = (f"to use densevid's, disable {other} (rename its folder to {other}.disabled, or disable it in "
              f"ComfyUI-Manager)") if active != "densevid" else \
        f"to use {other}'s, disable densevid the same way"
    return (f"densevid: {other} also registers {DROP_IN_ID} (\"DensePose Estimator\"); ComfyUI keeps the one "
            f"loaded last, here {'densevid' if active == 'densevid' else other}'s; {choose}. "
            f"densevid's VIDEO node ({NODE_ID}) is there either way.")


def _mappings() -> tuple[dict, dict]:
    classes, names = dict(IMAGE_NODES), dict(IMAGE_NAMES)
    video_node = video_node_class()
    if video_node is not None:
        classes[NODE_ID] = video_node
        names[NODE_ID] = DISPLAY_NAME
    return classes, names


NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = _mappings()

_comfy = comfyui()
if _comfy is not None:  # inside ComfyUI, at start-up
    _clash = clash_message(_comfy.folder_paths.get_folder_paths("custom_nodes"))
    if _clash:
        log.warning(_clash)
