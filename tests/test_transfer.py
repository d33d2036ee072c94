"""Transfer functions φ, φ′, φ⁻¹ (docs/model.md §2): values, derivative, inverse, stability for large |u|."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microcircuit.config import Transfer
from microcircuit.transfer import dphi, phi, phi_inv

TRANSFERS = {
    "softrect-paper": Transfer(kind="soft_rectifier", gamma=0.1, beta=1.0, theta=3.0),
    "softrect-other": Transfer(kind="soft_rectifier", gamma=0.5, beta=2.0, theta=-1.0),
    "logistic": Transfer(kind="logistic"),
}


def _closed_form(t: Transfer, u: np.ndarray) -> np.ndarray:
    """docs/model.md §2 written out literally (fine in float64 for moderate |u|)."""
    if t.kind == "soft_rectifier":
        return t.gamma * np.log1p(np.exp(t.beta * (u - t.theta)))
    return 1.0 / (1.0 + np.exp(-u))


@pytest.mark.parametrize("name", list(TRANSFERS))
def test_phi_values(name: str) -> None:
    t = TRANSFERS[name]
    u = np.linspace(-20.0, 20.0, 801)
    with jax.enable_x64(True):
        got = np.asarray(phi(t, jnp.asarray(u)))
    np.testing.assert_allclose(got, _closed_form(t, u), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", list(TRANSFERS))
def test_dphi_is_the_derivative(name: str) -> None:
    """φ′ equals jax.grad of φ, and a central finite difference of the closed form."""
    t = TRANSFERS[name]
    u = np.linspace(-20.0, 20.0, 801)
    with jax.enable_x64(True):
        uj = jnp.asarray(u)
        got = np.asarray(dphi(t, uj))
        auto = np.asarray(jax.vmap(jax.grad(lambda x: phi(t, x)))(uj))
    np.testing.assert_allclose(got, auto, rtol=1e-12, atol=1e-300)
    h = 1e-5
    fd = (_closed_form(t, u + h) - _closed_form(t, u - h)) / (2 * h)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-9)
    assert np.all(got > 0)  # φ is strictly increasing


@pytest.mark.parametrize(
    ("name", "lo", "hi"),
    [("softrect-paper", -30.0, 60.0), ("softrect-other", -15.0, 40.0), ("logistic", -15.0, 15.0)],
)
def test_phi_inv_inverts_phi(name: str, lo: float, hi: float) -> None:
    """φ⁻¹(φ(u)) = u in float64 wherever φ(u) is resolved (logistic: not too close to 1)."""
    t = TRANSFERS[name]
    u = np.linspace(lo, hi, 901)
    with jax.enable_x64(True):
        back = np.asarray(phi_inv(t, phi(t, jnp.asarray(u))))
    np.testing.assert_allclose(back, u, rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("name", list(TRANSFERS))
def test_stable_for_large_potentials_float32(name: str) -> None:
    """No NaN/Inf for |u| up to 1e4 in float32 (φ, φ′, jax.grad φ), and the right asymptotes."""
    t = TRANSFERS[name]
    u = jnp.asarray([-1e4, -3e3, -1e3, -200.0, -90.0, -50.0, 0.0, 50.0, 90.0, 200.0, 1e3, 3e3, 1e4], jnp.float32)
    r = np.asarray(phi(t, u))
    d = np.asarray(dphi(t, u))
    g = np.asarray(jax.vmap(jax.grad(lambda x: phi(t, x)))(u))
    for a in (r, d, g):
        assert a.dtype == np.float32
        assert np.all(np.isfinite(a)), a
    assert np.all(r >= 0) and np.all(np.diff(r) >= 0)
    un = np.asarray(u, np.float64)
    if t.kind == "soft_rectifier":
        np.testing.assert_allclose(r[-1], t.gamma * t.beta * (1e4 - t.theta), rtol=1e-6)  # ≈ γβ(u − θ)
        assert r[0] == 0.0
        np.testing.assert_allclose(d[un > 100], t.gamma * t.beta, rtol=1e-6)
        assert np.all(d[un < -100] == 0.0)
    else:
        np.testing.assert_allclose(r[un > 100], 1.0)
        assert np.all(r[un < -100] == 0.0)
        assert np.all(d[np.abs(un) > 100] == 0.0)


def test_soft_rectifier_inverse_stable_float32() -> None:
    """φ⁻¹ of the soft rectifier in float32 for large rates (log(expm1(y)) would overflow)."""
    t = TRANSFERS["softrect-paper"]
    u = jnp.asarray([0.0, 10.0, 100.0, 1e3, 1e4], jnp.float32)
    back = np.asarray(phi_inv(t, phi(t, u)))
    assert np.all(np.isfinite(back))
    np.testing.assert_allclose(back, np.asarray(u), rtol=1e-4, atol=1e-3)


def test_logistic_inverse_float32() -> None:
    t = TRANSFERS["logistic"]
    r = jnp.asarray([1e-6, 0.1, 0.5, 0.8, 1 - 1e-6], jnp.float32)
    u = np.asarray(phi_inv(t, r))
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(np.asarray(phi(t, jnp.asarray(u))), np.asarray(r), rtol=1e-5)
