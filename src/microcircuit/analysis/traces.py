"""The recorded arrays of a run (its ``traces.npz``) or of a :func:`~microcircuit.simulate.simulate` result:
what each one is, and plots of any of them against the time (or other axis) it was recorded along.

:func:`load_traces` reads either source into a :class:`Traces` (the arrays and the experiment that wrote
them), :func:`describe` lists every array with its shape, dtype, axes and meaning, and :func:`plot` draws
the named ones, one panel each. The meanings and axes come from the names the package writes: the recorded
quantities of ``record.quantities`` (``u_2``, ``v_apical_1``, ``apical_error_1``, ... with docs/model.md's
1-based layer numbers) and the arrays each experiment adds (``train_``/``eval_`` series of Fig. S1, the
learner curves of Fig. 2, the per-epoch rows of MNIST, ...); see docs/usage.md for the table per experiment.
"""

from __future__ import annotations

import fnmatch
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..config import ConfigError, read_toml
from ..runs import RunDir, RunDirError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..simulate import Solution

__all__ = ["TraceInfo", "Traces", "describe", "load_traces", "meaning", "plot", "select"]

# Experiments whose runs write no traces.npz: their results are in metrics.jsonl, summary.json and figures.
NO_TRACES = ("le_bars", "pal_alignment", "pal_teacher")

# The arrays that serve as the horizontal axis of others, with their axis labels.
AXES = {
    "time_ms": "time (ms)",
    "train_time_ms": "time (ms)",
    "eval_time_ms": "time (ms)",
    "trials": "trials",
    "epoch": "epoch",
    "g_som": "g_som",
}

# (regular expression over the name without a train_/eval_ prefix, meaning); {k} is the layer number.
_MEANINGS: tuple[tuple[str, str], ...] = (
    # the axes
    (r"time_ms", "time of each snapshot (ms of simulated time)"),
    (r"trials", "patterns seen at each evaluation point"),
    (r"seeds", "the seed of each ensemble member (the last axis of the learner curves)"),
    (r"epoch", "epoch number of each row"),
    (r"g_som", "the somatic nudging conductances g_som swept"),
    (r"patterns", "patterns seen at each evaluation point"),
    # the recorded quantities (record.quantities, microcircuit.simulate)
    (r"u_(?P<k>\d+)", "somatic potentials u_{k} of layer {k}"),
    (r"u_inter_(?P<k>\d+)", "interneuron potentials u^I_{k} of layer {k}"),
    (r"v_basal_(?P<k>\d+)", "basal potentials v_B,{k} of layer {k}"),
    (r"v_apical_(?P<k>\d+)", "apical potentials v_A,{k} of layer {k}"),
    (r"r_(?P<k>\d+)", "rates r_{k} = φ(u_{k}) of layer {k}"),
    (r"u_trgt", "low-passed target potential u_trgt"),
    (r"u_pro_(?P<k>\d+)", "prospective somatic potentials ŭ_{k} of layer {k}"),
    (r"u_inter_pro_(?P<k>\d+)", "prospective interneuron potentials ŭ^I_{k} of layer {k}"),
    (r"xi_(?P<k>\d+)", "PAL's apical Ornstein–Uhlenbeck noise ξ_{k} of layer {k}"),
    (r"spikes_pyr_(?P<k>\d+)", "spike counts of the last step per unit, pyramids of layer {k} (docs/model.md §13)"),
    (r"spikes_inter_(?P<k>\d+)", "spike counts of the last step per unit, interneurons of layer {k} (§13)"),
    (r"syn_(?P<p>input|teacher_exc|teacher_inh)", "synaptic trace sent by the {p} population, in rate units (§13)"),
    (r"syn_(?P<p>pyr|inter|nudge_exc|nudge_inh)_(?P<k>\d+)",
     "synaptic trace sent by the {p} population of layer {k}, in rate units (docs/model.md §13)"),
    (r"angle_WT_B_(?P<k>\d+)", "angle ∠(W_{k1}ᵀ, B_{k}) in degrees"),
    (r"angle_B_J_(?P<k>\d+)", "angle ∠(B_{k}, J_{k}) in degrees (J_{k} = φ'_{k} W_{k1}ᵀ φ'_{k1}, docs/model.md §12)"),
    (r"norm_(?P<m>W|B|PI|IP)_(?P<k>\d+)", "Frobenius norm ‖{m}_{k}‖"),
    (r"apical_error_(?P<k>\d+)", "apical mismatch ‖v_A,{k}‖², mean over the batch"),
    (r"inter_error_(?P<k>\d+)", "interneuron mismatch ‖u_{k1} − u^I_{k}‖², mean over the batch"),
    # Fig. S1 (self_prediction)
    (r"PI_distance_(?P<k>\d+)", "relative distance ‖PI_{k} − PI*_{k}‖/‖PI*_{k}‖ from the self-predicting value"),
    (r"IP_distance_(?P<k>\d+)", "relative distance ‖IP_{k} − IP*_{k}‖/‖IP*_{k}‖ from the self-predicting value"),
    (r"PI_target_(?P<k>\d+)", "self-predicting value PI*_{k} of the interneuron → apical weights (at the end)"),
    (r"IP_target_(?P<k>\d+)", "self-predicting value IP*_{k} of the pyramid → interneuron weights (at the end)"),
    (r"PI_(?P<k>\d+)", "interneuron → apical weights PI_{k} at the end"),
    (r"IP_(?P<k>\d+)", "pyramid → interneuron weights IP_{k} at the end"),
    (r"u_(?P<k>\d+)_(?P<w>start|end)", "somatic potentials u_{k} at the σ = 0 steady state on the held-out inputs, "
                                       "at the {w} of training"),
    (r"u_inter_(?P<k>\d+)_(?P<w>start|end)", "interneuron potentials u^I_{k} at the σ = 0 steady state on the "
                                             "held-out inputs, at the {w} of training"),
    # Fig. 1 (target_propagation)
    (r"t_on_ms", "time the target comes on (ms)"),
    (r"target", "the target u_trgt presented to the output layer"),
    (r"top_down_(?P<k>\d+)", "top-down part B_{k} r_{k1} of the apical potential of layer {k}"),
    (r"lateral_(?P<k>\d+)", "interneuron part PI_{k} r^I_{k} of the apical potential of layer {k}"),
    (r"u_out", "output potentials u_N"),
    (r"apical_error", "apical error Σ_k ‖v_A,k‖² over the hidden layers"),
    (r"output_error", "output error ‖u_trgt − u_N‖²"),
    # Fig. 2 (regression)
    (r"bp_learning_rates", "learning rates of the backprop and feedback-alignment baselines, per layer"),
    (r"(?P<l>microcircuit|shallow)_W_(?P<k>\d+)", "the {l} learner's final bottom-up weights W_{k}, per seed"),
    (r"(?P<l>microcircuit|shallow)_B_(?P<k>\d+)", "the {l} learner's final top-down weights B_{k}, per seed"),
    (r"(?P<l>microcircuit|shallow|backprop|feedback_alignment)_test_error",
     "the {l} learner's test error: mean over test inputs and output neurons of (r_N − r_trgt)², per seed"),
    (r"(?P<l>microcircuit|shallow)_apical_error_(?P<k>\d+)",
     "the {l} learner's apical mismatch ‖v_A,{k}‖² on the test inputs (σ = 0 steady state), per seed"),
    (r"(?P<l>microcircuit|shallow)_top_down_(?P<k>\d+)",
     "the {l} learner's top-down input ‖B_{k} r_{k1}‖² on the test inputs, per seed"),
    (r"(?P<l>microcircuit|shallow)_apical_relative_(?P<k>\d+)",
     "the {l} learner's ‖v_A,{k}‖² / ‖B_{k} r_{k1}‖² on the test inputs, per seed"),
    (r"(?P<l>microcircuit|shallow)_inter_error_(?P<k>\d+)",
     "the {l} learner's interneuron mismatch ‖u_{k1} − u^I_{k}‖² on the test inputs, per seed"),
    (r"(?P<l>microcircuit|shallow)_(?P<m>PI|IP)_distance_(?P<k>\d+)",
     "the {l} learner's relative distance of {m}_{k} from its self-predicting value, per seed"),
    (r"(?P<l>microcircuit|shallow|feedback_alignment)_angle_(?P<k>\d+)",
     "the {l} learner's angle ∠(W_{k1}, B_{k}ᵀ) in degrees, per seed"),
    (r"(?P<l>microcircuit|shallow|backprop|feedback_alignment)_(?P<q>\w+)",
     "the {l} learner's {q}, per seed"),
    # backprop_link
    (r"depth(?P<n>\d+)_(?P<f>\w+?)_angle", "angle (degrees) between rule (7)'s update and backprop's, per g_som, "
                                           "sample and weight matrix (depth {n}, {f})"),
    (r"depth(?P<n>\d+)_(?P<f>\w+?)_bp_size", "size of backprop's update, per g_som, sample and matrix "
                                             "(depth {n}, {f})"),
    (r"depth(?P<n>\d+)_(?P<f>\w+?)_size", "size of rule (7)'s update, per g_som, sample and matrix (depth {n}, {f})"),
    (r"depth(?P<n>\d+)_(?P<f>\w+?)_residual", "largest |du/dt| at the fixed point, per g_som (depth {n}, {f})"),
    (r"depth(?P<n>\d+)_(?P<f>\w+?)_predicted_scale", "predicted update scale λ_N·λ_A^(N−k), per g_som and matrix "
                                                     "(depth {n}, {f})"),
    (r"depth(?P<n>\d+)_(?P<f>\w+?)_scale_ratio", "update size / (backprop's × predicted scale), per g_som, sample "
                                                 "and matrix (depth {n}, {f})"),
)
# MNIST: one row per epoch (metrics.jsonl's rows as arrays); read before the table above for its runs
_MNIST: tuple[tuple[str, str], ...] = (
    (r"validation_error", "validation error (fraction) after each epoch"),
    (r"train_error_(?P<n>\d+)k", "training error (fraction) on the first {n}k training images after each epoch"),
    (r"epoch_s", "wall-clock seconds of each epoch"),
    (r"lr_scale", "learning-rate factor of each epoch"),
    (r"angle", "angle (degrees) of each layer's update to backprop's, after each epoch"),
    (r"norm_ratio", "size of each layer's update relative to backprop's, after each epoch"),
    (r"apical_residue", "apical residue of each hidden layer, after each epoch"),
    (r"apical_error", "apical mismatch of each hidden layer, after each epoch"),
    (r"ip_distance", "relative distance of each IP from its self-predicting value, after each epoch"),
    (r"pi_distance", "relative distance of each PI from its self-predicting value, after each epoch"),
)
_PREFIXES = {"train_": "during training (every record.stride steps): ",
             "eval_": "at each evaluation (σ = 0 steady state on the held-out inputs): "}


class TraceInfo(NamedTuple):
    """One array: its ``name``, ``shape``, ``dtype``, the name of each axis (``dims``, e.g. ``("time",
    "neuron")``), ``axis`` (the array whose values its first axis runs along, e.g. ``"time_ms"``; None when
    it is not a series) and its ``meaning``."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    dims: tuple[str, ...]
    axis: str | None
    meaning: str


class Traces(NamedTuple):
    """Recorded arrays by name, the experiment that wrote them (None for a ``simulate`` result or an
    unknown writer) and where they came from (``source``: the file, or ``"simulate"``)."""

    arrays: dict[str, np.ndarray]
    experiment: str | None
    source: str


def _experiment(folder: Path) -> str | None:
    cfg = folder / RunDir.CONFIG
    if not cfg.is_file():
        return None
    try:
        value = read_toml(cfg).get("experiment")
    except ConfigError as e:
        raise RunDirError(f"{folder}: {e}") from None
    return value if isinstance(value, str) else None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # closed also when np.load fails
            return {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise RunDirError(f"{path} cannot be read as a .npz of arrays (truncated or damaged?): "
                          f"{type(e).__name__}: {e}") from None


def load_traces(source: str | Path | Solution | Mapping[str, Any]) -> Traces:
    """The arrays of ``source``: a run folder (its ``traces.npz``; ``config.toml`` says which experiment
    wrote it), a ``.npz`` file, a :class:`~microcircuit.simulate.Solution` (its ``records`` and, as
    ``time_ms``, its ``times``) or a mapping of arrays. Raises :class:`RunDirError` for a folder that is not
    a run, a run that writes or has written no traces.npz, or a damaged file."""
    if isinstance(source, Mapping):
        return Traces({str(k): np.asarray(v) for k, v in source.items()}, None, "arrays")
    if hasattr(source, "records") and hasattr(source, "times"):
        arrays = {k: np.asarray(v) for k, v in source.records.items()}
        if not arrays:
            raise RunDirError("the simulate result recorded nothing (pass record=Record((...), stride=...))")
        return Traces({"time_ms": np.asarray(source.times), **arrays}, None, "simulate")
    path = Path(source)  # type: ignore[arg-type]
    if path.is_file():
        return Traces(_read_npz(path), _experiment(path.parent), str(path))
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run folder or .npz file")
    experiment = _experiment(path)
    npz = path / RunDir.TRACES
    if not (path / RunDir.CONFIG).is_file() and not npz.is_file():
        raise RunDirError(f"{path}: not a run folder (no {RunDir.CONFIG} and no {RunDir.TRACES})")
    if not npz.is_file():
        if experiment in NO_TRACES:
            raise RunDirError(f"{path}: a {experiment!r} run writes no {RunDir.TRACES}; its results are in "
                              f"{RunDir.METRICS}, {RunDir.SUMMARY} and its figures")
        finished = (path / RunDir.SUMMARY).is_file()
        raise RunDirError(f"{path}: no {RunDir.TRACES}" + ("" if finished else
                          f" yet (a run writes it at its end; this one has no {RunDir.SUMMARY}, so it has not "
                          "finished)"))
    return Traces(_read_npz(npz), experiment, str(npz))


def meaning(name: str, experiment: str | None = None) -> str:
    """What the array ``name`` written by ``experiment`` (a ``Config.experiment``; None: any) holds, from
    the naming scheme of the package ("" when unknown)."""
    prefix = next((p for p in _PREFIXES if name.startswith(p)), "")
    if prefix and name[len(prefix):] == "time_ms":
        return "time of each " + ("snapshot (ms of simulated time)" if prefix == "train_" else
                                  "evaluation (ms of simulated time)")
    if re.fullmatch(r"train_error_\d+k", name):
        prefix = ""  # MNIST's training error
    base = name[len(prefix):]
    tables = {"mnist": _MNIST + _MEANINGS, None: _MEANINGS + _MNIST}.get(experiment, _MEANINGS)
    for pattern, text in tables:
        m = re.fullmatch(pattern, base)
        if m:
            g = m.groupdict()
            fields = {**g, "l": g.get("l", "").replace("_", " ")}
            if "k" in g:
                fields["k1"] = str(int(g["k"]) + 1)
            if "f" in g:
                fields["f"] = {"transpose": "B = Wᵀ", "random": "random B"}.get(g["f"], g["f"])
            if "q" in g:
                fields["q"] = g["q"].replace("_", " ")
            return _PREFIXES.get(prefix, "") + text.format(**fields)
    return ""


def _axis_of(name: str, a: np.ndarray, arrays: Mapping[str, np.ndarray]) -> str | None:
    """The array whose values ``name``'s first axis runs along, or None."""
    if name in AXES or a.ndim == 0 or re.fullmatch(r"((microcircuit|shallow)_)?(W|B|PI|IP)(_target)?_\d+|seeds|target|"
                                                   r"bp_learning_rates|u_(inter_)?\d+_(start|end)", name):
        return None
    candidates = [f"{p}time_ms" for p in _PREFIXES if name.startswith(p)] + list(AXES)
    for c in candidates:
        x = arrays.get(c)
        if x is not None and x.ndim == 1 and x.shape[0] == a.shape[0] and c != name:
            return c
    return None


def _dims(name: str, a: np.ndarray, axis: str | None, arrays: Mapping[str, np.ndarray], simulated: bool
          ) -> tuple[str, ...]:
    first = {"time_ms": "time", "train_time_ms": "time", "eval_time_ms": "time", "trials": "trial point",
             "epoch": "epoch", "g_som": "g_som"}.get(axis or "", "")
    if a.ndim == 0:
        return ()
    if name in AXES or name == "eval_time_ms":
        return ({"trials": "trial point", "epoch": "epoch", "g_som": "g_som"}.get(name, "time"),)
    if not first:
        if re.fullmatch(r"(microcircuit|shallow)_(W|B)_\d+", name):
            return ("seed", "post", "pre")[-a.ndim:]
        if re.fullmatch(r"(PI|IP)(_target)?_\d+", name) and a.ndim == 2:
            return ("post", "pre")
        if re.fullmatch(r"u_(inter_)?\d+_(start|end)", name) and a.ndim == 2:
            return ("input", "neuron")
        if name == "target" and a.ndim == 1:
            return ("neuron",)
        if name == "seeds" and a.ndim == 1:
            return ("seed",)
        if name == "bp_learning_rates" and a.ndim == 1:
            return ("layer",)
        return tuple("index" for _ in range(a.ndim)) if a.ndim > 1 else ("index",)
    seeds = arrays.get("seeds")
    if a.ndim == 2 and seeds is not None and seeds.ndim == 1 and a.shape[1] == seeds.shape[0] and axis == "trials":
        return (first, "seed")
    if axis == "g_som":
        return {1: (first,), 2: (first, "matrix"), 3: (first, "sample", "matrix")}.get(a.ndim,
                                                                                    (first, *["index"] * (a.ndim - 1)))
    if axis == "epoch" and a.ndim == 2:
        return (first, "layer")
    if simulated and a.ndim == 3:
        return (first, "sample", "neuron")
    if a.ndim == 2:
        return (first, "neuron")
    return (first, *["index"] * (a.ndim - 1))


def describe(source: str | Path | Solution | Mapping[str, Any] | Traces) -> list[TraceInfo]:
    """Every array of ``source`` (as for :func:`load_traces`, or a loaded :class:`Traces`), in the order
    it was written, with its shape, dtype, axes and meaning."""
    t = source if isinstance(source, Traces) else load_traces(source)
    simulated = t.source == "simulate"
    out = []
    for name, a in t.arrays.items():
        axis = _axis_of(name, a, t.arrays)
        recorded = simulated or name.startswith("train_")  # simulate's records: (time, sample, neuron)
        out.append(TraceInfo(name, tuple(a.shape), str(a.dtype), _dims(name, a, axis, t.arrays, recorded), axis,
                             meaning(name, t.experiment)))
    return out


def select(source: str | Path | Solution | Mapping[str, Any] | Traces, patterns: Sequence[str]) -> list[str]:
    """The names of ``source``'s arrays matched by ``patterns`` (exact names or shell-style patterns such as
    ``v_apical_*``), in the order given, each once. Raises :class:`RunDirError` naming a pattern that matches
    nothing (with the closest names)."""
    import difflib

    t = source if isinstance(source, Traces) else load_traces(source)
    names: list[str] = []
    for p in patterns:
        hits = [p] if p in t.arrays else fnmatch.filter(list(t.arrays), p)
        if not hits:
            close = difflib.get_close_matches(p, list(t.arrays), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise RunDirError(f"{t.source}: no array {p!r}{hint}; `microcircuit analyze traces RUN` lists them")
        names += [h for h in hits if h not in names]
    return names


def _pick(info: TraceInfo, a: np.ndarray, member: int | None, sample: int | None
          ) -> tuple[np.ndarray, str, tuple[str, ...]]:
    """``a`` with the chosen seed/sample taken, a note saying which, and the axes left."""
    note, dims = "", info.dims
    for dim, index, option in (("seed", member, "member"), ("sample", sample, "sample")):
        if index is None or dim not in dims:
            continue
        d = dims.index(dim)
        if not -a.shape[d] <= index < a.shape[d]:
            raise RunDirError(f"{info.name}: {option} {index} is out of range; it has {a.shape[d]} {dim}s")
        a, dims = np.take(a, index, axis=d), dims[:d] + dims[d + 1:]
        note += f", {dim} {index}"
    if a.ndim == 0:
        raise RunDirError(f"{info.name}{note} is a single number ({a.item()!r}), nothing to plot")
    return a, note, dims


def plot(source: str | Path | Solution | Mapping[str, Any] | Traces, names: Sequence[str], *,
         member: int | None = None, sample: int | None = None) -> Figure:
    """One panel per array named (or matched) by ``names``: a series against its axis (time, trials,
    epochs or g_som), one line per neuron, seed, sample or matrix; a matrix as an image; a vector that is not
    a series against its index. ``member`` picks one seed of arrays with a seed axis (ensemble runs);
    ``sample`` one batch element of a ``simulate`` result's (time, sample, neuron) records. Raises
    :class:`RunDirError` for unknown names, a scalar, or an index out of range."""
    from ..plotting import figure

    t = source if isinstance(source, Traces) else load_traces(source)
    chosen = select(t, names)
    infos = {i.name: i for i in describe(t)}
    for n in chosen:
        if t.arrays[n].ndim == 0:
            raise RunDirError(f"{n} is a single number ({t.arrays[n].item()!r}), nothing to plot")
        if t.arrays[n].size == 0:
            raise RunDirError(f"{n} is empty (shape {t.arrays[n].shape}), nothing to plot")
    fig = figure(figsize=(7.5, 2.4 * len(chosen) + 0.6), layout="constrained")
    axes = fig.subplots(len(chosen), 1, squeeze=False)[:, 0]
    for ax, n in zip(axes, chosen, strict=True):
        info = infos[n]
        a, note, dims = _pick(info, t.arrays[n], member, sample)
        title = n + note + (f": {info.meaning}" if info.meaning else "")
        if info.axis is not None:
            x = t.arrays[info.axis]
            y = a.reshape(a.shape[0], -1)
            lines = y.shape[1]
            ax.plot(x, y, lw=0.9 if lines > 1 else 1.2, alpha=1.0 if lines <= 10 else 0.6)
            ax.set_xlabel(AXES[info.axis])
            if lines > 1 and lines <= 10:
                label = dims[1] if len(dims) == 2 else "line"
                ax.legend([f"{label} {i}" for i in range(lines)], fontsize=7, ncol=min(lines, 5))
        elif a.ndim == 1:
            ax.plot(np.arange(a.shape[0]), a, "o-", ms=3, lw=1)
            ax.set_xlabel(dims[0] if dims else "index")
        else:
            m = a.reshape(a.shape[0], -1) if a.ndim > 2 else a
            im = ax.imshow(m, aspect="auto", interpolation="nearest", cmap="viridis")
            fig.colorbar(im, ax=ax)
            ax.set_ylabel(dims[0] if dims else "")
            ax.set_xlabel(dims[1] if len(dims) == 2 else " × ".join(dims[1:]))
        ax.set_title(_wrap(title), fontsize=8, loc="left")
        if info.axis is not None or a.ndim == 1:
            ax.grid(alpha=0.3)
    where = Path(t.source).parent.name if t.source not in ("simulate", "arrays") else t.source
    fig.suptitle(f"{where}" + (f" ({t.experiment})" if t.experiment else ""), fontsize=9)
    return fig


def _wrap(text: str, width: int = 110) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) if len(text) > width else text


def default_name(names: Sequence[str], member: int | None = None) -> str:
    """The file name ``traces_NAME.png`` for the arrays ``names`` (joined by ``+``; shortened past three),
    ``traces_NAME-member-I.png`` for the plot of ensemble member ``I`` alone."""
    shown = list(names[:3]) + ([f"{len(names) - 3}-more"] if len(names) > 3 else [])
    safe = re.sub(r"[^\w.+-]", "_", "+".join(shown))
    return f"traces_{safe}{'' if member is None else f'-member-{member}'}.png"


def format_table(infos: Sequence[TraceInfo]) -> list[str]:
    """``describe``'s rows as aligned text lines: name, shape, dtype, axes, meaning."""
    def shape(i: TraceInfo) -> str:
        return "×".join(map(str, i.shape)) if i.shape else "scalar"

    def dims(i: TraceInfo) -> str:
        return ", ".join(i.dims) if i.dims else "-"

    wn = max([len("NAME"), *(len(i.name) for i in infos)])
    ws = max([len("SHAPE"), *(len(shape(i)) for i in infos)])
    wd = max([len("DTYPE"), *(len(i.dtype) for i in infos)])
    wa = max([len("AXES"), *(len(dims(i)) for i in infos)])
    rows = [f"{'NAME':{wn}s}  {'SHAPE':{ws}s}  {'DTYPE':{wd}s}  {'AXES':{wa}s}  MEANING"]
    rows += [f"{i.name:{wn}s}  {shape(i):{ws}s}  {i.dtype:{wd}s}  {dims(i):{wa}s}  {i.meaning or '-'}".rstrip()
             for i in infos]
    return rows
