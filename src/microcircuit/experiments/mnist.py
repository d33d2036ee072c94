"""Fig. 3: MNIST (and any image classification data set) in the steady-state mode (docs/model.md §6, §7),
its baselines, and in continuous time.

784-500-500-10 with logistic φ and biases, one-hot targets r ∈ {0.1, 0.8} nudging towards
u_trgt = φ⁻¹(r), self-predicting initialisation, B and PI fixed, W and IP plastic, mini-batches of 10,
validation after every epoch, the best epoch kept, test error at the end. ``training.method`` picks how
the network learns (:mod:`microcircuit.methods`: the circuit at its steady state or in continuous time,
backprop, feedback alignment, direct feedback alignment); this module owns the data, the epochs,
validation, the per-layer diagnostics, checkpoints and the run folder.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..backprop import angle, backprop_updates
from ..checkpoint import checkpoint_path, load_latest, prune_checkpoints, save_checkpoint
from ..config import Config, ConfigError, Model
from ..data import load, paper_split, preprocess
from ..errors import DivergenceError, RunInterrupted
from ..methods import Carry, Method, dynamic_error_rate, get_method, steady_error_rate
from ..methods.circuit import apical_diagnostics
from ..network import Weights, self_predicting_distance
from ..nudging import check_targets
from ..rates import layer_gains
from ..runs import RunDir, StopRequest, graceful_stop
from ..settling import settle_fraction
from ..simulate import precision
from ..transfer import phi_inv
from .common import build

__all__ = [
    "check",
    "dynamic_error_rate",
    "error_rate",
    "layer_diagnostics",
    "load_best_weights",
    "load_split",
    "run",
    "runs_spiking",
    "stepped",
    "unused",
]


def runs_spiking(cfg: Config) -> bool:
    """Only the continuous-time method runs the spiking circuit (``spiking``, docs/model.md §13)."""
    return cfg.training.method == "dynamics"


def stepped(cfg: Config) -> tuple[str, ...]:
    """Durations that must be whole numbers of dt steps: only the continuous-time method steps."""
    if cfg.training.method != "dynamics":
        return ()
    return ("stimulus.duration", "training.eval_duration", "plasticity.learning_lag")


def unused(cfg: Config) -> tuple[str, ...]:
    """Settings this experiment does not read (for the method in ``training.method``)."""
    out = ("init_from", "n_seeds", "record", "stimulus.kind", "stimulus.n_patterns", "stimulus.batch",
           "stimulus.low", "stimulus.high", "stimulus.teacher_sizes", "schedule.segment", "schedule.n_test",
           "schedule.settle")
    return out + get_method(cfg.training.method).unused(cfg)


DIAGNOSTICS = ("angle", "norm_ratio", "apical_residue", "apical_error")  # per-layer lists, layer_diagnostics
_CHUNK = 500  # mini-batches per compiled call: the progress bar and the stop check advance per call


def error_rate(model: Model, w: Weights, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    """Fraction of misclassified images (arg max of the output potentials, no target, σ = 0)."""
    return steady_error_rate(model, w, x, y, batch)


def load_split(cfg: Config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train / validation / test arrays: images (n, 784) in [0, 1], labels (n,)."""
    tr = cfg.training
    mnist = load(tr.data)
    train, val, test = paper_split(mnist, n_validation=tr.n_validation)
    out = {}
    for name, split in (("train", train), ("validation", val), ("test", test)):
        x, _ = preprocess(split.x, split.y, r_low=tr.r_low, r_high=tr.r_high)
        y = np.asarray(split.y)
        if name == "train" and tr.n_train:
            x, y = x[: tr.n_train], y[: tr.n_train]
        out[name] = (x, y)
    return out


def load_best_weights(path: str | Path, like: Weights) -> Weights:
    """The ``weights_best.npz`` that :func:`run` writes (keys ``W_1``, ``b_1``, ...), shaped like ``like``."""
    with np.load(path) as z:  # closed at once: an open handle is a ResourceWarning when collected
        return Weights(*(tuple(jnp.asarray(z[f"{n}_{i + 1}"]) for i in range(len(arrays)))
                         for n, arrays in zip(Weights._fields, like, strict=True)))


def _train_chunk(method: Method, cfg: Config, model: Model, w: Weights, carry: Carry, x: jax.Array,
                 u_trgt: jax.Array, idx: jax.Array, lr: float, key: jax.Array, offset: int = 0
                 ) -> tuple[Weights, Carry]:
    """One compiled call of the method over the mini-batches ``idx``, the first the ``offset``-th of its epoch
    (the place where a run's work happens)."""
    return method.train(cfg, model, w, carry, x, u_trgt, idx, lr, key, offset)


_backprop = jax.jit(lambda model, w, x, t, loss: backprop_updates(model, w, x, t, loss)[0], static_argnums=(0, 4))


def layer_diagnostics(method: Method, cfg: Config, model: Model, w: Weights, carry: Carry, x: jax.Array,
                      u_trgt: jax.Array) -> dict[str, list[float]]:
    """Per layer, on the probe batch (x, u_trgt): the angle (degrees) between the change the method makes to
    W_k and backprop's gradient at the same weights (the circuit's own output error for the circuits), and
    the norm ratio ‖ΔW_k‖ / (lr·‖∇_k‖/a_k) with lr = ``training.lr`` and a_k the attenuation of the one-rate
    rule (:mod:`microcircuit.rates`; without ``training.lr``: the method's own rate factor, a_k = 1); for a
    circuit also the apical residue without a target and the apical error with it, per hidden layer
    (:func:`microcircuit.methods.circuit.apical_diagnostics`). Empty where the method has no such update."""
    out: dict[str, list[float]] = {}
    upd = method.update(cfg, model, w, carry, x, u_trgt)
    if upd is not None:
        grad = _backprop(model, w, x, u_trgt, "circuit" if method.circuit else cfg.training.loss)
        if cfg.training.lr > 0:
            lr, gains = cfg.training.lr, layer_gains(model.conductances, model.network.depth)
        else:
            lr, gains = method.base_lr(cfg), (1.0,) * model.network.depth
        out["angle"] = [round(float(angle(a, g)), 3) for a, g in zip(upd, grad, strict=True)]
        out["norm_ratio"] = [float(f"{float(jnp.linalg.norm(a) / (lr * k * jnp.linalg.norm(g))):.4g}")
                             for a, g, k in zip(upd, grad, gains, strict=True)]
    if method.circuit:
        residue, signal = apical_diagnostics(model, w, x, u_trgt, cfg.training.n_passes)
        out["apical_residue"] = [float(f"{v:.4g}") for v in np.asarray(residue)]
        out["apical_error"] = [float(f"{v:.4g}") for v in np.asarray(signal)]
    return out


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train, validate after every epoch, keep the best weights, test them (float64 runs with x64 on)."""
    ctx, _ = precision(cfg.simulation)
    with ctx:
        return _run(cfg, run_dir, progress=progress, echo=echo)


def _n_batches(cfg: Config, n_train: int) -> int:
    """Mini-batches per epoch; a ConfigError when not even one fits (nothing would be learned)."""
    tr = cfg.training
    nb = n_train // tr.batch
    if nb < 1:
        subset = f" (training.n_train = {tr.n_train})" if tr.n_train else ""
        raise ConfigError(f"training.batch = {tr.batch} exceeds the {n_train} training images{subset}: no "
                          "mini-batch fits, so no weight would move; lower training.batch")
    return nb


def check(cfg: Config) -> list[str]:
    """Checks before a run folder is written: the targets fit the conductance form's reversal potentials
    (continuous-time method), the data loads, its images fit the input layer, its classes the output layer,
    and at least one mini-batch fits. Returns no warnings (raises on a problem)."""
    if cfg.training.method == "dynamics":  # the targets φ⁻¹(r_low), φ⁻¹(r_high) in the conductance form (§2)
        t = cfg.network.transfer
        low, high = (float(phi_inv(t, np.float64(r))) for r in (cfg.training.r_low, cfg.training.r_high))
        check_targets(cfg.simulation, low, high, "training.r_low, training.r_high")
    data = load_split(cfg)
    n_in, n_out = cfg.network.sizes[0], cfg.network.sizes[-1]
    x = data["train"][0]
    if x.shape[1] != n_in:
        raise ConfigError(f"network.sizes: the input layer has {n_in} neurons, but the images of training.data = "
                          f"{cfg.training.data!r} have {x.shape[1]} pixels")
    n_classes = 1 + max(int(np.max(labels)) for _, labels in data.values() if labels.size)
    if n_out != n_classes:
        raise ConfigError(f"network.sizes: the output layer has {n_out} neurons, but training.data = "
                          f"{cfg.training.data!r} has {n_classes} classes (one output neuron per class)")
    _n_batches(cfg, x.shape[0])
    return []


# Learning that goes wrong without NaN: warnings logged per epoch (docs/runs.md, "Warnings").
CHANCE_MARGIN = 0.95  # validation error >= this × (1 − 1/classes): no better than guessing
GROWTH_LIMIT = 100.0  # a matrix whose norm grew by more than this factor since the start
IP_LOST = 0.25  # relative distance of IP from self-prediction that counts as lost (or 5× the start)


def _learning_warnings(row: dict[str, Any], w: Weights, start: dict[str, Any], n_classes: int) -> dict[str, str]:
    """Warnings for one epoch's row, keyed so that each is reported once: chance-level validation error,
    weights grown by orders of magnitude, interneurons that lost self-prediction (§4)."""
    out = {}
    chance = 1 - 1 / n_classes
    if row["validation_error"] >= CHANCE_MARGIN * chance:
        out["chance"] = (f"validation error {100 * row['validation_error']:.1f} % after epoch {row['epoch']} is at "
                         f"chance level ({100 * chance:.0f} %): the network is not learning (learning rates, "
                         "training.lr_backprop, initial scales)")
    grown = []
    for name in ("W", "b", "IP", "c"):
        for i, a in enumerate(getattr(w, name)):
            n0, n1 = start["norms"][name][i], float(np.linalg.norm(np.asarray(a)))
            if n0 > 0 and n1 > GROWTH_LIMIT * n0:
                grown.append(f"{name}_{i + 1} {n1 / n0:,.0f}× ({n0:.3g} -> {n1:.3g})")
            elif n0 == 0 and n1 > 1e3:
                grown.append(f"{name}_{i + 1} (0 -> {n1:.3g})")
    if grown:
        out["growth"] = (f"weights grew by orders of magnitude by epoch {row['epoch']} (norms): {', '.join(grown)}; "
                         "the learning rate is probably too large")
    lost = []
    for i, d in enumerate(row.get("ip_distance", [])):
        d0 = start["ip_distance"][i]
        if d > max(IP_LOST, 5 * d0):
            lost.append(f"IP_{i + 1} at relative distance {d:.3g} (start {d0:.3g})")
    if lost:
        out["ip"] = (f"the interneurons lost self-prediction by epoch {row['epoch']} (docs/model.md §4): "
                     f"{', '.join(lost)}")
    return out


def _run(cfg: Config, run_dir: RunDir | None, *, progress: bool,
         echo: Callable[[str], None] | None) -> dict[str, Any]:
    tr = cfg.training
    model, w, _ = build(cfg)
    data = load_split(cfg)
    x_train, y_train = data["train"]
    n_out = cfg.network.sizes[-1]
    rates = np.where(np.eye(n_out, dtype=bool)[y_train], tr.r_high, tr.r_low).astype(np.float32)
    u_trgt = jnp.asarray(phi_inv(model.network.transfer, rates), model.simulation.dtype)
    x_dev = jnp.asarray(x_train, model.simulation.dtype)
    nb = _n_batches(cfg, x_train.shape[0])
    chunk = max(1, min(nb, _CHUNK))
    method = get_method(tr.method)
    w, carry = method.init(cfg, model, w)
    say = echo or (lambda text: None)
    start = {"norms": {n: [float(np.linalg.norm(np.asarray(a))) for a in getattr(w, n)] for n in ("W", "b", "IP", "c")},
             "ip_distance": self_predicting_distance(w, model.conductances)["IP"]}
    warned: dict[str, str] = {}
    best: tuple[float, int, Weights] | None = None
    rows: list[dict[str, Any]] = []
    first_epoch = 1
    if run_dir is not None and run_dir.resume:  # continue from the newest valid epoch checkpoint
        like = {"weights": w, "best": w} | carry
        ck = load_latest(run_dir.checkpoint_dir, cfg, like=like,
                         on_skip=lambda p, why: say(f"warning: skipping checkpoint {p.name}: {why}"))
        if ck is not None:
            w, rows = ck.trees["weights"], list(ck.meta["rows"])
            carry = {k: ck.trees[k] for k in carry}
            first_epoch = int(ck.counters["epoch"]) + 1
            best = (float(ck.counters["best_validation"]), int(ck.counters["best_epoch"]), ck.trees["best"])
            warned = dict(ck.meta.get("warnings", {}))
            if isinstance(ck.meta.get("start"), dict):
                start = ck.meta["start"]
            if first_epoch - 1 > tr.epochs:
                raise ConfigError(f"training.epochs = {tr.epochs}, but {ck.path} holds {first_epoch - 1} epochs: "
                                  f"a resumed run can stop at {first_epoch - 1} epochs at the earliest")
            say(f"resuming after epoch {first_epoch - 1} from {ck.path}")
        else:
            say("no checkpoint yet: starting the training from the beginning")
        run_dir.truncate_metrics(lambda r: "event" in r or r.get("epoch", first_epoch) < first_epoch)
        run_dir.log(event="resumed", epoch=first_epoch - 1, checkpoint=None if ck is None else str(ck.path))

    def checkpoint(epoch: int) -> Path | None:
        if run_dir is None or best is None:
            return None
        trees = {"weights": w, "best": best[2]} | carry
        path = save_checkpoint(
            checkpoint_path(run_dir.checkpoint_dir, epoch), cfg, trees,
            counters={"epoch": epoch, "best_epoch": best[1], "best_validation": best[0]},
            meta={"rows": rows, "warnings": warned, "start": start},
        )
        prune_checkpoints(run_dir.checkpoint_dir, keep=cfg.schedule.keep_checkpoints)
        return path

    def saved(path: Path | None, epoch: int) -> str:
        if path is None:
            return ("no epoch has finished, so there is no checkpoint yet (--resume starts the training from the "
                    "beginning)")
        return f"checkpoint of epoch {epoch}: {path}"

    def diverged_weights(w: Weights) -> tuple[str, int] | None:
        for name, arrays in zip(Weights._fields, w, strict=True):
            for i, a in enumerate(arrays):
                if not bool(jnp.all(jnp.isfinite(a))):
                    return name, i + 1
        return None

    if tr.lr > 0:
        advice = "lower training.lr"
    elif method.circuit:
        advice = "lower the learning rates (plasticity.eta_W, plasticity.eta_IP)"
    else:
        advice = "lower training.lr_backprop"
    if tr.method == "dynamics":
        advice = DivergenceError.ADVICE + "; or " + advice
    n_check = method.n_check  # training images whose error is logged per epoch
    n_classes = n_out
    probe = (x_dev[: tr.probe], u_trgt[: tr.probe]) if tr.probe else None

    def errors(w: Weights, x: np.ndarray, y: np.ndarray) -> float:
        return method.error_rate(cfg, model, w, x, y)

    t_start = time.perf_counter()
    guard = graceful_stop() if run_dir is not None else contextlib.nullcontext(StopRequest())
    with guard as stop:
        for epoch in range(first_epoch, tr.epochs + 1):
            w_start, carry_start = w, carry
            t0 = time.perf_counter()
            perm = np.random.default_rng([cfg.seed, 3, epoch]).permutation(x_train.shape[0])[: nb * tr.batch]
            idx = jnp.asarray(perm.reshape(nb, tr.batch).astype(np.int32))
            lr = method.base_lr(cfg) * tr.lr_decay ** (epoch - 1)
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=nb, unit="batch", desc=f"epoch {epoch}/{tr.epochs}", leave=False)
            try:
                for s in range(0, nb, chunk):
                    if stop:  # drop the partial epoch: it is recomputed identically on resume
                        w, carry = w_start, carry_start
                        path = checkpoint(epoch - 1)
                        assert run_dir is not None and stop.signum is not None
                        run_dir.log(event="interrupted", signal=stop.name, epoch=epoch - 1,
                                    checkpoint=None if path is None else str(path))
                        raise RunInterrupted(
                            stop.signum, f"interrupted by {stop.name} during epoch {epoch} (its partial work is "
                            f"dropped); {saved(path, epoch - 1)}; continue with: microcircuit run --resume "
                            f"{run_dir.path}", path)
                    key = jax.random.fold_in(jax.random.key(cfg.seed), epoch * 1_000_003)  # drawn by position
                    try:
                        w, carry = _train_chunk(method, cfg, model, w, carry, x_dev, u_trgt, idx[s : s + chunk], lr,
                                                key, s)
                    except DivergenceError as e:  # the continuous-time dynamics ran away
                        w, carry = w_start, carry_start
                        e.note = f"epoch {epoch}, {s * tr.batch} images in; time counted from image {s * tr.batch}"
                        e.checkpoint = checkpoint(epoch - 1)
                        raise
                    jax.block_until_ready(w)  # the bar and the stop check follow the computation, chunk by chunk
                    bad = diverged_weights(w)
                    if bad is not None:
                        w, carry = w_start, carry_start
                        e = DivergenceError(bad[0], bad[1], None, "became NaN/Inf", advice=advice)
                        e.note = f"epoch {epoch}, {(s + chunk) * tr.batch} images in at most"
                        e.checkpoint = checkpoint(epoch - 1)
                        raise e
                    if bar is not None:
                        bar.update(min(chunk, nb - s))
            finally:
                if bar is not None:
                    bar.close()
            epoch_s = time.perf_counter() - t0
            val = errors(w, *data["validation"])
            train_err = errors(w, x_train[:n_check], y_train[:n_check])
            row = {"epoch": epoch, "validation_error": val, f"train_error_{n_check // 1000}k": train_err,
                   "epoch_s": round(epoch_s, 2), "lr_scale": lr}
            if probe is not None:  # each layer's update against backprop's, the apical residue
                row |= layer_diagnostics(method, cfg, model, w, carry, *probe)
            if method.circuit:  # how well the interneurons follow the weights above them (§4)
                dist = self_predicting_distance(w, model.conductances)
                row |= {"ip_distance": [round(d, 5) for d in dist["IP"]],
                        "pi_distance": [round(d, 5) for d in dist["PI"]]}
            rows.append(row)
            if run_dir is not None:
                run_dir.log(**row)
            say(f"epoch {epoch:3d}  validation error {100 * val:6.2f} %  train error {100 * train_err:6.2f} %  "
                f"({epoch_s:.1f} s)")
            for kind, message in _learning_warnings(row, w, start, n_classes).items():
                if kind not in warned:
                    warned[kind] = message
                    if run_dir is not None:  # logged first: the command line logs a warning it prints only once
                        run_dir.log(event="warning", kind=kind, epoch=epoch, message=message)
                    say(f"warning: {message}")
            if best is None or val < best[0]:
                best = (val, epoch, jax.device_get(w))
            every = cfg.schedule.checkpoint_every
            if every and (epoch % every == 0 or epoch == tr.epochs):
                checkpoint(epoch)
    assert best is not None
    val_best, epoch_best, w_best = best
    test = errors(w_best, *data["test"])
    best_row = next(r for r in rows if r["epoch"] == epoch_best)
    summary = {
        "method": tr.method,
        "feedback": tr.feedback if method.circuit else None,
        "epochs": tr.epochs,
        "best_epoch": epoch_best,
        "validation_error": val_best,
        "test_error": test,
        "train_error": best_row[f"train_error_{n_check // 1000}k"],
        "train_size": int(x_train.shape[0]),
        "seconds_per_epoch": float(np.median([r["epoch_s"] for r in rows])),
        "validation_curve": [r["validation_error"] for r in rows],
        "wall_s": round(time.perf_counter() - t_start, 1),
        "warnings": list(warned.values()),
        **{f"{k}_best": best_row[k] for k in DIAGNOSTICS if k in best_row},
        "headline": [
            f"{cfg.name}: test error {100 * test:.2f} % (best validation {100 * val_best:.2f} % at epoch "
            f"{epoch_best}/{tr.epochs}); {np.median([r['epoch_s'] for r in rows]):.1f} s per epoch"
        ],
    }
    if tr.settle_images and method.circuit:  # run the trained circuit as a circuit (docs/results.md)
        x_test = data["test"][0][: tr.settle_images]
        summary["settle_fraction"], summary["settle_swing_max"] = settle_fraction(model, w_best, x_test)
        summary["headline"].append(f"settles on {100 * summary['settle_fraction']:.2f} % of {x_test.shape[0]} test "
                                   "images run as a circuit (100 ms, no target)")
    if run_dir is not None:
        named = zip(Weights._fields, w_best, strict=True)
        run_dir.save_arrays("weights_best.npz", {f"{n}_{i + 1}": a for n, arrs in named for i, a in enumerate(arrs)})
        run_dir.save_arrays(RunDir.TRACES, {k: np.array([r[k] for r in rows]) for k in rows[0]})
        _figure(run_dir, rows, cfg.name, test, epoch_best)
    return summary


def _figure(run_dir: RunDir, rows: list[dict[str, Any]], name: str, test: float, best_epoch: int) -> None:
    """learning_curve.png: validation and training error (%) per epoch, linear axes (the paper's Fig. 3B)."""
    from ..analysis.curves import LearningCurve, plot_learning_curves

    key = next(k for k in rows[0] if k.startswith("train_error_"))
    curve = LearningCurve(name, run_dir.path, [r["epoch"] for r in rows], [r["validation_error"] for r in rows],
                          [r[key] for r in rows], f"first {key.rsplit('_', 1)[1]}", test, best_epoch)
    fig = plot_learning_curves([curve], title=name)
    run_dir.save_figure(fig, "learning_curve.png")
