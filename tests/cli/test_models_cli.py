"""`densevid models download|list`, then offline workers. No network: the download is faked."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from click.testing import CliRunner

from densevid.pipeline.cli import main
from densevid.pipeline.models import MODEL_FILES, MODEL_REPO
from support.clips import make_clip, synthetic_frames
from support.helpers import populate_hub_cache, run_cli, use_private_hf_home


@pytest.fixture
def hf_home(monkeypatch, tmp_path):
    return use_private_hf_home(monkeypatch, tmp_path)


def _fake_hub(monkeypatch, payload_for):
    """hf_hub_download writing into the real cache layout, with content from payload_for(filename)."""
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, cache_dir=None, force_download=False, **kwargs):
        calls.append((repo_id, filename, force_download))
        from pathlib import Path

        repo_dir = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
        commit = "0123456789abcdef0123456789abcdef01234567"
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(commit)
        blob = repo_dir / "blobs" / hashlib.sha256(filename.encode()).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(payload_for(filename))
        snapshot = repo_dir / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        link = snapshot / filename
        if not link.exists():
            link.symlink_to(blob)
        return str(link)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kwargs: None)  # the hub answers
    return calls


def test_download_verifies_and_then_workers_run_offline(tmp_path, hf_home, monkeypatch, standin_models):
    payload = standin_models["tuple"].read_bytes()
    calls = _fake_hub(monkeypatch, lambda filename: payload)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    result = CliRunner().invoke(main, ["models", "download", "all"])
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(payload).hexdigest()
    lines = result.output.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["r50", MODEL_FILES["r50"]], ["r101", MODEL_FILES["r101"]]]
    assert all(f"sha256 {digest}" in line and str(hf_home / "hub") in line for line in lines)
    assert [c[:2] for c in calls] == [(MODEL_REPO, MODEL_FILES["r50"]), (MODEL_REPO, MODEL_FILES["r101"])]

    # a worker without internet: HF_HUB_OFFLINE=1 and --model r50 find the cached file
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    listing = CliRunner().invoke(main, ["models", "list"])
    assert listing.exit_code == 0
    assert listing.output.splitlines()[0] == f"hub cache: {hf_home / 'hub'}"
    from densevid.pipeline.models import format_size

    size = format_size(len(payload))
    assert size.endswith(" MB")
    for name in ("r50", "r101"):
        line = next(line for line in listing.output.splitlines() if line.startswith(name + " "))
        assert MODEL_FILES[name] in line and size in line and "hub cache" in line and str(hf_home) in line
    clip = make_clip(tmp_path / "a.mkv", synthetic_frames(2, 32, 32))
    result = run_cli(clip, "--model", "r50", "--resolution", "64", "--lossless")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a_densepose.mkv").is_file()
    assert len(calls) == 2  # nothing downloaded by the worker


def test_download_refuses_offline_in_one_line(hf_home, monkeypatch):
    calls = _fake_hub(monkeypatch, lambda filename: b"x")
    result = CliRunner().invoke(main, ["models", "download"])  # the autouse fixture sets HF_HUB_OFFLINE=1
    assert result.exit_code == 1 and not calls
    assert result.output == (f"densevid: error: cannot download {MODEL_FILES['r50']}: offline (HF_HUB_OFFLINE is "
                             f"set); run `densevid models download` where there is internet, with HF_HUB_OFFLINE "
                             f"unset\n")


def test_download_of_a_broken_file_is_an_error(hf_home, monkeypatch):
    _fake_hub(monkeypatch, lambda filename: b"<html>proxy login page</html>")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    result = CliRunner().invoke(main, ["models", "download", "r101"])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and line.startswith(f"densevid: error: downloaded {MODEL_FILES['r101']} does not load")
    assert "--force" in line


def test_download_failure_is_one_line(hf_home, monkeypatch):
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kwargs: None)  # the hub answers
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    result = CliRunner().invoke(main, ["models", "download", "r50"])
    assert result.exit_code == 1
    assert result.output == (f"densevid: error: download of {MODEL_FILES['r50']} from {MODEL_REPO} failed: "
                             f"OSError: Network is unreachable\n")


def test_list_shows_model_dir_precision_and_missing(tmp_path, hf_home, monkeypatch, standin_models):
    import torch

    from densevid.pipeline.models import PRECISION_RULE, format_size, save_standin_rcnn

    rcnn = save_standin_rcnn(tmp_path / "rcnn.pt", "tuple", 101, width=0.25)
    populate_hub_cache(hf_home, MODEL_FILES["r101"], payload=rcnn.read_bytes())
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    half = model_dir / MODEL_FILES["r50"]
    torch.jit.load(str(standin_models["dict"])).half().save(str(half))  # as the --fp16 exports are made
    monkeypatch.setenv("DENSEVID_MODEL_DIR", str(model_dir))
    result = CliRunner().invoke(main, ["models", "list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[:2] == [f"hub cache: {hf_home / 'hub'}", f"DENSEVID_MODEL_DIR: {model_dir} (searched first)"]
    assert lines[2].split() == ["r50", MODEL_FILES["r50"], *format_size(half.stat().st_size).split(), "float16",
                                "DENSEVID_MODEL_DIR", str(half)]
    # each found file says what --engine auto runs for it: the cheap stand-in is no R-CNN, so the file runs itself
    assert lines[3].startswith("      --engine auto runs the TorchScript file (its weights are not the DensePose")
    assert lines[4].split()[:7] == ["r101", MODEL_FILES["r101"], *format_size(rcnn.stat().st_size).split(),
                                    "float32", "hub", "cache"]
    assert lines[5].startswith("      --engine auto runs the native model: R101")
    assert lines[6] == f"precision: {PRECISION_RULE}"

    # the directory it searches is shown when the file is not there too
    half.unlink()
    lines = CliRunner().invoke(main, ["models", "list"]).output.splitlines()
    assert lines[1] == f"DENSEVID_MODEL_DIR: {model_dir} (searched first)"
    assert lines[2].split()[2:] == ["not", "found", "(DENSEVID_MODEL_DIR,", "hub", "cache)"]

    monkeypatch.delenv("DENSEVID_MODEL_DIR")
    shutil.rmtree(hf_home)
    lines = CliRunner().invoke(main, ["models", "list"]).output.splitlines()
    assert lines[1] == "DENSEVID_MODEL_DIR: not set"
    assert lines[2].split() == ["r50", MODEL_FILES["r50"], "not", "cached"]
    assert not any(line.startswith("precision:") for line in lines)


@pytest.mark.parametrize("command", ["encode", "models download"])
def test_unreachable_hub_fails_at_once_on_one_whole_line(tmp_path, hf_home, monkeypatch, capfd, command):
    """No network, no weights: one HEAD request, no retries, one line that names every way out."""
    import time

    import huggingface_hub

    requests, downloads = [], []
    head = huggingface_hub.get_hf_file_metadata
    download = huggingface_hub.hf_hub_download
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata",
                        lambda *args, **kwargs: requests.append(args) or head(*args, **kwargs))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda *args, **kwargs: downloads.append(args) or download(*args, **kwargs))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed local port: connection refused
    if command == "encode":
        args = ["encode", str(make_clip(tmp_path / "a.mkv", synthetic_frames(1, 32, 32))), "--lossless"]
    else:
        args = ["models", "download", "r50"]
    started = time.monotonic()
    result = CliRunner().invoke(main, args)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("densevid: error: ")
    line = lines[0]
    for part in (MODEL_FILES["r50"], "the hub at http://127.0.0.1:9 is unreachable", "DENSEVID_MODEL_DIR",
                 f"hub cache {hf_home / 'hub'}", "densevid models download r50",
                 f"(or: hf download {MODEL_REPO} {MODEL_FILES['r50']})"):
        assert part in line
    assert len(requests) == 1 and not downloads  # asked once, no retries
    assert "Retry" not in capfd.readouterr().err
    assert elapsed < 20  # a generous failure-mode bound (huggingface_hub alone would retry for ~25 s)


def test_standin_command_lets_a_new_user_try_densevid(tmp_path, monkeypatch):
    directory = tmp_path / "standins"
    result = CliRunner().invoke(main, ["models", "standin", str(directory)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == [f"wrote {directory / MODEL_FILES['r50']} (stand-in with made-up weights, not the real model)",
                     f"wrote {directory / MODEL_FILES['r101']} (stand-in with made-up weights, not the real model)",
                     f"try it: DENSEVID_MODEL_DIR={directory.resolve()} densevid encode VIDEO"]
    monkeypatch.setenv("DENSEVID_MODEL_DIR", str(directory))
    clip = make_clip(tmp_path / "a.mkv", synthetic_frames(2, 32, 32))
    for model in ("r50", "r101"):
        out = tmp_path / f"a_{model}.mkv"
        encoded = run_cli(clip, "--model", model, "--resolution", "64", "--lossless", "-o", out)
        assert encoded.exit_code == 0, encoded.output
        assert out.is_file()
    # a second time it refuses: the directory may hold the real weights
    again = CliRunner().invoke(main, ["models", "standin", str(directory)])
    assert again.exit_code == 1
    assert again.output == (f"densevid: error: {directory / MODEL_FILES['r50']} exists (it may be the real weights); "
                            f"choose another directory, or use --force to replace it with a stand-in\n")
    assert CliRunner().invoke(main, ["models", "standin", str(directory), "--force"]).exit_code == 0


@pytest.mark.slow
def test_standin_command_real_cost(tmp_path):
    from densevid.pipeline.models import load_model

    result = CliRunner().invoke(main, ["models", "standin", str(tmp_path), "--real-cost"])
    assert result.exit_code == 0, result.output
    assert "real-cost stand-in with made-up weights" in result.output
    for name, depth in (("r50", 50), ("r101", 101)):
        model = load_model(tmp_path / MODEL_FILES[name], "cpu")
        assert model.style == "tuple"  # as the hub files are
        keys = model.module.state_dict()
        blocks = [len({k.split(".")[4] for k in keys if k.startswith(f"model.backbone.bottom_up.res{stage}.")})
                  for stage in range(2, 6)]
        assert blocks == ([3, 4, 6, 3] if depth == 50 else [3, 4, 23, 3])
