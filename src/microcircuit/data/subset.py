"""How the embedded subset (``mnist_subset.npz``) is made: the first 2,000 training and the first 1,000 test
images of full MNIST, uint8, in their original order, in an npz with fixed zip timestamps so that the same
data always give a byte-identical file::

    from microcircuit.data import load_mnist, verify_hashes, write_subset

    full = load_mnist()                      # after `microcircuit data fetch-mnist`
    verify_hashes(full)                      # the published full-MNIST content hashes
    write_subset(full, "mnist_subset.npz")   # == src/microcircuit/data/mnist_subset.npz, byte for byte

MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges) is licensed CC BY-SA 3.0; the subset is a
derivative under the same licence (``LICENSE-MNIST.txt``).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from .mnist import MNIST

__all__ = ["SUBSET_N_TEST", "SUBSET_N_TRAIN", "write_subset"]

SUBSET_N_TRAIN, SUBSET_N_TEST = 2000, 1000
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # zip member timestamps: the file depends on the data alone


def write_subset(mnist: MNIST, path: str | os.PathLike[str], *, n_train: int = SUBSET_N_TRAIN,
                 n_test: int = SUBSET_N_TEST) -> Path:
    """Write the first ``n_train`` training and ``n_test`` test images (and labels) of ``mnist`` to the npz
    ``path`` (deflate level 9, fixed member order and timestamps, written through a temporary file)."""
    if not (0 < n_train <= len(mnist.y_train) and 0 < n_test <= len(mnist.y_test)):
        raise ValueError(f"write_subset: n_train, n_test must be in 1..{len(mnist.y_train)}, "
                         f"1..{len(mnist.y_test)}; got {n_train}, {n_test}")
    arrays = {"x_train": mnist.x_train[:n_train], "y_train": mnist.y_train[:n_train],
              "x_test": mnist.x_test[:n_test], "y_test": mnist.y_test[:n_test]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(path)
    return path
