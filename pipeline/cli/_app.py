"""The ``densevid`` command group: one-line errors, exit codes, signals, densevid's warnings, ``presets``.

The commands are thin: parse flags, build a config, call the layer below, print one-line results.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import warnings

import click

from ..core import DensevidError, DensevidNote, DensevidWarning

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"densevid: error: {message}", err=True)
    sys.exit(code)


def sigterm_as_interrupt(signum, frame) -> None:
    # A pre-empted worker gets SIGTERM: unwind like Ctrl-C so temporary files are removed.
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_ignored():
    """While the report is written after a run: a second Ctrl-C/SIGTERM must not cut it short."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="densevid")
def main() -> None:
    """densevid: turn videos of people into DensePose conditioning videos.

    Every frame becomes the DensePose part-index map of the people in it, coloured exactly as the
    ComfyUI "DensePose Estimator" node does (viridis on purple for MagicAnimate, or parula).
    """
    warnings.showwarning = _show_warning


def run() -> None:
    """The ``densevid`` command as a process: ``main``, then a quick exit.

    By the time ``main`` returns every output is committed (flushed, fsync-ed, renamed into place) and every
    line printed. What is left is the interpreter's teardown, which costs 0.6-0.9 s once torch is imported
    (measured: ``python -c "import torch"`` 1.9 s, 1.3 s ending with ``os._exit``), a sixth of a
    one-frame encode. So the process ends as Python's exit would, less the teardown: threads that are still
    running are waited for and the idle workers of thread pools told to end (``threading._shutdown``, the
    first step of Python's own exit), the exit handlers run (Ray's shutdown, temporary directories,
    logging), and the streams are flushed.
    """
    try:
        main()  # click's standalone mode: it always ends with SystemExit
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    exit_process(code)


def exit_process(code: int | str | None = 0) -> None:
    """End this process with ``code`` (as ``sys.exit`` takes it) the way ``run`` does, without the teardown."""
    if not isinstance(code, int):  # sys.exit("message") or sys.exit(None)
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    join_threads = getattr(threading, "_shutdown", None)  # CPython's; elsewhere the ordinary exit
    if join_threads is None:
        sys.exit(code)
    join_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """densevid's own warnings (e.g. the CPU render falling back to the plain reference) as one line each. Other
    libraries' warnings (e.g. torch's, raised inside the model) are not ours to show on every run."""
    if issubclass(category, DensevidNote):
        click.echo(f"densevid: note: {message}", err=True)
    elif issubclass(category, DensevidWarning):
        click.echo(f"densevid: warning: {message}", err=True)


@main.command()
def presets() -> None:
    """List the named presets (configs/*.toml) for `densevid encode --preset NAME`."""
    from ..config import describe_preset, list_presets, load_config_file, presets_dir

    found = list_presets()
    if not found:
        fail("no presets found (looked for configs/*.toml beside the package and in the package data)")
    for name, path in found.items():
        try:
            settings = load_config_file(path)
        except DensevidError as error:
            click.echo(f"{name}: invalid: {error}")
            continue
        click.echo(f"{name}: {settings.get('description', '')}")
        click.echo(f"    {describe_preset(settings)}")
    click.echo(f"(from {presets_dir()})")
