"""The data set container (:class:`ImageData`, also known as :class:`MNIST`), its validation, and content hashes.

A data set is four NumPy arrays: training and test images, ``uint8`` of any shape ``(n, ...)`` (MNIST and
Fashion-MNIST ``(n, 28, 28)``, CIFAR-10 ``(n, 32, 32, 3)``), and their integer labels ``(n,)``, ``uint8``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from .errors import DataError

__all__ = ["ARRAY_KEYS", "MNIST", "ImageData", "Split", "array_sha256", "check_hashes", "make_image_data"]

#: The four arrays of a data set, in order.
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


class ImageData(NamedTuple):
    """An image data set as four NumPy ``uint8`` arrays: images ``(n, ...)`` of any shape, the same for
    training and test (MNIST and Fashion-MNIST ``(n, 28, 28)``, CIFAR-10 ``(n, 32, 32, 3)``), and integer
    labels ``(n,)`` (class indices from 0). ``MNIST`` is another name for this class."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one image, e.g. ``(28, 28)``."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.image_shape))
        return f"ImageData(train={self.x_train.shape[0]}, test={self.x_test.shape[0]}, image={shape})"


#: The container's name in most of the package: it holds any image data set, not only MNIST.
MNIST = ImageData


class Split(NamedTuple):
    """One part of a split: images ``x`` ``(n, ...)`` uint8 and labels ``y`` ``(n,)`` uint8."""

    x: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return f"Split(n={self.n})"


def array_sha256(a: np.ndarray) -> str:
    """SHA-256 (hex) of ``np.ascontiguousarray(a).tobytes()``: a content hash independent of file format."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def check_hashes(
    data: ImageData, expected: Mapping[str, str], *, source: str | os.PathLike[str] = "<memory>", what: str = "data"
) -> None:
    """Check the content hash (:func:`array_sha256`) of each array of ``data`` against ``expected``.

    ``expected`` maps each of ``x_train``, ``y_train``, ``x_test``, ``y_test`` to a hex SHA-256. Raises
    :class:`DataError` naming the first mismatching array, ``source`` and ``what`` (e.g. ``"Fashion-MNIST"``).
    """
    for key in ARRAY_KEYS:
        if key not in expected:
            raise ValueError(f"expected hashes lack an entry for {key!r}")
        got = array_sha256(getattr(data, key))
        if got != expected[key].lower():
            raise DataError(
                f"{source}: SHA-256 mismatch for {key}: expected {expected[key]}, got {got}; "
                f"the data are not the expected {what} (corrupt or different file)"
            )


def _check_images(x: np.ndarray, name: str, source: str, image_shape: tuple[int, ...] | None) -> None:
    if x.dtype != np.uint8:
        raise DataError(f"{source}: {name} has dtype {x.dtype}, expected uint8")
    if image_shape is not None and (x.ndim != 1 + len(image_shape) or x.shape[1:] != image_shape):
        raise DataError(f"{source}: {name} has shape {x.shape}, expected (n, {', '.join(map(str, image_shape))})")
    if x.ndim < 2 or 0 in x.shape[1:]:
        raise DataError(f"{source}: {name} has shape {x.shape}, expected images (n, ...) of at least one pixel")


def _check_labels(y: np.ndarray, name: str, source: str, n_classes: int | None) -> np.ndarray:
    """Integer labels of any width are accepted when they lie in 0 .. n_classes - 1 (cast to uint8)."""
    if y.dtype.kind not in "iu":
        raise DataError(f"{source}: {name} has dtype {y.dtype}, expected an integer dtype (uint8)")
    if y.ndim != 1:
        raise DataError(f"{source}: {name} has shape {y.shape}, expected (n,)")
    top = 256 if n_classes is None else n_classes
    if y.size and (int(y.min()) < 0 or int(y.max()) >= top):
        raise DataError(
            f"{source}: {name} holds labels outside 0-{top - 1} (min {int(y.min())}, max {int(y.max())})"
        )
    return y.astype(np.uint8, copy=False)


def make_image_data(
    arrays: Mapping[str, np.ndarray],
    sources: Mapping[str, str] | str,
    *,
    image_shape: tuple[int, ...] | None = None,
    n_classes: int | None = None,
) -> ImageData:
    """Validate four arrays and build an :class:`ImageData`.

    Checks: images are uint8 with at least one pixel, of ``image_shape`` when given, and the same for
    training and test; labels are 1-D integers in 0 .. ``n_classes`` - 1 (0-255 when not given), cast to
    uint8; each label array is as long as its image array; the training set is not empty.

    Args:
        arrays: ``x_train``, ``y_train``, ``x_test``, ``y_test``.
        sources: the file each array came from (a mapping by key, or one name for all), for messages.
        image_shape: the shape each image must have, e.g. ``(28, 28)``.
        n_classes: the number of classes.

    Raises:
        DataError: naming the source and the problem.
    """
    where = dict.fromkeys(ARRAY_KEYS, sources) if isinstance(sources, str) else dict(sources)
    out: dict[str, np.ndarray] = {}
    for part in ("train", "test"):
        xk, yk = f"x_{part}", f"y_{part}"
        x, y = np.asarray(arrays[xk]), np.asarray(arrays[yk])
        _check_images(x, xk, where[xk], image_shape)
        y = _check_labels(y, yk, where[yk], n_classes)
        if x.shape[0] != y.shape[0]:
            both = where[xk] if where[xk] == where[yk] else f"{where[xk]} / {where[yk]}"
            raise DataError(f"{both}: label count {y.shape[0]} != image count {x.shape[0]} ({yk} vs {xk})")
        out[xk], out[yk] = x, y
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise DataError(
            f"{where['x_test']}: test images have shape {out['x_test'].shape[1:]}, training images "
            f"{out['x_train'].shape[1:]} ({where['x_train']})"
        )
    if out["x_train"].shape[0] == 0:
        raise DataError(f"{where['x_train']}: the training set is empty")
    return ImageData(**out)
