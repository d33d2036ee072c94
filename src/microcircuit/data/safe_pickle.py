"""Reading the pickles of the CIFAR-10 "python version" without running code from the file.

:func:`pickle.load` calls whatever functions a pickle names, so a crafted file can run any code. The
unpickler here knows no classes or functions except the few that a pickled NumPy ``uint8`` array needs,
each replaced by a checked stand-in:

* ``numpy.core.multiarray._reconstruct`` (``numpy._core.multiarray._reconstruct`` in NumPy 2): only as
  NumPy pickles an array, ``_reconstruct(ndarray, (0,), typecode)``;
* ``numpy.ndarray``: only as that first argument (it cannot be called);
* ``numpy.dtype``: only ``uint8``, always as a new object;
* ``_codecs.encode``: only ``encode(text, "latin1")``, which Python 3 writes for ``bytes`` at pickle
  protocols 0-2 (the official files, written by Python 2, do not need it).

Anything else (``os.system``, ``builtins.eval``, ...) is refused with :class:`DataError`. Each use of an
allowed name gets a new stand-in object, so that nothing a file does to it outlasts the file.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import READ_ERRORS, DataError

__all__ = ["ALLOWED_GLOBALS", "safe_unpickle"]

_NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0, np.uint8))[0]


class _NdarrayMarker:
    """What ``numpy.ndarray`` unpickles to: accepted as the class argument of ``_reconstruct``, never called."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "numpy.ndarray"


def _refuse(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"refused {what}")


def _reconstruct(subtype: object, shape: object, typecode: object) -> np.ndarray:
    if not isinstance(subtype, _NdarrayMarker):
        raise _refuse(f"_reconstruct of {subtype!r} (only numpy.ndarray)")
    if shape != (0,):
        raise _refuse(f"_reconstruct with shape {shape!r} (NumPy pickles arrays with shape (0,))")
    if typecode not in ("b", b"b"):
        raise _refuse(f"_reconstruct with type code {typecode!r}")
    return _NUMPY_RECONSTRUCT(np.ndarray, (0,), "b")


def _dtype(spec: object, align: object = False, copy: object = True) -> np.dtype:
    if spec not in ("u1", b"u1"):
        raise _refuse(f"numpy.dtype({spec!r}) (only uint8, 'u1')")
    return np.dtype("u1", align=bool(align), copy=True)  # a new object: its unpickled state never alters uint8


def _latin1(text: object, encoding: object = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _refuse(f"_codecs.encode with {type(text).__name__}, {encoding!r} (only text, 'latin1')")
    return text.encode("latin-1")


def _fresh(fn: Callable[..., Any]) -> Callable[[], Callable[..., Any]]:
    def make() -> Callable[..., Any]:
        def stand_in(*args: object) -> Any:
            return fn(*args)

        return stand_in

    return make


_STAND_INS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _fresh(_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _fresh(_reconstruct),
    ("numpy", "ndarray"): _NdarrayMarker,
    ("numpy", "dtype"): _fresh(_dtype),
    ("_codecs", "encode"): _fresh(_latin1),
}

#: The only globals (module, name) a pickle may name.
ALLOWED_GLOBALS = frozenset(_STAND_INS)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        make = _STAND_INS.get((module, name))
        if make is None:
            raise _refuse(f"global {module}.{name} (a data file may hold only dicts, lists, "
                          "numbers, bytes and uint8 arrays)")
        return make()


def safe_unpickle(raw: bytes, source: str) -> Any:
    """Unpickle ``raw`` (``encoding="bytes"``, so Python 2 strings become ``bytes``) allowing no globals but
    :data:`ALLOWED_GLOBALS`.

    Raises:
        DataError: naming ``source``: a refused global, or a malformed pickle.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, AttributeError, *READ_ERRORS) as exc:
        raise DataError(f"{source}: cannot read pickle: {type(exc).__name__}: {exc}") from exc
