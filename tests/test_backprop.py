"""The link to backprop (docs/model.md §5): the feed-forward network a self-predicting circuit computes, the
fixed point used for the analysis, and rule (7)'s update against backprop's as the nudging weakens."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microcircuit.backprop import angle, feedforward, update_scale
from microcircuit.config import Conductances, Init, Model, NetworkSpec, Plasticity, Simulation, Transfer
from microcircuit.dynamics import init_state
from microcircuit.experiments.backprop_link import link, weights_for
from microcircuit.fixed_point import steady_state
from microcircuit.network import init_weights, self_predicting
from microcircuit.simulate import Stream, simulate

SIZES = {"depth2": (12, 8, 5), "depth3": (12, 8, 6, 5)}


def _model(sizes: tuple[int, ...], g_som: float = 0.8, bias: bool = False) -> Model:
    return Model(
        network=NetworkSpec(sizes=sizes, transfer=Transfer(kind="logistic"), bias=bias, init=Init(bias=0.5)),
        conductances=Conductances(g_som=g_som),
        plasticity=Plasticity(),
        simulation=Simulation(sigma=0.0, dtype="float64"),
    )


def _data(sizes: tuple[int, ...], n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, (n, sizes[0])), rng.uniform(-1, 1, (n, sizes[-1]))


@pytest.mark.parametrize("name", list(SIZES))
def test_feedforward_is_the_steady_state_without_target(name: str) -> None:
    """A self-predicting circuit (with biases) settles, with σ = 0 and no target, to exactly the
    feed-forward network of backprop.feedforward (docs/model.md §4, §5)."""
    sizes = SIZES[name]
    model = _model(sizes, bias=True)
    x, _ = _data(sizes)
    with jax.enable_x64(True):
        w = self_predicting(init_weights(model.network, model.conductances, jax.random.key(0), "float64"),
                            model.conductances)
        sol = simulate(model, w, init_state(model.network, len(x), "float64"), Stream.of(x[None]), duration=300.0,
                       plastic=False)
        ff = feedforward(model, w.W, w.b, jnp.asarray(x))
        for k, (u, v) in enumerate(zip(sol.state.u, ff, strict=True)):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=0, atol=1e-10, err_msg=f"layer {k + 1}")
        assert min(float(jnp.max(jnp.abs(u))) for u in ff) > 0.1  # not trivially zero


@pytest.mark.parametrize("name", list(SIZES))
def test_fixed_point_is_the_simulated_steady_state(name: str) -> None:
    """fixed_point.steady_state (used by the analysis) equals the end of a long σ = 0 simulation with the
    target on, for random (not self-predicting) weights."""
    sizes = SIZES[name]
    model = _model(sizes, g_som=0.3)
    x, t = _data(sizes)
    with jax.enable_x64(True):
        w = init_weights(model.network, model.conductances, jax.random.key(1), "float64")
        sol = simulate(model, w, init_state(model.network, len(x), "float64"), Stream.of(x[None], t[None], True),
                       duration=300.0, plastic=False)
        fp = steady_state(model, w, x, t)
        for a, b in zip((*sol.state.u, *sol.state.u_inter), (*fp.u, *fp.u_inter), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-10)


@pytest.fixture(scope="module")
def sweeps() -> dict[str, dict[str, list]]:
    """link() at the strongest and weakest nudging, B = Wᵀ and random B, depth 2 and 3."""
    out: dict[str, dict[str, list]] = {}
    for name, sizes in SIZES.items():
        for feedback in ("transpose", "random"):
            base = _model(sizes)
            w = weights_for(base, jax.random.key(7), feedback)
            x, shift = _data(sizes)
            with jax.enable_x64(True):
                t = np.asarray(feedforward(base, w.W, w.b, jnp.asarray(x))[-1]) + shift
            rows = [link(dataclasses.replace(base, conductances=Conductances(g_som=g)), w, x, t) for g in (0.8, 0.001)]
            out[f"{name}_{feedback}"] = {"rows": rows, "N": [len(sizes) - 1]}
    return out


@pytest.mark.parametrize("name", list(SIZES))
def test_angle_to_backprop_vanishes_with_transposed_feedback(sweeps: dict, name: str) -> None:
    """B = Wᵀ, σ = 0: every layer's update is within 1° of backprop's at g_som = 0.001, far below the
    angle at g_som = 0.8, and the fixed point is steady (|du/dt| tiny)."""
    strong, weak = sweeps[f"{name}_transpose"]["rows"]
    assert np.all(weak["angle"] < 1.0), weak["angle"]
    assert np.all(weak["angle"].mean(0) < strong["angle"].mean(0) / 20), (weak["angle"], strong["angle"])
    assert np.all(strong["angle"].mean(0) > 0.3)  # the strong-nudging angle is not trivially small
    assert max(strong["residual"], weak["residual"]) < 1e-12


@pytest.mark.parametrize("name", list(SIZES))
def test_update_size_scales_per_layer(sweeps: dict, name: str) -> None:
    """At weak nudging ‖δW_k‖ = λ_N·λ_A^{N−k}·c_k·‖ΔW_k^BP‖ (docs/model.md §5; c_k the inverse attenuations of
    the feed-forward layers k..N) to within 1 %, for every layer."""
    N = sweeps[f"{name}_transpose"]["N"][0]
    weak = sweeps[f"{name}_transpose"]["rows"][1]
    scale = np.array(update_scale(Conductances(g_som=0.001), N))
    ratio = weak["size"] / weak["bp_size"] / scale
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-2)


def test_update_scale_formula() -> None:
    """update_scale: λ_N·λ_A^{N−k} over g_B/(g_lk+g_B)·(g_B/(g_lk+g_B+g_A))^{N−k}, layer by layer."""
    g = Conductances(g_lk=0.1, g_B=1.0, g_A=0.8, g_D=1.0, g_som=0.05)
    lam_n, lam_a = 0.05 / 1.15, 0.8 / 1.9
    expect = [lam_n * lam_a**2 / ((1 / 1.1) * (1 / 1.9) ** 2), lam_n * lam_a / ((1 / 1.1) / 1.9), lam_n * 1.1]
    np.testing.assert_allclose(update_scale(g, 3), expect, rtol=1e-12)


@pytest.mark.parametrize("name", list(SIZES))
def test_random_feedback_does_not_align_hidden_layers(sweeps: dict, name: str) -> None:
    """With fixed random B the hidden layers' updates stay far from backprop's even at weak nudging
    (feedback alignment needs learning); the output layer's rule is still exact."""
    weak = sweeps[f"{name}_random"]["rows"][1]
    assert np.all(weak["angle"][:, :-1].mean(0) > 20.0), weak["angle"]
    assert np.all(weak["angle"][:, -1] < 1.0)


def test_angle() -> None:
    a = jnp.asarray([[1.0, 0.0]])
    assert float(angle(a, a)) == pytest.approx(0.0, abs=1e-3)
    assert float(angle(a, jnp.asarray([[0.0, 2.0]]))) == pytest.approx(90.0)
    assert float(angle(a, -a)) == pytest.approx(180.0)


def _losses(model: Model, u_N: jax.Array, u_trgt: jax.Array) -> dict[str, jax.Array]:
    """The losses of training.loss written out directly, summed over the batch (docs/model.md §5)."""
    t = model.network.transfer
    label = jnp.argmax(u_trgt, axis=-1)
    from microcircuit.transfer import phi

    return {
        "cross_entropy": -jnp.sum(jax.nn.log_softmax(u_N, axis=-1)[jnp.arange(len(label)), label]),
        "rate_mse": 0.5 * jnp.sum((phi(t, u_trgt) - phi(t, u_N)) ** 2),
    }


@pytest.mark.parametrize("loss", ["cross_entropy", "rate_mse"])
def test_backprop_updates_are_minus_the_gradient_of_the_named_loss(loss: str) -> None:
    """For training.loss = cross_entropy / rate_mse, backprop_updates is −∂L/∂(W, b) of the batch-averaged
    loss, for every layer and bias, on a depth-3 network with biases."""
    from microcircuit.backprop import backprop_updates

    sizes = SIZES["depth3"]
    model = _model(sizes, bias=True)
    x, _ = _data(sizes)
    rng = np.random.default_rng(2)
    # one-hot targets as potentials, as MNIST's φ⁻¹(0.8) / φ⁻¹(0.1); distinct labels per sample
    u_trgt = np.where(np.eye(sizes[-1])[rng.permutation(len(x)) % sizes[-1]] > 0, 1.386, -2.197)
    with jax.enable_x64(True):
        w = init_weights(model.network, model.conductances, jax.random.key(3), "float64")
        dW, db = backprop_updates(model, w, jnp.asarray(x), jnp.asarray(u_trgt), loss)

        def mean_loss(W, b):
            return _losses(model, feedforward(model, W, b, jnp.asarray(x))[-1], jnp.asarray(u_trgt))[loss] / len(x)

        gW, gb = jax.grad(mean_loss, argnums=(0, 1))(w.W, w.b)
        ours, grads = [np.asarray(a) for a in (*dW, *db)], [np.asarray(g) for g in (*gW, *gb)]
    for k, (a, g) in enumerate(zip(ours, grads, strict=True)):
        assert np.max(np.abs(g)) > 1e-6, k  # a real gradient, not trivially zero
        np.testing.assert_allclose(a, -g, rtol=1e-9, atol=1e-12, err_msg=str(k))


def test_the_default_backprop_loss_is_the_circuit_error() -> None:
    """training.loss defaults to ``circuit`` (e_N = D_N (u_trgt − u_N), docs/model.md §5) everywhere: in the
    config, in backprop_updates and in the `mnist-backprop` preset; the other losses give other updates."""
    from microcircuit.backprop import backprop_updates
    from microcircuit.config import Training
    from microcircuit.presets import get_preset

    assert Training().loss == "circuit"
    assert get_preset("mnist-backprop").training.loss == "circuit"
    sizes = SIZES["depth2"]
    model = _model(sizes, bias=True)
    x, t = _data(sizes)
    w = init_weights(model.network, model.conductances, jax.random.key(0), "float32")
    x, t = jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32)
    default = backprop_updates(model, w, x, t)
    circuit = backprop_updates(model, w, x, t, "circuit")
    ce = backprop_updates(model, w, x, t, "cross_entropy")
    for a, b, c in zip(jax.tree.leaves(default), jax.tree.leaves(circuit), jax.tree.leaves(ce), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert not np.allclose(np.asarray(a), np.asarray(c))


def _feedback_alignment_numpy(model: Model, W: list, b: list, B: list, x: np.ndarray,
                              u_trgt: np.ndarray) -> tuple[list, list]:
    """Feedback alignment written out in float64 NumPy (docs/model.md §5): the forward pass of the §5
    network, e_N = D_N (u_trgt − u⁻_N), then δ_k = φ'(u_k) ⊙ B_k (a_{k+1} δ_{k+1}) down the layers, where
    a_k is layer k's attenuation; ΔW_k = a_k δ_kᵀ r_{k−1} / batch."""
    g = model.conductances
    N = len(W)
    att = [g.basal_hidden] * (N - 1) + [g.basal_output]
    logistic = lambda u: 1 / (1 + np.exp(-u))  # noqa: E731
    rs, us = [x], []
    for k in range(N):
        us.append(att[k] * (rs[-1] @ W[k].T + b[k]))
        rs.append(logistic(us[-1]))
    slope = lambda u: logistic(u) * (1 - logistic(u))  # noqa: E731
    delta = slope(us[-1]) * (u_trgt - us[-1])
    dW, db = [None] * N, [None] * N
    for k in reversed(range(N)):
        dW[k] = att[k] * delta.T @ rs[k] / len(x)
        db[k] = att[k] * delta.mean(0)
        if k:
            delta = slope(us[k - 1]) * ((att[k] * delta) @ B[k - 1].T)
    return dW, db


@pytest.mark.parametrize("name", list(SIZES))
def test_feedback_alignment_updates_match_a_numpy_reference(name: str) -> None:
    """backprop_updates(feedback_alignment=True) sends the error down through the fixed B_k instead of
    W_{k+1}ᵀ (docs/model.md §5): equal to a float64 NumPy oracle for random B, different from backprop
    below the output, and equal to backprop when B_k = W_{k+1}ᵀ."""
    from microcircuit.backprop import backprop_updates

    sizes = SIZES[name]
    model = _model(sizes, bias=True)
    x, t = _data(sizes)
    with jax.enable_x64(True):
        w = init_weights(model.network, model.conductances, jax.random.key(4), "float64")
        fa = backprop_updates(model, w, jnp.asarray(x), jnp.asarray(t), feedback_alignment=True)
        bp = backprop_updates(model, w, jnp.asarray(x), jnp.asarray(t))
        symmetric = w._replace(B=tuple(Wk.T for Wk in w.W[1:]))
        fa_sym = backprop_updates(model, symmetric, jnp.asarray(x), jnp.asarray(t), feedback_alignment=True)
    dW, db = _feedback_alignment_numpy(model, [np.asarray(a) for a in w.W], [np.asarray(a) for a in w.b],
                                       [np.asarray(a) for a in w.B], x, t)
    for k, (a, ref) in enumerate(zip((*fa[0], *fa[1]), (*dW, *db), strict=True)):
        assert np.max(np.abs(ref)) > 1e-6, k
        np.testing.assert_allclose(np.asarray(a), ref, rtol=1e-10, atol=1e-14, err_msg=str(k))
    N = len(sizes) - 1
    np.testing.assert_allclose(np.asarray(fa[0][N - 1]), np.asarray(bp[0][N - 1]), rtol=1e-12)  # output: same
    for k in range(N - 1):
        assert not np.allclose(np.asarray(fa[0][k]), np.asarray(bp[0][k])), k
    for a, c in zip(jax.tree.leaves(fa_sym), jax.tree.leaves(bp), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-12, atol=1e-15)
