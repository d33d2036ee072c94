"""Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): 28 x 28 grey images of clothing in 10 classes,
60,000 for training and 10,000 for testing, as four IDX files named like MNIST's
(``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
``t10k-labels-idx1-ubyte.gz``).

By name (``load("fashion-mnist")``) the data set is looked for, in order, in the folder that
``$MICROCIRCUIT_FASHION_MNIST`` names, in the cache folder ``~/.cache/microcircuit/fashion-mnist`` (filled by
``microcircuit data fetch-fashion-mnist``), and in ``/usr/share/datasets/fashion-mnist``, where Debian's
package ``dataset-fashion-mnist`` installs it. The first of these folders that holds any of the four files
is read, and the content hash of each array is checked against :data:`FASHION_MNIST_SHA256`.

Fashion-MNIST is by Zalando Research (Han Xiao, Kashif Rasul, Roland Vollgraf) and is licensed MIT.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from .cache import atomic_write, data_set_dir, search_dirs
from .container import ImageData, check_hashes, make_image_data
from .errors import DataError, DataNotFoundError
from .idx import IDX_FILENAMES, find_idx_files, parse_idx_files, read_idx_arrays, read_idx_files

__all__ = [
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_ENV_VAR",
    "FASHION_MNIST_HOWTO",
    "FASHION_MNIST_SHA256",
    "fashion_mnist_cache_dir",
    "fashion_mnist_search_dirs",
    "fetch_fashion_mnist",
    "load_fashion_mnist",
    "locate_fashion_mnist",
    "read_fashion_mnist",
]

#: Environment variable naming a folder of the four IDX files; also the cache folder when set.
FASHION_MNIST_ENV_VAR = "MICROCIRCUIT_FASHION_MNIST"
#: Where Debian's package ``dataset-fashion-mnist`` installs the four gzipped IDX files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

#: SHA-256 of ``np.ascontiguousarray(a).tobytes()`` for each array of Fashion-MNIST (the release's order).
FASHION_MNIST_SHA256: Mapping[str, str] = {
    "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}

#: How to get Fashion-MNIST, for messages.
FASHION_MNIST_HOWTO = (
    "get it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download the four IDX files of "
    "the official release (" + ", ".join(f"{base}.gz" for base in IDX_FILENAMES.values()) + ") and pass their "
    "folder with --set training.data=PATH or `microcircuit data fetch-fashion-mnist --from-file FOLDER`"
)

_IMAGE_SHAPE = (28, 28)
_N_CLASSES = 10
_WHAT = "Fashion-MNIST"


def fashion_mnist_cache_dir() -> Path:
    """The Fashion-MNIST cache folder: ``$MICROCIRCUIT_FASHION_MNIST`` if set (and non-empty), else
    ``~/.cache/microcircuit/fashion-mnist``. It is not created here."""
    return data_set_dir(FASHION_MNIST_ENV_VAR, "fashion-mnist")


def fashion_mnist_search_dirs() -> list[Path]:
    """The folders searched for Fashion-MNIST by name, in order: ``$MICROCIRCUIT_FASHION_MNIST`` (if set),
    ``~/.cache/microcircuit/fashion-mnist``, :data:`FASHION_MNIST_DEBIAN_DIR`."""
    return search_dirs(FASHION_MNIST_ENV_VAR, "fashion-mnist", FASHION_MNIST_DEBIAN_DIR)


def _holds_idx_files(directory: Path) -> bool:
    return directory.is_dir() and any(p is not None for p in find_idx_files(directory).values())


def locate_fashion_mnist() -> Path:
    """The first folder of :func:`fashion_mnist_search_dirs` that holds any of the four IDX files.

    Raises:
        DataNotFoundError: none does; the message says how to get Fashion-MNIST.
    """
    dirs = fashion_mnist_search_dirs()
    for d in dirs:
        if _holds_idx_files(d):
            return d
    raise DataNotFoundError(f"Fashion-MNIST not found (looked in {', '.join(map(str, dirs))}): {FASHION_MNIST_HOWTO}")


def read_fashion_mnist(path: str | os.PathLike[str]) -> ImageData:
    """Read the four IDX files (each optionally ``.gz``) from the folder ``path``: validated (28 x 28 uint8
    images, labels 0-9, matching counts), not hash-checked.

    Raises:
        DataError: missing or malformed files; the message names the file and the problem.
    """
    d = Path(path).expanduser()
    if not d.is_dir():
        raise DataError(f"{d}: not a folder; Fashion-MNIST is read from a folder of its four IDX files")
    arrays, sources = read_idx_arrays(d, what=_WHAT)
    return make_image_data(arrays, sources, image_shape=_IMAGE_SHAPE, n_classes=_N_CLASSES)


def load_fashion_mnist(path: str | os.PathLike[str] | None = None, *, verify: bool = True) -> ImageData:
    """Load Fashion-MNIST from the folder ``path``, or else from :func:`locate_fashion_mnist`, and check the
    content hash of each array against :data:`FASHION_MNIST_SHA256` (unless ``verify`` is false).

    Raises:
        DataNotFoundError: no ``path`` and none of the searched folders holds the files.
        DataError: malformed files, or a hash mismatch (naming the array and the folder).
    """
    d = locate_fashion_mnist() if path is None else Path(path).expanduser()
    data = read_fashion_mnist(d)
    if verify:
        check_hashes(data, FASHION_MNIST_SHA256, source=d, what=_WHAT)
    return data


def _read_raw(directory: Path) -> tuple[ImageData, dict[str, tuple[Path, bytes]]]:
    """The data set in ``directory`` and, by key, each file and its bytes as read (so what is checked is
    what is copied)."""
    files = read_idx_files(directory, what=_WHAT)
    sources = {k: str(p) for k, (p, _) in files.items()}
    data = make_image_data(parse_idx_files(files), sources, image_shape=_IMAGE_SHAPE, n_classes=_N_CLASSES)
    return data, files


def _cache_is_valid(directory: Path, expected_hashes: Mapping[str, str]) -> bool:
    try:
        check_hashes(read_fashion_mnist(directory), expected_hashes, source=directory, what=_WHAT)
    except DataError:
        return False
    return True


def fetch_fashion_mnist(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    from_file: str | os.PathLike[str] | None = None,
    expected_hashes: Mapping[str, str] | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Copy Fashion-MNIST into its cache folder after checking it; nothing touches the network.

    1. The cache folder is ``cache_dir`` or else :func:`fashion_mnist_cache_dir`; it is created if needed.
    2. If it already holds the four files and their arrays match ``expected_hashes`` (default
       :data:`FASHION_MNIST_SHA256`), and ``force`` is false, nothing is copied.
    3. The source is the folder ``from_file`` or else :data:`FASHION_MNIST_DEBIAN_DIR` (Debian's package
       ``dataset-fashion-mnist``).
    4. The four files are read once, validated, and their arrays' content hashes checked against
       ``expected_hashes``; then the same bytes are written into the cache folder (each through a temporary
       file and :func:`os.replace`), under the release's names (``.gz`` kept where the source is gzipped).

    Returns:
        The cache folder.

    Raises:
        DataNotFoundError: no ``from_file`` and no Debian copy; the message says how to get Fashion-MNIST.
        DataError: malformed source, or a hash mismatch naming the array and the folder.
    """
    say: Callable[[str], None] = log if log is not None else (lambda _msg: None)
    expected_hashes = FASHION_MNIST_SHA256 if expected_hashes is None else expected_hashes
    target = fashion_mnist_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    if not force and _holds_idx_files(target):
        if _cache_is_valid(target, expected_hashes):
            say(f"Fashion-MNIST already cached in {target}")
            return target
        say(f"the Fashion-MNIST files in {target} are invalid; copying again")
    if from_file is not None:
        source = Path(from_file).expanduser()
        if not source.is_dir():
            raise DataError(f"{source}: not a folder; pass the folder of the four Fashion-MNIST IDX files")
    elif _holds_idx_files(FASHION_MNIST_DEBIAN_DIR):
        source = FASHION_MNIST_DEBIAN_DIR
    else:
        raise DataNotFoundError(f"Fashion-MNIST not found in {FASHION_MNIST_DEBIAN_DIR}: {FASHION_MNIST_HOWTO}")
    say(f"reading Fashion-MNIST from {source}")
    data, raw = _read_raw(source)
    check_hashes(data, expected_hashes, source=source, what=_WHAT)
    for key, (path, content) in raw.items():
        gz = path.suffix == ".gz" or content[:2] == b"\x1f\x8b"
        base = IDX_FILENAMES[key]
        name = f"{base}.gz" if gz else base
        atomic_write(target / name, lambda f, content=content: f.write(content))
        for stem in (base, base.replace("-idx", ".idx")):  # other spellings would shadow or confuse
            for other in (stem, f"{stem}.gz"):
                if other != name:
                    with contextlib.suppress(FileNotFoundError):
                        (target / other).unlink()
    say(f"Fashion-MNIST cached in {target}")
    return target
