"""From the command line's INPUT arguments to an ordered list of jobs: expansion, naming, sharding.

Expansion (``expand_inputs``), every argument (and every line of a ``--from-list`` file) is one of:

* an existing directory: every video or image file under it, recursively (``MEDIA_SUFFIXES``,
  case-insensitive), skipping hidden files and directories, densevid's own outputs
  (``*_densepose.*``) and the output directory; named relative to the directory itself;
* an existing file: taken as it is, whatever its suffix;
* a glob (``*``, ``?``, ``[``; ``**`` recurses): the media files it matches (directories it matches
  are walked like a directory argument); named relative to its leading directory without wildcards;
* anything else: a file that does not exist, which fails as that input (not as the whole batch).

Files named one by one (arguments and list lines) are named relative to their deepest common
directory, so ``videos/*/*.mp4`` (expanded by the shell) and ``videos/`` give the same names.
A directory or glob that holds no media file is a usage error, as is a missing list file.

The relative name ("rel", POSIX form) is the key of everything that follows: the order of work
(sorted by rel, then by path), deduplication (one job per real file), the output name under
``-o DIR`` (``DIR/<rel's directory>/<stem>_densepose.<ext>``) and the shard (``sha1(rel) mod N``:
stable across processes, machines and any reordering of the arguments or of a list).
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from ..config import EncodeConfig
from ..core import UsageError, os_reason
from ..io import OUTPUT_MARK, output_name

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
                  ".flv", ".wmv", ".3gp", ".ogv", ".nut", ".mxf")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES
_GLOB_MAGIC = set("*?[")


@dataclass(frozen=True)
class Job:
    """One input and where its output goes.

    ``output_dir``: mirror ``rel`` under this directory; ``output_file``: this exact file (a single
    input with ``-o FILE``); neither: beside the input. ``error``: a planning problem (e.g. two
    inputs that would write the same output) reported as this input's failure, without any work.
    """

    input_path: Path  # absolute (symlinks kept)
    rel: str  # POSIX relative name: order, shard and mirrored output name
    output_dir: Path | None = None
    output_file: Path | None = None
    error: str | None = None
    # --frames / --preview / --iuv outputs of this input (see ``sidecar_paths``)
    frames_dir: Path | None = None
    preview_path: Path | None = None
    iuv_path: Path | None = None
    extras_mirrored: bool = False  # several inputs: the sidecar paths above were derived from rel

    def extra_outputs(self) -> list[Path]:
        return [p for p in (self.frames_dir, self.preview_path, self.iuv_path) if p is not None]

    @property
    def looks_like_image(self) -> bool:
        """Guess from the suffix (the resume check must not decode); the probe has the last word."""
        return self.input_path.suffix.lower() in IMAGE_SUFFIXES

    def output_path(self, lossless: bool, image: bool | None = None) -> Path:
        """The final output path; ``image=None`` guesses image-ness from the input's suffix."""
        if self.output_file is not None:
            return self.output_file
        image = self.looks_like_image if image is None else image
        rel = PurePosixPath(self.rel)
        name = output_name(rel.name, lossless, image)
        if self.output_dir is not None:
            return self.output_dir.joinpath(*rel.parent.parts, name)
        return self.input_path.with_name(name)


# --- expansion -------------------------------------------------------------------------------------


def _has_magic(text: str) -> bool:
    return any(c in _GLOB_MAGIC for c in text)


def _is_media(path: Path) -> bool:
    return (path.suffix.lower() in MEDIA_SUFFIXES and not path.name.startswith(".")
            and not path.stem.endswith(OUTPUT_MARK))


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _walk(directory: Path, exclude: Path | None) -> list[Path]:
    """Media files under ``directory``, recursively, hidden entries and ``exclude`` skipped."""
    found = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or os.path.realpath(root_path / d) != str(exclude)))
        found.extend(root_path / f for f in sorted(files) if _is_media(root_path / f))
    return found


def _glob_root(pattern: str) -> Path:
    """The leading directory of a glob pattern that has no wildcard in it."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if _has_magic(part):
            break
        fixed.append(part)
    return _absolute(Path(*fixed)) if fixed else _absolute(".")


def read_list(list_file: str) -> list[str]:
    """Lines of a --from-list file ("-" is stdin): blank lines and lines starting with # are ignored."""
    try:
        if list_file == "-":
            text = sys.stdin.read()
        else:
            text = Path(list_file).read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read the input list {list_file}: {os_reason(err)}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the input list {list_file} is not UTF-8 text") from None
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def expand_inputs(arguments: Sequence[str], exclude_dir: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """(absolute path, rel) for every input named by ``arguments``: sorted, one entry per real file."""
    exclude = Path(os.path.realpath(exclude_dir)) if exclude_dir is not None else None
    found: list[tuple[Path, str]] = []
    singles: list[Path] = []
    for argument in arguments:
        path = _absolute(argument)
        if path.is_dir():
            files = _walk(path, exclude)
            if not files:
                raise UsageError(f"directory {argument} holds no video or image files "
                                 f"({', '.join(MEDIA_SUFFIXES)})")
            found.extend((f, f.relative_to(path).as_posix()) for f in files)
        elif path.exists() or not _has_magic(argument):
            singles.append(path)  # an existing file, or a missing one that fails as this input
        else:
            root = _glob_root(argument)
            matches = sorted(_absolute(m) for m in glob.glob(os.path.expanduser(argument), recursive=True))
            files = []
            for match in matches:
                if match.is_dir():
                    files.extend(_walk(match, exclude))
                elif match.is_file() and _is_media(match):
                    files.append(match)
            if not files:
                raise UsageError(f"no video or image file matches {argument}")
            for f in files:
                try:
                    found.append((f, f.relative_to(root).as_posix()))
                except ValueError:  # a pattern with ".." above its leading directory
                    found.append((f, f.name))
    if singles:
        root = Path(os.path.commonpath([str(p.parent) for p in singles]))
        found.extend((p, p.relative_to(root).as_posix()) for p in singles)
    # one job per real file: the smallest rel wins, whatever the argument order
    best: dict[str, tuple[Path, str]] = {}
    for path, rel in found:
        key = os.path.realpath(path)
        if key not in best or (rel, str(path)) < (best[key][1], str(best[key][0])):
            best[key] = (path, rel)
    return sorted(best.values(), key=lambda item: (item[1], str(item[0])))


def plan_jobs(inputs: Iterable[tuple[Path, str]], output_dir: Path | None = None, output_file: Path | None = None,
              lossless: bool = False) -> list[Job]:
    """Jobs in order; a later input whose output another input already writes gets that as its error."""
    jobs = [Job(path, rel, output_dir=output_dir, output_file=output_file) for path, rel in inputs]
    owners: dict[str, Job] = {}
    planned = []
    for job in jobs:
        key = os.path.normcase(os.path.abspath(job.output_path(lossless)))
        owner = owners.setdefault(key, job)
        if owner is not job:
            job = Job(job.input_path, job.rel, job.output_dir, job.output_file,
                      error=f"its output {job.output_path(lossless)} is also the output of {owner.input_path}; "
                            f"rename one of them")
        planned.append(job)
    return planned


# --- sharding --------------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" -> (K, N) with 0 <= K < N."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise UsageError(f"--shard takes K/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise UsageError(f"--shard {text}: need 0 <= K < N")
    return k, n


def shard_of(rel: str, n: int) -> int:
    """The shard (0..n-1) of an input: sha1 of its rel name, never Python's salted hash()."""
    return int.from_bytes(hashlib.sha1(rel.encode("utf-8")).digest()[:8], "big") % n


def select_shard(jobs: Sequence[Job], k: int, n: int) -> list[Job]:
    return [job for job in jobs if shard_of(job.rel, n) == k]


# --- the command line's inputs and -o, as one plan ---------------------------------------------------


@dataclass(frozen=True)
class Plan:
    jobs: list[Job]  # this shard's jobs, in order
    total: int  # inputs before sharding
    single: bool  # one input named as a file: -o is a file, messages as for one video


def sidecar_paths(job: Job, single: bool, frames: Path | None, preview: Path | None, iuv: Path | None) -> Job:
    """``job`` with its --frames/--preview/--iuv outputs: the paths as given for a single input;
    with several inputs each names a directory under which the input's rel name is mirrored
    (``DIR/sub/clip/000000.png``, ``DIR/sub/clip_preview.mp4``, ``DIR/sub/clip_iuv.npz``)."""
    if single:  # absolute, like every planned path: Ray workers do not share our working directory
        frames, preview, iuv = (_absolute(p) if p is not None else None for p in (frames, preview, iuv))
        return replace(job, frames_dir=frames, preview_path=preview, iuv_path=iuv)
    rel = PurePosixPath(job.rel)
    stem = PurePosixPath(rel.name).stem

    def under(root: Path | None, name: str) -> Path | None:
        return None if root is None else _absolute(root).joinpath(*rel.parent.parts, name)

    return replace(job, frames_dir=under(frames, stem), preview_path=under(preview, f"{stem}_preview.mp4"),
                   iuv_path=under(iuv, f"{stem}_iuv.npz"), extras_mirrored=True)


def build_plan(arguments: Sequence[str], list_files: Sequence[str] = (), output: str | os.PathLike | None = None,
               config: EncodeConfig | None = None, shard: tuple[int, int] | None = None) -> Plan:
    """Expand the inputs, decide what ``-o`` names, plan and shard the jobs (UsageError when impossible).

    One INPUT that is a file (or a missing path without wildcards) and no list: ``-o`` is the output
    file, or an existing directory to write into. Otherwise ``-o`` is a directory (created when
    missing) under which outputs mirror the inputs' rel names; without ``-o`` outputs go beside
    their inputs. From ``config`` (default ``EncodeConfig()``) come the outputs' names: ``lossless``
    (.mkv) and the --frames/--preview/--iuv paths (see ``sidecar_paths``); run the jobs with that config.
    """
    config = config if config is not None else EncodeConfig()
    lossless = config.lossless
    names = list(arguments)
    for list_file in list_files:
        names.extend(read_list(list_file))
    if not names:
        raise UsageError("no INPUT given: pass video or image files, directories, globs, or --from-list FILE")
    first = _absolute(arguments[0]) if arguments else None
    single = (len(arguments) == 1 and not list_files and first is not None and not first.is_dir()
              and (first.exists() or not _has_magic(arguments[0])))
    out = _absolute(output) if output is not None else None
    output_dir = output_file = None
    if out is not None:
        if single and not out.is_dir():
            output_file = out
        elif out.exists() and not out.is_dir():
            raise UsageError(f"-o {output} is a file; with several inputs -o names a directory")
        else:
            output_dir = out
    inputs = expand_inputs(names, exclude_dir=output_dir if output_dir is not None and output_dir.is_dir() else None)
    jobs = plan_jobs(inputs, output_dir=output_dir, output_file=output_file, lossless=lossless)
    extras = [Path(p) if p is not None else None for p in (config.frames_dir, config.preview_path, config.iuv_path)]
    jobs = [sidecar_paths(job, single, *extras) for job in jobs]
    total = len(jobs)
    if shard is not None:
        jobs = select_shard(jobs, *shard)
    if output_dir is not None and not single:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"cannot create the output directory {output}: {os_reason(err)}") from None
    return Plan(jobs, total, single)
