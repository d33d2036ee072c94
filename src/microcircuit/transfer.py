"""Transfer functions φ (docs/model.md §2), their derivatives and inverses, numerically stable for large |u|."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .config import Transfer

__all__ = ["dphi", "phi", "phi_inv"]


def phi(t: Transfer, u: jax.Array) -> jax.Array:
    """φ(u): soft rectifier γ·log(1 + exp(β(u − θ))) or logistic 1/(1 + e^(−u)) (docs/model.md §2)."""
    if t.kind == "soft_rectifier":
        return t.gamma * jax.nn.softplus(t.beta * (u - t.theta))
    return jax.nn.sigmoid(u)


def dphi(t: Transfer, u: jax.Array) -> jax.Array:
    """φ′(u), used for the backprop reference D_l = diag(φ′(u_l)) (docs/model.md §5)."""
    if t.kind == "soft_rectifier":
        return t.gamma * t.beta * jax.nn.sigmoid(t.beta * (u - t.theta))
    s = jax.nn.sigmoid(u)
    return s * (1.0 - s)


def phi_inv(t: Transfer, r: jax.Array) -> jax.Array:
    """φ⁻¹(r): the potential whose rate is r (targets given as rates, docs/model.md §7). Needs r in φ's range."""
    r = jnp.asarray(r)
    if t.kind == "soft_rectifier":
        # log(expm1(y)) = y + log(-expm1(-y)) is the stable form for large y = r/γ.
        y = r / t.gamma
        return t.theta + (y + jnp.log(-jnp.expm1(-y))) / t.beta
    return jnp.log(r) - jnp.log1p(-r)
