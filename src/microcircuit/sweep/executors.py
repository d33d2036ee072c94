"""Where tasks run: a local process pool, or SLURM jobs through submitit.

Both take a list of tasks, report finished ones as they come, and stop the rest on request:

- :class:`LocalExecutor`: ``concurrent.futures.ProcessPoolExecutor`` with N workers, started with the
  ``spawn`` method (JAX is not fork-safe). Workers leave the terminal's process group, so Ctrl-C reaches
  only the driver, which forwards a single SIGTERM: a run inside its segment loop checkpoints and stops.
- :class:`SlurmExecutor`: ``submitit.AutoExecutor``; a batch of tasks becomes one job array with at most
  ``workers`` jobs running at once, with the partition, time limit and resources from the sweep file.
  ``cluster = "local"`` or ``"debug"`` uses submitit's own executors (no cluster needed).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import ExecutorSpec
from .worker import Task, TaskRunner, init_local_worker, run_task

__all__ = ["Handle", "LocalExecutor", "SlurmExecutor", "make_executor"]


@dataclass
class Handle:
    """A submitted task: the task and its future (local) or submitit job (slurm)."""

    task: Task
    job: Any
    submitted: float = field(default_factory=time.time)
    gone: int = 0  # consecutive polls in which SLURM no longer listed the job (without a result)

    @property
    def label(self) -> str:
        job_id = getattr(self.job, "job_id", None)
        return f"{self.task.trial} (job {job_id})" if job_id else self.task.trial


Done = tuple[Handle, Any, BaseException | None]  # handle, result, error


class LocalExecutor:
    """N worker processes on this machine."""

    def __init__(self, workers: int) -> None:
        self.capacity = workers
        self.pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_local_worker
        )

    def submit(self, tasks: Sequence[Task]) -> list[Handle]:
        return [Handle(t, self.pool.submit(run_task, t)) for t in tasks]

    def wait(self, handles: Sequence[Handle], timeout: float) -> list[Done]:
        by_future = {h.job: h for h in handles}
        done, _ = wait_futures(list(by_future), timeout=timeout, return_when=FIRST_COMPLETED)
        out: list[Done] = []
        for f in done:
            f: Future  # type: ignore[no-redef]
            if f.cancelled():
                out.append((by_future[f], None, KeyboardInterrupt("cancelled before it started")))
            elif f.exception() is not None:
                out.append((by_future[f], None, f.exception()))
            else:
                out.append((by_future[f], f.result(), None))
        return out

    def _signal(self, signum: int) -> None:
        """Signal this pool's worker processes (and no other child of this process)."""
        for p in list((getattr(self.pool, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError, ValueError, TypeError):
                if p.is_alive():
                    os.kill(p.pid, signum)

    def stop(self, handles: Sequence[Handle]) -> None:
        """Cancel tasks not started yet; ask running ones to stop (SIGTERM: checkpoint and exit)."""
        for h in handles:
            h.job.cancel()
        self._signal(signal.SIGTERM)

    def close(self, *, wait: bool = True) -> None:
        if not wait:
            self._signal(signal.SIGKILL)
        self.pool.shutdown(wait=wait, cancel_futures=True)


class SlurmExecutor:
    """SLURM jobs through submitit (or submitit's ``local``/``debug`` executors)."""

    def __init__(self, spec: ExecutorSpec, folder: Path, name: str) -> None:
        try:
            import submitit
        except ImportError:
            from ..config import ConfigError

            raise ConfigError("executor.kind: 'slurm' needs submitit: pip install 'microcircuit[sweep]'") from None
        opts = spec.slurm
        self.opts = opts
        self.capacity = spec.workers
        self.folder = folder
        try:
            extra = {"slurm_max_num_timeout": opts.max_requeue} if opts.cluster == "slurm" else {}
            self.executor = submitit.AutoExecutor(folder=folder, cluster=opts.cluster, **extra)
        except RuntimeError as e:
            from ..config import ConfigError

            raise ConfigError(f"executor.slurm.cluster: {e}") from None
        params: dict[str, Any] = {"name": f"mc-{name}", "timeout_min": opts.time_min,
                                  "cpus_per_task": opts.cpus_per_task}
        if opts.cluster == "slurm":
            params["slurm_array_parallelism"] = spec.workers
            params["slurm_signal_delay_s"] = opts.signal_delay_s
            if opts.gpus_per_node:
                params["gpus_per_node"] = opts.gpus_per_node
            if opts.mem_gb:
                params["mem_gb"] = opts.mem_gb
            for key in ("partition", "account", "qos", "constraint"):
                if getattr(opts, key):
                    params[f"slurm_{key}"] = getattr(opts, key)
            if opts.setup:
                params["slurm_setup"] = list(opts.setup)
            if opts.additional:
                params["slurm_additional_parameters"] = dict(opts.additional)
        try:
            self.executor.update_parameters(**params)
        except ValueError as e:
            from ..config import ConfigError

            raise ConfigError(f"executor.slurm: {e}") from None

    def submit(self, tasks: Sequence[Task]) -> list[Handle]:
        if not tasks:
            return []
        fn = TaskRunner()
        if len(tasks) == 1 or self.opts.cluster != "slurm":
            return [Handle(t, self.executor.submit(fn, t)) for t in tasks]
        with self.executor.batch():  # one job array
            jobs = [self.executor.submit(fn, t) for t in tasks]
        return [Handle(t, j) for t, j in zip(tasks, jobs, strict=True)]

    def _queued(self, handles: Sequence[Handle]) -> set[str] | None:
        """Job ids SLURM still lists (array tasks expanded), or None when squeue cannot tell."""
        ids = sorted({str(h.job.job_id).split("_")[0] for h in handles})
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(ids)], capture_output=True,
                                 text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode != 0 and "Invalid job id" not in out.stderr:
            return None
        return {line.strip() for line in out.stdout.splitlines() if line.strip()}

    def wait(self, handles: Sequence[Handle], timeout: float) -> list[Done]:
        end = time.time() + timeout
        while True:
            out: list[Done] = []
            for h in handles:
                if h.job.done():
                    try:
                        out.append((h, h.job.result(), None))
                    except BaseException as e:  # the job's exception, or submitit's UncompletedJobError
                        out.append((h, None, e))
            if not out and self.opts.cluster == "slurm":
                out = self._lost([h for h in handles if time.time() - h.submitted > 2 * self.opts.poll_s])
            if out or time.time() >= end:
                return out
            time.sleep(min(self.opts.poll_s, max(0.05, end - time.time())))

    def _lost(self, handles: Sequence[Handle]) -> list[Done]:
        """Jobs that left SLURM's queue twice in a row without leaving a result (killed, cancelled, node
        failure): where sacct is missing, submitit alone would wait for them forever."""
        if not handles:
            return []
        queued = self._queued(handles)
        if queued is None:
            return []
        out: list[Done] = []
        for h in handles:
            if str(h.job.job_id) in queued or h.job.done():
                h.gone = 0
                continue
            h.gone += 1
            if h.gone >= 2:
                log = getattr(h.job.paths, "stderr", "")
                out.append((h, None, RuntimeError(f"SLURM job {h.job.job_id} ended without a result; see {log}")))
        return out

    def stop(self, handles: Sequence[Handle]) -> None:
        """Cancel the jobs (SLURM sends SIGTERM first: a run inside its segment loop checkpoints)."""
        for h in handles:
            with contextlib.suppress(Exception):
                h.job.cancel(check=False)

    def close(self, *, wait: bool = True) -> None:
        pass


def make_executor(spec: ExecutorSpec, folder: Path, name: str) -> LocalExecutor | SlurmExecutor:
    if spec.kind == "slurm":
        return SlurmExecutor(spec, folder / "slurm", name)
    return LocalExecutor(spec.workers)
