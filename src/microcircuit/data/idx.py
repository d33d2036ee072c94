"""The IDX file format of MNIST and Fashion-MNIST: read, write, and find the four files of a release.

An IDX file is a 4-byte big-endian magic ``0x0000TTDD`` (``TT`` element type, ``DD`` number of dimensions),
``DD`` big-endian uint32 sizes, then the elements in C order (big-endian for multi-byte types). MNIST and
Fashion-MNIST use 2049 (``0x0801``, uint8 labels, 1-D) and 2051 (``0x0803``, uint8 images, 3-D), four files
per release, each usually gzipped.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = [
    "IDX_FILENAMES",
    "IDX_MAGIC_IMAGES",
    "IDX_MAGIC_LABELS",
    "encode_idx",
    "find_idx_files",
    "parse_idx",
    "parse_idx_files",
    "read_idx",
    "read_idx_arrays",
    "read_idx_files",
]

#: IDX magic numbers: 0x0801 (unsigned byte, 1 dimension) and 0x0803 (unsigned byte, 3 dimensions).
IDX_MAGIC_LABELS = 2049
IDX_MAGIC_IMAGES = 2051

#: Base names of the four IDX files of a release (MNIST and Fashion-MNIST alike; each may carry ``.gz``).
IDX_FILENAMES: Mapping[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# IDX element types: type code -> big-endian dtype.
_IDX_DTYPES: Mapping[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def parse_idx(
    data: bytes | bytearray | memoryview, *, source: str = "<bytes>", expected_magic: int | None = None
) -> np.ndarray:
    """Parse an uncompressed IDX file held in memory.

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
            f"{source}: IDX payload has {payload_len - expected_len} unexpected trailing bytes after shape {dims}"
        )
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def encode_idx(a: np.ndarray) -> bytes:
    """The uncompressed IDX file of a ``uint8`` array (the inverse of :func:`parse_idx` for uint8)."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise ValueError(f"encode_idx writes uint8 arrays, got dtype {a.dtype}")
    if not 1 <= a.ndim <= 255:
        raise ValueError(f"encode_idx needs 1 to 255 dimensions, got {a.ndim}")
    header = struct.pack(">I", 0x0800 | a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + np.ascontiguousarray(a).tobytes()


def decompress_gzip(raw: bytes, source: str) -> bytes:
    """``gzip.decompress`` with errors as :class:`DataError` naming ``source``."""
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{source}: bad gzip data: {exc}") from exc


def idx_from_file_bytes(
    raw: bytes, source: str, *, gzipped: bool = False, expected_magic: int | None = None
) -> np.ndarray:
    """Parse the bytes of an IDX file as stored on disk: gzipped when ``gzipped`` or when they start with the
    gzip magic."""
    if gzipped or raw[:2] == b"\x1f\x8b":
        raw = decompress_gzip(raw, source)
    return parse_idx(raw, source=source, expected_magic=expected_magic)


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file from disk, gzipped or not (detected from the ``.gz`` suffix or the gzip magic).

    See :func:`parse_idx` for the checks. Raises :class:`DataError` naming ``path``.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read file: {exc}") from exc
    return idx_from_file_bytes(raw, str(p), gzipped=p.suffix == ".gz", expected_magic=expected_magic)


def _find_idx_file(directory: Path, base: str) -> Path | None:
    for stem in (base, base.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            candidate = directory / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def find_idx_files(directory: str | os.PathLike[str]) -> dict[str, Path | None]:
    """The file of each of the four arrays in ``directory`` (see :data:`IDX_FILENAMES`), or None where there
    is none. ``train-images.idx3-ubyte`` (dot) is accepted for ``train-images-idx3-ubyte`` (hyphen), and each
    file may be gzipped with a ``.gz`` suffix; the uncompressed file is taken when both exist."""
    d = Path(directory)
    return {key: _find_idx_file(d, base) for key, base in IDX_FILENAMES.items()}


def read_idx_files(directory: str | os.PathLike[str], *, what: str = "MNIST") -> dict[str, tuple[Path, bytes]]:
    """The four IDX files of a release in ``directory``, by key: each file's path and bytes as stored.

    Raises:
        DataError: a file is missing (the message lists the missing files of ``what``, e.g. ``"MNIST"``) or
            cannot be read.
    """
    d = Path(directory)
    files = find_idx_files(d)
    missing = [IDX_FILENAMES[k] for k, p in files.items() if p is None]
    if missing:
        raise DataError(
            f"{d}: not a folder of {what}: missing IDX file(s) {', '.join(missing)} (optionally .gz); "
            f"expected the four files of the {what} release"
        )
    out: dict[str, tuple[Path, bytes]] = {}
    for key, path in files.items():
        assert path is not None
        try:
            out[key] = (path, path.read_bytes())
        except OSError as exc:
            raise DataError(f"{path}: cannot read file: {exc}") from exc
    return out


def parse_idx_files(files: Mapping[str, tuple[Path, bytes]]) -> dict[str, np.ndarray]:
    """The arrays of :func:`read_idx_files`' result, each checked for its magic number (images, labels)."""
    return {
        key: idx_from_file_bytes(raw, str(path), gzipped=path.suffix == ".gz",
                                 expected_magic=IDX_MAGIC_IMAGES if key.startswith("x") else IDX_MAGIC_LABELS)
        for key, (path, raw) in files.items()
    }


def read_idx_arrays(
    directory: str | os.PathLike[str], *, what: str = "MNIST"
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read the four IDX files of a release from ``directory``: the arrays and the file of each, by key.

    Raises:
        DataError: a file is missing (the message lists the missing files of ``what``, e.g. ``"MNIST"``), or
            a file is malformed.
    """
    files = read_idx_files(directory, what=what)
    return parse_idx_files(files), {k: str(p) for k, (p, _) in files.items()}
