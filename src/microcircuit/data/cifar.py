"""CIFAR-10 (Krizhevsky 2009): 32 x 32 colour images in 10 classes, 50,000 for training and 10,000 for
testing, read from the official "CIFAR-10 python version", ``cifar-10-python.tar.gz``.

The archive holds ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5`` (training, in this
order), ``test_batch`` and ``batches.meta``. Each batch is a pickled dict: ``b"data"``, a uint8 array
``(10000, 3072)`` whose rows are an image's 1,024 red, then 1,024 green, then 1,024 blue values, each
channel 32 x 32 in row-major order; ``b"labels"``, a list of 10,000 class indices 0-9. The batches are read
with a restricted unpickler (:mod:`microcircuit.data.safe_pickle`) that runs no code from the file, and
the images are returned as ``(n, 32, 32, 3)`` uint8 (height, width, channel).

``load("cifar-10")`` looks, in order, in the folder that ``$MICROCIRCUIT_CIFAR10`` names and in the cache
folder ``~/.cache/microcircuit/cifar-10``; either may hold ``cifar-10-python.tar.gz``, the extracted
``cifar-10-batches-py`` folder, or the batch files themselves. There are no published content hashes for
CIFAR-10 here, so the data are validated (shapes, dtypes, label range) but not hash-checked.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from .cache import data_set_dir, search_dirs
from .container import ImageData, make_image_data
from .errors import READ_ERRORS, DataError, DataNotFoundError
from .safe_pickle import safe_unpickle

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_ENV_VAR",
    "CIFAR10_FOLDER",
    "CIFAR10_HOWTO",
    "CIFAR10_IMAGE_SHAPE",
    "CIFAR10_TEST_BATCH",
    "CIFAR10_TRAIN_BATCHES",
    "cifar10_cache_dir",
    "cifar10_search_dirs",
    "is_cifar10_source",
    "load_cifar10",
    "locate_cifar10",
    "read_cifar10",
]

#: Environment variable naming a folder that holds CIFAR-10 (or the archive itself).
CIFAR10_ENV_VAR = "MICROCIRCUIT_CIFAR10"
#: The official archive's file name and the folder inside it.
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
#: The batch files, training in order, then test.
CIFAR10_TRAIN_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
CIFAR10_TEST_BATCH = "test_batch"
#: The shape of one image as returned: height, width, channel (red, green, blue).
CIFAR10_IMAGE_SHAPE = (32, 32, 3)

#: How to get CIFAR-10, for messages.
CIFAR10_HOWTO = (
    f"download {CIFAR10_ARCHIVE} (the \"CIFAR-10 python version\" of https://www.cs.toronto.edu/~kriz/cifar.html) "
    f"and put it, or its extracted {CIFAR10_FOLDER} folder, into ~/.cache/microcircuit/cifar-10 (or the folder "
    f"${CIFAR10_ENV_VAR} names), or pass its path with --set training.data=PATH"
)

_N_CLASSES = 10
_ROW = 32 * 32 * 3
_MAX_BATCH_BYTES = 256 << 20  # an official batch is about 31 MB
_BATCHES = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)


def cifar10_cache_dir() -> Path:
    """The CIFAR-10 cache folder: ``$MICROCIRCUIT_CIFAR10`` if set (and non-empty), else
    ``~/.cache/microcircuit/cifar-10``. It is not created here."""
    return data_set_dir(CIFAR10_ENV_VAR, "cifar-10")


def cifar10_search_dirs() -> list[Path]:
    """The places searched for CIFAR-10 by name, in order: ``$MICROCIRCUIT_CIFAR10`` (if set),
    ``~/.cache/microcircuit/cifar-10``."""
    return search_dirs(CIFAR10_ENV_VAR, "cifar-10")


def _batch_folder(directory: Path) -> Path | None:
    """``directory`` if it holds batch files, else its ``cifar-10-batches-py`` sub-folder if that does."""
    for d in (directory, directory / CIFAR10_FOLDER):
        if d.is_dir() and any((d / name).exists() for name in (*_BATCHES, "batches.meta")):
            return d
    return None


def _member_name(name: str) -> str:
    return name.removeprefix("./")


def _is_cifar10_archive(path: Path) -> bool:
    """A tar archive whose first member is ``cifar-10-batches-py`` or lies in it (only its first header is
    read)."""
    try:
        with tarfile.open(path) as tf:
            first = tf.next()
    except READ_ERRORS:
        return False
    name = _member_name(first.name) if first is not None else ""
    return name == CIFAR10_FOLDER or name.startswith(f"{CIFAR10_FOLDER}/")


def is_cifar10_source(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like CIFAR-10: a folder of batch files (or one holding ``cifar-10-batches-py``),
    or a tar archive whose first member is ``cifar-10-batches-py``. Nothing is validated."""
    p = Path(path).expanduser()
    if p.is_dir():
        return _batch_folder(p) is not None
    return p.is_file() and _is_cifar10_archive(p)


def locate_cifar10() -> Path:
    """The first CIFAR-10 source in :func:`cifar10_search_dirs`: the archive ``cifar-10-python.tar.gz`` in a
    searched folder, a folder of batch files (the folder or its ``cifar-10-batches-py``), or a searched path
    that is itself an archive.

    Raises:
        DataNotFoundError: there is none; the message says how to get CIFAR-10.
    """
    dirs = cifar10_search_dirs()
    for d in dirs:
        if d.is_file():
            return d
        if (d / CIFAR10_ARCHIVE).is_file():
            return d / CIFAR10_ARCHIVE
        folder = _batch_folder(d)
        if folder is not None:
            return folder
    raise DataNotFoundError(f"CIFAR-10 not found (looked in {', '.join(map(str, dirs))}): {CIFAR10_HOWTO}")


def _read_archive(path: Path) -> dict[str, tuple[str, bytes]]:
    """The bytes of each batch in the archive, by batch name, with the name of its source for messages."""
    wanted = {f"{CIFAR10_FOLDER}/{name}": name for name in _BATCHES}
    out: dict[str, tuple[str, bytes]] = {}
    try:
        with tarfile.open(path) as tf:
            for member in tf:
                name = _member_name(member.name)
                if name not in wanted:
                    continue
                where = f"{path}!{name}"
                if not member.isfile():
                    raise DataError(f"{where}: archive member is not a regular file")
                if member.size > _MAX_BATCH_BYTES:
                    raise DataError(f"{where}: archive member has {member.size} bytes, more than a batch can hold")
                f = tf.extractfile(member)
                if f is None:
                    raise DataError(f"{where}: archive member cannot be read")
                with f:
                    out[wanted[name]] = (where, f.read())
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read archive: {type(exc).__name__}: {exc}") from exc
    missing = [m for m, name in wanted.items() if name not in out]
    if missing:
        raise DataError(f"{path}: not the CIFAR-10 python archive: missing member(s) {', '.join(missing)}")
    return out


def _read_folder(directory: Path) -> dict[str, tuple[str, bytes]]:
    folder = _batch_folder(directory) or directory
    missing = [name for name in _BATCHES if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: not a CIFAR-10 batch folder: missing file(s) {', '.join(missing)}")
    out: dict[str, tuple[str, bytes]] = {}
    for name in _BATCHES:
        p = folder / name
        try:
            size = p.stat().st_size
            if size > _MAX_BATCH_BYTES:
                raise DataError(f"{p}: file has {size} bytes, more than a batch can hold")
            out[name] = (str(p), p.read_bytes())
        except OSError as exc:
            raise DataError(f"{p}: cannot read file: {exc}") from exc
    return out


def _get(batch: dict[Any, Any], key: str) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    return None


def _parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images ``(n, 32, 32, 3)`` and labels ``(n,)``, both uint8."""
    batch = safe_unpickle(raw, where)
    if not isinstance(batch, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(batch).__name__}")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        raise DataError(f"{where}: the batch lacks the key(s) "
                        f"{', '.join(k for k, v in (('data', data), ('labels', labels)) if v is None)}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
        shape = getattr(data, "shape", None)
        raise DataError(f"{where}: data is {type(data).__name__} {shape}, expected a uint8 array (n, {_ROW})")
    if isinstance(labels, np.ndarray) and labels.ndim == 1:  # uint8: the only dtype the unpickler makes
        labels = labels.tolist()
    if not isinstance(labels, list | tuple) or not all(type(v) is int for v in labels):
        raise DataError(f"{where}: labels must be a list of ints, got {type(labels).__name__}")
    if not all(0 <= v < _N_CLASSES for v in labels):
        raise DataError(f"{where}: labels outside 0-{_N_CLASSES - 1} (min {min(labels)}, max {max(labels)})")
    if len(labels) != data.shape[0]:
        raise DataError(f"{where}: {len(labels)} labels for {data.shape[0]} images")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel planes -> height, width, channel
    return np.ascontiguousarray(images), np.array(labels, dtype=np.uint8)


def read_cifar10(path: str | os.PathLike[str]) -> ImageData:
    """Read CIFAR-10 from ``path``: the archive ``cifar-10-python.tar.gz``, the extracted
    ``cifar-10-batches-py`` folder, or a folder holding it. Validated (uint8 ``(n, 3072)`` data, labels
    0-9, as many labels as images), not hash-checked: no content hashes of CIFAR-10 are known here.

    Returns:
        Images ``(n, 32, 32, 3)`` uint8 (height, width, red/green/blue), labels ``(n,)`` uint8; training
        from ``data_batch_1`` .. ``data_batch_5`` in order, test from ``test_batch``.

    Raises:
        DataError: naming the file (and archive member) and the problem.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raw = _read_folder(p)
    elif p.is_file():
        raw = _read_archive(p)
    else:
        raise DataError(f"{p}: no such file or directory")
    where = {name: w for name, (w, _) in raw.items()}
    parts = {name: _parse_batch(raw.pop(name)[1], where[name]) for name in _BATCHES}
    train = [parts.pop(name) for name in CIFAR10_TRAIN_BATCHES]
    arrays = {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": parts[CIFAR10_TEST_BATCH][0],
        "y_test": parts[CIFAR10_TEST_BATCH][1],
    }
    train_where = f"{where[CIFAR10_TRAIN_BATCHES[0]]} .. {where[CIFAR10_TRAIN_BATCHES[-1]]}"
    sources = {"x_train": train_where, "y_train": train_where,
               "x_test": where[CIFAR10_TEST_BATCH], "y_test": where[CIFAR10_TEST_BATCH]}
    return make_image_data(arrays, sources, image_shape=CIFAR10_IMAGE_SHAPE, n_classes=_N_CLASSES)


def load_cifar10(path: str | os.PathLike[str] | None = None) -> ImageData:
    """Load CIFAR-10 from ``path`` (see :func:`read_cifar10`), or else from :func:`locate_cifar10`.

    Raises:
        DataNotFoundError: no ``path`` and nothing found; the message says how to get CIFAR-10.
        DataError: malformed data, naming the file (and archive member) and the problem.
    """
    return read_cifar10(locate_cifar10() if path is None else path)
