"""`densevid encode` end to end on generated clips, with stand-in models of the real contract."""

import json
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest
import torch
from click.testing import CliRunner

from densevid.pipeline.cli import main
from support.clips import make_audio_only, make_clip, make_clip_with_audio, make_image, synthetic_frames
from support.helpers import assert_exact, decode_all, run_cli
from support.node_reference import node_hint

# variable frame rate with a non-zero start, in a 1/1000 time base (exactly representable in MKV)
VFR_PTS = [40, 80, 120, 200, 240, 400, 440, 480, 520]


@pytest.mark.parametrize("style", ["tuple", "dict"])
@pytest.mark.parametrize("cmap", ["viridis", "parula"])
def test_lossless_output_equals_node_frame_by_frame(tmp_path, standin_models, tuple_model, style, cmap):
    frames = synthetic_frames(len(VFR_PTS), 75, 131, seed=4)  # odd size
    clip = make_clip(tmp_path / "clip.mkv", frames, pts=VFR_PTS, time_base=Fraction(1, 1000))
    out = tmp_path / "hint.mkv"
    result = run_cli(clip, "-o", out, "--lossless", "--model", standin_models[style], "--cmap", cmap,
                     "--resolution", "64", "--batch-size", "4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    hints, seconds = decode_all(out)
    assert hints.shape == (len(VFR_PTS), 64, 112, 3)
    assert seconds == [p / 1000 for p in VFR_PTS]
    for frame, hint in zip(frames, hints):
        assert_exact(torch.from_numpy(hint), torch.from_numpy(node_hint(frame, tuple_model, cmap=cmap, resolution=64)))


def test_default_output_is_browser_h264_with_input_timing(tmp_path, standin_models):
    frames = synthetic_frames(12, 60, 46, seed=1)  # H.264 sources have even sizes
    pts = [3, 4, 5, 7, 8, 9, 12, 13, 14, 15, 17, 18]  # VFR, non-zero start
    clip = make_clip(tmp_path / "dance.mp4", frames, codec="libx264", pts=pts, time_base=Fraction(1, 30))
    result = run_cli(clip, "--model", standin_models["tuple"], "--resolution", "64", "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = tmp_path / "dance_densepose.mp4"
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    hints, seconds = decode_all(out)
    # 60x46 -> short side 64 -> 83x64 (83.48 rounds down); H.264 4:2:0 pads the odd height by one replicated row
    assert hints.shape == (12, 84, 64, 3)
    assert seconds == pytest.approx([p / 30 for p in pts], abs=1e-9)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_image_input_gives_png(tmp_path, standin_models, tuple_model):
    image = synthetic_frames(2, 50, 66, seed=2)[1]
    path = make_image(tmp_path / "person.png", image)
    result = run_cli(path, "--model", standin_models["tuple"], "--resolution", "64", "--cmap", "parula")
    assert result.exit_code == 0, result.output
    hint, _ = decode_all(tmp_path / "person_densepose.png")
    expected = node_hint(image, tuple_model, cmap="parula", resolution=64)
    assert_exact(torch.from_numpy(hint[0]), torch.from_numpy(expected))


def test_existing_output_of_unknown_origin_is_refused_without_overwrite(tmp_path, standin_models):
    # an output without densevid's fingerprint (another tool, an older densevid) cannot be told
    # from a stale one: refused, untouched, exit 1; --overwrite replaces it
    clip = make_clip(tmp_path / "a.mkv", synthetic_frames(3, 32, 32))
    out = tmp_path / "a_densepose.mkv"
    out.write_bytes(b"precious")
    args = (clip, "--lossless", "--model", standin_models["tuple"], "--resolution", "64")
    result = run_cli(*args)
    assert result.exit_code == 1
    assert result.output == (f"densevid: error: {out} exists but has no densevid fingerprint (made by an older "
                             f"densevid or another tool), so it cannot be checked against this run; pass --overwrite "
                             f"to replace it, or choose another -o\n")
    assert out.read_bytes() == b"precious"
    assert run_cli(*args, "--overwrite").exit_code == 0
    assert decode_all(out)[0].shape == (3, 64, 64, 3)
    loud = CliRunner().invoke(main, ["encode", *map(str, args)])  # now it is this run's output: skipped
    assert loud.exit_code == 0
    assert loud.output.strip() == (f"densevid: skipped {clip}: {out} exists, made from this input with these "
                                   f"settings (--overwrite redoes it)")


def _missing(p):
    return p / "missing.mp4"


def _empty(p):
    (p / "empty.mp4").write_bytes(b"")
    return p / "empty.mp4"


def _text(p):
    (p / "notes.mp4").write_text("hello, not a video\n")
    return p / "notes.mp4"


@pytest.mark.parametrize("make_input,message", [
    (_missing, "not found"),
    (_empty, "empty"),
    (_text, "not a"),
    (lambda p: make_audio_only(p / "sound.m4a"), "no video stream"),
])
def test_bad_inputs_fail_in_one_line_without_output(tmp_path, standin_models, make_input, message):
    path = make_input(tmp_path)
    result = run_cli(path, "--model", standin_models["tuple"], "-o", tmp_path / "out.mp4")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("densevid: error:") and message in lines[0].lower(), result.output
    assert not (tmp_path / "out.mp4").exists()


def test_output_directory_missing_is_refused_before_work(tmp_path, standin_models):
    clip = make_clip(tmp_path / "a.mkv", synthetic_frames(2, 32, 32))
    result = run_cli(clip, "--model", standin_models["tuple"], "-o", tmp_path / "nowhere" / "out.mp4")
    assert result.exit_code == 1 and "does not exist" in result.output
    assert not (tmp_path / "nowhere").exists()


def test_output_equal_to_input_is_refused(tmp_path, standin_models):
    clip = make_clip(tmp_path / "a.mkv", synthetic_frames(2, 32, 32))
    before = clip.read_bytes()
    result = run_cli(clip, "--model", standin_models["tuple"], "--lossless", "-o", clip, "--overwrite")
    assert result.exit_code == 1 and "is the input" in result.output
    assert clip.read_bytes() == before


def test_offline_without_weights_names_the_file_and_the_fixes(tmp_path, monkeypatch):
    clip = make_clip(tmp_path / "a.mkv", synthetic_frames(2, 32, 32))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = run_cli(clip, "--model", "r50")
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "densepose_r50_fpn_dl.torchscript" in line and "DENSEVID_MODEL_DIR" in line


def test_usage_errors_exit_2(tmp_path):
    for args in (["--resolution", "32"], ["--resolution", "16385"], ["--resolution", "abc"], ["--cmap", "jet"]):
        result = CliRunner().invoke(main, ["encode", "x.mp4", *args])
        assert result.exit_code == 2, (args, result.output)


def test_help_explains_itself():
    result = CliRunner().invoke(main, ["encode", "--help"])
    assert result.exit_code == 0
    for flag in ("--model", "--cmap", "--resolution", "--device", "--batch-size", "--lossless", "--overwrite",
                 "--half"):
        assert flag in result.output


@pytest.mark.slow
def test_real_process_prints_no_traceback(tmp_path):
    # the installed console entry point, as a user runs it
    result = subprocess.run([sys.executable, "-m", "densevid.pipeline.cli", "encode", str(tmp_path / "nope.mp4")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "nope.mp4" in result.stderr


@pytest.mark.slow
def test_without_numba_the_cli_warns_once_in_one_line_and_output_is_unchanged(tmp_path, standin_models):
    # an environment where numba cannot be imported (a stub package that raises, first on the path)
    stub = tmp_path / "stub" / "numba"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('numba is broken here')\n")
    clip = make_clip(tmp_path / "clip.mkv", synthetic_frames(3, 75, 131, seed=4))
    outputs = {}
    for name, extra_path in (("with", []), ("without", [str(stub.parent)])):
        outputs[name] = tmp_path / f"{name}.mkv"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(extra_path + sys.path)}
        result = subprocess.run([sys.executable, "-m", "densevid.pipeline.cli", "encode", str(clip),
                                 "-o", str(outputs[name]),
                                 "--lossless", "--model", str(standin_models["tuple"]), "--resolution", "64",
                                 "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if "warning" in line]
        if name == "with":
            assert warnings == []
        else:
            assert len(warnings) == 1 and warnings[0].startswith("densevid: warning: numba is not installed")
        assert "Traceback" not in result.stderr
    (with_numba, pts_with), (without_numba, pts_without) = decode_all(outputs["with"]), decode_all(outputs["without"])
    assert len(with_numba) == 3 and pts_with == pts_without
    assert_exact(torch.from_numpy(without_numba), torch.from_numpy(with_numba))


def _noisy_model(path, standin):
    """The stand-in wrapped so that its forward raises a UserWarning inside TorchScript, as the real
    exports do (``torch.meshgrid: in an upcoming release ...``)."""
    import textwrap

    source = path.with_suffix(".py")
    source.write_text(textwrap.dedent(f"""
        import warnings
        from typing import Tuple
        import torch
        import torchvision  # noqa: F401

        class Noisy(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                            torch.Tensor]:
                warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the indexing "
                              "argument.")
                return self.inner(image)

        torch.jit.script(Noisy(torch.jit.load({str(standin)!r}))).save({str(path)!r})
    """))
    subprocess.run([sys.executable, "-W", "ignore", str(source)], check=True, timeout=300)
    return path


@pytest.mark.slow
def test_warnings_from_inside_the_model_are_not_shown_as_densevid_warnings(tmp_path, standin_models, capsys):
    model = _noisy_model(tmp_path / "noisy.torchscript", standin_models["tuple"])
    clip = make_clip(tmp_path / "clip.mkv", synthetic_frames(2, 40, 40))
    result = subprocess.run([sys.executable, "-m", "densevid.pipeline.cli", "encode", str(clip), "--lossless",
                             "--model", str(model), "--resolution", "64", "--device", "cpu", "-q"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""
    # densevid's own warnings still are, one line each (a real one: test_without_numba_...)
    from densevid.pipeline.cli._app import _show_warning
    from densevid.pipeline.core import DensevidWarning

    _show_warning("the compiled CPU render is unavailable", DensevidWarning, "x.py", 1)
    _show_warning("torch.meshgrid: in an upcoming release", UserWarning, "x.py", 1)
    assert capsys.readouterr().err == "densevid: warning: the compiled CPU render is unavailable\n"


@pytest.mark.slow
def test_log_output_has_plain_lines_the_encode_time_and_the_audio_note(tmp_path, standin_models):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_clip_with_audio(videos / "talk.mp4", synthetic_frames(3, 48, 64, seed=1), audio_codec="aac")  # a phone video
    make_clip(videos / "quiet.mkv", synthetic_frames(2, 40, 40, seed=2))
    report = tmp_path / "report.json"
    args = [sys.executable, "-m", "densevid.pipeline.cli", "encode", str(videos), "-o", str(tmp_path / "o"),
            "--model", str(standin_models["tuple"]), "--resolution", "64", "--device", "cpu", "--report", str(report)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)  # stderr is a pipe, not a terminal
    assert result.returncode == 0, result.stderr
    for stream in (result.stdout, result.stderr):
        assert "\r" not in stream and "\x1b" not in stream, stream  # no progress bars redrawn into the log
    out = tmp_path / "o"
    done = result.stdout.splitlines()
    assert len(done) == 2
    assert re.fullmatch(rf"{re.escape(str(out / 'quiet_densepose.mp4'))}  \(2 frames encoded in \d+\.\d s, "
                        r"\d+\.\d frames/s\)", done[0]), done
    assert done[1].startswith(f"{out / 'talk_densepose.mp4'}  (3 frames encoded in ")
    engine, note, summary = result.stderr.splitlines()
    # the cheap stand-in is not the R-CNN the native model knows: said once, as a note
    assert engine.startswith("densevid: note: standin_tuple.torchscript runs the TorchScript file, one frame per call")
    assert note == "densevid: note: talk.mp4 has audio; the hint video has none (densevid writes video only)"
    assert re.fullmatch(r"densevid: 2 inputs: 2 done, 0 skipped, 0 failed \(\d+\.\d s\)", summary), summary
    entries = {Path(e["input"]).name: e for e in json.loads(report.read_text())["inputs"]}
    assert entries["talk.mp4"]["notes"] == ["talk.mp4 has audio; the hint video has none (densevid writes video only)"]
    assert entries["quiet.mkv"]["notes"] == []
    with av.open(str(out / "talk_densepose.mp4")) as container:
        assert len(container.streams.audio) == 0  # what the note says
    quiet = subprocess.run(args + ["-q", "--overwrite"], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


@pytest.mark.slow
def test_model_warnings_reach_the_user(tmp_path):
    """densevid's warnings about a model are DensevidWarnings, which the CLI shows: an fp16 export on the CPU,
    and a dict-style release whose RPN takes the image size as (w, h)."""
    from densevid.pipeline.models import save_standin_rcnn

    fp16 = save_standin_rcnn(tmp_path / "fp16.pt", "tuple", 50, width=0.25)
    fp16_module = torch.jit.load(str(fp16))
    fp16_module.half().save(str(fp16))  # a float16 file without the releases' RPN bug: one warning each
    swapped = save_standin_rcnn(tmp_path / "releases.pt", "dict", 50, width=0.25)
    clip = make_clip(tmp_path / "clip.mkv", synthetic_frames(2, 48, 64, seed=1))
    for model, expected in ((fp16, "fp16.pt has float16 weights: on the CPU they run in float32"),
                            (swapped, "releases.pt: its RPN (model.proposal_generator) takes the image size as "
                                      "(w, h)")):
        proc = subprocess.run([sys.executable, "-m", "densevid.pipeline.cli", "encode", str(clip), "-o",
                               str(tmp_path / f"{model.stem}.mkv"), "--lossless", "--model", str(model),
                               "--resolution", "64", "--device", "cpu", "-q"], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("densevid: warning:")]
        assert len(warnings) == 1 and expected in warnings[0], proc.stderr
