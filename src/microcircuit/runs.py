"""Run folders: the resolved config, metrics (JSON lines), traces (.npz), figures, environment, summary,
checkpoints (see :mod:`microcircuit.checkpoint` and docs/runs.md).

Every file is written atomically (temporary file in the same folder, fsync, rename), so a run that dies
never leaves a half-written file behind, and nothing already written is lost. :func:`graceful_stop`
turns SIGINT/SIGTERM into a flag that a runner checks at its next chunk boundary.

A run folder belongs to its run: :data:`RUN_FILES`, :data:`RUN_FOLDERS` and :data:`SUB_RUNS` name
everything a run writes into it, and ``--overwrite`` removes only those (other files are kept). One
process writes a run folder at a time: :meth:`RunDir.create` holds an exclusive lock
(:class:`FolderLock`) on its marker until :meth:`RunDir.close` or the end of the process.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import json
import os
import platform
import signal
import socket
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np

from .config import Config, ConfigError, apply_overrides, load_toml, to_toml

__all__ = [
    "RUN_FILES",
    "RUN_FOLDERS",
    "SUB_RUNS",
    "FolderInUseError",
    "FolderLock",
    "RunDir",
    "RunDirError",
    "StopRequest",
    "atomic_write",
    "environment",
    "graceful_stop",
    "resume_config",
]


class RunDirError(RuntimeError):
    """The run folder cannot be used (it holds another run, or cannot be written)."""


class FolderInUseError(RunDirError):
    """The folder is in use: another process holds its lock (the message names it)."""


#: Everything a run writes at the top of its folder (``fnmatch`` patterns), and all that ``--overwrite``
#: removes there besides :data:`RUN_FOLDERS` and :data:`SUB_RUNS` (docs/runs.md, "The run folder"). A
#: runner that writes a new name must add it here (tests/test_runs.py checks every experiment's names).
RUN_FILES: tuple[str, ...] = (
    ".microcircuit-run",  # the marker and lock (RunDir.MARKER)
    "config.toml", "environment.json", "metrics.jsonl", "summary.json", "traces.npz",
    "summary-*-epochs.json",  # the summary of a finished MNIST run extended with --resume
    "weights_best.npz",  # MNIST
    "failed.json",  # a sweep's run that raised an error (microcircuit.sweep.seeds.FAILED)
    "fig_s1.png", "fig1.png", "fig2.png", "learning_curve.png", "backprop_link.png",  # the experiments' figures
    "le_bars.png", "le_bars_T*_*.json",
    "pal_teacher.png", "pal_teacher_*.json", "pal_alignment.png", "pal_alignment_*.json",
    "pal_yinyang.png", "pal_yinyang_*.json",
    "spiking_bars.png", "spiking_bars_*.json", "spiking_raster.png",
    "settle-dt*.json", "settle-dt*.png",  # `microcircuit analyze settle RUN_DIR`
    "traces_*.png",  # `microcircuit analyze traces RUN_DIR NAME ...`
    ".*.tmp",  # what a write cut short by SIGKILL left of its temporary file (atomic_write)
)  # fmt: skip

#: Folders a run makes in its folder, with what it writes into them.
RUN_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("ckpt-*.npz", "diverged-last-good.npz", ".*.tmp"),
}

#: Sub-run folders (run folders of their own inside a run folder, e.g. Fig. 1's ``init/``, a Fig. S1 run).
SUB_RUNS: tuple[str, ...] = ("init",)


def _is_run_name(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class FolderLock:
    """An exclusive ``fcntl.flock`` on ``file``: one process at a time writes the folder it guards. The
    operating system drops the lock when its process ends, however it ends (SIGKILL included), so a lock
    is never stale; while held, the file names its holder (pid, host, start) for the refusal of the next.
    On a filesystem without locks the folder is used unguarded."""

    def __init__(self, file: Path, handle: IO[str]) -> None:
        self.file = file
        self._handle: IO[str] | None = handle

    @classmethod
    def acquire(cls, file: str | Path, refusal: str) -> FolderLock:
        """Lock ``file`` (created if missing) or raise :class:`FolderInUseError` with ``refusal``, its ``{holder}``
        replaced by the holder, e.g. ``pid 12 on host, since 2026-01-02T10:00:00+0000``."""
        import fcntl

        file = Path(file)
        try:
            f = open(file, "a+")  # noqa: SIM115 - held until release(); "a+" never truncates another's record
        except OSError as e:
            raise RunDirError(f"cannot open {file}: {e.strerror or e}") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = cls._holder(f)
            f.close()
            raise FolderInUseError(refusal.replace("{holder}", holder)) from None
        except OSError:  # a filesystem without locks: go on unguarded
            pass
        return cls(file, f)

    @staticmethod
    def _holder(f: IO[str]) -> str:
        """The holder named in the lock file (read a few times: it may be writing it right now)."""
        text = ""
        for _ in range(5):
            f.seek(0)
            text = f.read().strip()
            try:
                info = json.loads(text)
                return f"pid {info['pid']} on {info['host']}, since {info['since']}"
            except (ValueError, TypeError, KeyError):
                time.sleep(0.05)
        return text.splitlines()[0] if text.startswith("pid ") else "another process"

    @staticmethod
    def describe(file: str | Path) -> str | None:
        """The holder the lock file names (``pid N on HOST, since T``), or None when it names none."""
        try:
            info = json.loads(Path(file).read_text())
            return f"pid {info['pid']} on {info['host']}, since {info['since']}"
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def record(self, **fields: Any) -> None:
        """Write this process as the holder (with ``fields``) into the lock file, in place."""
        if self._handle is None:
            return
        info = {**fields, "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
        f = self._handle
        try:
            f.seek(0)
            f.truncate()
            f.write(json.dumps(info) + "\n")
            f.flush()
        except OSError as e:
            raise RunDirError(f"cannot write {self.file}: {e.strerror or e}") from None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        """Unlock (closing the file); the holder's record stays in the file, naming the last holder."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


# The run folders this process holds: resolved path -> (lock, number of open RunDirs on it). A RunDir
# opened again in the same process (a sub-run reused on --resume, a test) shares the lock.
_HELD: dict[str, tuple[FolderLock, int]] = {}
_HELD_GUARD = threading.Lock()


def _hold(path: Path, marker: str) -> tuple[str, bool]:
    """Lock the run folder ``path`` for this process; (key, True when newly locked)."""
    key = str(path.resolve())
    with _HELD_GUARD:
        if key in _HELD:
            lock, n = _HELD[key]
            _HELD[key] = (lock, n + 1)
            return key, False
        lock = FolderLock.acquire(
            path / marker,
            f"run folder {path} is in use by {{holder}}: one process writes a run folder at a time; wait for it "
            "to end, or stop it first",
        )
        _HELD[key] = (lock, 1)
        return key, True


def _unhold(key: str) -> None:
    with _HELD_GUARD:
        if key not in _HELD:
            return
        lock, n = _HELD.pop(key)
        if n > 1:
            _HELD[key] = (lock, n - 1)
        else:
            lock.release()


def _record_holder(key: str) -> None:
    with _HELD_GUARD:
        _HELD[key][0].record(microcircuit_run_folder=1)


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in the same folder, fsync it, then rename it into place."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise RunDirError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # disk full, quota, file too large: the old file (if any) stays as it was
        Path(tmp).unlink(missing_ok=True)
        raise RunDirError(f"cannot write {path}: {e.strerror or e}; the files already there are intact") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic | np.ndarray):
        return v.tolist()
    if hasattr(v, "shape") and hasattr(v, "dtype"):  # jax arrays
        return np.asarray(v).tolist()
    return v


def environment(cfg: Config | None = None, **extra: Any) -> dict[str, Any]:
    """Package versions, platform, JAX backend and devices, seed, and this project's version; then ``extra``
    (e.g. ``experiment_source``: where a user's experiment comes from)."""
    import jax

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "microcircuit": version("microcircuit"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": {n: version(n) for n in ("jax", "jaxlib", "numpy", "click", "tqdm", "matplotlib")},
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "seed": None if cfg is None else cfg.seed,
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


class StopRequest:
    """Set by the handlers of :func:`graceful_stop`: ``signum`` is None until a signal arrives."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return "" if self.signum is None else signal.Signals(self.signum).name


_ACTIVE_STOP: contextvars.ContextVar[StopRequest | None] = contextvars.ContextVar("active_stop", default=None)


@contextmanager
def graceful_stop(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopRequest]:
    """For the duration of the block, SIGINT/SIGTERM only set the yielded :class:`StopRequest`; the
    runner checks it at its next consistent point, checkpoints and raises
    :class:`~microcircuit.errors.RunInterrupted`. A second signal raises ``KeyboardInterrupt`` at once
    (files stay intact: every write is atomic). The previous handlers are restored on exit. Outside the
    main thread (where Python cannot install handlers) nothing is installed and the flag stays unset.

    Nested blocks share the outer block's request, so a signal that arrives while a command starts up
    (before the runner's own block) is seen by the runner at its first check."""
    active = _ACTIVE_STOP.get()
    if active is not None:
        yield active
        return
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.signum is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping without a checkpoint")
        stop.signum = signum

    previous = {s: signal.signal(s, handler) for s in signums}
    token = _ACTIVE_STOP.set(stop)
    try:
        yield stop
    finally:
        _ACTIVE_STOP.reset(token)
        for s, h in previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)


class RunDir:
    """A run folder. ``RunDir.create`` refuses a folder that already holds files unless told otherwise.

    ``resume`` is True when the folder was reopened to continue a run: runners then continue from the
    newest checkpoint in ``checkpoint_dir`` (or start afresh when there is none). A RunDir made by
    :meth:`create` holds the folder's lock until :meth:`close` (or the end of a ``with`` block, or of the
    process); one made directly (``RunDir(path)``) only reads and writes, without the lock.
    """

    CONFIG = "config.toml"
    METRICS = "metrics.jsonl"
    TRACES = "traces.npz"
    ENVIRONMENT = "environment.json"
    SUMMARY = "summary.json"
    CHECKPOINTS = "checkpoints"
    MARKER = ".microcircuit-run"  # made first: marks a folder that microcircuit made; also its lock file

    def __init__(self, path: str | Path, *, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume
        self.kept: list[str] = []  # what --overwrite kept: files that the run did not write
        self._release: Callable[[], None] = lambda: None

    @classmethod
    def create(cls, path: str | Path, *, overwrite: bool = False, resume: bool = False) -> RunDir:
        """Make (or, with ``resume``, reopen) a run folder, mark it as one (:attr:`MARKER`) and lock it.

        A non-empty folder needs ``resume`` or ``overwrite``, and either only opens a folder that holds the
        marker of a microcircuit run folder: any other folder is refused and left untouched. ``overwrite``
        removes what a run writes (:data:`RUN_FILES`, :data:`RUN_FOLDERS`, :data:`SUB_RUNS`) and keeps any
        other file (listed in :attr:`kept`). A folder that another process holds is refused
        (:class:`FolderInUseError`, naming it) before anything is touched. Call it after every check of the
        config and data passed."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"run folder {path} exists and is not a directory")
        marked = (path / cls.MARKER).is_file()
        if path.exists() and not marked:
            if resume:
                raise RunDirError(
                    f"cannot resume {path}: it is not a run folder made by microcircuit (no {cls.MARKER} marker); "
                    "--resume only continues a folder that `microcircuit run` made"
                )
            if any(path.iterdir()):
                if overwrite:
                    raise RunDirError(
                        f"refusing to overwrite {path}: it is not a microcircuit run folder (no {cls.MARKER} "
                        "marker), and --overwrite never deletes other files; choose another --out"
                    )
                raise RunDirError(
                    f"run folder {path} is not empty: pass --resume to continue it, --overwrite to replace it, "
                    "or choose another --out"
                )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run folder {path}: {e.strerror or e}") from None
        key, new = _hold(path, cls.MARKER)  # refused here if another process holds it
        try:
            busy = any(p.name != cls.MARKER for p in path.iterdir())
            if busy and not (overwrite or resume):
                raise RunDirError(
                    f"run folder {path} is not empty: pass --resume to continue it, --overwrite to replace it, "
                    "or choose another --out"
                )
            if new:
                _record_holder(key)
            run = cls(path, resume=resume)
            if busy and overwrite and not resume:
                run.kept = _remove_run_files(path)
        except BaseException:
            _unhold(key)
            raise
        run._release = weakref.finalize(run, _unhold, key)
        return run

    @classmethod
    def reopen(cls, path: str | Path) -> RunDir:
        """The run folder ``path`` reopened to continue it (``--resume``), locked: refused unless it exists
        and microcircuit made it (it holds the :attr:`MARKER`), or while another process holds it."""
        cls.check_made_by_microcircuit(path)
        return cls.create(path, resume=True)

    @classmethod
    def check_made_by_microcircuit(cls, path: str | Path) -> None:
        """Raise :class:`RunDirError` unless ``path`` is a folder that microcircuit made (it holds the
        :attr:`MARKER`), so ``--resume`` may continue it; reads only."""
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"cannot resume {path}: no such run folder")
        if not (path / cls.MARKER).is_file():
            raise RunDirError(
                f"cannot resume {path}: it is not a run folder made by microcircuit (no {cls.MARKER} marker); "
                "--resume only continues a folder that `microcircuit run` made"
            )

    def close(self) -> None:
        """Release the folder's lock (when this is the process's last open RunDir on it)."""
        self._release()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint_dir(self) -> Path:
        """Where the run's checkpoints live (created on first use)."""
        d = self.path / self.CHECKPOINTS
        d.mkdir(exist_ok=True)
        return d

    def is_complete(self) -> bool:
        """A run is complete once its summary.json is written (the last thing a runner does)."""
        return self.file(self.SUMMARY).is_file()

    def truncate_metrics(self, keep: Callable[[dict[str, Any]], bool]) -> int:
        """Rewrite metrics.jsonl atomically with only the rows for which ``keep(row)`` is true; a line
        that is not a JSON object (cut short by a hard kill) is dropped too. Returns the number dropped."""
        p = self.file(self.METRICS)
        if not p.exists():
            return 0
        kept, dropped = [], 0
        for line in p.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                dropped += bool(line.strip())
                continue
            if isinstance(row, dict) and keep(row):
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            with atomic_write(p) as f:
                f.write("".join(line + "\n" for line in kept))
        return dropped

    def record_resume(self, cfg: Config | None = None, **extra: Any) -> list[str]:
        """Note a resumption in environment.json (under ``resumes``) and return the environment fields
        (versions, platform, JAX backend/devices, a user experiment's ``experiment_source`` given in
        ``extra``) that differ from the first start, if any: with any difference, a resumed run need not be
        bit-for-bit equal to an uninterrupted one."""
        now = environment(cfg, **extra)
        p = self.file(self.ENVIRONMENT)
        try:
            env = json.loads(p.read_text())
            if not isinstance(env, dict):
                raise ValueError
        except (OSError, ValueError):
            env = dict(now)
        fields = ("microcircuit", "python", "platform", "packages", "jax_backend", "jax_devices", "experiment_source")
        changed = [k for k in fields if _jsonable(env.get(k)) != _jsonable(now.get(k))]
        resumes = env.get("resumes") if isinstance(env.get("resumes"), list) else []
        env["resumes"] = [*resumes, {k: now[k] for k in ("started", "argv", *changed)}]
        self.write_json(self.ENVIRONMENT, env)
        return changed

    def write_config(self, cfg: Config) -> None:
        with atomic_write(self.file(self.CONFIG)) as f:
            f.write(to_toml(cfg))

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        with atomic_write(self.file(name)) as f:
            json.dump(_jsonable(data), f, indent=2)
            f.write("\n")

    def write_environment(self, cfg: Config | None = None, **extra: Any) -> None:
        self.write_json(self.ENVIRONMENT, environment(cfg, **extra))

    def log(self, **metrics: Any) -> None:
        """Append one JSON line to metrics.jsonl (flushed and fsynced). A write that fails (disk full)
        raises :class:`RunDirError`; a line it cut short is dropped on ``--resume``."""
        path = self.file(self.METRICS)
        try:
            with open(path, "a") as f:
                f.write(json.dumps(_jsonable(metrics)) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise RunDirError(f"cannot write {path}: {e.strerror or e}") from None

    def add_wall_time(self, seconds: float) -> float:
        """Add one invocation's wall-clock seconds to the run's total (``wall_s`` in environment.json)
        and return the new total: a resumed run's ``summary.json`` counts every start, not only the
        last (an invocation killed by SIGKILL is not counted)."""
        return self._wall(seconds, write=True)

    def wall_time(self) -> float:
        """The wall-clock seconds of this run's earlier invocations (0 for a new run)."""
        return self._wall(0.0, write=False)

    def _wall(self, seconds: float, *, write: bool) -> float:
        p = self.file(self.ENVIRONMENT)
        try:
            env = json.loads(p.read_text())
        except (OSError, ValueError):
            env = None
        if not isinstance(env, dict):
            env = {}
        before = env.get("wall_s", 0.0)
        total = round((before if isinstance(before, int | float) else 0.0) + seconds, 1)
        if write:
            self.write_json(self.ENVIRONMENT, {**env, "wall_s": total})
        return total

    def metrics(self) -> list[dict[str, Any]]:
        p = self.file(self.METRICS)
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []

    def warnings(self, more: Iterable[str] = ()) -> list[str]:
        """Every warning of the run, each once, in order: those logged to metrics.jsonl (``event =
        "warning"``) by any start of it, a resumed run's earlier starts included, then ``more``. What
        ``summary.json`` records as ``warnings``."""
        logged = [str(r.get("message", "")) for r in self.metrics() if r.get("event") == "warning"]
        return list(dict.fromkeys([*logged, *more]))

    def note_warning(self, message: str, kind: str = "run") -> None:
        """Log ``message`` as a warning (``event = "warning"``) unless the run has logged it already."""
        if message not in self.warnings():
            self.log(event="warning", kind=kind, message=message)

    def save_arrays(self, name: str, arrays: Mapping[str, Any]) -> Path:
        """Write an .npz of arrays atomically."""
        path = self.file(name)
        with atomic_write(path, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})
        return path

    def save_figure(self, fig: Any, name: str) -> Path:
        path = self.file(name)
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
        return path

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        self.write_json(self.SUMMARY, summary)


def _remove_run_files(path: Path) -> list[str]:
    """Remove what a run wrote into the run folder ``path`` (held by this process), except its marker;
    return what was kept (paths relative to ``path``; folders end with ``/``). Sub-run folders are locked
    before anything is removed, and are removed once empty."""
    remove: list[Path] = []  # files and links
    folders: list[Path] = []  # removed if empty afterwards, deepest first
    kept: list[str] = []
    subruns: list[Path] = []

    def plan(folder: Path) -> bool:
        """Add ``folder``'s run files to ``remove``; True when it keeps something."""
        keeps = False
        for child in sorted(folder.iterdir()):
            name, rel = child.name, str(child.relative_to(path))
            is_dir = child.is_dir() and not child.is_symlink()
            if name == RunDir.MARKER:
                continue  # the top one stays (this process holds it); a sub-run's goes with its folder
            if not is_dir:
                if _is_run_name(name, RUN_FILES) or name in RUN_FOLDERS or name in SUB_RUNS:
                    remove.append(child)  # a link where the run keeps a folder: the link, never its target
                else:
                    kept.append(rel)
                    keeps = True
            elif name in RUN_FOLDERS:
                # its run files, and theirs in its sub-folders (one per arm: pal-yinyang's checkpoints/ARM/)
                for f in sorted([*child.iterdir(), *(g for d in child.iterdir() if d.is_dir() and not d.is_symlink()
                                                     for g in d.iterdir())]):
                    if f.is_dir() and not f.is_symlink() and f.parent == child:
                        folders.append(f)
                    elif _is_run_name(f.name, RUN_FOLDERS[name]) and not (f.is_dir() and not f.is_symlink()):
                        remove.append(f)
                    else:
                        kept.append(str(f.relative_to(path)) + ("/" if f.is_dir() else ""))
                        keeps = True
                folders.append(child)
            elif name in SUB_RUNS and (child / RunDir.MARKER).is_file():
                subruns.append(child)
                if plan(child):
                    keeps = True
                else:
                    remove.append(child / RunDir.MARKER)
                folders.append(child)
            else:
                kept.append(rel + "/")
                keeps = True
        return keeps

    plan(path)
    held: list[str] = []
    try:
        for sub in subruns:  # refused here, before anything is removed, if another process holds one
            held.append(_hold(sub, RunDir.MARKER)[0])
        for f in remove:
            try:
                f.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise RunDirError(f"--overwrite: cannot remove {f}: {e.strerror or e}") from None
        for d in sorted(folders, key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: it keeps files the run did not write
                d.rmdir()
    finally:
        for key in held:
            _unhold(key)
    return kept


def resume_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config of the run folder ``path`` (its config.toml) with ``--set`` ``overrides`` applied.

    A resumed run keeps its config: overrides may only change keys that do not alter the computation
    (:data:`microcircuit.checkpoint.NON_COMPUTATIONAL`, e.g. ``schedule.checkpoint_every``); any other
    change is a :class:`ConfigError` naming the keys.
    """
    from .checkpoint import NON_COMPUTATIONAL, config_differences

    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"cannot resume {path}: no such run folder")
    if not (path / RunDir.CONFIG).is_file():
        raise RunDirError(f"cannot resume {path}: it has no {RunDir.CONFIG}, so it is not a run folder")
    saved = load_toml(path / RunDir.CONFIG)
    cfg = apply_overrides(saved, list(overrides))
    diff = config_differences(saved, cfg, NON_COMPUTATIONAL)
    if diff:
        raise ConfigError(
            f"--resume {path}: --set would change {', '.join(diff)}; a resumed run keeps the config it "
            f"started with (only {', '.join(NON_COMPUTATIONAL)} may change); start a new run instead"
        )
    return cfg
