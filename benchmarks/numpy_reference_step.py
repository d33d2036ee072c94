"""A plain float32 NumPy implementation of one Euler step of the dendritic microcircuit.

This is the baseline that ``bench_dynamics.py`` times against ``microcircuit.simulate.simulate``. It is
written from docs/model.md §1-§3 (not from the JAX sources) and does the same work per step:

* dendritic potentials from the rates at time t (docs/model.md §2):
  v_B,k = W_k r_{k-1} (+ b_k), v_A,k = B_k r_{k+1} + PI_k r^I_k, v^I_k = IP_k r_k (+ c_k), r_0 = x filtered;
* one Euler-Maruyama step of every soma (hidden and output pyramids, interneurons), with the current-form
  teaching currents g_som (u_trgt - u_N) and g_som (u_{k+1} - u^I_k), plus sigma*sqrt(dt)*N(0, 1) noise
  (or sigma*dt*N(0, 1) with ``noise="dt"``);
* the tau_0 low-pass filters of the input rates and the target potential;
* all four plasticity rules (7)-(10) with the dendritic-prediction attenuation factors, averaged over
  the batch, fed through the tau_w trace (tau_w dD/dt = -D + delta) and applied as W += dt*eta*D
  (or W += dt*eta*delta when tau_w = 0);
* every increment is computed from the state at t, then potentials and weights are updated together
  (docs/model.md §3, Decision).

Layer indexing follows the ``microcircuit`` package: list index i is docs/model.md's layer i + 1, so
``W[i]`` is W_{i+1} with shape (n_{i+1}, n_i), ``B[i]``/``PI[i]`` are (n_{i+1}, n_{i+2}) and ``IP[i]`` is
(n_{i+2}, n_{i+1}); potentials carry a leading batch axis.

Only NumPy is needed to run a step; :func:`from_microcircuit` converts a ``microcircuit`` model, weights
and state (imported lazily) into a :class:`NumpyCircuit` that starts from the same point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NumpyCircuit", "Params", "from_microcircuit"]

F32 = np.float32


@dataclass(frozen=True)
class Params:
    """Every constant of the step. Learning rates are per matrix (0 freezes it); units as in docs/model.md."""

    sizes: tuple[int, ...]
    g_lk: float = 0.1
    g_B: float = 1.0
    g_A: float = 0.8
    g_D: float = 1.0
    g_som: float = 0.8
    transfer: str = "soft_rectifier"  # or "logistic"
    gamma: float = 0.1
    beta: float = 1.0
    theta: float = 3.0
    dt: float = 0.1
    tau_0: float = 3.0
    tau_w: float = 30.0
    sigma: float = 0.1
    noise: str = "sqrt_dt"  # or "dt"
    bias: bool = True
    eta_W: tuple[float, ...] = ()
    eta_IP: tuple[float, ...] = ()
    eta_PI: tuple[float, ...] = ()
    eta_B: tuple[float, ...] = ()


class NumpyCircuit:
    """Weights, traces and potentials as float32 NumPy arrays, advanced in place by :meth:`step`."""

    def __init__(
        self,
        p: Params,
        weights: dict[str, list[np.ndarray]],
        u: list[np.ndarray],
        u_inter: list[np.ndarray],
        r_in: np.ndarray,
        u_trgt: np.ndarray,
    ) -> None:
        self.p = p
        N = len(p.sizes) - 1
        self.N = N
        f = lambda arrays: [np.array(a, dtype=F32, copy=True) for a in arrays]  # noqa: E731
        self.W, self.b = f(weights["W"]), f(weights["b"])
        self.B, self.PI = f(weights["B"]), f(weights["PI"])
        self.IP, self.c = f(weights["IP"]), f(weights["c"])
        self.u, self.u_inter = f(u), f(u_inter)
        self.r_in = np.array(r_in, dtype=F32, copy=True)
        self.u_trgt = np.array(u_trgt, dtype=F32, copy=True)
        self.batch = self.r_in.shape[0]
        # Filtered increments Delta, one per weight array (docs/model.md §3).
        self.tr = {name: [np.zeros_like(a) for a in getattr(self, name)] for name in ("W", "b", "B", "PI", "IP", "c")}
        # Scratch buffers, one per weight array, so the update allocates nothing large.
        self._tmps: dict[tuple[int, ...], np.ndarray] = {}
        self.scratch = {name: [np.empty_like(a) for a in getattr(self, name)] for name in ("W", "B", "PI", "IP")}
        self.eta = {"W": p.eta_W, "b": p.eta_W, "B": p.eta_B, "PI": p.eta_PI, "IP": p.eta_IP, "c": p.eta_IP}
        for key, n in (("W", N), ("B", N - 1), ("PI", N - 1), ("IP", N - 1)):
            if len(self.eta[key]) != n:
                raise ValueError(f"eta_{key}: need {n} learning rates, got {len(self.eta[key])}")
        # Attenuation factors of the dendritic predictions (rules 7 and 8).
        self.att_hidden = F32(p.g_B / (p.g_lk + p.g_B + p.g_A))
        self.att_output = F32(p.g_B / (p.g_lk + p.g_B))
        self.att_inter = F32(p.g_D / (p.g_lk + p.g_D))
        self.widths = [a.shape[1] for a in self.u + self.u_inter]
        self.splits = np.cumsum(self.widths)[:-1]
        self.noise_scale = F32(p.sigma * (np.sqrt(p.dt) if p.noise == "sqrt_dt" else p.dt))

    # -- transfer function --------------------------------------------------------------------------

    def phi(self, u: np.ndarray) -> np.ndarray:
        """Soft rectifier gamma*log(1 + exp(beta(u - theta))), stable for large |u|; or the logistic."""
        p = self.p
        if p.transfer == "soft_rectifier":
            z = F32(p.beta) * (u - F32(p.theta))
            return F32(p.gamma) * (np.maximum(z, F32(0)) + np.log1p(np.exp(-np.abs(z))))
        return F32(0.5) * (np.tanh(F32(0.5) * u) + F32(1))  # 1/(1+e^-u) without overflow

    # -- one step -----------------------------------------------------------------------------------

    def step(self, x: np.ndarray, target: np.ndarray, target_on: bool, rng: np.random.Generator | None) -> None:
        """Advance potentials, filters, traces and weights by one Euler step of dt (in place).

        ``x``: (B, n_0) presented input; ``target``: (B, n_N) presented target potential; ``rng``
        draws the somatic noise (None or sigma = 0: no noise)."""
        p, N, Bsz = self.p, self.N, self.batch
        dt = F32(p.dt)
        phi = self.phi

        # Dendrites, all from the state at t (docs/model.md §2).
        r = [phi(u) for u in self.u]
        r_inter = [phi(u) for u in self.u_inter]
        pre = [self.r_in, *r[:-1]]  # r_0 = x (low-passed), no phi on the input
        v_basal = []
        for i in range(N):
            v = pre[i] @ self.W[i].T
            if p.bias:
                v += self.b[i]
            v_basal.append(v)
        Br = [r[i + 1] @ self.B[i].T for i in range(N - 1)]  # B_k r_{k+1}, shared by v_A and rule (10)
        v_apical = [Br[i] + r_inter[i] @ self.PI[i].T for i in range(N - 1)]
        v_inter = []
        for i in range(N - 1):
            v = r[i] @ self.IP[i].T
            if p.bias:
                v += self.c[i]
            v_inter.append(v)

        # Plasticity increments delta (rules 7-10), batch-averaged outer products, written into the
        # scratch buffers (for vectors: fresh arrays).
        deltas: dict[str, list[np.ndarray | None]] = {k: [None] * len(v) for k, v in self.tr.items()}
        for i in range(N):
            if self.eta["W"][i] == 0:
                continue
            att = self.att_output if i == N - 1 else self.att_hidden
            err = r[i] - phi(att * v_basal[i])  # (7) phi(u_k) - phi(v^_B,k)
            deltas["W"][i] = self._outer(err, pre[i], self.scratch["W"][i])
            if p.bias:
                deltas["b"][i] = err.mean(axis=0)
        for i in range(N - 1):
            if self.eta["IP"][i] != 0:  # (8) [phi(u^I_k) - phi(v^^I_k)] r_k^T
                err = r_inter[i] - phi(self.att_inter * v_inter[i])
                deltas["IP"][i] = self._outer(err, r[i], self.scratch["IP"][i])
                if p.bias:
                    deltas["c"][i] = err.mean(axis=0)
            if self.eta["PI"][i] != 0:  # (9) [0 - v_A,k] (r^I_k)^T
                deltas["PI"][i] = self._outer(-v_apical[i], r_inter[i], self.scratch["PI"][i])
            if self.eta["B"][i] != 0:  # (10) [phi(u_k) - phi(B_k r_{k+1})] r_{k+1}^T
                err = r[i] - phi(Br[i])
                deltas["B"][i] = self._outer(err, r[i + 1], self.scratch["B"][i])

        # Euler-Maruyama step of the somata (docs/model.md §2).
        g_lk, g_B, g_A, g_D, g_som = (F32(v) for v in (p.g_lk, p.g_B, p.g_A, p.g_D, p.g_som))
        new_u = []
        for i in range(N - 1):  # hidden pyramids
            u = self.u[i]
            du = -g_lk * u + g_B * (v_basal[i] - u) + g_A * (v_apical[i] - u)
            new_u.append(u + dt * du)
        u = self.u[-1]  # output pyramids
        du = -g_lk * u + g_B * (v_basal[-1] - u)
        if target_on:
            du += g_som * (self.u_trgt - u)
        new_u.append(u + dt * du)
        new_inter = []
        for i, ui in enumerate(self.u_inter):
            du = -g_lk * ui + g_D * (v_inter[i] - ui) + g_som * (self.u[i + 1] - ui)
            new_inter.append(ui + dt * du)
        if p.sigma > 0 and rng is not None:
            xi = rng.standard_normal((Bsz, sum(self.widths)), dtype=F32)
            for a, part in zip(new_u + new_inter, np.split(xi, self.splits, axis=1), strict=True):
                a += self.noise_scale * part
        # Input and target filters: tau_0 dr_0/dt = -r_0 + x; the target follows u_N while off.
        if p.tau_0 > 0:
            a = F32(p.dt / p.tau_0)
            self.r_in = self.r_in + a * (x - self.r_in)
            self.u_trgt = self.u_trgt + a * (target - self.u_trgt) if target_on else new_u[-1].copy()
        else:
            self.r_in = np.array(x, dtype=F32, copy=True)
            self.u_trgt = np.array(target, dtype=F32, copy=True) if target_on else new_u[-1].copy()
        self.u, self.u_inter = new_u, new_inter

        # Weights and traces (docs/model.md §3): W += dt*eta*D with the trace D at time t, then
        # D += (dt/tau_w)(delta - D); all in place. delta lives in a scratch buffer that is reused.
        a_w = F32(p.dt / p.tau_w) if p.tau_w > 0 else None
        for name, trs in self.tr.items():
            if name in ("b", "c") and not p.bias:
                continue
            weights = getattr(self, name)
            for i, dl in enumerate(deltas[name]):
                eta = self.eta[name][i]
                if eta == 0 or dl is None:
                    continue
                rate = F32(p.dt * eta)
                if a_w is None:
                    np.multiply(dl, rate, out=dl)
                    np.add(weights[i], dl, out=weights[i])
                    continue
                np.subtract(dl, trs[i], out=dl)  # delta - D
                np.multiply(dl, a_w, out=dl)  # (dt/tau_w)(delta - D)
                tmp = self._tmp(trs[i])
                np.multiply(trs[i], rate, out=tmp)  # dt*eta*D(t)
                np.add(weights[i], tmp, out=weights[i])
                np.add(trs[i], dl, out=trs[i])

    def _outer(self, err: np.ndarray, pre: np.ndarray, out: np.ndarray) -> np.ndarray:
        """mean_b err_b pre_b^T into ``out``. B = 1: a broadcast product (BLAS is slow for rank 1)."""
        if err.shape[0] == 1:
            return np.multiply(err.T, pre, out=out)
        np.matmul(err.T, pre, out=out)
        return np.divide(out, F32(err.shape[0]), out=out)

    def _tmp(self, like: np.ndarray) -> np.ndarray:
        """One shared scratch array per shape, for dt*eta*D."""
        key = like.shape
        buf = self._tmps.get(key)
        if buf is None:
            buf = self._tmps[key] = np.empty_like(like)
        return buf

    # -- helpers ------------------------------------------------------------------------------------

    def run(
        self,
        x: np.ndarray,
        target: np.ndarray,
        target_on: np.ndarray,
        steps_per_pattern: int,
        rng: np.random.Generator | None,
    ) -> None:
        """Present patterns x[P, B, n_0] (targets target[P, B, n_N]) back to back for steps_per_pattern each."""
        for k in range(x.shape[0]):
            xk, tk, on = x[k], target[k], bool(target_on[k])
            for _ in range(steps_per_pattern):
                self.step(xk, tk, on, rng)

    def weights(self) -> dict[str, list[np.ndarray]]:
        return {n: getattr(self, n) for n in ("W", "b", "B", "PI", "IP", "c")}

    def all_finite(self) -> bool:
        arrays = [a for v in self.weights().values() for a in v] + self.u + self.u_inter
        arrays += [a for v in self.tr.values() for a in v]
        return all(bool(np.all(np.isfinite(a))) for a in arrays)


def from_microcircuit(model: Any, weights: Any, state: Any) -> NumpyCircuit:
    """A :class:`NumpyCircuit` with the constants of a ``microcircuit.config.Model`` and copies of its
    ``Weights`` and ``State`` (so both implementations start from the same point)."""
    net, g, pl, sim = model.network, model.conductances, model.plasticity, model.simulation
    if sim.nudging != "current":
        raise ValueError("the NumPy reference implements only the current form of the teaching current")
    p = Params(
        sizes=tuple(net.sizes),
        g_lk=g.g_lk,
        g_B=g.g_B,
        g_A=g.g_A,
        g_D=g.g_D,
        g_som=g.g_som,
        transfer=net.transfer.kind,
        gamma=net.transfer.gamma,
        beta=net.transfer.beta,
        theta=net.transfer.theta,
        dt=sim.dt,
        tau_0=sim.tau_0,
        tau_w=pl.tau_w,
        sigma=sim.sigma,
        noise=sim.noise,
        bias=net.bias,
        eta_W=tuple(pl.eta_W),
        eta_IP=tuple(pl.eta_IP),
        eta_PI=tuple(pl.eta_PI),
        eta_B=tuple(pl.eta_B),
    )
    w = {name: [np.asarray(a) for a in getattr(weights, name)] for name in ("W", "b", "B", "PI", "IP", "c")}
    return NumpyCircuit(
        p,
        w,
        [np.asarray(u) for u in state.u],
        [np.asarray(u) for u in state.u_inter],
        np.asarray(state.r_in),
        np.asarray(state.u_trgt),
    )
