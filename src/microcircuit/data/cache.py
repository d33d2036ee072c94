"""Where fetched data sets are kept, and how files get there (atomically).

Each data set has its own folder under :func:`cache_root` (``~/.cache/microcircuit``), unless its own
environment variable names another folder: ``MICROCIRCUIT_DATA`` for MNIST,
``MICROCIRCUIT_FASHION_MNIST`` for Fashion-MNIST, ``MICROCIRCUIT_CIFAR10`` for CIFAR-10.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "cache_root", "data_set_dir", "search_dirs"]


def cache_root() -> Path:
    """The folder that holds one sub-folder per data set: ``~/.cache/microcircuit``. It is not created here."""
    return Path.home() / ".cache" / "microcircuit"


def data_set_dir(env_var: str, name: str) -> Path:
    """The cache folder of one data set: ``$env_var`` if set (and non-empty), else ``cache_root() / name``.
    It is not created here."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    return cache_root() / name


def search_dirs(env_var: str, name: str, *more: Path) -> list[Path]:
    """Where a data set asked for by name is looked for, in order: ``$env_var`` (if set and non-empty),
    ``cache_root() / name``, then ``more``; each folder once."""
    out: list[Path] = []
    env = os.environ.get(env_var)
    for d in (Path(env).expanduser() if env else None, cache_root() / name, *more):
        if d is not None and d not in out:
            out.append(d)
    return out


def atomic_write(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``target`` through ``write(file)`` atomically: a temporary file in the same folder, fsync,
    :func:`os.replace`. Readers never see a partial file; on an error no temporary file is left behind.
    The folder is created if needed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    # Make the rename durable too (POSIX only; best effort).
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
