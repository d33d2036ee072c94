# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Reading run folders
#
# Every `microcircuit run` writes a **run folder**: the resolved config, the metrics of every epoch or
# segment, checkpoints, a summary and figures ([runs](../runs.md)). This tutorial makes three small MNIST
# runs on the MNIST subset that ships with the package (2,000 training and 1,000 test images), a few
# epochs each:
#
# * `mnist-quick`: the microcircuit in the steady-state mode (the paper's Fig. 3 scheme),
# * `mnist-backprop-quick`: the same network trained by backprop,
# * `mnist-dynamics-quick`: the microcircuit in continuous time, the full dynamics,
#
# and then reads them back: `metrics.jsonl`, `summary.json`, checkpoints, the learning curves and the
# learned weights. The runs take about half a minute together on a laptop CPU; their error rates are
# far from the paper's, which need full MNIST and many more epochs (`microcircuit data fetch-mnist`,
# then `microcircuit run mnist`).

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from microcircuit.analysis import error_breakdown, learning_curve, plot_learning_curves
from microcircuit.checkpoint import latest_checkpoint, load_checkpoint
from microcircuit.cli import main as microcircuit_cli
from microcircuit.experiments import mnist
from microcircuit.experiments.common import build
from microcircuit.runs import RunDir, resume_config

scratch = tempfile.TemporaryDirectory()  # removed at the end of the tutorial
work = Path(scratch.name)


def microcircuit(*args):
    """The command line tool in this Python process: the same as `microcircuit ARGS` in a shell."""
    microcircuit_cli([str(a) for a in args], standalone_mode=False)


# short versions of the quick presets: fewer epochs, and fewer images for the slower dynamics
microcircuit("run", "mnist-quick", "--set", "training.epochs=3", "--no-progress", "--out", work / "steady")
microcircuit("run", "mnist-backprop-quick", "--set", "training.epochs=3", "--no-progress", "--out", work / "bp")
microcircuit("run", "mnist-dynamics-quick", "--set", "training.epochs=2", "--set", "training.n_train=600",
             "--no-progress", "--out", work / "dynamics")

# %% [markdown]
# ## What a run folder holds

# %%
run = work / "steady"
for p in sorted(run.rglob("*")):
    print(p.relative_to(run))

# %% [markdown]
# `config.toml` is the complete, resolved config: `microcircuit run RUN/config.toml` repeats the run,
# and `resume_config` reads it back as a `Config`. `environment.json` records versions, the machine and
# the command line.

# %%
cfg = resume_config(run)
print(cfg.name, cfg.network.sizes, cfg.training.method, cfg.training.epochs, "epochs")
env = json.loads((run / "environment.json").read_text())
print({k: env[k] for k in ("python", "platform") if k in env}, env.get("packages", {}).get("jax"))

# %% [markdown]
# ## Metrics and summary
#
# `metrics.jsonl` has one JSON object per line: one row per epoch (validation error, the training error on
# the first images, seconds per epoch, the learning-rate factor, how far the interneurons are from
# self-prediction), plus event rows (`resumed`, `interrupted`, `diverged`) if any. `summary.json` is
# written last and marks the run complete: the test error at the epoch with the best validation error.

# %%
rows = RunDir(run).metrics()
for r in rows:
    print(r)
summary = json.loads((run / "summary.json").read_text())
print({k: summary[k] for k in ("method", "best_epoch", "validation_error", "test_error", "seconds_per_epoch")})

# %% [markdown]
# ## Learning curves
#
# Every MNIST run folder has its own `learning_curve.png`. `learning_curve` reads the curve of any MNIST
# run folder (also one still running), and `plot_learning_curves` draws several in one figure, as the
# paper's Fig. 3B. The command line does the same:
# `microcircuit analyze curves RUN_DIR [RUN_DIR ...] --out curves.png`.

# %%
curves = [learning_curve(work / name) for name in ("steady", "bp", "dynamics")]
for c in curves:
    print(f"{c.label:22s} validation per epoch (%): {np.round(100 * np.array(c.validation), 1)}")
fig = plot_learning_curves(curves)
fig.savefig(work / "curves.png", dpi=100)
fig  # noqa: B018  (a notebook shows the figure here)

# %% [markdown]
# ## Checkpoints and weights
#
# Checkpoints (`checkpoints/ckpt-<epoch>.npz`) hold everything needed to continue the run (`microcircuit
# run --resume RUN` after an interruption, or with a larger `training.epochs` to train on); they are
# verified when loaded. `weights_best.npz` holds the weights of the best epoch. With the model that
# `build(cfg)` makes, they can be evaluated again or analysed.

# %%
ck = load_checkpoint(latest_checkpoint(run / "checkpoints"))
print("checkpoint:", ck.path.name, ck.counters, "| trees:", sorted(ck.trees))

model, w0, _ = build(cfg)
w = mnist.load_best_weights(run / "weights_best.npz", w0)
print("W shapes:", [a.shape for a in w.W])
x_test, y_test = mnist.load_split(cfg)["test"]
print(f"test error of the best weights: {100 * mnist.error_rate(model, w, x_test, y_test):.2f} % "
      f"(summary: {100 * summary['test_error']:.2f} %)")

# %% [markdown]
# Where the errors are (`microcircuit analyze errors RUN_DIR`): the validation and test sets, the test
# set's halves and slices of the training set, read out as the run itself reads them (the dynamics for
# the continuous-time run).

# %%
for name in ("steady", "dynamics"):
    res = error_breakdown(work / name)
    print(name, {k: f"{100 * v.error:.1f} %" for k, v in res.items()})

# %% [markdown]
# Finally, the learned input weights: each row of W_1 is a 28 × 28 receptive field of a first-layer
# neuron. The change from the initial weights shows what training added.

# %%
dW = np.asarray(w.W[0]) - np.asarray(w0.W[0])
strongest = np.argsort(-np.linalg.norm(dW, axis=1))[:8]
fig, axes = plt.subplots(1, 8, figsize=(12, 1.9))
for ax, i in zip(axes, strongest, strict=True):
    lim = np.abs(dW[i]).max()
    ax.imshow(dW[i].reshape(28, 28), cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set(title=f"neuron {i}", xticks=[], yticks=[])
fig.suptitle("change of W_1 during training (8 neurons that changed most)")
fig.tight_layout()
plt.show()

# %%
scratch.cleanup()  # the tutorial's run folders go with it
