"""The sweep driver: lays out the sweep folder, hands tasks to an executor, records results, resumes.

Sweep folder::

    DIR/sweep.toml                      the sweep file as given
    DIR/sweep.json                      what fixes the trials (checked on --resume), sessions
    DIR/trials/trial-NNNN/trial.json    the trial's parameter values (its case alternatives, Optuna trial number)
    DIR/trials/trial-NNNN/seed-S/       an ordinary run folder (as `microcircuit run` writes one)
    DIR/trials/trial-NNNN/seeds-A-B/    one run of seeds A..B as one vmapped program (seeds.py)
    DIR/results.csv, trials.csv, summary.png
    DIR/optuna.journal | optuna.db      the Optuna study (search.kind = "optuna")
    DIR/jax-cache/                      JAX's persistent compilation cache, shared by the workers
    DIR/slurm/                          submitit's job scripts, logs and pickles

A seed is finished once the summary.json of a run folder holding it exists; a resumed sweep never repeats
it, whichever folder it is in. One driver works on a folder at a time (an exclusive lock on DIR/.lock, which
names its holder), and each run holds its own run folder's lock (:class:`~microcircuit.runs.RunDir`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, to_dict
from ..errors import RunInterrupted
from ..runs import FolderLock, RunDir, RunDirError, atomic_write
from .collect import Collected, collect, fmt_params
from .executors import Handle, LocalExecutor, SlurmExecutor, make_executor
from .search import OptunaSearch, Trial, expand, trial_id
from .seeds import MEMBERS, folder_name, group_seeds, read_summary, trial_runs, vmaps_seeds
from .spec import SweepSpec, _plain
from .worker import RunSpec, Task

__all__ = ["SweepDir", "SweepReport", "report_lines", "run_sweep"]


class SweepDir:
    """A sweep folder, held with an exclusive lock while a driver works on it."""

    SPEC = "sweep.toml"
    STATE = "sweep.json"
    LOCK = ".lock"

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._lock: FolderLock | None = None

    @classmethod
    def open(cls, path: str | Path, spec: SweepSpec, *, resume: bool) -> SweepDir:
        """Create the folder, or reopen it with ``resume`` when it holds the same sweep; locked until
        :meth:`release` (a folder another driver holds is refused, naming it, before anything is written)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"sweep folder {path} exists and is not a directory")
        state = path / cls.STATE
        ours = state.is_file() or (path / cls.LOCK).is_file()
        if path.exists() and any(path.iterdir()) and not ours:
            raise RunDirError(f"{path} is not empty and holds no sweep ({cls.STATE}); choose another --out")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create sweep folder {path}: {e}") from None
        d = cls(path)
        d._acquire()  # before any other check: a folder in use is refused naming its holder
        try:
            if state.is_file() and not resume:
                raise RunDirError(f"sweep folder {path} already holds a sweep: pass --resume to continue it (finished "
                                  "runs are not repeated), or choose another --out")
            d._check_and_record(spec)
        except BaseException:
            d.release()
            raise
        return d

    def _acquire(self) -> None:
        self._lock = FolderLock.acquire(
            self.path / self.LOCK,
            f"sweep folder {self.path} is in use by another `microcircuit sweep` ({{holder}}): one driver works on "
            "a sweep folder at a time; wait for it to end, or stop it first",
        )
        self._lock.record()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _check_and_record(self, spec: SweepSpec) -> None:
        fp = spec.fingerprint()
        p = self.path / self.STATE
        state: dict[str, Any] = {}
        if p.is_file():
            try:
                state = json.loads(p.read_text())
            except ValueError:
                raise RunDirError(f"{p} is not valid JSON; cannot resume this sweep") from None
            diff = _differences(state.get("fingerprint", {}), json.loads(json.dumps(fp, default=str)),
                                new_defaults={"base": _default_base()})
            if diff:
                raise ConfigError(
                    f"--resume {self.path}: this sweep file differs from the one the folder was started with in "
                    f"{', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}; a resumed sweep keeps its base config, "
                    "cases, params and search (search.n_trials, seeds and the executor may change); use another --out"
                )
        session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
                   "pid": os.getpid(), "argv": sys.argv, "seeds": list(spec.seeds),
                   "n_trials": spec.search.n_trials, "executor": spec.executor.kind}
        state = {"name": spec.name, "fingerprint": fp, "created": state.get("created", session["started"]),
                 "sessions": [*state.get("sessions", []), session]}
        with atomic_write(p) as f:
            json.dump(state, f, indent=2, default=str)
            f.write("\n")
        if spec.source is not None and spec.source.is_file():
            with atomic_write(self.path / self.SPEC) as f:
                f.write(spec.source.read_text())

    def trial_dir(self, trial_id: str) -> Path:
        return self.path / "trials" / trial_id

    def run_dir(self, trial_id: str, seeds: int | tuple[int, ...]) -> Path:
        """``seed-S`` for one seed, ``seeds-A-B`` for consecutive seeds run as one vmapped program."""
        return self.trial_dir(trial_id) / folder_name((seeds,) if isinstance(seeds, int) else seeds)

    def write_trial(self, trial: Trial, optuna: bool = False) -> None:
        d = self.trial_dir(trial.id)
        d.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] = {"trial": trial.id, "params": _plain(dict(trial.params))}
        if trial.cases:
            info["cases"] = dict(trial.cases)
        if trial.labels:
            info["labels"] = dict(trial.labels)
        if optuna:
            info["optuna_number"] = trial.number
        p = d / "trial.json"
        text = json.dumps(info, indent=2) + "\n"
        if not p.is_file() or p.read_text() != text:
            with atomic_write(p) as f:
                f.write(text)


def _default_base() -> dict[str, Any]:
    """A default config as the fingerprint holds it (JSON types)."""
    return json.loads(json.dumps(to_dict(Config()), default=str))


def _differences(a: Any, b: Any, prefix: str = "", new_defaults: Any = None) -> list[str]:
    """The dotted keys where fingerprints ``a`` (stored) and ``b`` (now) differ. A key that ``a`` lacks and
    ``b`` holds at its default (``new_defaults``) is a setting added by a later version of the package, with
    the behaviour the stored sweep ran with: not a difference."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        defaults = new_defaults if isinstance(new_defaults, dict) else {}
        for k in sorted(a.keys() | b.keys()):
            if k not in a and k in defaults and b[k] == defaults[k]:
                continue
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.", defaults.get(k))
        return out
    return [] if a == b else [prefix.rstrip(".").removeprefix("base.") or "(all)"]


# --------------------------------------------------------------------------------------------------
# Driving an executor


@dataclass
class SweepReport:
    folder: Path
    collected: Collected
    ran: int  # runs finished in this session (complete or failed)
    skipped: int  # runs already finished before this session
    failed: int  # runs that failed in this session
    spec: SweepSpec


@contextlib.contextmanager
def _signals() -> Iterator[list[int]]:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the driver; the list holds the signals received."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum: int, frame: Any) -> None:
        got.append(signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)


Outcome = dict[str, Any]


def _drive(executor: LocalExecutor | SlurmExecutor, next_tasks: Callable[[int], list[Task]],
           finished: Callable[[Handle, list[Outcome] | None, BaseException | None], None],
           grace_s: float, say: Callable[[str], None]) -> None:
    """Submit what ``next_tasks(room)`` gives while there is room, report finished tasks to ``finished``.
    On KeyboardInterrupt: cancel what has not started, ask running tasks to stop (they checkpoint), wait
    up to ``grace_s`` for them, then re-raise. On any other error: stop everything and re-raise."""
    pending: list[Handle] = []
    try:
        while True:
            room = executor.capacity - len(pending)
            if room > 0:
                pending += executor.submit(next_tasks(room))
            if not pending:
                return
            for h, result, error in executor.wait(pending, timeout=1.0):
                pending.remove(h)
                finished(h, result, error)
    except KeyboardInterrupt:
        if pending:
            say(f"stopping: {len(pending)} task(s) in flight are asked to stop (running runs checkpoint)...")
            executor.stop(pending)
            end = time.time() + grace_s
            try:
                while pending and time.time() < end:
                    for h, result, error in executor.wait(pending, timeout=1.0):
                        pending.remove(h)
                        finished(h, result, error)
            except KeyboardInterrupt:
                pass
            executor.close(wait=not pending)
        raise
    except BaseException:
        executor.stop(pending)
        executor.close(wait=False)
        raise


def _check_objective(spec: SweepSpec, summary: dict[str, Any]) -> None:
    """The objective must be a number of the experiment's summary (checked on the first finished run)."""
    key = spec.objective.key
    v = summary.get(key)
    if not isinstance(v, int | float) or isinstance(v, bool):
        numbers = sorted(k for k, x in summary.items() if isinstance(x, int | float) and not isinstance(x, bool))
        raise ConfigError(f"objective.key: {key!r} is not a number in the summary of experiment "
                          f"{spec.config.experiment!r}; it has: {', '.join(numbers)}")


class _Progress:
    """Counts and one line per finished run."""

    def __init__(self, spec: SweepSpec, say: Callable[[str], None], on_result: Callable[[Outcome], None] | None,
                 total: int | None) -> None:
        self.spec, self.say, self.on_result, self.total = spec, say, on_result, total
        self.ran = self.failed = self.seen = 0
        self.params: dict[str, dict[str, Any]] = {}
        self.checked = False

    def check_objective(self, summary: dict[str, Any]) -> None:
        if not self.checked:
            _check_objective(self.spec, summary)
        self.checked = True

    def outcome(self, o: Outcome) -> None:
        self.seen += 1
        count = f"[{self.seen}/{self.total}]" if self.total else f"[{self.seen}]"
        head = f"{count} {o['trial']} seed {o['seed']}  {fmt_params(self.params.get(o['trial'], {}))}"
        if o["status"] == "complete":
            self.check_objective(o["summary"])
            v = o["summary"].get(self.spec.objective.key)
            done = "already done" if o.get("skipped") else f"{o['wall_s']} s on {o['worker']}"
            if o.get("vmapped"):
                done += f", vmapped with seeds {o['vmapped'][0]}..{o['vmapped'][-1]}"
            self.say(f"{head}: {self.spec.objective.key} = {v:.6g}  ({done})")
            self.ran += not o.get("skipped")
        elif o["status"] == "failed":
            self.failed += 1
            self.ran += 1
            self.say(f"{head}: FAILED {o['error']}  (see {o['path']}/failed.json)")
        else:
            self.say(f"{head}: not finished ({o.get('error', o['status'])}); --resume continues it")
        if self.on_result is not None:
            self.on_result(o)

    def lost(self, h: Handle, error: BaseException) -> list[Outcome]:
        """The task ended without outcomes (signal, crashed worker, cancelled or lost job)."""
        msg = f"{type(error).__name__}: {error}".strip().splitlines()[0][:300]
        out = []
        for r in h.task.runs:
            if (Path(r.path) / RunDir.SUMMARY).is_file():
                continue
            for seed in r.seeds:
                o = {"trial": h.task.trial, "seed": seed, "path": r.path, "status": "unfinished", "error": msg}
                self.outcome(o)
                out.append(o)
        return out


def _plan(spec: SweepSpec, folder: SweepDir, trial: Trial, *,
          retry_failed: bool) -> tuple[list[RunSpec], list[int], list[int]]:
    """(runs to start, seeds already done, seeds that failed before) of ``trial``. A seed is done when a
    run folder holding it is complete, whether it ran alone or vmapped with others. Failed seeds are
    rerun only with ``retry_failed``. An unfinished run folder with a checkpoint whose seeds are all left
    is continued as it is; the other seeds left run as :func:`~.seeds.group_seeds` groups them:
    consecutive ones as one vmapped run where the experiment supports it and ``executor.vmap_seeds``."""
    from ..checkpoint import latest_checkpoint

    have = trial_runs(folder.trial_dir(trial.id))
    done = [s for s in spec.seeds if s in have and have[s].status == "complete"]
    failed = [s for s in spec.seeds if s in have and have[s].status == "failed"]
    left = [s for s in spec.seeds if s not in done and (retry_failed or s not in failed)]
    if not left:
        return [], done, failed
    experiment = spec.trial_config(trial.params, left[0]).experiment
    vmap = spec.executor.vmap_seeds and vmaps_seeds(experiment)
    groups: list[tuple[int, ...]] = []
    rest = set(left)
    for g in sorted({have[s].seeds for s in left if s in have}):
        resumable = latest_checkpoint(folder.run_dir(trial.id, g) / RunDir.CHECKPOINTS) is not None
        if resumable and set(g) <= rest and (len(g) == 1 or vmap):
            groups.append(g)
            rest -= set(g)
    groups += group_seeds([s for s in left if s in rest], vmap)
    runs = [RunSpec(g, str(folder.run_dir(trial.id, g)), spec.trial_config(trial.params, g[0], len(g)))
            for g in groups]
    return runs, done, failed


def _chunks(runs: list[RunSpec], k: int) -> list[tuple[RunSpec, ...]]:
    k = max(1, min(k, len(runs)))
    size, extra = divmod(len(runs), k)
    out, i = [], 0
    for j in range(k):
        n = size + (j < extra)
        out.append(tuple(runs[i: i + n]))
        i += n
    return out


def _cache_dir(spec: SweepSpec, folder: SweepDir) -> str | None:
    c = spec.executor.compilation_cache
    if c is False:
        return None
    if c is True:
        return str(folder.path / "jax-cache")
    p = Path(str(c)).expanduser()
    if not p.is_absolute() and spec.source is not None:
        p = spec.source.parent / p
    return str(p.resolve())


def _fixed(spec: SweepSpec, folder: SweepDir, executor: LocalExecutor | SlurmExecutor, cache: str | None, *,
           retry_failed: bool, limit: int | None, grace_s: float, say: Callable[[str], None],
           on_result: Callable[[Outcome], None] | None) -> tuple[_Progress, int]:
    trials = expand(spec)
    todo: list[tuple[Trial, list[RunSpec]]] = []
    skipped = failed_before = 0
    for trial in trials:
        folder.write_trial(trial)
        runs, done, failed = _plan(spec, folder, trial, retry_failed=retry_failed)
        skipped += len(done)
        failed_before += 0 if retry_failed else len(failed)
        if runs:
            todo.append((trial, runs))
    if limit is not None:
        todo = todo[:limit]
    n_runs = sum(len(r.seeds) for _, runs in todo for r in runs)
    n_vmapped = sum(len(r.seeds) > 1 for _, runs in todo for r in runs)
    say(f"sweep {spec.name!r}: {len(trials)} trial(s) x {len(spec.seeds)} seed(s); {skipped} run(s) already done"
        + (f", {failed_before} failed before (--retry-failed reruns them)" if failed_before else "")
        + f"; {n_runs} to run" + (f" ({n_vmapped} vmapped program(s) of several seeds)" if n_vmapped else "")
        + f" on {spec.executor.kind} ({spec.executor.workers} worker(s))")
    progress = _Progress(spec, say, on_result, n_runs)
    progress.params = {t.id: spec.shown(t.cases, t.params) for t in trials}
    # The runs of a trial share one process (one compilation); split them only to keep every worker busy.
    # A vmapped run of several seeds is never split.
    per_trial = math.ceil(spec.executor.workers / len(todo)) if todo else 1
    tasks = [Task(trial.id, chunk, cache) for trial, runs in todo for chunk in _chunks(runs, per_trial)]

    def next_tasks(room: int) -> list[Task]:
        out = tasks[:]
        tasks.clear()
        return out

    def finished(h: Handle, result: list[Outcome] | None, error: BaseException | None) -> None:
        if error is not None:
            progress.lost(h, error)
            return
        for o in result or []:
            progress.outcome(o)

    executor.capacity = max(executor.capacity, len(tasks))  # the pool or the job array limits concurrency
    _drive(executor, next_tasks, finished, grace_s, say)
    return progress, skipped


def _optuna(spec: SweepSpec, folder: SweepDir, executor: LocalExecutor | SlurmExecutor, cache: str | None, *,
            retry_failed: bool, limit: int | None, grace_s: float, say: Callable[[str], None],
            on_result: Callable[[Outcome], None] | None) -> tuple[_Progress, int]:
    search = OptunaSearch(spec, folder.path)
    adopted = list(search.adopt())
    n = spec.search.n_trials
    say(f"sweep {spec.name!r}: Optuna study {search.study_name!r}, {search.completed()} of {n} trial(s) complete"
        + (f", {len(adopted)} left running by an interrupted driver (continuing them)" if adopted else "")
        + f"; {len(spec.seeds)} seed(s) per trial on {spec.executor.kind} ({spec.executor.workers} worker(s))")
    progress = _Progress(spec, say, on_result, None)
    asked = 0
    skipped = 0
    results: dict[str, list[Outcome]] = {}

    def next_tasks(room: int) -> list[Task]:
        nonlocal asked, skipped
        tasks = []
        while len(tasks) < room:
            if adopted:
                trial = adopted.pop(0)
            elif (limit is None or asked < limit) and search.counted() < n:
                trial = search.ask()
                asked += 1
            else:
                break
            folder.write_trial(trial, optuna=True)
            progress.params[trial.id] = dict(trial.params)
            runs, done, failed = _plan(spec, folder, trial, retry_failed=retry_failed)
            if failed and not retry_failed:
                say(f"{trial.id}: seed {failed[0]} failed before (--retry-failed reruns it); the trial fails")
                search.tell(trial.number, None)
                continue
            # The finished runs too: they come back at once (already done) with the summaries the mean needs.
            have = trial_runs(folder.trial_dir(trial.id))
            finished_runs = {have[s].path: have[s].seeds for s in done}
            runs = [RunSpec(seeds, str(path), spec.trial_config(trial.params, seeds[0], len(seeds)))
                    for path, seeds in finished_runs.items()] + runs
            skipped += len(done)
            results[trial.id] = []
            tasks.append(Task(trial.id, tuple(runs), cache))
        return tasks

    def finished(h: Handle, result: list[Outcome] | None, error: BaseException | None) -> None:
        number = int(h.task.trial.removeprefix("trial-"))
        outs = progress.lost(h, error) if error is not None else result or []
        if error is None:
            for o in outs:
                progress.outcome(o)
        if any(o["status"] == "interrupted" for o in outs) or isinstance(error, KeyboardInterrupt | BrokenExecutor):
            return  # stopped by a signal (or the pool broke): left RUNNING, a resumed sweep continues it
        by_seed = {o["seed"]: o for o in outs if o["seed"] in spec.seeds}
        values = [o["summary"].get(spec.objective.key) for o in by_seed.values() if o["status"] == "complete"]
        ok = len(values) == len(spec.seeds) and all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        value = sum(values) / len(values) if ok else None
        search.tell(number, value)
        best = search.best()
        shown = "FAILED" if value is None else f"{spec.objective.key} = {value:.6g} (mean of {len(values)} seed(s))"
        say(f"{h.task.trial} done: {shown}; study: {search.completed()} of {n} complete"
            + (f", best {best[1]:.6g} in {trial_id(best[0])}" if best else ""))

    _drive(executor, next_tasks, finished, grace_s, say)
    return progress, skipped


def run_sweep(spec: SweepSpec, out: str | Path, *, resume: bool = False, retry_failed: bool = False,
              limit: int | None = None, grace_s: float = 60.0, echo: Callable[[str], None] | None = None,
              on_result: Callable[[Outcome], None] | None = None) -> SweepReport:
    """Run (or, with ``resume``, continue) the sweep ``spec`` into the folder ``out``.

    ``limit``: start at most that many trials in this session (the rest on ``--resume``). ``on_result`` is
    called with every run's outcome. SIGINT/SIGTERM stop the sweep: tasks not started are cancelled,
    running runs checkpoint, the tables are written with what is finished, and :class:`RunInterrupted`
    is raised (exit status 130/143 from the command line)."""
    say = echo or (lambda line: None)
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit: must be >= 0, got {limit}")
    folder = SweepDir.open(out, spec, resume=resume)
    try:
        done = next(folder.path.glob(f"trials/*/seed*-*/{RunDir.SUMMARY}"), None)
        summary = read_summary(done.parent) if done is not None else None
        if summary is not None:  # a resumed sweep: check the objective before running anything
            members = summary.get(MEMBERS)
            if isinstance(members, dict) and members and isinstance(next(iter(members.values())), dict):
                summary = next(iter(members.values()))
            _check_objective(spec, summary)
        cache = _cache_dir(spec, folder)
        executor = make_executor(spec.executor, folder.path, spec.name)
        drive = _optuna if spec.search.kind == "optuna" else _fixed
        with _signals() as got:
            try:
                progress, skipped = drive(spec, folder, executor, cache, retry_failed=retry_failed, limit=limit,
                                          grace_s=grace_s, say=say, on_result=on_result)
            except KeyboardInterrupt as e:
                signum = got[0] if got else signal.SIGINT
                collect(spec, folder.path)
                cmd = f"microcircuit sweep {spec.source or 'SWEEP.toml'} --out {folder.path} --resume"
                raise RunInterrupted(
                    signum, f"sweep interrupted ({signal.Signals(signum).name if got else e or 'interrupt'}); "
                    f"finished runs are kept, results so far in {folder.path / 'results.csv'}; continue with: {cmd}",
                ) from None
            finally:
                executor.close(wait=True)
        collected = collect(spec, folder.path)
    finally:
        folder.release()
    return SweepReport(folder.path, collected, progress.ran, skipped, progress.failed, spec)


def report_lines(report: SweepReport) -> list[str]:
    """What the command line prints at the end of a sweep."""
    c, spec = report.collected, report.spec
    n_complete = sum(r["status"] == "complete" for r in c.runs)
    lines = [f"{len(c.trials)} trial(s), {n_complete} of {len(c.runs)} run(s) complete ({report.ran} run now, "
             f"{report.skipped} already done, {report.failed} failed)"]
    if c.best is not None:
        b = c.best
        spread = f" ± {b['std']:.3g}" if b["std"] is not None else ""
        params = b.get("shown", {k: b[k] for k in (p.key for p in spec.params)})
        lines.append(f"best: {b['trial']}  {fmt_params(params)}  {spec.objective.key} = {b['mean']:.6g}{spread} "
                     f"over {b['n']} seed(s)")
    lines.append(f"results: {c.results_csv}, {c.trials_csv}" + (f", {c.plot}" if c.plot else ""))
    unfinished = sum(r["status"] in ("partial", "missing") for r in c.runs)
    if unfinished:
        cmd = f"microcircuit sweep {spec.source or 'SWEEP.toml'} --out {report.folder} --resume"
        lines.append(f"{unfinished} run(s) did not finish; continue them with: {cmd}")
    return lines
