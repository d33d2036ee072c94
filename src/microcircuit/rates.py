"""One learning rate for every depth (docs/model.md §5, "One rate for every depth").

In a self-predicting circuit with weak nudging the error that reaches layer k is attenuated by
λ_N·λ_A^{N−k} (λ^{N−k+1}, docs/model.md §5): rule (7) changes W_k by λ_N·λ_A^{N−k}/a_k times backprop's
gradient of the feed-forward network (with the top-down B_k in place of W_{k+1}ᵀ for random feedback),
where a_k = a_N·a_h^{N−k}, a_h = g_B/(g_lk+g_B+g_A), a_N = g_B/(g_lk+g_B), is the attenuation that the
feed-forward gradient itself carries. The rule undoes the error's fading and nothing else:

    η_k = lr / (T·λ_N·λ_A^{N−k})                     circuit, per ms over a presentation of T ms
    ΔW_k = lr·(1/a_k)·(update of W_k)                  backprop, feedback alignment, direct FA
    η^IP_k = c_k·η_{k+1} / λ_I,  c_k = (g_lk+g_D)/g_D · g_B/(g_lk+g_B+g_A(k+1))

(g_A(k+1) = 0 when layer k+1 is the output; IP*_k = c_k·W_{k+1}, docs/model.md §4), so that at the
same ``lr`` every method moves every layer by lr/a_k times its own update, and the circuit with transported
feedback moves it by what backprop with these layer rates does. The last line keeps IP_k tracking W_{k+1}
to first order. T is ``stimulus.duration``, less the learning lag in continuous time.
"""

from __future__ import annotations

import dataclasses

from .config import Conductances, Config, Model

__all__ = ["CIRCUIT_METHODS", "circuit_rates", "layer_gains", "resolve_model"]

# the methods whose rates are per-matrix plasticity rates (the rest step by training.lr or lr_backprop)
CIRCUIT_METHODS = ("microcircuit", "dynamics")


def layer_gains(g: Conductances, depth: int) -> tuple[float, ...]:
    """1/a_k for k = 1..N: the factor by which the one-rate rule scales each layer's step (module docstring)."""
    return tuple(1.0 / (g.basal_output * g.basal_hidden ** (depth - k)) for k in range(1, depth + 1))


def circuit_rates(g: Conductances, depth: int, lr: float, presentation: float
                  ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(η_1..η_N, η^IP_1..η^IP_{N−1}) per ms for base rate ``lr`` and a presentation of ``presentation`` ms
    (module docstring)."""
    eta_W = tuple(lr / (presentation * g.lambda_N * g.lambda_A ** (depth - k)) for k in range(1, depth + 1))
    eta_IP = []
    for k in range(depth - 1):  # hidden layer k + 1 (0-based k), its interneurons copy layer k + 2
        g_A_up = 0.0 if k + 2 == depth else g.g_A
        c = (g.g_lk + g.g_D) / g.g_D * g.g_B / (g.g_lk + g.g_B + g_A_up)  # IP*_k = c·W_{k+1} (§4)
        eta_IP.append(c * eta_W[k + 1] / g.lambda_I)
    return eta_W, tuple(eta_IP)


def resolve_model(cfg: Config) -> Model:
    """``cfg.model``, with the circuits' rates derived from ``training.lr`` when it is set (> 0)."""
    model = cfg.model
    tr = cfg.training
    if tr.lr <= 0 or tr.method not in CIRCUIT_METHODS:
        return model
    presentation = cfg.stimulus.duration - (model.plasticity.learning_lag if tr.method == "dynamics" else 0.0)
    eta_W, eta_IP = circuit_rates(model.conductances, model.network.depth, tr.lr, presentation)
    return dataclasses.replace(model, plasticity=dataclasses.replace(model.plasticity, eta_W=eta_W, eta_IP=eta_IP))
