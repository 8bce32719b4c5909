"""Scale-out on Ray (``densevid encode --ray [ADDRESS]``; the optional extra ``densevid[ray]``).

Design:

* The driver (the ``densevid`` process) does the cheap part itself: planning errors, output = input,
  and finished outputs are settled before Ray is even started (a fully resumed batch never starts it).
* Actors: one per GPU of the cluster (``num_gpus=1``), or ``CPU_ACTORS`` CPU actors (``num_cpus=1``)
  when it has none; ``--ray-actors N`` overrides. Each actor loads the model once (lazily, on its
  first video) and runs ``run_job`` — the very function of the local run — so outputs, skips,
  failures and report entries are the same.
* Pull-based distribution: the driver keeps one video in flight per actor and hands the next one
  (in job order) to whichever actor finishes first (``ray.wait``).
* A worker that dies (``RayActorError``: killed, OOM, node lost or pre-empted) is replaced by a new
  actor, the hidden partial files it may have left beside its outputs are removed, and its video
  goes back to the front of the queue, for the next free actor; after ``MAX_ATTEMPTS`` deaths on the
  same video it is "failed" with a one-line reason. An actor that cannot even start (its
  ``__init__`` fails) stops the batch, as a model that cannot load does.
* Ctrl-C / SIGTERM on the driver: running videos are stopped (``_Worker.stop`` runs beside ``run``
  and sets a flag that the progress callback checks after every batch; the encode unwinds and removes its
  temporary file: Ray's own ``ray.cancel`` does not interrupt a running actor task), actors are killed after a grace
  period, leftover temporary files of the videos in flight are removed, and the report lists what
  finished. A local Ray started by the driver is shut down; a cluster joined with ADDRESS is not.

Inputs, outputs and the model must be at paths every worker sees (shared storage); ``--model PATH``
is made absolute. A cluster's workers need densevid installed and the weights cached (``densevid
models download`` with a shared ``HF_HOME``) or reachable.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from ..config import EncodeConfig
from ..core import ConfigError, one_line
from ..io import remove_stale_partials
from ..models import looks_like_path
from ._inputs import Job
from ._report import BatchReport, InputResult
from ._resume import BatchAbort, skip_check
from ._runner import BatchStopped, EstimatorCache, pending_result, run_job

MAX_ATTEMPTS = 3  # a video whose worker died this many times is "failed"
CPU_ACTORS = 2  # actors on a cluster without GPUs (each gets num_cpus=1)
LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024  # results are small dicts; the store needs no room
CANCEL_GRACE_SECONDS = 10.0

def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError('--ray needs Ray, which is not installed: pip install "densevid[ray]"') from None
    return ray


class _Worker:
    """The actor: one estimator (one model load) per actor process, many videos."""

    def __init__(self, config: EncodeConfig) -> None:
        if config.device.startswith("cuda"):
            config = replace(config, device="cuda")  # Ray gives each GPU actor one visible device
        self.config = config
        self.estimator = EstimatorCache(config)
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Runs beside ``run`` (max_concurrency=2): the video in progress unwinds at its next batch."""
        self._stopping.set()

    def run(self, job: Job) -> tuple[str, object]:
        if self._stopping.is_set():
            return "cancelled", None

        def progress_factory(job: Job, total: int | None) -> Callable[[int], None]:
            return lambda n: self.progress(job, n)

        try:
            return "result", run_job(job, self.config, self.estimator, progress_factory).to_dict()
        except BatchAbort as abort:
            return "fatal", abort.reason
        except KeyboardInterrupt:
            return "cancelled", None

    def progress(self, job: Job, n: int) -> None:
        """Called from the encode thread after every batch of ``n`` frames of ``job`` written: a stop
        requested meanwhile unwinds the encode, which removes its partial files."""
        if self._stopping.is_set():
            raise KeyboardInterrupt

    def pid(self) -> int:
        return os.getpid()


def remove_partials(job: Job, config: EncodeConfig) -> None:
    """Remove the partial files a dead worker left for ``job``: of its hint and of its --frames/--preview/--iuv
    outputs. The worker is gone (its locks with it) and no other writes these outputs, so they go at once."""
    outputs = {job.output_path(config.lossless, image=image) for image in (False, True)}
    for out in sorted(outputs | set(job.extra_outputs())):
        remove_stale_partials(out, min_age_seconds=0.0)


def _portable(config: EncodeConfig) -> EncodeConfig:
    """Paths in the config made absolute, the driver's DENSEVID_MODEL_DIR made explicit: workers share
    neither the driver's working directory nor (on a cluster) its environment."""
    model = config.model
    if looks_like_path(model) or Path(model).is_file():
        model = os.path.abspath(os.path.expanduser(model))
    model_dir = config.model_dir or os.environ.get("DENSEVID_MODEL_DIR") or None
    model_dir = Path(os.path.abspath(os.path.expanduser(str(model_dir)))) if model_dir else None
    return replace(config, model=model, model_dir=model_dir)


def _init(ray, address: str) -> bool:
    """Connect to (or start) Ray; True when this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    # ray.init installs its own SIGTERM handler (it kills the driver on the spot): keep the caller's,
    # which unwinds like Ctrl-C so the report is written and the workers' temporary files removed
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if address in ("local", ""):
            ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
        else:
            ray.init(address=address, **quiet)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        where = "start a local Ray" if address in ("local", "") else f"connect to Ray at {address}"
        raise ConfigError(f"cannot {where}: {type(exc).__name__}: {one_line(exc, 150)}") from None
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
    return True


def run_on_ray(jobs: Sequence[Job], config: EncodeConfig, address: str = "local", num_actors: int | None = None,
               on_result: Callable[[Job, InputResult], None] | None = None,
               max_attempts: int = MAX_ATTEMPTS) -> BatchReport:
    """Run ``jobs`` on Ray actors; the report is what ``run_batch`` would give for the same jobs (and
    BatchStopped is raised where it would raise it, or when no Ray worker can start)."""
    ray = import_ray()
    started = time.perf_counter()
    report = BatchReport([])
    results: dict[int, InputResult] = {}

    def record(i: int, result: InputResult) -> None:
        results[i] = result
        if on_result:
            on_result(jobs[i], result)

    todo = []
    stopped_by: BaseException | None = None
    for i, job in enumerate(jobs):  # settled by the driver, without Ray
        try:
            early = skip_check(job, config)
        except BatchAbort as abort:  # outputs to compare, but no model to compare them with
            report.fatal, stopped_by, todo = abort.reason, abort.__cause__, []
            break
        if early is not None:
            record(i, early)
        else:
            todo.append(i)

    if todo:
        config = _portable(config)
        started_ray = False
        try:
            started_ray = _init(ray, address)
            _drive(ray, jobs, todo, config, num_actors, max_attempts, record, report)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            if started_ray:
                ray.shutdown()
    report.results = [results.get(i) or pending_result(job, config) for i, job in enumerate(jobs)]
    report.seconds = time.perf_counter() - started
    if report.fatal:
        raise BatchStopped(report) from stopped_by
    return report


def _drive(ray, jobs, todo, config, num_actors, max_attempts, record, report) -> None:
    from ray.exceptions import RayActorError, RayTaskError

    gpus = int(ray.cluster_resources().get("GPU", 0))
    options = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    count = min(num_actors or gpus or CPU_ACTORS, len(todo))
    actor_class = ray.remote(_Worker).options(max_restarts=0, max_task_retries=0, max_concurrency=2, **options)
    actors = [actor_class.remote(config) for _ in range(count)]
    free = deque(actors)
    queue = deque((i, 1) for i in todo)  # job index, attempt
    inflight: dict = {}  # ObjectRef -> (actor, job index, attempt)
    try:
        while queue or inflight:
            while free and queue:
                actor = free.popleft()
                i, attempt = queue.popleft()
                inflight[actor.run.remote(jobs[i])] = (actor, i, attempt)
            [ref], _ = ray.wait(list(inflight), num_returns=1)
            actor, i, attempt = inflight.pop(ref)
            try:
                kind, payload = ray.get(ref)
            except RayActorError as error:
                if getattr(error, "actor_init_failed", False):
                    report.fatal = f"a Ray worker could not start: {one_line(error, 200)}"
                    return
                remove_partials(jobs[i], config)
                actors.remove(actor)
                replacement = actor_class.remote(config)
                actors.append(replacement)
                free.append(replacement)
                if attempt < max_attempts:
                    queue.appendleft((i, attempt + 1))  # next free actor: a fresh process, maybe another node
                else:
                    out = jobs[i].output_path(config.lossless)
                    record(i, InputResult(str(jobs[i].input_path), str(out), "failed",
                                          error=f"the Ray worker encoding it died {attempt} times"
                                                + (" (node pre-empted)" if getattr(error, "preempted", False) else "")))
                continue
            except RayTaskError as error:  # run_job lets nothing else out; keep the batch going anyway
                remove_partials(jobs[i], config)
                record(i, InputResult(str(jobs[i].input_path), str(jobs[i].output_path(config.lossless)), "failed",
                                      error=one_line(f"unexpected error on a Ray worker: {error}", 300)))
                free.append(actor)
                continue
            if kind == "fatal":
                report.fatal = payload
                return
            if kind == "result":
                record(i, InputResult.from_dict(payload))
            free.append(actor)
    finally:
        _stop(ray, actors, inflight, jobs, config, record)


def _stop(ray, actors, inflight, jobs, config, record=None) -> None:
    """Cancel what runs (the encodes clean up after themselves), kill the actors, sweep leftovers."""
    refs = list(inflight)
    for actor, _, _ in inflight.values():
        try:
            actor.stop.remote()
        except Exception:  # best effort; the kill below is the backstop
            pass
    if refs:
        try:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_SECONDS)
            for ref in ready:  # a video that finished meanwhile is reported as done
                kind, payload = ray.get(ref)
                if kind == "result" and record is not None:
                    record(inflight[ref][1], InputResult.from_dict(payload))
        except Exception:  # best effort
            pass
    for actor in actors:
        try:
            ray.kill(actor)
        except Exception:  # best effort
            pass
    if refs:  # the killed actors' tasks end (with RayActorError) once the processes are gone
        try:
            ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_SECONDS)
        except Exception:  # best effort
            pass
    for _, i, _ in inflight.values():
        remove_partials(jobs[i], config)
