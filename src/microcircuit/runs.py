"""Run folders: the resolved config, metrics (JSON lines), traces (.npz), figures, environment, summary.

Every file is written atomically (temporary file in the same folder, fsync, rename), so a run that dies
never leaves a half-written file behind, and nothing already written is lost.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np

from .config import Config, to_toml

__all__ = ["RunDir", "RunDirError", "atomic_write", "environment"]


class RunDirError(RuntimeError):
    """The run folder cannot be used (it holds another run, or cannot be written)."""


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in the same folder, fsync it, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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


class RunDir:
    """A run folder. ``RunDir.create`` refuses a folder that already holds files unless told otherwise."""

    CONFIG = "config.toml"
    METRICS = "metrics.jsonl"
    TRACES = "traces.npz"
    ENVIRONMENT = "environment.json"
    SUMMARY = "summary.json"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, *, overwrite: bool = False, resume: bool = False) -> RunDir:
        """Make (or, with ``resume``, reopen) a run folder; a non-empty one needs ``overwrite`` or ``resume``."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"run folder {path} exists and is not a directory")
        if path.exists() and any(path.iterdir()) and not (overwrite or resume):
            raise RunDirError(
                f"run folder {path} is not empty: pass --resume to continue it, --overwrite to replace it, "
                "or choose another --out"
            )
        if overwrite and path.exists():
            for child in path.iterdir():
                if child.is_file():
                    child.unlink()
                elif child.is_dir():
                    import shutil

                    shutil.rmtree(child)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run folder {path}: {e}") from None
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

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
        """Append one JSON line to metrics.jsonl (flushed and fsynced)."""
        with open(self.file(self.METRICS), "a") as f:
            f.write(json.dumps(_jsonable(metrics)) + "\n")
            f.flush()
            os.fsync(f.fileno())

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
