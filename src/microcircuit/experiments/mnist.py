"""Fig. 3: MNIST in the steady-state mode (docs/model.md §6, §7), its baselines, and in continuous time.

784-500-500-10 with logistic φ and biases, one-hot targets r ∈ {0.1, 0.8} nudging towards
u_trgt = φ⁻¹(r), self-predicting initialisation, B and PI fixed, W and IP plastic, mini-batches of 10,
validation after every epoch, the best epoch kept, test error at the end. ``training.method``:

* ``microcircuit``: rules (7)–(10) at the swept steady state of §6 (the paper's scheme);
* ``backprop``: the same feed-forward network (§5) trained by SGD;
* ``dynamics``: the full dynamics of §2–§3 (:func:`microcircuit.simulate.simulate`): each mini-batch is
  presented for ``stimulus.duration`` ms with its target on and plasticity always on, back to back,
  the potentials carried from one mini-batch to the next; errors are read from the dynamics too
  (``training.eval_duration`` ms from rest, no target, σ = 0).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..backprop import backprop_updates
from ..checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from ..config import Config, ConfigError, Model
from ..data import load, paper_split, preprocess
from ..dynamics import State, init_state
from ..errors import DivergenceError, RunInterrupted
from ..network import Weights, self_predicting_distance
from ..plasticity import zero_traces
from ..runs import RunDir, StopRequest, graceful_stop
from ..simulate import Stream, precision, simulate
from ..steady_state import predict, train_step
from ..transfer import phi_inv
from .common import build, deterministic

__all__ = ["dynamic_error_rate", "error_rate", "load_best_weights", "load_split", "run", "train_epoch"]

_CHUNK = 500  # mini-batches per compiled call: the progress bar and the stop check advance per call


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
    z = np.load(path)
    return Weights(*(tuple(jnp.asarray(z[f"{n}_{i + 1}"]) for i in range(len(arrays)))
                     for n, arrays in zip(Weights._fields, like, strict=True)))


@functools.partial(jax.jit, static_argnames=("model", "method", "duration", "n_passes"))
def train_epoch(
    model: Model,
    w: Weights,
    x: jax.Array,
    u_trgt: jax.Array,
    idx: jax.Array,
    lr_scale: jax.Array,
    *,
    method: str,
    duration: float,
    n_passes: int,
) -> Weights:
    """Mini-batches ``idx`` (n_batches, B) of (x, u_trgt), as one ``lax.scan``."""

    def body(w: Weights, i: jax.Array) -> tuple[Weights, None]:
        xb, tb = x[i], u_trgt[i]
        if method == "microcircuit":
            return train_step(model, w, xb, tb, lr_scale, duration=duration, n_passes=n_passes), None
        dW, db = backprop_updates(model, w, xb, tb)  # SGD along the backprop direction of §5
        W = tuple(a + lr_scale * g for a, g in zip(w.W, dW, strict=True))
        b = tuple(a + lr_scale * g for a, g in zip(w.b, db, strict=True)) if model.network.bias else w.b
        return w._replace(W=W, b=b), None

    w, _ = jax.lax.scan(body, w, idx)
    return w


@functools.partial(jax.jit, static_argnames=("model",))
def _predict_labels(model: Model, w: Weights, x: jax.Array) -> jax.Array:
    return jnp.argmax(predict(model, w, x), axis=-1)


def error_rate(model: Model, w: Weights, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    """Fraction of misclassified images (arg max of the output potentials, no target, σ = 0)."""
    wrong = 0
    for s in range(0, x.shape[0], batch):
        pred = np.asarray(_predict_labels(model, w, jnp.asarray(x[s : s + batch])))
        wrong += int(np.sum(pred != y[s : s + batch]))
    return wrong / x.shape[0]


def dynamic_error_rate(model: Model, w: Weights, x: np.ndarray, y: np.ndarray, duration: float,
                       batch: int = 1000) -> float:
    """Fraction misclassified by the dynamics: each image shown for ``duration`` ms from rest, no target,
    σ = 0, no plasticity; the label is the arg max of u_N at the end."""
    m0 = deterministic(model)
    wrong = 0
    for s in range(0, x.shape[0], batch):
        xb = np.asarray(x[s : s + batch], np.float32)
        sol = simulate(m0, w, init_state(model.network, xb.shape[0], model.simulation.dtype), Stream.of(xb[None]),
                       duration=duration, plastic=False)
        wrong += int(np.sum(np.argmax(np.asarray(sol.state.u[-1]), -1) != y[s : s + batch]))
    return wrong / x.shape[0]


def _dynamics_chunk(model: Model, cfg: Config, w: Weights, tr: Weights, state: State, x: jax.Array,
                    u_trgt: jax.Array, idx: jax.Array, lr: float, key: jax.Array) -> tuple[Weights, Weights, State]:
    """Mini-batches ``idx`` (n, B) presented back to back through the dynamics, target on, plastic."""
    stream = Stream(x[idx], u_trgt[idx], jnp.ones(idx.shape[0], bool))
    spp = round(cfg.stimulus.duration / model.simulation.dt)
    sol = simulate(model, w, state, stream, duration=cfg.stimulus.duration, key=key, traces=tr, lr_scale=lr,
                   chunk_steps=spp * idx.shape[0])
    return sol.weights, sol.traces, sol.state


def run(cfg: Config, run_dir: RunDir | None, *, progress: bool = False,
        echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train, validate after every epoch, keep the best weights, test them (float64 runs with x64 on)."""
    ctx, _ = precision(cfg.simulation)
    with ctx:
        return _run(cfg, run_dir, progress=progress, echo=echo)


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
    nb = x_train.shape[0] // tr.batch
    chunk = max(1, min(nb, _CHUNK))
    dynamic = tr.method == "dynamics"
    # the dynamics carry potentials and τ_w traces from one mini-batch (and epoch) to the next
    state, traces = init_state(model.network, tr.batch, model.simulation.dtype), zero_traces(w)
    best: tuple[float, int, Weights] | None = None
    rows: list[dict[str, Any]] = []
    first_epoch = 1
    if run_dir is not None and run_dir.resume:  # continue from the newest epoch checkpoint
        path = latest_checkpoint(run_dir.checkpoint_dir)
        if path is not None:
            like = {"weights": w, "best": w} | ({"state": state, "traces": traces} if dynamic else {})
            ck = load_checkpoint(path, cfg, like=like)
            w, rows = ck.trees["weights"], list(ck.meta["rows"])
            if dynamic:
                state, traces = ck.trees["state"], ck.trees["traces"]
            first_epoch = int(ck.counters["epoch"]) + 1
            best = (float(ck.counters["best_validation"]), int(ck.counters["best_epoch"]), ck.trees["best"])
            run_dir.truncate_metrics(lambda r: "event" in r or r.get("epoch", first_epoch) < first_epoch)
            if first_epoch - 1 > tr.epochs:
                raise ConfigError(f"training.epochs = {tr.epochs}, but {path} holds {first_epoch - 1} epochs: "
                                  f"a resumed run can stop at {first_epoch - 1} epochs at the earliest")
            if echo:
                echo(f"resuming after epoch {first_epoch - 1} from {path}")

    def checkpoint(epoch: int) -> Path | None:
        if run_dir is None or best is None:
            return None
        trees = {"weights": w, "best": best[2]} | ({"state": state, "traces": traces} if dynamic else {})
        path = save_checkpoint(
            checkpoint_path(run_dir.checkpoint_dir, epoch), cfg, trees,
            counters={"epoch": epoch, "best_epoch": best[1], "best_validation": best[0]}, meta={"rows": rows},
        )
        prune_checkpoints(run_dir.checkpoint_dir, keep=cfg.schedule.keep_checkpoints)
        return path

    n_check = 2_000 if dynamic else 10_000  # training images whose error is logged per epoch

    def errors(w: Weights, x: np.ndarray, y: np.ndarray) -> float:
        if dynamic:
            return dynamic_error_rate(model, w, x, y, tr.eval_duration)
        return error_rate(model, w, x, y)

    t_start = time.perf_counter()
    guard = graceful_stop() if run_dir is not None else contextlib.nullcontext(StopRequest())
    with guard as stop:
        for epoch in range(first_epoch, tr.epochs + 1):
            w_start, state_start, traces_start = w, state, traces
            t0 = time.perf_counter()
            perm = np.random.default_rng([cfg.seed, 3, epoch]).permutation(x_train.shape[0])[: nb * tr.batch]
            idx = jnp.asarray(perm.reshape(nb, tr.batch).astype(np.int32))
            lr = (tr.lr_backprop if tr.method == "backprop" else 1.0) * tr.lr_decay ** (epoch - 1)
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=nb, unit="batch", desc=f"epoch {epoch}/{tr.epochs}", leave=False)
            for s in range(0, nb, chunk):
                if stop:  # drop the partial epoch: it is recomputed identically on resume
                    if bar is not None:
                        bar.close()
                    w, state, traces = w_start, state_start, traces_start
                    path = checkpoint(epoch - 1)
                    assert run_dir is not None and stop.signum is not None
                    run_dir.log(event="interrupted", signal=stop.name, epoch=epoch - 1,
                                checkpoint=None if path is None else str(path))
                    raise RunInterrupted(
                        stop.signum, f"interrupted by {stop.name} during epoch {epoch}; checkpoint {path}; "
                        f"continue with: microcircuit run --resume {run_dir.path}", path)
                if dynamic:
                    key = jax.random.fold_in(jax.random.key(cfg.seed), epoch * 1_000_003 + s)
                    try:
                        w, traces, state = _dynamics_chunk(model, cfg, w, traces, state, x_dev, u_trgt,
                                                           idx[s : s + chunk], lr, key)
                    except DivergenceError as e:
                        if bar is not None:
                            bar.close()
                        w, state, traces = w_start, state_start, traces_start
                        e.note = f"epoch {epoch}, {s * tr.batch} images in; time counted from image {s * tr.batch}"
                        e.checkpoint = checkpoint(epoch - 1)
                        raise
                else:
                    w = train_epoch(model, w, x_dev, u_trgt, idx[s : s + chunk], jnp.asarray(lr, x_dev.dtype),
                                    method=tr.method, duration=cfg.stimulus.duration, n_passes=tr.n_passes)
                if bar is not None:
                    bar.update(min(chunk, nb - s))
            if bar is not None:
                bar.close()
            jax.block_until_ready(w)
            epoch_s = time.perf_counter() - t0
            if not all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree_util.tree_leaves(w)):
                w, state, traces = w_start, state_start, traces_start
                path = checkpoint(epoch - 1)
                raise DivergenceError("weights", 0, epoch * nb * cfg.stimulus.duration,
                                      f"became NaN/Inf in epoch {epoch} (last good checkpoint: {path})")
            val = errors(w, *data["validation"])
            train_err = errors(w, x_train[:n_check], y_train[:n_check])
            row = {"epoch": epoch, "validation_error": val, f"train_error_{n_check // 1000}k": train_err,
                   "epoch_s": round(epoch_s, 2), "lr_scale": lr}
            if tr.method != "backprop":  # how well the interneurons follow the weights above them (§4)
                dist = self_predicting_distance(w, model.conductances)
                row |= {"ip_distance": [round(d, 5) for d in dist["IP"]],
                        "pi_distance": [round(d, 5) for d in dist["PI"]]}
            rows.append(row)
            if run_dir is not None:
                run_dir.log(**row)
            if echo:
                echo(f"epoch {epoch:3d}  validation error {100 * val:6.2f} %  train error {100 * train_err:6.2f} %  "
                     f"({epoch_s:.1f} s)")
            if best is None or val < best[0]:
                best = (val, epoch, jax.device_get(w))
            every = cfg.schedule.checkpoint_every
            if every and (epoch % every == 0 or epoch == tr.epochs):
                checkpoint(epoch)
    assert best is not None
    val_best, epoch_best, w_best = best
    test = errors(w_best, *data["test"])
    summary = {
        "method": tr.method,
        "epochs": tr.epochs,
        "best_epoch": epoch_best,
        "validation_error": val_best,
        "test_error": test,
        "train_size": int(x_train.shape[0]),
        "seconds_per_epoch": float(np.median([r["epoch_s"] for r in rows])),
        "validation_curve": [r["validation_error"] for r in rows],
        "wall_s": round(time.perf_counter() - t_start, 1),
        "headline": [
            f"{cfg.name}: test error {100 * test:.2f} % (best validation {100 * val_best:.2f} % at epoch "
            f"{epoch_best}/{tr.epochs}); {np.median([r['epoch_s'] for r in rows]):.1f} s per epoch"
        ],
    }
    if run_dir is not None:
        named = zip(Weights._fields, w_best, strict=True)
        run_dir.save_arrays("weights_best.npz", {f"{n}_{i + 1}": a for n, arrs in named for i, a in enumerate(arrs)})
        run_dir.save_arrays(RunDir.TRACES, {k: np.array([r[k] for r in rows]) for k in rows[0]})
        _figure(run_dir, rows, cfg.name)
    return summary


def _figure(run_dir: RunDir, rows: list[dict[str, Any]], name: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    ep = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ep, [100 * r["validation_error"] for r in rows], "o-", ms=3, label="validation")
    key = next(k for k in rows[0] if k.startswith("train_error_"))
    ax.plot(ep, [100 * r[key] for r in rows], "s-", ms=3, label=f"train (first {key.rsplit('_', 1)[1]})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_yscale("log")
    ax.set_title(name)
    ax.legend()
    fig.tight_layout()
    run_dir.save_figure(fig, "learning_curve.png")
    plt.close(fig)
