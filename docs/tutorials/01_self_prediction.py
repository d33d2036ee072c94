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
# # 1. The self-predicting state and apical errors
#
# A microcircuit (Sacramento et al. 2018) has pyramidal neurons with a basal dendrite (bottom-up input
# through W), an apical dendrite (top-down input through B, minus the lateral interneurons through PI)
# and interneurons that learn to copy the layer above (through IP). When the interneurons predict the
# top-down input exactly, every apical potential is zero: the circuit is **self-predicting**
# ([model](../model.md) §4). A target at the output then shows up as an apical potential in the hidden
# layers: an error signal that the local plasticity rules use to learn.
#
# This tutorial builds a small 30-20-10 circuit with the Python API, simulates it, records the somatic
# potentials `u`, the apical potentials `v_apical` and the interneuron potentials `u_inter`, and shows
#
# 1. that random interneuron weights leave apical potentials even without a target, and that the
#    self-predicting weights make them vanish;
# 2. what happens when a target comes on: an apical error appears, and fades as the weights learn.
#
# It runs in a few seconds on a laptop CPU.

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np

import microcircuit as mc

model = mc.Model(
    network=mc.NetworkSpec(sizes=(30, 20, 10), transfer=mc.Transfer(kind="logistic"),
                           init=mc.Init(W=0.4, B=1.0, IP=0.4, PI=1.0)),
    plasticity=mc.Plasticity(eta_W=(0.0011875, 0.0005), eta_IP=0.0011875, eta_PI=0.0005),
    simulation=mc.Simulation(dt=0.1, sigma=0.0),  # σ = 0: no somatic noise, so no key is needed
)
weights = mc.init_weights(model.network, model.conductances, jax.random.key(0))
print("layer sizes:", model.network.sizes, "| weight matrices:", {k: [a.shape for a in v]
                                                                     for k, v in weights._asdict().items() if v})

# %% [markdown]
# ## Random interneurons versus the self-predicting state
#
# We show one input pattern for 100 ms without a target and plasticity off, twice: with the random
# initial weights and with `mc.self_predicting(weights, ...)`, which sets PI = −B and IP to the values
# that make the interneurons copy the layer above. `Record` takes a snapshot every `stride` steps
# (here every 1 ms).

# %%
rng = np.random.default_rng(0)
x = rng.uniform(0, 1, (1, 30))                   # one pattern (P = 1) of 30 inputs; batch B = 1
record = mc.Record(quantities=("u", "v_apical", "u_inter"), stride=10)
state0 = mc.init_state(model.network, batch=1)


def show(w):
    sol = mc.simulate(model, w, state0, mc.Stream.of(x), duration=100.0, plastic=False, record=record)
    return sol, sol.records


sp_weights = mc.self_predicting(weights, model.conductances)
_, rand = show(weights)
_, sp = show(sp_weights)
t = np.arange(1, 101)                            # ms, one snapshot per ms
print("recorded:", sorted(rand))

fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
for ax, rec, title in ((axes[0], rand, "random PI, IP"), (axes[1], sp, "self-predicting PI, IP")):
    ax.plot(t, rec["v_apical_1"][:, 0, :6])
    ax.set(title=f"apical potentials, {title}", xlabel="time (ms)", ylabel="v_A (first 6 neurons)")
axes[2].plot(t, sp["u_2"][:, 0, :4], lw=3, alpha=0.4)
axes[2].plot(t, sp["u_inter_1"][:, 0, :4], "k--", lw=1)
axes[2].set(title="interneurons copy the output layer", xlabel="time (ms)",
            ylabel="u_2 (thick), u^I_1 (dashed)")
fig.tight_layout()
plt.show()

print(f"mean |v_A| at 100 ms: random {np.abs(rand['v_apical_1'][-1]).mean():.3f}, "
      f"self-predicting {np.abs(sp['v_apical_1'][-1]).mean():.2e}")

# %% [markdown]
# The circuit can also *learn* the self-predicting state from random interneuron weights, with rules (8)
# and (9) and random inputs, no target: that is the paper's Fig. S1, `microcircuit run fig-s1`.
#
# ## A target comes on
#
# Now the self-predicting circuit sees the same input for 100 ms without a target, then 1.9 s with a
# target for the output potentials, with plasticity on. A `Stream` is a list of patterns, each shown
# for `duration` ms, with an optional target per pattern and a flag saying whether it is on. We record
# the mean squared apical potential (`self_prediction` records `apical_error_1` = mean ‖v_A,1‖²) and
# the output potentials.

# %%
target = rng.uniform(-1, 1, (1, 10))             # target potentials for the 10 output neurons
P = 20                                            # 20 patterns of 100 ms: 2 s
xs = np.repeat(x[None], P, axis=0)                # (P, B, n_0)
targets = np.repeat(target[None], P, axis=0)      # (P, B, n_N)
on = np.arange(P) >= 1                            # the target comes on after the first 100 ms
stream = mc.Stream.of(xs, targets, on)
sol = mc.simulate(model, sp_weights, state0, stream, duration=100.0,
                  record=mc.Record(quantities=("u", "self_prediction"), stride=10))
r = sol.records
t = sol.times                                     # the snapshots' times in ms

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].semilogy(t, r["apical_error_1"])
axes[0].axvline(100, color="k", ls=":", label="target on")
axes[0].set(title="apical error in the hidden layer", xlabel="time (ms)", ylabel="mean ‖v_A,1‖²")
axes[0].legend()
axes[1].plot(t, np.abs(r["u_2"][:, 0] - target).mean(-1))
axes[1].axvline(100, color="k", ls=":")
axes[1].set(title="output distance from the target", xlabel="time (ms)", ylabel="mean |u_2 − target|")
fig.tight_layout()
plt.show()

before, onset, end = r["apical_error_1"][9], r["apical_error_1"][t <= 200].max(), r["apical_error_1"][-1]
print(f"apical error: {before:.2e} before the target, {onset:.2e} at its peak, {end:.2e} after 2 s")
assert onset > 100 * before and end < onset / 10  # the error appears, then fades as W learns

# %% [markdown]
# Before the target, the apical potentials are zero up to numerical precision. When the target nudges
# the output, the interneurons (which copy the *free* output) no longer cancel the top-down input, and
# the difference, an error signal, appears in the apical dendrites. The basal rule (7) then moves W so
# that the network's own output approaches the target, and the apical error fades: the circuit has
# learned the target. `microcircuit run fig1` runs this experiment at the paper's scale, and
# [the model](../model.md) §5 shows how this error relates to backprop.
