"""What a worker process (local pool or SLURM job) does: run one task, i.e. some seeds of one trial.

A task is a list of runs. A run is one seed, or, where the experiment runs ``n_seeds`` seeds as one
vmapped ensemble (see :mod:`microcircuit.sweep.seeds`; today Fig. 2's ``regression``), consecutive seeds
``A..B`` of the trial together: one run folder ``seeds-A-B`` with ``seed = A``, ``n_seeds = B − A + 1``,
one compiled program advancing every seed at once. Its summary.json gets ``members`` (each seed's own
summary) before it is written, and the task reports one outcome per seed from them.

Each run is an ordinary run folder written exactly as ``microcircuit run`` writes one (config.toml,
environment.json, metrics, checkpoints, summary.json last). A folder that already holds a summary is
not run again; one left partial by an interrupted sweep continues from its newest checkpoint (or starts
over when it has none). The runs of a task run one after another in the same process, so JAX compiles
the trial's programs once and reuses them for every further run of the same shape (the model is the
same; only weights, patterns and noise differ).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from .seeds import FAILED, MEMBERS, member_summaries, split_members, vmaps_seeds

__all__ = ["FAILED", "RunSpec", "Task", "TaskRunner", "execute", "init_local_worker", "read_failure", "run_task"]

_busy = False  # True while this process runs a task
_stopped = ""  # set by a signal: tasks that reach this worker afterwards are not started


def init_local_worker() -> None:
    """In each local pool worker: leave the terminal's process group, so that Ctrl-C reaches only the
    driver (which forwards one SIGTERM), and turn SIGTERM/SIGINT into KeyboardInterrupt while a task runs
    (a run inside its segment loop has its own handler: it checkpoints first). An idle worker ignores
    them (one that died would break the pool and kill the tasks still running elsewhere) but remember
    them: tasks already queued for this worker are then handed back unstarted."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def _stop(signum: int, frame: Any) -> None:
    global _stopped
    _stopped = f"stopped by {signal.Signals(signum).name}"
    if _busy:
        raise KeyboardInterrupt(_stopped)


class TaskRunner:
    """What a SLURM job runs: :func:`run_task`, plus submitit's checkpoint hook. When the job nears its
    time limit, SLURM signals it (``--signal=USR2@90``), submitit calls :meth:`checkpoint` and requeues the
    job; the requeued job runs the same task, whose unfinished runs continue from their newest
    checkpoints (at most ``slurm_max_num_timeout`` = 3 times)."""

    def __call__(self, task: Task) -> list[dict[str, Any]]:
        return run_task(task)

    def checkpoint(self, task: Task) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(TaskRunner(), task)


@dataclass(frozen=True)
class RunSpec:
    """One run folder: one seed, or consecutive ``seeds`` run as one vmapped program (``config.seed`` is
    the first, ``config.n_seeds`` their number)."""

    seeds: tuple[int, ...]
    path: str
    config: Config

    def __post_init__(self) -> None:
        if (self.config.seed, self.config.n_seeds) != (self.seeds[0], len(self.seeds)):
            raise ValueError(f"run {self.path}: config has seed {self.config.seed}, n_seeds {self.config.n_seeds} "
                             f"for seeds {self.seeds}")

    @property
    def seed(self) -> int:
        return self.seeds[0]


@dataclass(frozen=True)
class Task:
    """Runs (seeds) of one trial, run one after another in one process."""

    trial: str
    runs: tuple[RunSpec, ...]
    compilation_cache: str | None = None


def _setup(cache: str | None) -> None:
    """JAX's persistent compilation cache, shared by every worker of the sweep (set once per process)."""
    if not cache:
        return
    import jax

    if not jax.config.jax_compilation_cache_dir:
        Path(cache).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache)


def read_failure(path: Path) -> dict[str, Any] | None:
    p = Path(path) / FAILED
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def execute(cfg: Config, path: Path) -> tuple[dict[str, Any], bool]:
    """Run ``cfg`` into the run folder ``path`` the way ``microcircuit run`` does; returns (summary,
    skipped) where ``skipped`` means the folder already held a finished run. With ``n_seeds`` > 1 (an
    experiment that vmaps its seeds), the summary also holds ``members``: seed -> that seed's summary."""
    from ..checkpoint import NON_COMPUTATIONAL, config_differences, latest_checkpoint
    from ..config import load_toml
    from ..experiments import experiment_origin, get_experiment
    from ..preflight import preflight
    from ..runs import RunDir

    run_dir = RunDir(path)
    if run_dir.is_complete():
        return json.loads(run_dir.file(RunDir.SUMMARY).read_text()), True
    runner = get_experiment(cfg.experiment)
    warnings = preflight(cfg)  # the checks `microcircuit run` makes; a refused setting fails the trial
    resume = False
    if (path / RunDir.CONFIG).is_file() and latest_checkpoint(path / RunDir.CHECKPOINTS) is not None:
        try:
            resume = not config_differences(load_toml(path / RunDir.CONFIG), cfg, NON_COMPUTATIONAL)
        except Exception:  # an unreadable leftover: start over
            resume = False
    # The run holds its folder's lock (released below, however it ends): a `microcircuit run --resume` of the
    # same folder meanwhile is refused, and this run is refused while one is going on.
    origin = experiment_origin(cfg.experiment)
    source = {} if origin is None else {"experiment_source": origin}
    with RunDir.create(path, resume=True) if resume else RunDir.create(path, overwrite=True) as run_dir:
        if resume:
            (path / FAILED).unlink(missing_ok=True)
            run_dir.record_resume(cfg, **source)
            run_dir.write_config(cfg)
        else:
            run_dir.write_config(cfg)
            run_dir.write_environment(cfg, **source)
        for message in warnings:
            run_dir.log(event="warning", kind="config", message=message)
        t = time.perf_counter()
        summary = runner(cfg, run_dir, progress=False, echo=functools.partial(_log_warnings, run_dir))
        summary["wall_s"] = round(time.perf_counter() - t, 1)
        summary["warnings"] = run_dir.warnings(summary.get("warnings", []))
        if cfg.n_seeds > 1 and vmaps_seeds(cfg.experiment):  # per-seed results first: summary.json comes last
            members = member_summaries(cfg.experiment, path, summary)
            for m in members.values():
                m["wall_s"] = summary["wall_s"]  # the whole ensemble's: its seeds ran as one program
            summary[MEMBERS] = members
        run_dir.write_summary(summary)
    return summary, False


def _log_warnings(run_dir: Any, line: str) -> None:
    """A trial prints nothing; what its runner says as a warning is logged, for its summary.json."""
    if line.startswith("warning:"):
        run_dir.note_warning(line.removeprefix("warning:").strip())


def run_task(task: Task) -> list[dict[str, Any]]:
    """Run every seed of ``task``; one outcome per seed: ``status`` ``complete`` (with the ``summary``),
    ``failed`` (with ``error``; the message is also written to the run folder's failed.json) or
    ``interrupted`` (a signal stopped it after its checkpoint; the seeds after it are not started)."""
    global _busy
    previous = {}
    if threading.current_thread() is threading.main_thread():  # SLURM's SIGTERM: stop cleanly, not die
        previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    _busy = True
    try:
        return _run_task(task)
    finally:
        _busy = False
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)


def _run_task(task: Task) -> list[dict[str, Any]]:
    _setup(task.compilation_cache)
    where = f"{socket.gethostname()}:{os.getpid()}"
    outcomes = []
    for run in task.runs:
        path = Path(run.path)
        t = time.perf_counter()
        base: dict[str, Any] = {"trial": task.trial, "path": run.path, "worker": where}
        if len(run.seeds) > 1:
            base["vmapped"] = list(run.seeds)
        if _stopped:
            outcomes += _each(base, run.seeds, status="interrupted", error=f"not started ({_stopped})", wall_s=0.0)
            continue
        try:
            summary, skipped = execute(run.config, path)
            members = split_members(summary, run.seeds, path, run.config.experiment)
        except KeyboardInterrupt as e:  # RunInterrupted included: the run checkpointed; stop this task
            outcomes += _each(base, run.seeds, status="interrupted", error=str(e) or type(e).__name__,
                              wall_s=round(time.perf_counter() - t, 1))
            break
        except Exception as e:
            from ..runs import FolderInUseError, RunDir

            error = f"{type(e).__name__}: {e}"
            outcomes += _each(base, run.seeds, status="failed", error=error, wall_s=round(time.perf_counter() - t, 1))
            try:
                if not isinstance(e, FolderInUseError) and not RunDir(path).is_complete():  # never into another's
                    RunDir(path).write_json(FAILED, {"error": error, "traceback": traceback.format_exc(),
                                                     "worker": where, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            except OSError:
                pass
        else:
            wall = summary.get("wall_s", round(time.perf_counter() - t, 1))
            for s in run.seeds:
                one = {k: v for k, v in members[s].items() if k not in ("headline", MEMBERS)}
                outcomes.append({**base, "seed": s, "status": "complete", "summary": one, "skipped": skipped,
                                 "wall_s": wall})
    return outcomes


def _each(base: dict[str, Any], seeds: tuple[int, ...], **fields: Any) -> list[dict[str, Any]]:
    """One outcome per seed of a run (a vmapped run's seeds share its fate)."""
    return [{**base, "seed": s, **fields} for s in seeds]
