"""Finding the model files: the two hub names, local paths, DENSEVID_MODEL_DIR, the hub cache, a download.

Hub access goes through ``huggingface_hub`` (which honours ``HF_HOME`` / ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE``). ``huggingface_hub`` reads those variables once, at import; this module re-reads
them on every call, so a change made after import (e.g. by a test) is honoured too, and the cache is
always checked first, so a cached file works offline. ``DENSEVID_MODEL_DIR`` is read here too, when the
caller passes no ``model_dir``: every entry point (CLI, Python API, batch, Ray, ComfyUI) honours it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core import ModelError, one_line, root_cause

MODEL_REPO = "LayerNorm/DensePose-TorchScript-with-hint-image"
MODEL_FILES = {"r50": "densepose_r50_fpn_dl.torchscript", "r101": "densepose_r101_fpn_dl.torchscript"}
DEFAULT_MODEL = "r50"
PATH_SUFFIXES = (".pt", ".pth", ".torchscript", ".ts")

_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def hub_cli() -> str:
    """The command-line tool the installed huggingface_hub provides: ``hf`` (>= 0.34) or ``huggingface-cli``."""
    try:
        from importlib.metadata import distribution
        scripts = {ep.name for ep in distribution("huggingface_hub").entry_points if ep.group == "console_scripts"}
    except Exception:
        return "hf"
    return "huggingface-cli" if "hf" not in scripts and "huggingface-cli" in scripts else "hf"


def download_command(filename: str) -> str:
    """The shell command that puts ``filename`` into the hub cache, for the installed huggingface_hub."""
    return f"{hub_cli()} download {MODEL_REPO} {filename}"


def hf_offline() -> bool:
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


def hf_cache_dir() -> Path:
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


def looks_like_path(spec: str) -> bool:
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
    if looks_like_path(spec):
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

    cache_dir = hf_cache_dir()
    looked.append(f"hub cache {cache_dir}")
    is_offline = hf_offline() if offline is None else bool(offline)
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
