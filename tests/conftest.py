"""Shared test setup: makes the tests directory (and so ``reference``) importable from every test module."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # ``import reference`` whatever pytest's import mode
    sys.path.insert(0, _HERE)
