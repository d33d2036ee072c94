"""Does a trained MNIST network run as a circuit? Its real dynamics against the steady state it was trained in.

A network trained in the steady-state mode (docs/model.md §6) reports the output u⁻_N of its forward sweep.
The weights mean something as a circuit only if the dynamics of §2, run from rest on an image with no target
and σ = 0, settle there. :func:`settle_check` runs the run's best weights (``weights_best.npz``) through
``simulate`` on the test images, batched, for ``duration`` ms at step ``dt``, and per image measures

- the *swing*: the largest change of any output potential during the last ``window`` ms,
  max_{t ∈ [T − window, T]} ‖u_N(t) − u_N(T)‖_∞; the image *settles* when the swing is below ``tol``;
- the dynamics' class (arg max of u_N(T)) against the steady state's (arg max of u⁻_N) and the label;
- the distance ‖u_N(T) − u⁻_N‖_∞ of the dynamics' end point from the steady state.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from ..config import Config, Model, Record
from ..dynamics import init_state
from ..errors import InputError
from ..network import Weights
from ..runs import atomic_write
from ..settling import RECORD_EVERY, settle_potentials, whole_steps
from ..simulate import Stream, precision, simulate
from ..steady_state import predict
from .output import output_folder, save_image
from .run_folder import best_weights, mnist_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SettleReport", "plot_settle", "settle_check", "settle_potentials", "write_settle"]



class SettleReport(NamedTuple):
    """The result of :func:`settle_check`: its settings, and per image (in test-set order) the swing, the
    distance of u_N(T) from the steady state's u⁻_N, the dynamics' and the steady state's classes and the
    label. ``trace`` is u_N over the whole run (times ``trace_times``, ms) of the image with the largest swing."""

    run: str
    duration: float
    dt: float
    window: float
    tol: float
    swing: np.ndarray
    distance: np.ndarray
    class_dynamics: np.ndarray
    class_steady: np.ndarray
    labels: np.ndarray
    trace: np.ndarray
    trace_times: np.ndarray

    @property
    def settled(self) -> np.ndarray:
        """Per image: the last ``window`` ms moved no output potential by ``tol`` or more."""
        return self.swing < self.tol

    def summary(self) -> dict[str, Any]:
        """The fractions (of the n images) that settle, whose dynamics' class agrees with the steady state's,
        and the error rates of both read-outs, overall and over the settled and unsettled images; JSON-ready."""
        s, agree = self.settled, self.class_dynamics == self.class_steady

        def frac(mask: np.ndarray, where: np.ndarray | None = None) -> float | None:
            m = mask if where is None else mask[where]
            return float(np.mean(m)) if m.size else None

        return {
            "run": self.run, "n_images": int(self.swing.size), "duration_ms": self.duration, "dt_ms": self.dt,
            "window_ms": self.window, "tol": self.tol,
            "settled": frac(s),
            "agreement_with_steady_state": frac(agree),
            "agreement_settled": frac(agree, s),
            "agreement_unsettled": frac(agree, ~s),
            "error_dynamics": frac(self.class_dynamics != self.labels),
            "error_steady_state": frac(self.class_steady != self.labels),
            "error_dynamics_unsettled": frac(self.class_dynamics != self.labels, ~s),
            "error_steady_state_unsettled": frac(self.class_steady != self.labels, ~s),
            "swing_median": float(np.median(self.swing)), "swing_max": float(np.max(self.swing)),
            "distance_median": float(np.median(self.distance)), "distance_max": float(np.max(self.distance)),
            "unsettled_images": [int(i) for i in np.flatnonzero(~s)],
        }


def settle_check(
    run: str | Path,
    *,
    duration: float = 100.0,
    dt: float | None = None,
    n_images: int | None = None,
    window: float = 10.0,
    tol: float = 0.01,
    batch: int = 500,
    data: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> SettleReport:
    """Run the trained MNIST network of the run folder ``run`` as a circuit on its test images (the first
    ``n_images``, default all): ``duration`` ms from rest per image at step ``dt`` (default the run's
    ``simulation.dt``), its other simulation settings, σ = 0, no target, ``batch`` images at a time.
    ``progress`` receives the number of images done after each batch. Raises :class:`RunDirError` for a
    folder that is not a finished MNIST run, :class:`InputError` for durations that are not whole steps."""
    path, cfg = mnist_run(run, data=data)
    best = path / "weights_best.npz"
    if not 0 < window < duration:
        raise InputError(f"the window ({window:g} ms) must be positive and shorter than the duration ({duration:g} ms)")
    if batch < 1 or (n_images is not None and n_images < 1):
        raise InputError(f"batch ({batch}) and the number of images ({n_images}) must be >= 1")
    ctx, _ = precision(cfg.simulation)
    with ctx:
        return _check(cfg, best, str(path), duration, dt, n_images, window, tol, batch, progress)


def _check(cfg: Config, best: Path, run: str, duration: float, dt: float | None, n_images: int | None,
           window: float, tol: float, batch: int, progress: Callable[[int], None] | None) -> SettleReport:
    from ..experiments import mnist as mx
    from ..experiments.common import build

    model, w0, _ = build(cfg)
    sim = dataclasses.replace(model.simulation, sigma=0.0, dt=model.simulation.dt if dt is None else dt)
    model = dataclasses.replace(model, simulation=sim)  # re-checks dt against the stability bounds
    whole_steps(duration, sim.dt, "duration")
    whole_steps(window, sim.dt, "window")
    w = best_weights(best, w0)
    x, y = mx.load_split(cfg)["test"]
    x, y = x[:n_images], np.asarray(y[:n_images])
    ends, swings, steady = [], [], []
    for s in range(0, x.shape[0], batch):
        xb = x[s : s + batch]
        end, swing = settle_potentials(model, w, xb, duration, window)
        ends.append(end)
        swings.append(swing)
        steady.append(np.asarray(predict(model, w, jnp.asarray(xb, sim.dtype)), np.float64))
        if progress is not None:
            progress(min(s + batch, x.shape[0]))
    end, swing, u_ss = np.concatenate(ends), np.concatenate(swings), np.concatenate(steady)
    worst = int(np.argmax(swing))
    trace, times = _trace(model, w, x[worst : worst + 1], duration)
    return SettleReport(run, duration, sim.dt, window, tol, swing, np.max(np.abs(end - u_ss), axis=-1),
                        np.argmax(end, -1), np.argmax(u_ss, -1), y, trace, times)


def _trace(model: Model, w: Weights, x: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """u_N of one image over the whole run, every ``RECORD_EVERY`` ms."""
    every = max(1, round(RECORD_EVERY / model.simulation.dt))
    s0 = init_state(model.network, 1, model.simulation.dtype, model.simulation.prospective)
    sol = simulate(model, w, s0, Stream.of(np.asarray(x, model.simulation.dtype)[None]), duration=duration,
                   plastic=False, record=Record(("u",), stride=every))
    return np.asarray(sol.records[f"u_{model.network.depth}"][:, 0], np.float64), np.asarray(sol.times)


def plot_settle(report: SettleReport) -> Figure:
    """Left: the distribution of the swing (log scale) with the tolerance; right: u_N over time for the image
    that swings most."""
    from ..plotting import figure

    fig = figure(figsize=(10, 3.6), layout="constrained")
    a, b = fig.subplots(1, 2)
    floor = 1e-9
    a.hist(np.log10(np.maximum(report.swing, floor)), bins=60, color="0.35")
    a.axvline(math.log10(report.tol), color="C3", label=f"tol {report.tol:g}")
    s = report.summary()
    a.set_xlabel(f"log10 swing of u_N in the last {report.window:g} ms")
    a.set_ylabel("images")
    agree = s["agreement_with_steady_state"]
    a.set_title(f"settled {100 * s['settled']:.2f} %, class = steady state's {100 * agree:.2f} %", fontsize=9)
    a.legend(fontsize=8)
    b.plot(report.trace_times, report.trace, lw=0.8)
    worst = int(np.argmax(report.swing))
    b.set_xlabel("time (ms)")
    b.set_ylabel("u_N")
    b.set_title(f"test image {worst} (label {report.labels[worst]}): swing {report.swing[worst]:.3g}", fontsize=9)
    title = f"{Path(report.run).name}: {report.duration:g} ms at dt = {report.dt:g} ms, no target, σ = 0"
    fig.suptitle(title, fontsize=9)
    return fig


def write_settle(report: SettleReport, out: str | Path) -> tuple[Path, Path]:
    """Write ``settle-dt{dt}.json`` (the summary) and ``settle-dt{dt}.png`` (:func:`plot_settle`) into ``out``."""
    out = output_folder(out)
    js, png = (out / f"settle-dt{report.dt:g}.{ext}" for ext in ("json", "png"))
    with atomic_write(js) as f:
        f.write(json.dumps(report.summary(), indent=1) + "\n")
    save_image(plot_settle(report), png, dpi=110)
    return js, png
