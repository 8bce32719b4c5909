"""What made an output: a fingerprint stored with the output itself, so that resume skips only an
output of this very run and refuses a stale one (made from another input, with other settings,
by another model, or by another output format).

A fingerprint is one line of JSON::

    {"format": 1,                                   densevid's output format (FORMAT_VERSION)
     "input": {"name", "size", "sample_sha256"},    what was encoded
     "model": {"file", "size", "sha256"},           which weights
     "settings": {"cmap": ..., "resolution": ...}}  every SETTINGS row with output=True, effective values

It is written by the writers (``_video``, ``_png``, ``_training``): a container tag in MP4/MKV, a PNG
tEXt chunk (image outputs and every --frames PNG), an entry of the --iuv .npz; reading it back decodes
nothing. What a run *would* write before its model is loaded is the batch layer's business (it finds
the model file): ``make_fingerprint`` takes the model's path.

Input identity: the size and a sha256 of the first and last 64 KiB, not path + mtime. Inputs get
moved, copied to shared storage for Ray workers, or copied without their mtime; that is the same
video, and path + mtime would call it another. A file replaced by another video under the same name
changes its header or its tail (an MP4's index, a Matroska cue table), and the size almost always.
Reading 128 KiB per input keeps a resumed batch cheap on network storage. The name is recorded
for people, not compared.

Model identity: the file's name, size and the sha256 of its bytes (cached per process): a stand-in
saved under the real file name, or updated weights, is another model. Hashing reads the whole file
once per process, which costs a fraction of loading it.

Effective values: what the run does, not how it was spelled: ``resolution`` left unset is 512
without ``--size`` (with ``--size`` it stays "implied by --size": the framing decides it from the
input's size, which the input identity covers); ``fit`` unset with ``--size`` is ``crop``; ``half``
is off with ``--device cpu`` on a CPU without native bfloat16 (where it is ignored). With ``--device
auto`` it stays as asked: the driver of a Ray run, which checks outputs, may have no GPU while its
workers, which write them, do. What actually ran (device, precision) is recorded too, as ``ran``, and
not compared.
"""

from __future__ import annotations

import hashlib
import json
import os
from fractions import Fraction
from pathlib import Path

from ..config import SETTINGS, SETTINGS_BY_NAME, WINDOW_SETTINGS, EncodeConfig, flag_of
from ..core import file_sha256
from ._naming import FINGERPRINT_TAG

FORMAT_VERSION = 1  # bump when the same input and settings would give different outputs
SAMPLE_BYTES = 64 * 1024  # from each end of the input


def input_identity(path: str | os.PathLike) -> dict:
    """Name, size and a sha256 of the first and last ``SAMPLE_BYTES`` of the input file."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest.update(f.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(f.read(SAMPLE_BYTES))
    return {"name": path.name, "size": size, "sample_sha256": digest.hexdigest()}


def model_identity(path: str | os.PathLike) -> dict:
    """File name, size and sha256 of a model file (hashed once per process per file version)."""
    stat = os.stat(os.path.realpath(path))
    return {"file": Path(path).name, "size": stat.st_size, "sha256": file_sha256(path)}


def _json_value(value):
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def effective_settings(config: EncodeConfig, half_applies: bool | None = None) -> dict:
    """The output settings of a run, as JSON values (``model`` is the model identity, kept apart).
    ``half_applies``: whether ``--half`` changes what runs here (the models layer decides it: CUDA, or a CPU
    with native bfloat16); None: as asked, except with ``--device cpu``."""
    settings = {s.name: _json_value(getattr(config, s.name)) for s in SETTINGS if s.output and s.name != "model"}
    settings["half"] = config.half and (half_applies if half_applies is not None else config.device != "cpu")
    settings["resolution"] = config.framing_resolution
    settings["fit"] = config.effective_fit
    # the frame window is recorded only where it narrows the input, so outputs made before it existed
    # (which encode every frame) still match a run that encodes every frame
    for name in WINDOW_SETTINGS:
        if settings[name] == SETTINGS_BY_NAME[name].default:
            del settings[name]
    return settings


def make_fingerprint(input_path: str | os.PathLike, config: EncodeConfig, model_path: str | os.PathLike,
                     half_applies: bool | None = None, ran: dict | None = None) -> str:
    """The fingerprint of an encode (see the module docstring). ``ran``: what actually ran (e.g. ``{"device":
    "cpu", "precision": "bfloat16"}``), recorded for people and tools, never compared by ``mismatch``."""
    data = {"format": FORMAT_VERSION, "input": input_identity(input_path), "model": model_identity(model_path),
            "settings": effective_settings(config, half_applies)}
    if ran is not None:
        data["ran"] = ran
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def stored_fingerprint(path: str | os.PathLike) -> str | None:
    """The fingerprint stored with an existing output: a --frames directory, an .npz, a video or a PNG."""
    from ._png import read_png_text
    from ._training import read_frames_fingerprint, read_iuv_fingerprint
    from ._video import read_video_fingerprint

    path = Path(path)
    if path.is_dir():
        return read_frames_fingerprint(path)
    if path.suffix.lower() == ".npz":
        return read_iuv_fingerprint(path)
    if path.suffix.lower() == ".png":
        return read_png_text(path).get(FINGERPRINT_TAG)
    return read_video_fingerprint(path)


def _parse(text: str | None) -> dict | None:
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    return data if isinstance(data, dict) and "format" in data else None


def _shown(name: str, value, settings: dict) -> str:
    if value is None:
        return "implied by --size" if name == "resolution" and settings.get("size") is not None else "not set"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _model_shown(model: dict) -> str:
    return f"{model.get('file')} ({model.get('size')} bytes, sha256 {str(model.get('sha256'))[:12]})"


def mismatch(stored_text: str | None, expected_text: str) -> str | None:
    """None when the stored fingerprint is the expected one; else what differs, as a phrase that
    completes "exists but was made ..." (or "has no densevid fingerprint ..." without one)."""
    stored, expected = _parse(stored_text), _parse(expected_text)
    if stored is None:
        return None if stored_text == expected_text else ("has no densevid fingerprint (made by an older densevid "
                                                          "or another tool), so it cannot be checked against this run")
    if stored.get("format") != expected["format"]:
        return (f"was made by a densevid with output format {stored.get('format')} (this one writes "
                f"{expected['format']})")
    reasons = []
    old_input, new_input = stored.get("input") or {}, expected["input"]
    if (old_input.get("size"), old_input.get("sample_sha256")) != (new_input["size"], new_input["sample_sha256"]):
        if old_input.get("size") != new_input["size"]:
            detail = f"{old_input.get('size')} bytes there, {new_input['size']} bytes now"
        else:
            detail = "same size, other content"
        reasons.append(f"from another input ({old_input.get('name')}: {detail})")
    old_model, new_model = stored.get("model") or {}, expected["model"]
    if (old_model.get("size"), old_model.get("sha256")) != (new_model["size"], new_model["sha256"]):
        reasons.append(f"with another model (--model: {_model_shown(old_model)} there, {_model_shown(new_model)} now)")
    old_settings, new_settings = stored.get("settings") or {}, expected["settings"]
    changed = [f"{_flag(name)} {_shown(name, old_settings.get(name), old_settings)} there, "
               f"{_shown(name, new_settings.get(name), new_settings)} now"
               for name in sorted(set(old_settings) | set(new_settings), key=_setting_order)
               if old_settings.get(name) != new_settings.get(name)]
    if changed:
        reasons.append(f"with other settings ({'; '.join(changed)})")
    return "was made " + " and ".join(reasons) if reasons else None


def _flag(name: str) -> str:
    return flag_of(name) if name in SETTINGS_BY_NAME else name  # a setting this densevid does not know


def _setting_order(name: str) -> int:
    names = [s.name for s in SETTINGS]
    return names.index(name) if name in names else len(names)
