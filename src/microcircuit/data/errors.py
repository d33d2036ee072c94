"""The errors of the data layer, and the exceptions that readers turn into them.

Every message names the file (or other source) and the problem.
"""

from __future__ import annotations

import struct
import tarfile
import zipfile
import zlib

__all__ = ["READ_ERRORS", "DataError", "DataNotFoundError", "FetchError"]


class DataError(ValueError):
    """A data file is missing, malformed, or does not hold the expected data.

    The message names the file (or other source) and the problem.
    """


class DataNotFoundError(DataError):
    """A data set asked for by name is in none of the places searched; the message says how to get it."""


class FetchError(DataError):
    """Obtaining a data set failed (download, archive or checksum problem)."""


#: Exceptions that the standard library and NumPy raise on malformed files, archives and arrays. Readers
#: catch them and raise :class:`DataError` with the file named instead.
READ_ERRORS: tuple[type[BaseException], ...] = (
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
