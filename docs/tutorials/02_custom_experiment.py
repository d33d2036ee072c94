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
# # 2. Your own experiment: a data set, a network, checkpoints
#
# The presets reproduce the paper; this tutorial shows how to use the circuit for a task of your own,
# entirely from Python:
#
# 1. a **config**: a `Config` with your network, learning rates and schedule (or a preset, changed with
#    `apply_overrides`);
# 2. a **data set**: here a small nonlinear regression, 8 inputs → 3 output potentials;
# 3. **segmented training** with `run_segments`: the circuit learns online, in continuous time, and is
#    evaluated after every segment, with checkpoints in a run folder;
# 4. **resume**: a longer run continues from the last checkpoint and computes exactly what one
#    uninterrupted run computes.
#
# It takes about a minute on a laptop CPU.

# %%
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import microcircuit as mc
from microcircuit.checkpoint import latest_checkpoint, load_checkpoint
from microcircuit.experiments.common import build, run_segments
from microcircuit.runs import RunDir
from microcircuit.steady_state import predict

# %% [markdown]
# ## The config
#
# A `Config` holds everything that defines a run. Its sections are frozen dataclasses: invalid values
# fail when they are built, with the key named. `mc.to_toml(cfg)` prints it as the TOML that
# `microcircuit run CONFIG.toml` reads. Every pattern is shown for 50 ms; the run is evaluated and
# checkpointed every 100 patterns (`schedule.segment`).

# %%
cfg = mc.Config(
    name="my-regression",
    seed=0,
    network=mc.NetworkSpec(sizes=(8, 24, 3), transfer=mc.Transfer(kind="logistic"), bias=True,
                           init=mc.Init(W=1.0, B=1.0, self_predicting=True)),
    plasticity=mc.Plasticity(eta_W=(0.1, 0.05), eta_IP=0.1, eta_PI=0.0),
    simulation=mc.Simulation(dt=0.1, sigma=0.0),
    stimulus=mc.Stimulus(duration=50.0),
    schedule=mc.Schedule(segment=100, checkpoint_every=1, keep_checkpoints=3),
)
print(mc.to_toml(cfg))

# the same with a key changed, as `--set` does on the command line (values are read as TOML)
faster = mc.apply_overrides(cfg, ["plasticity.eta_W=[0.2, 0.1]"])
print("eta_W:", cfg.plasticity.eta_W, "->", faster.plasticity.eta_W)
try:
    mc.apply_overrides(cfg, ["plasticity.eta_w=0.1"])
except mc.ConfigError as e:
    print("refused:", e)

# %% [markdown]
# ## The data
#
# Targets are output *potentials* that nudge the output layer. Ours are a fixed smooth function of the
# inputs, between −2 and 2. `make_stream(segment, n)` returns the
# `n` patterns of a segment and must be deterministic (a resumed run asks for the same segment again),
# so it seeds its generator with the segment number.

# %%
rng = np.random.default_rng(42)
A = rng.normal(0, 1, (3, 8)) / np.sqrt(8)


def task(x):
    """The function to learn: 3 target potentials from 8 inputs in [0, 1]."""
    return 2 * np.tanh(3 * (x - 0.5) @ A.T)


x_test = np.random.default_rng(1).uniform(0, 1, (200, 8)).astype(np.float32)
y_test = task(x_test)


def make_stream(segment, n):
    x = np.random.default_rng([7, segment]).uniform(0, 1, (n, 8)).astype(np.float32)
    return mc.Stream.of(x, task(x))              # (P, n_0) inputs, (P, n_N) targets: batch 1


def evaluate(w):
    """Test error: mean squared distance of the free output (no target, σ = 0) from the targets."""
    u = predict(model, w, jnp.asarray(x_test))
    return {"test_mse": float(np.mean((np.asarray(u) - y_test) ** 2))}


# %% [markdown]
# ## Training in segments, with checkpoints
#
# `build(cfg)` gives the model, the initial weights (seeded by `cfg.seed`) and a resting state.
# `run_segments` trains with `simulate` (plasticity always on) and calls `evaluate` after every segment.
# With a `RunDir` it logs the metrics to `metrics.jsonl` and writes a verified checkpoint after every
# `schedule.checkpoint_every` segments (the folder layout of `microcircuit run`, see
# [runs](../runs.md)).

# %%
scratch = tempfile.TemporaryDirectory()  # removed at the end of the tutorial
work = Path(scratch.name)
model, w0, state0 = build(cfg)
print("before training:", evaluate(w0))

run = RunDir.create(work / "run")
run.write_config(cfg)
sol, rows, _ = run_segments(cfg, run, model, w0, state0, make_stream, evaluate, n_patterns=300)
for r in rows:
    print(r)
print("checkpoints:", sorted(p.name for p in run.checkpoint_dir.iterdir()))

# %% [markdown]
# ## Resume, and extend
#
# The same call with a folder reopened with `resume=True` continues from its newest checkpoint. Here
# we ask for 300 more patterns; `metrics.jsonl` keeps growing. For comparison, a second run trains
# 600 patterns in one go: the resumed run ends with exactly the same weights, because a segment boundary
# fixes everything that follows (weights, filter traces, neuron state, the noise key).

# %%
resumed = RunDir.create(work / "run", resume=True)
sol_resumed, rows_resumed, _ = run_segments(cfg, resumed, model, w0, state0, make_stream, evaluate,
                                            n_patterns=600)
straight, rows_straight, _ = run_segments(cfg, None, model, w0, state0, make_stream, evaluate, n_patterns=600)
same = all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree_util.tree_leaves(sol_resumed.weights),
                                                        jax.tree_util.tree_leaves(straight.weights),
                                                        strict=True))
print("resumed == uninterrupted, bit for bit:", same)
assert same

ck = load_checkpoint(latest_checkpoint(resumed.checkpoint_dir), cfg, like={"weights": w0})
print("newest checkpoint:", ck.counters)

# %% [markdown]
# ## The learning curve and the fit

# %%
metrics = [r for r in resumed.metrics() if "event" not in r]
u_after = np.asarray(predict(model, sol_resumed.weights, jnp.asarray(x_test)))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot([r["patterns"] for r in metrics], [r["test_mse"] for r in metrics], "o-")
axes[0].axvline(300, color="k", ls=":", label="resumed here")
axes[0].set(xlabel="patterns (50 ms each)", ylabel="test MSE", title="learning online, in continuous time")
axes[0].legend()
axes[1].plot(y_test[:, 0], np.asarray(predict(model, w0, jnp.asarray(x_test)))[:, 0], ".", label="before")
axes[1].plot(y_test[:, 0], u_after[:, 0], ".", label="after 600 patterns")
axes[1].plot([-2, 2], [-2, 2], "k:", lw=1)
axes[1].set(xlabel="target potential (output 1)", ylabel="free output potential", title="fit on test inputs")
axes[1].legend()
fig.tight_layout()
plt.show()
assert metrics[-1]["test_mse"] < 0.1 * metrics[0]["test_mse"]

# %% [markdown]
# ## The same experiment as a command: `microcircuit run my.toml`
#
# To run your experiment like the built-in ones (a run folder, checkpoints, `--resume`, `--set`,
# sweeps), put a `run(cfg, run_dir, *, progress, echo)` function into a module of your own and name the
# module in the config: `experiment = "my_regression"` (or one function of it: `"my_regression:run"`).
# The module must be importable: in the folder you run from, or installed (a package can also declare it
# as an entry point, see [usage](../usage.md)). Its optional `unused(cfg)` lists the keys it does not
# read, so that setting one is refused, not ignored. It reads `stimulus.n_patterns` for the length of
# the run.

# %%
(work / "my_regression.py").write_text(textwrap.dedent('''
    import numpy as np
    import jax.numpy as jnp

    import microcircuit as mc
    from microcircuit.experiments.common import build, run_segments
    from microcircuit.steady_state import predict

    A = np.random.default_rng(42).normal(0, 1, (3, 8)) / np.sqrt(8)
    X_TEST = np.random.default_rng(1).uniform(0, 1, (200, 8)).astype(np.float32)


    def task(x):
        return 2 * np.tanh(3 * (x - 0.5) @ A.T)


    def unused(cfg):
        """The keys this experiment does not read: setting one is refused."""
        return ("training", "pal", "n_seeds", "init_from")


    def run(cfg, run_dir, *, progress=False, echo=None):
        model, w0, state0 = build(cfg)

        def make_stream(segment, n):
            x = np.random.default_rng([7, segment]).uniform(0, 1, (n, 8)).astype(np.float32)
            return mc.Stream.of(x, task(x))

        def evaluate(w):
            u = np.asarray(predict(model, w, jnp.asarray(X_TEST)))
            return {"test_mse": float(np.mean((u - task(X_TEST)) ** 2))}

        _, rows, _ = run_segments(cfg, run_dir, model, w0, state0, make_stream, evaluate,
                                  n_patterns=cfg.stimulus.n_patterns, progress=progress, echo=echo)
        first, last = evaluate(w0)["test_mse"], rows[-1]["test_mse"]
        return {"test_mse": last, "headline": [f"test MSE {first:.3g} -> {last:.3g}"]}
'''))
(work / "my.toml").write_text(mc.to_toml(dataclasses.replace(
    cfg, experiment="my_regression", stimulus=dataclasses.replace(cfg.stimulus, n_patterns=300))))


def shell(*args):
    """`microcircuit ARGS` in a shell, in the folder of my_regression.py."""
    r = subprocess.run([sys.executable, "-m", "microcircuit.cli", *map(str, args)], cwd=work,
                       capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    print(f"$ microcircuit {' '.join(map(str, args))}  (exit status {r.returncode})\n{r.stdout}{r.stderr}")
    return r


shell("run", "my.toml", "--out", "cli-run", "--no-progress")
print(sorted(p.name for p in (work / "cli-run").iterdir()))
shell("run", "my.toml", "--set", "training.epochs=3", "--out", "refused")  # a key it does not read
assert not (work / "refused").exists()

# %% [markdown]
# The command-line run is the same computation as `run_segments` above: the same weights after 300
# patterns, so the same test error. It stops and resumes like a built-in run: here a second run is
# interrupted (Ctrl-C, SIGINT) once it has written its first checkpoint, and `--resume` finishes it.

# %%
from_cli = [r for r in RunDir(work / "cli-run").metrics() if "event" not in r]
print("CLI:", from_cli[-1]["test_mse"], "| Python:", rows[-1]["test_mse"])
assert from_cli[-1]["test_mse"] == rows[-1]["test_mse"]

started = subprocess.Popen([sys.executable, "-m", "microcircuit.cli", "run", "my.toml", "--out", "stopped",
                            "--no-progress"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
while started.poll() is None and not list((work / "stopped" / "checkpoints").glob("*.npz")):
    time.sleep(0.05)
started.send_signal(signal.SIGINT)
print("stopped with exit status", started.wait(), "|", started.stderr.read().strip())
shell("run", "--resume", "stopped", "--no-progress")
resumed_cli = [r for r in RunDir(work / "stopped").metrics() if "event" not in r]
assert resumed_cli[-1]["test_mse"] == rows[-1]["test_mse"]

# %% [markdown]
# ## Where to go from here
#
# * `dataclasses.replace(cfg, seed=1)` or `mc.apply_overrides(cfg, ["seed=1"])` gives another seed; a
#   `Config` is hashable and can key a cache.
# * `mc.simulate` is the whole engine: pass `traces=sol.traces` and the returned weights and state to
#   continue a simulation by hand, with a fresh key per call when σ > 0.
# * An installed package makes its experiments known by name through the entry-point group
#   `microcircuit.experiments` ([usage](../usage.md)).
# * For many seeds or a hyper-parameter search, see [sweeps](../sweeps.md).

# %%
other = dataclasses.replace(cfg, seed=1)
print("seed", other.seed, "| same config otherwise:", dataclasses.replace(other, seed=0) == cfg)

# %%
scratch.cleanup()  # the tutorial's run folders go with it
