"""``densevid models download|list``: fetch and verify the weights ahead of a job, show the cache.

Downloads go to the Hugging Face cache that ``resolve_model_path`` reads (``HF_HOME`` /
``HF_HUB_CACHE``), so workers that share it run offline with ``HF_HUB_OFFLINE=1``. A downloaded
file is verified by loading it as a DensePose TorchScript model on the CPU and running it once on a
small frame (its output checked against the contract, as every encode's are) before it is reported
with its size and sha256.
"""

from __future__ import annotations

import collections
import os
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..core import ModelError, file_sha256, one_line, root_cause
from ._hub import (
    MODEL_FILES,
    MODEL_REPO,
    download_command,
    find_hub_file,
    hf_cache_dir,
    hf_offline,
    hub_endpoint,
    hub_problem,
)
from ._loading import load_model


@dataclass(frozen=True)
class ModelEntry:
    name: str  # r50 / r101
    filename: str
    path: Path | None  # None: not found
    where: str = ""  # "DENSEVID_MODEL_DIR" or "hub cache"
    size: int | None = None
    sha256: str | None = None
    weights: str | None = None  # the stored weights' precision ("float32", "float16"); None: unknown


def format_size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover


_STORAGE_DTYPES = {"FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
                   "DoubleStorage": "float64"}


def stored_precision(path: str | os.PathLike) -> str | None:
    """The precision most of a TorchScript file's floating-point weights are stored in, read from the archive
    without loading it (its pickle's storage records and the sizes of their data entries); None if unreadable.

    The pickle is only scanned (pickletools), never executed.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
            if not pickles:
                return None
            root = pickles[0].rsplit("/", 1)[0] + "/data/"
            sizes = {n[len(root):]: archive.getinfo(n).file_size for n in archive.namelist() if n.startswith(root)}
            data = archive.read(pickles[0])
        bytes_per_type: collections.Counter = collections.Counter()
        memo: dict = {}
        recent: list = []  # the last values pushed: strings, ints and global names, enough for a storage record
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name == "GLOBAL":
                recent.append(str(arg).replace("\n", " "))
            elif name == "STACK_GLOBAL":
                recent[-2:] = [" ".join(map(str, recent[-2:]))]
            elif name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                memo[len(memo) if name == "MEMOIZE" else arg] = recent[-1] if recent else None
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                recent.append(memo.get(arg))
            elif name == "BINPERSID":  # 'storage', torch.<Type>Storage, key, location, numel
                record = recent[-5:]
                if len(record) == 5 and record[0] == "storage" and str(record[1]).endswith("Storage"):
                    bytes_per_type[str(record[1]).split()[-1]] += sizes.get(str(record[2]), 0)
            elif isinstance(arg, (str, int)) and not isinstance(arg, bool):
                recent.append(arg)
            del recent[:-8]
    except Exception:  # not a zip, not a TorchScript archive, a pickle we cannot follow
        return None
    floating = {kind: size for kind, size in bytes_per_type.items() if kind in _STORAGE_DTYPES}
    return _STORAGE_DTYPES[max(floating, key=floating.get)] if floating else None


VERIFY_SIDE = 64  # a downloaded file runs once on a black frame this size (its contract checked)

def native_summary(path: Path) -> str:
    """What ``--engine auto`` would run for the file at ``path``: the native model's architecture and where its
    settings come from, or why the file runs itself (one line; loads the file on the CPU, runs nothing)."""
    import warnings

    import torch

    from ._contract import detect_style
    from ._native_spec import read_spec
    from ._ops import register_torchvision_ops

    try:
        register_torchvision_ops(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu")
        spec = read_spec(module, detect_style(module, path), path)
    except Exception as exc:  # a file that does not load: the encode says why, in full
        return f"does not load ({one_line(root_cause(exc), 120)})"
    if isinstance(spec, str):
        return f"the TorchScript file (its weights are not the DensePose R-CNN the native model knows: {spec})"
    return f"the native model: {spec.describe()}"


PRECISION_RULE = ("float16 weights run in float32 on the CPU and in float16 on CUDA; float32 weights run in "
                  "float32 (in float16 on CUDA with --half)")


def cached_models(model_dir: str | os.PathLike | None = None) -> list[ModelEntry]:
    """Where each known model would be found without network, in lookup order (model dir, hub cache)."""
    entries = []
    for name, filename in MODEL_FILES.items():
        search = find_hub_file(filename, model_dir, offline=True)  # the lookup encode does, minus the download
        found, where = search.path, search.source
        entries.append(ModelEntry(name, filename, found, where, found.stat().st_size if found else None,
                                  weights=stored_precision(found) if found else None))
    return entries


def download_model(name: str, force: bool = False, verify: bool = True) -> ModelEntry:
    """Download ``name`` (r50/r101) into the hub cache, verify it, and describe it (ModelError if not)."""
    import huggingface_hub

    filename = MODEL_FILES[name]
    if hf_offline():
        raise ModelError(f"cannot download {filename}: offline (HF_HUB_OFFLINE is set); "
                         f"run `densevid models download` where there is internet, with HF_HUB_OFFLINE unset")
    cache_dir = hf_cache_dir()
    endpoint = hub_endpoint()
    problem = hub_problem(filename, endpoint)
    if problem is not None:
        raise ModelError(f"cannot download {filename} into the hub cache {cache_dir}: {problem}; where there is "
                         f"internet run: densevid models download {name} (or: {download_command(filename)}), then "
                         f"use that HF_HOME here with HF_HUB_OFFLINE=1, or put the file in the directory named by "
                         f"DENSEVID_MODEL_DIR")
    try:
        path = Path(huggingface_hub.hf_hub_download(MODEL_REPO, filename, cache_dir=str(cache_dir),
                                                    force_download=force, endpoint=endpoint))
    except Exception as exc:  # network, HTTP, disk: one line
        raise ModelError(f"download of {filename} from {MODEL_REPO} failed: {one_line(root_cause(exc), 200)}") \
            from None
    size = path.stat().st_size if path.is_file() else 0
    if size == 0:
        raise ModelError(f"downloaded {filename} is empty: {path}; run again with --force")
    if verify:
        try:
            import torch

            black = torch.zeros((VERIFY_SIDE, VERIFY_SIDE, 3), dtype=torch.uint8)
            load_model(path, "cpu", engine="torchscript").detect(black)  # the file itself
        except ModelError as error:
            raise ModelError(f"downloaded {filename} does not load ({error}); run again with --force") from None
    return ModelEntry(name, filename, path, "hub cache", size, file_sha256(path), weights=stored_precision(path))
