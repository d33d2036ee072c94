"""Quick start: a 30-20-10 circuit learning a target, with the Python API."""

import jax
import numpy as np

import microcircuit as mc

model = mc.Model(
    network=mc.NetworkSpec(sizes=(30, 20, 10), transfer=mc.Transfer(kind="logistic"),
                           init=mc.Init(self_predicting=True)),
    plasticity=mc.Plasticity(eta_W=(0.0011875, 0.0005), eta_IP=0.0011875, eta_PI=0.0005),
    simulation=mc.Simulation(dt=0.1, sigma=0.0),
)
weights = mc.init_weights(model.network, model.conductances, jax.random.key(0))
state = mc.init_state(model.network, batch=1)

rng = np.random.default_rng(0)
x = rng.uniform(0, 1, (1, 30))                      # one input pattern
target = rng.uniform(-1, 1, (1, 10))                 # a new target potential for the output
stream = mc.Stream.of(np.repeat(x[None], 20, 0), np.repeat(target[None], 20, 0))  # 20 × 100 ms

sol = mc.simulate(model, weights, state, stream, duration=100.0, key=jax.random.key(1),
                  record=mc.Record(quantities=("u", "self_prediction"), stride=1000))
print("output error per 100 ms:", np.abs(sol.records["u_2"][:, 0] - target).mean(-1).round(3))
print("apical error ‖v_A‖² per 100 ms:", sol.records["apical_error_1"].round(5))
