"""The ``densevid`` command: parse flags, build a config, call the pipeline. Nothing else."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import warnings
from pathlib import Path

import click

from ._config import SETTINGS, EncodeConfig, flag_of
from ._errors import ConfigError, DensevidError, DensevidWarning, UsageError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# what `--ray ADDRESS` accepts; any other word after --ray is an INPUT (`--ray videos/` starts a local Ray)
_RAY_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.\-]+:\d+)$")


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"densevid: error: {message}", err=True)
    sys.exit(code)


def _sigterm_as_interrupt(signum, frame) -> None:
    # A pre-empted worker gets SIGTERM: unwind like Ctrl-C so temporary files are removed.
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_ignored():
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """densevid's own warnings (e.g. the CPU render falling back to the plain reference) as one line each. Other
    libraries' warnings (e.g. torch's, raised inside the model) are not ours to show on every run."""
    if issubclass(category, DensevidWarning):
        click.echo(f"densevid: warning: {message}", err=True)


# --- the settings of `encode`: one option per row of _config.SETTINGS ---------------------------------

def _checked(setting):
    """A click callback parsing the value with the setting's own parser (a bad value: exit 2)."""
    def callback(ctx, param, value):
        if value is None or (setting.is_switch and value is False):
            return value
        try:
            return setting.parse(value)
        except ConfigError as error:
            raise click.BadParameter(str(error)) from None
    return callback


def settings_options(command):
    """Add an option for every setting of the table, in its order (so --help lists them so)."""
    for setting in reversed([s for s in SETTINGS if s.flag]):
        default_shown = setting.default not in (None, False)
        if setting.is_switch:
            option = click.option(flag_of(setting.name), setting.name, is_flag=True, default=False, help=setting.help)
        else:
            option = click.option(flag_of(setting.name), setting.name, default=setting.default,
                                  type=click.Choice(setting.choices) if setting.choices else None,
                                  metavar=setting.metavar, show_default=default_shown, callback=_checked(setting),
                                  help=setting.help)
        command = option(command)
    return click.option("--preset", default=None, metavar="NAME",
                        help="Named settings from configs/ (see `densevid presets`), e.g. magicanimate. Flags given "
                             "explicitly override it.")(
        click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, metavar="FILE",
                     help="A preset TOML file of your own (same keys as configs/*.toml).")(command))


def build_config(ctx: click.Context, quiet: bool) -> EncodeConfig:
    """The run's config: built-in defaults < preset / --config file < flags given explicitly."""
    from ._presets import load_config_file, load_preset

    params = ctx.params
    if params.get("preset") and params.get("config_file"):
        raise click.UsageError("use --preset or --config, not both")
    preset = {}
    if params.get("preset"):
        preset = load_preset(params["preset"])
    elif params.get("config_file"):
        preset = load_config_file(params["config_file"])

    def explicit(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source not in (click.core.ParameterSource.DEFAULT,
                                                      click.core.ParameterSource.DEFAULT_MAP)

    values = {s.name: params[s.name] if explicit(s.name) or s.name not in preset else preset[s.name]
              for s in SETTINGS if s.flag}
    return EncodeConfig(**values, progress=not quiet)


@main.command()
@click.argument("inputs", metavar="INPUT...", nargs=-1)
@click.option("-o", "--output", "output_path", type=click.Path(path_type=Path), default=None,
              help="One INPUT file: the output file (or an existing directory to write into). Several inputs, "
                   "a directory, a glob or --from-list: a directory (created if missing) where the outputs mirror "
                   "the inputs' relative paths. Default: beside each input, as INPUT-stem_densepose.mp4 "
                   "(.mkv with --lossless, .png for images).")
@settings_options
@click.option("--from-list", "list_files", multiple=True, metavar="FILE",
              help="Read more INPUTs from FILE, one per line ('-' for stdin; blank lines and # comments ignored).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="Write a JSON report: per input status (done/skipped/failed/pending), output, frames, "
                   "seconds, error.")
@click.option("--shard", default=None, metavar="K/N",
              help="Process only shard K of N (0 <= K < N): inputs are assigned by sha1 of their relative path, so "
                   "N workers with K = 0..N-1 cover every input exactly once.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run on Ray (pip install \"densevid[ray]\"): one actor per GPU, or CPU actors. ADDRESS: auto, "
                   "HOST:PORT or ray://HOST:PORT of a running cluster; none (or 'local'): start a local Ray.")
@click.option("--ray-actors", type=click.IntRange(1, 4096), default=None, metavar="N",
              help="With --ray: number of actors (default: one per GPU of the cluster; 2 CPU actors without "
                   "GPUs).")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bars, no per-input lines, no summary (errors still shown).")
def encode(inputs: tuple[str, ...], output_path: Path | None, list_files: tuple[str, ...], report_path: Path | None,
           shard: str | None, ray_address: str | None, ray_actors: int | None, quiet: bool, **_settings) -> None:
    """Render the DensePose hint video of every INPUT.

    INPUT is a video or image file, a directory (searched recursively for video and image files),
    or a glob ('videos/**/*.mp4'). An input whose output exists, made from it with the same settings
    and model, is skipped, so rerunning the same command after a crash does only what is left; an
    output made otherwise is refused (--overwrite replaces it). One bad input does not stop the others.

    Exit code: 0 all done or skipped, 1 some failed, 2 usage error, 130 interrupted.

    \b
    Examples:
      densevid encode dance.mp4                      (writes dance_densepose.mp4)
      densevid encode dance.mp4 --preset magicanimate   (512x512 centre crop, 25 fps)
      densevid encode videos/ -o hints/ --report report.json
      densevid encode --from-list all.txt -o hints/ --shard $SLURM_ARRAY_TASK_ID/8
      densevid encode videos/ -o hints/ --ray        (local Ray; --ray auto joins a cluster)
    """
    from ._batch import BatchStopped, ConsoleProgress, run_batch
    from ._inputs import build_plan, parse_shard

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        if ray_address is not None and not _RAY_ADDRESS.match(ray_address):
            inputs, ray_address = inputs + (ray_address,), "local"  # `--ray videos/`: the word is an INPUT
        if ray_actors is not None and ray_address is None:
            raise UsageError("--ray-actors needs --ray")
        if report_path is not None and not report_path.parent.is_dir():
            raise UsageError(f"--report {report_path}: directory {report_path.parent} does not exist")
        config = build_config(click.get_current_context(), quiet)
        plan = build_plan(inputs, list_files, output_path, config.lossless, parse_shard(shard) if shard else None,
                          frames_dir=config.frames_dir, preview_path=config.preview_path, iuv_path=config.iuv_path)
        progress = ConsoleProgress(len(plan.jobs), quiet=quiet, single=plan.single)
        try:
            if ray_address is not None:
                from ._ray import run_on_ray

                report = run_on_ray(plan.jobs, config, address=ray_address, num_actors=ray_actors,
                                    on_result=progress.result)
            else:
                report = run_batch(plan.jobs, config, progress_factory=progress.frames, on_result=progress.result)
        except BatchStopped as stopped:  # the model cannot load: report what there is, then one line
            report = stopped.report
        finally:
            progress.close()
        report.shard = shard
    except UsageError as error:
        _fail(str(error), EXIT_USAGE)
    except DensevidError as error:
        _fail(str(error))
    except KeyboardInterrupt:
        _fail("interrupted; no output written", EXIT_INTERRUPTED)
    with _signals_ignored():
        progress.summary(report)
        if report_path is not None:
            try:
                report.write(report_path)
            except DensevidError as error:
                _fail(str(error))
    if report.fatal:
        _fail(report.fatal)
    if report.interrupted:
        counts = report.counts
        if plan.single:
            _fail("interrupted; no output written", EXIT_INTERRUPTED)
        _fail(f"interrupted; {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed, "
              f"{counts['pending']} not finished: rerun the same command to finish them", EXIT_INTERRUPTED)
    sys.exit(report.exit_code)


# --- densevid models ---------------------------------------------------------------------------------


@main.group()
def models() -> None:
    """Fetch the model weights ahead of a job, and see what is cached.

    Download once where there is internet (into the Hugging Face cache, HF_HOME), then run the
    workers with HF_HUB_OFFLINE=1 and the same HF_HOME (or DENSEVID_MODEL_DIR).
    """


@models.command("download")
@click.argument("which", type=click.Choice(["r50", "r101", "all"]), default="r50")
@click.option("--force", is_flag=True, help="Download again even when the file is cached.")
def models_download(which: str, force: bool) -> None:
    """Download WHICH model (default r50) into the cache and verify it loads as a DensePose TorchScript model."""
    from ._modelcache import download_model, format_size
    from ._models import MODEL_FILES

    names = list(MODEL_FILES) if which == "all" else [which]
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        for name in names:
            entry = download_model(name, force=force)
            click.echo(f"{name}  {entry.filename}  {format_size(entry.size)}  sha256 {entry.sha256}  {entry.path}")
    except DensevidError as error:
        _fail(str(error))
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)


@models.command("standin")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--real-cost", is_flag=True,
              help="The real exports' architecture and cost (ResNet-50/101-FPN DensePose R-CNN, about 250 and 330 MB, "
                   "seconds per frame on a CPU) instead of the small, fast one.")
@click.option("--force", is_flag=True, help="Replace model files that exist in DIRECTORY.")
def models_standin(directory: Path, real_cost: bool, force: bool) -> None:
    """Write stand-in models with RANDOM weights into DIRECTORY, under the real file names.

    For trying densevid without the real weights: DENSEVID_MODEL_DIR=DIRECTORY densevid encode VIDEO.
    The people and body parts a stand-in finds are made up from the picture's bright regions; its
    output is not a DensePose estimate.
    """
    from ._standin import write_model_files

    try:
        paths = write_model_files(directory, real_cost=real_cost, overwrite=force)
    except DensevidError as error:
        _fail(str(error))
    kind = "real-cost stand-in" if real_cost else "stand-in"
    for path in paths:
        click.echo(f"wrote {path} ({kind} with random weights, not the real model)")
    click.echo(f"try it: DENSEVID_MODEL_DIR={directory.resolve()} densevid encode VIDEO")


@models.command("list")
def models_list() -> None:
    """Show which models are found, where, their size and the precision of their weights."""
    import os

    from ._modelcache import PRECISION_RULE, cached_models, format_size
    from ._models import _hf_cache_dir

    model_dir = os.environ.get("DENSEVID_MODEL_DIR")
    click.echo(f"hub cache: {_hf_cache_dir()}")
    click.echo(f"DENSEVID_MODEL_DIR: {model_dir} (searched first)" if model_dir else "DENSEVID_MODEL_DIR: not set")
    entries = cached_models(model_dir)
    for entry in entries:
        if entry.path:
            where = f"{format_size(entry.size)}  {entry.weights or '?'}  {entry.where}  {entry.path}"
        else:
            where = "not found (DENSEVID_MODEL_DIR, hub cache)" if model_dir else "not cached"
        click.echo(f"{entry.name:<5} {entry.filename:<36} {where}")
    if any(entry.path for entry in entries):
        click.echo(f"precision: {PRECISION_RULE}")


@main.command()
def presets() -> None:
    """List the named presets (configs/*.toml) for `densevid encode --preset NAME`."""
    from ._presets import describe, list_presets, load_config_file, presets_dir

    found = list_presets()
    if not found:
        _fail("no presets found (looked for configs/*.toml beside the package and in the package data)")
    for name, path in found.items():
        try:
            settings = load_config_file(path)
        except DensevidError as error:
            click.echo(f"{name}: invalid: {error}")
            continue
        click.echo(f"{name}: {settings.get('description', '')}")
        click.echo(f"    {describe(settings)}")
    click.echo(f"(from {presets_dir()})")



if __name__ == "__main__":  # pragma: no cover
    main()
