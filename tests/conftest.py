"""Shared test setup: makes the tests directory (and so ``reference``) importable from every test module, and
checks that the tests clean up their temporary files."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # ``import reference`` whatever pytest's import mode
    sys.path.insert(0, _HERE)


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_are_removed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every temporary file of the session (``tempfile`` here and in the processes it starts) goes to one
    folder, which must be empty at the end: a test that leaves one behind fails the session. (``tmp_path``
    folders are pytest's own and are kept for inspection.)"""
    tmp = tmp_path_factory.mktemp("tempfile")
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(tmp)
    yield tmp
    if saved[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir = saved[1]
    left = sorted(p.name for p in tmp.iterdir())
    assert not left, f"the tests left temporary files behind: {', '.join(left)}"
