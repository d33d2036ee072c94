"""The figures the library writes (run folders, sweeps, ``microcircuit analyze``).

Figures are built as :class:`matplotlib.figure.Figure` objects that are not registered with pyplot:
saving one renders it with the Agg backend, so it needs no display and leaves the backend of the
calling session (a notebook, an interactive window) untouched. Nothing is set at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure"]


def figure(**kwargs: Any) -> Figure:
    """A new headless figure (``figsize``, ``layout``, ... as for :class:`matplotlib.figure.Figure`).

    Draw on it with ``fig.subplots(...)`` or ``fig.add_subplot(...)`` and write it with
    ``fig.savefig(path)`` (or :meth:`microcircuit.runs.RunDir.save_figure`); it needs no ``close``.
    """
    from matplotlib.figure import Figure

    return Figure(**kwargs)
