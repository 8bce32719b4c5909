"""The ``densevid`` command as a process (``cli.run``): it skips the interpreter's teardown, so what a normal
exit does must still happen: exit handlers, flushed output, the exit code, threads that are still running."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import atexit, sys, threading, time
    from pathlib import Path
    marks = Path(sys.argv[1])
    atexit.register(lambda: marks.write_text(marks.read_text() + "atexit\\n"))
    if sys.argv[2] == "thread":
        def late():
            time.sleep(0.5)
            marks.write_text(marks.read_text() + "thread done\\n")
        threading.Thread(target=late).start()
    sys.stdout.write("unflushed line without newline")  # flushed by the exit, not by print's newline
    sys.argv = ["densevid", *sys.argv[3:]]
    from densevid.pipeline.cli import run
    run()
""")


def _run(tmp_path, mode: str, *argv: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    marks = tmp_path / "marks.txt"
    marks.write_text("")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(marks), mode, *argv], capture_output=True, text=True,
                            timeout=120)
    return result, marks.read_text().splitlines()


@pytest.mark.parametrize("argv, code", [(["presets"], 0), (["encode", "--resolution", "abc", "x.mp4"], 2),
                                        (["encode", "does-not-exist.mp4"], 1)])
def test_exit_handlers_run_output_is_flushed_and_the_code_kept(tmp_path, argv, code):
    result, marks = _run(tmp_path, "plain", *argv)
    assert result.returncode == code, result.stderr
    assert marks == ["atexit"]
    assert result.stdout.startswith("unflushed line without newline")
    assert "Traceback" not in result.stderr


def test_a_thread_still_running_is_waited_for(tmp_path):
    result, marks = _run(tmp_path, "thread", "presets")
    assert result.returncode == 0, result.stderr
    assert marks == ["thread done", "atexit"]  # Python's own exit: the thread first, then the exit handlers
