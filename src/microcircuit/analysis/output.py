"""Writing an analysis' figure to the file a user names: its image format from the suffix, checked before
anything is computed, and an atomic write whose failure names the file and the reason."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ConfigError
from ..runs import RunDirError, atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["image_format", "image_formats", "output_folder", "save_image"]


def image_formats() -> dict[str, str]:
    """The image formats matplotlib writes here, suffix (without the dot) -> description. ``pgf`` needs a
    LaTeX installation and is left out without one."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = dict(FigureCanvasBase.get_supported_filetypes())
    for suffix in _unavailable():
        formats.pop(suffix, None)
    return formats


def _unavailable() -> dict[str, str]:
    """Formats matplotlib lists that this installation cannot write, with the reason."""
    out = {}
    if not any(shutil.which(tex) for tex in ("xelatex", "lualatex", "pdflatex")):
        out["pgf"] = "needs a LaTeX installation (xelatex, lualatex or pdflatex), and none is found"
    try:
        from PIL import features

        for suffix in ("avif", "webp"):
            if not features.check(suffix):
                out[suffix] = f"needs Pillow built with {suffix.upper()} support, which this one is not"
    except Exception:  # an old Pillow without the check: leave the formats to matplotlib
        pass
    return out


def image_format(path: str | Path) -> str:
    """The image format of ``path`` by its suffix (``png``, ``pdf``, ``svg``, ...). Raises
    :class:`~microcircuit.config.ConfigError` for a missing suffix or one matplotlib cannot write, naming
    the formats it can."""
    path = Path(path)
    suffix = path.suffix.lower().removeprefix(".")
    formats = image_formats()
    if suffix in formats:
        return suffix
    known = ", ".join(f".{s}" for s in sorted(formats))
    why = _unavailable().get(suffix)
    if why:
        what = f"writing {path.suffix!r} images {why}"
    elif suffix:
        what = f"its suffix {path.suffix!r} is not an image format matplotlib writes"
    else:
        what = "it has no suffix to say the image format"
    raise ConfigError(f"{path}: {what}; end the file name in one of {known}")


def save_image(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (format by its suffix, :func:`image_format`), making its folder, atomically.
    Raises :class:`RunDirError` naming the file when it cannot be written (a read-only folder, a file in
    the way of the folder, a full disk)."""
    path = Path(path)
    fmt = image_format(path)
    if path.is_dir():
        raise RunDirError(f"cannot write {path}: it is a folder; name a file, e.g. {path / ('figure.' + fmt)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot write {path}: cannot make its folder {path.parent}: {e.strerror or e}") from None
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def output_folder(path: str | Path) -> Path:
    """``path`` as a folder to write into, made if missing; checked before an analysis computes anything.
    Raises :class:`RunDirError` when it is a file or cannot be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"cannot write into {path}: it is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot write into {path}: {e.strerror or e}") from None
    return path
