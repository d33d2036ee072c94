"""The paper's deterministic train / validation / test split, for any data set."""

from __future__ import annotations

import numpy as np

from .container import ImageData, Split
from .errors import DataError

__all__ = ["PAPER_N_VALIDATION", "paper_split"]

#: Validation-set size of the paper's split (the last 5,000 of the 60,000 MNIST training images).
PAPER_N_VALIDATION = 5000


def paper_split(data: ImageData, *, n_validation: int = PAPER_N_VALIDATION) -> tuple[Split, Split, Split]:
    """Deterministic train / validation / test split as in the paper.

    The validation set is the LAST ``n_validation`` images of the training set, the training set the
    ones before them, and the test set the full test set. On full MNIST (or Fashion-MNIST) with the default
    this gives 55,000 / 5,000 / 10,000; on CIFAR-10, 45,000 / 5,000 / 10,000. No shuffling: the result
    depends only on the input order. The returned arrays are views into ``data``'s arrays.

    Raises:
        DataError: the training set has no more than ``n_validation`` images (nothing left to train on).
        ValueError: ``n_validation`` is negative or not an integer.
    """
    if isinstance(n_validation, bool) or not isinstance(n_validation, int | np.integer):
        raise ValueError(f"n_validation must be an integer, got {n_validation!r}")
    n_validation = int(n_validation)
    if n_validation < 0:
        raise ValueError(f"n_validation must be >= 0, got {n_validation}")
    n_train_total = int(data.x_train.shape[0])
    if n_train_total <= n_validation:
        raise DataError(
            f"cannot hold out {n_validation} validation images: the training set has only {n_train_total} "
            f"(the paper's split of full MNIST holds out {PAPER_N_VALIDATION} of 60,000; pass a smaller n_validation)"
        )
    cut = n_train_total - n_validation
    train = Split(data.x_train[:cut], data.y_train[:cut])
    validation = Split(data.x_train[cut:], data.y_train[cut:])
    test = Split(data.x_test, data.y_test)
    return train, validation, test
