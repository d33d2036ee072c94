"""Run folders: the resolved config, metrics (JSON lines), traces (.npz), figures, environment, summary,
checkpoints (see :mod:`microcircuit.checkpoint` and docs/runs.md).

Every file is written atomically (temporary file in the same folder, fsync, rename), so a run that dies
never leaves a half-written file behind, and nothing already written is lost. :func:`graceful_stop`
turns SIGINT/SIGTERM into a flag that a runner checks at its next chunk boundary.
"""

from __future__ import annotations

import contextvars
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np

from .config import Config, ConfigError, apply_overrides, load_toml, to_toml

__all__ = [
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


def environment(cfg: Config | None = None) -> dict[str, Any]:
    """Package versions, platform, JAX backend and devices, seed, and this project's version."""
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
    newest checkpoint in ``checkpoint_dir`` (or start afresh when there is none).
    """

    CONFIG = "config.toml"
    METRICS = "metrics.jsonl"
    TRACES = "traces.npz"
    ENVIRONMENT = "environment.json"
    SUMMARY = "summary.json"
    CHECKPOINTS = "checkpoints"
    MARKER = ".microcircuit-run"  # written first: marks a folder that --overwrite may replace

    def __init__(self, path: str | Path, *, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume

    @classmethod
    def create(cls, path: str | Path, *, overwrite: bool = False, resume: bool = False) -> RunDir:
        """Make (or, with ``resume``, reopen) a run folder and mark it as one (:attr:`MARKER`).

        A non-empty folder needs ``resume`` or ``overwrite``. ``overwrite`` replaces only a folder that
        holds the marker of a microcircuit run folder; any other folder is refused and left untouched,
        so a user's files are never deleted. Call it after every check of the config and data passed."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"run folder {path} exists and is not a directory")
        busy = path.exists() and any(path.iterdir())
        if busy and not (overwrite or resume):
            raise RunDirError(
                f"run folder {path} is not empty: pass --resume to continue it, --overwrite to replace it, "
                "or choose another --out"
            )
        if busy and overwrite and not resume:
            if not (path / cls.MARKER).is_file():
                raise RunDirError(
                    f"refusing to overwrite {path}: it is not a microcircuit run folder (no {cls.MARKER} "
                    "marker), and --overwrite never deletes other files; choose another --out"
                )
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run folder {path}: {e.strerror or e}") from None
        run = cls(path, resume=resume)
        if not (path / cls.MARKER).is_file():
            run.write_json(cls.MARKER, {"microcircuit_run_folder": 1})
        return run

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

    def record_resume(self, cfg: Config | None = None) -> list[str]:
        """Note a resumption in environment.json (under ``resumes``) and return the environment fields
        (versions, platform, JAX backend/devices) that differ from the first start, if any: with any
        difference, a resumed run need not be bit-for-bit equal to an uninterrupted one."""
        now = environment(cfg)
        p = self.file(self.ENVIRONMENT)
        try:
            env = json.loads(p.read_text())
            if not isinstance(env, dict):
                raise ValueError
        except (OSError, ValueError):
            env = dict(now)
        fields = ("microcircuit", "python", "platform", "packages", "jax_backend", "jax_devices")
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

    def write_environment(self, cfg: Config | None = None) -> None:
        self.write_json(self.ENVIRONMENT, environment(cfg))

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
