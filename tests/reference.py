"""A small NumPy float64 reference implementation of the microcircuit (docs/model.md §2–§3), for the tests.

Written from docs/model.md, independently of the package's JAX code; only the *conventions* are shared:

* layer k of docs/model.md is list index k − 1 (``W[0]`` is W_1, ``u[0]`` is u_1, ``IP[0]`` is IP_1, ...);
* arrays carry a leading batch axis; plasticity increments are averaged over the batch;
* one Euler step computes every dendritic potential, rate and weight increment from the state at t and
  then updates potentials, filters and weights together (docs/model.md §3, Decision);
* while no target is presented, the low-passed target follows the (new) output potential u_N;
* weights: ``W += dt·η·Δ(t)`` then ``Δ += dt/τ_w·(δ(t) − Δ(t))``; with τ_w = 0, ``W += dt·η·δ(t)``;
* the bias b_k of W_k learns with η_W, the interneuron bias c_k with η_IP.

Only the deterministic dynamics (σ = 0) and the current form of the teaching current are covered.

Prospective mode (docs/model.md §8, ``Params.prospective``): the state also holds ``u_pro`` and
``u_inter_pro``, the prospective potentials of the previous step. At each step, bottom-up, ŭ_k is the steady
state (the formulas of docs/model.md §2) of layer k's inputs: this step's φ(ŭ_{k−1}) at the basal dendrite,
the previous step's φ(ŭ_{k+1}) and φ(ŭ^I_k) at the apical one; then ŭ^I_k from φ(ŭ_k) and ŭ_{k+1}. Every
rate is φ(ŭ) and the rules read these rates; rules (9) and (10) pair v_A with the previous step's rates.

Weights are a dict ``{"W": [...], "b": [...], "B": [...], "PI": [...], "IP": [...], "c": [...]}`` and a
state is a dict ``{"u": [...], "u_inter": [...], "r_in": array, "u_trgt": array}`` of float64 arrays.
The adapters at the bottom convert to and from the package's ``Weights`` / ``State`` named tuples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_NAMES = ("W", "b", "B", "PI", "IP", "c")


@dataclass(frozen=True)
class Params:
    """All numbers the reference needs (docs/model.md §2–§3)."""

    g_lk: float = 0.1
    g_B: float = 1.0
    g_A: float = 0.8
    g_D: float = 1.0
    g_som: float = 0.8
    dt: float = 0.1
    tau_0: float = 3.0
    tau_w: float = 30.0
    eta_W: tuple[float, ...] = ()
    eta_IP: tuple[float, ...] = ()
    eta_PI: tuple[float, ...] = ()
    eta_B: tuple[float, ...] = ()
    bias: bool = False
    kind: str = "soft_rectifier"
    gamma: float = 0.1
    beta: float = 1.0
    theta: float = 3.0
    integrator: str = "euler"  # or "exponential": u(t+dt) = u∞ + (u − u∞)·e^(−g·dt), filters alike
    update_every: int = 1  # weights held for this many steps, then their summed increments applied
    prospective: bool = False  # Latent Equilibrium (docs/model.md §8)
    update_order: str = "sweep"  # or "synchronous": every dendrite reads the previous step's rates (§8)


# --------------------------------------------------------------------------------------------------
# Transfer function


def phi(p: Params, u: np.ndarray) -> np.ndarray:
    """Soft rectifier γ·log(1 + exp(β(u − θ))) or logistic 1/(1 + e^(−u)), both in stable forms."""
    u = np.asarray(u, np.float64)
    if p.kind == "soft_rectifier":
        return p.gamma * np.logaddexp(0.0, p.beta * (u - p.theta))
    return 0.5 * (1.0 + np.tanh(0.5 * u))  # = 1/(1 + e^(−u)) without overflow


# --------------------------------------------------------------------------------------------------
# Instantaneous quantities


def prospective_dendrites(p: Params, w: dict, s: dict, target_on: bool) -> dict:
    """docs/model.md §8: the bottom-up sweep of prospective potentials (steady states of the inputs)."""
    N = len(s["u"])
    sync = p.update_order == "synchronous"
    r_before = [phi(p, u) for u in s["u_pro"]]  # φ(ŭ_k) of the previous step
    r_top = r_before[1:]
    r_top_inter = [phi(p, u) for u in s["u_inter_pro"]]
    v_apical = [r_top[k] @ w["B"][k].T + r_top_inter[k] @ w["PI"][k].T for k in range(N - 1)]
    below, v_basal, u_pro, r = [s["r_in"]], [], [], []
    for k in range(N):
        v = below[k] @ w["W"][k].T + (w["b"][k] if p.bias else 0.0)
        v_basal.append(v)
        if k < N - 1:  # PAL (docs/model.md §12): the soma sees v_A + ξ
            u_pro.append((p.g_B * v + p.g_A * (v_apical[k] + _xi(s, k))) / (p.g_lk + p.g_B + p.g_A))
        elif target_on:
            u_pro.append((p.g_B * v + p.g_som * s["u_trgt"]) / (p.g_lk + p.g_B + p.g_som))
        else:
            u_pro.append(p.g_B * v / (p.g_lk + p.g_B))
        r.append(phi(p, u_pro[k]))
        below.append(r_before[k] if sync else r[k])  # synchronous: the layer below one step earlier
    r_ip, upper = (r_before, s["u_pro"]) if sync else (r, u_pro)
    v_inter = [r_ip[k] @ w["IP"][k].T + (w["c"][k] if p.bias else 0.0) for k in range(N - 1)]
    u_inter_pro = [(p.g_D * v_inter[k] + p.g_som * upper[k + 1]) / (p.g_lk + p.g_D + p.g_som) for k in range(N - 1)]
    return {"r": r, "r_inter": [phi(p, u) for u in u_inter_pro], "pre": below[:N], "v_basal": v_basal,
            "v_apical": v_apical, "v_inter": v_inter, "u_pro": u_pro, "u_inter_pro": u_inter_pro,
            "r_top": r_top, "r_top_inter": r_top_inter, "r_ip": r_ip, "u_upper": upper}


def dendrites(p: Params, w: dict, s: dict, target_on: bool = False) -> dict:
    """Rates and dendritic potentials at one time point (docs/model.md §2; §8 in prospective mode)."""
    if p.prospective:
        return prospective_dendrites(p, w, s, target_on)
    N = len(s["u"])
    r = [phi(p, u) for u in s["u"]]
    r_inter = [phi(p, u) for u in s["u_inter"]]
    below = [s["r_in"], *r[:-1]]  # presynaptic rates of W_k: r_0 = x (no φ on the input), r_1, ...
    v_basal = []
    for k in range(N):
        v = below[k] @ w["W"][k].T
        if p.bias:
            v = v + w["b"][k]
        v_basal.append(v)
    v_apical = [r[k + 1] @ w["B"][k].T + r_inter[k] @ w["PI"][k].T for k in range(N - 1)]
    v_inter = []
    for k in range(N - 1):
        v = r[k] @ w["IP"][k].T
        if p.bias:
            v = v + w["c"][k]
        v_inter.append(v)
    return {"r": r, "r_inter": r_inter, "pre": below, "v_basal": v_basal, "v_apical": v_apical,
            "v_inter": v_inter}


def time_derivatives(p: Params, s: dict, d: dict, target_on: bool) -> tuple[list, list]:
    """du_k/dt and du^I_k/dt of docs/model.md §2 with σ = 0 (current-form teaching currents)."""
    N = len(s["u"])
    du = []
    for k in range(N - 1):
        u = s["u"][k]
        du.append(-p.g_lk * u + p.g_B * (d["v_basal"][k] - u) + p.g_A * (d["v_apical"][k] + _xi(s, k) - u))
    u = s["u"][N - 1]
    du_N = -p.g_lk * u + p.g_B * (d["v_basal"][N - 1] - u)
    if target_on:
        du_N = du_N + p.g_som * (s["u_trgt"] - u)
    du.append(du_N)
    du_inter = []
    nudge = d["u_upper"] if p.prospective else s["u"]  # interneurons follow ŭ_{k+1} in prospective mode
    for k in range(N - 1):
        ui = s["u_inter"][k]
        du_inter.append(-p.g_lk * ui + p.g_D * (d["v_inter"][k] - ui) + p.g_som * (nudge[k + 1] - ui))
    return du, du_inter


def _xi(s: dict, k: int) -> np.ndarray | float:
    """PAL's apical noise ξ_k of hidden layer k (docs/model.md §12), 0 without PAL."""
    return s["xi"][k] if "xi" in s else 0.0


# Attenuation factors of the dendritic predictions (docs/model.md §3).
def basal_hidden(p: Params) -> float:
    return p.g_B / (p.g_lk + p.g_B + p.g_A)


def basal_output(p: Params) -> float:
    return p.g_B / (p.g_lk + p.g_B)


def dendrite_inter(p: Params) -> float:
    return p.g_D / (p.g_lk + p.g_D)


def _batch_outer(err: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """mean over the batch of err_b pre_bᵀ."""
    return np.einsum("bi,bj->ij", err, pre) / err.shape[0]


def increments(p: Params, w: dict, s: dict, d: dict) -> dict:
    """Instantaneous increments δ of rules (7)–(10) for every array (biases included)."""
    N = len(s["u"])
    out: dict = {name: [] for name in WEIGHT_NAMES}
    r_top = d["r_top"] if p.prospective else d["r"][1:]  # rates at the apical dendrites
    r_top_inter = d["r_top_inter"] if p.prospective else d["r_inter"]
    for k in range(N):  # (7): [φ(u_k) − φ(v̂_B,k)] r_{k−1}ᵀ
        att = basal_output(p) if k == N - 1 else basal_hidden(p)
        err = d["r"][k] - phi(p, att * d["v_basal"][k])
        out["W"].append(_batch_outer(err, d["pre"][k]))
        out["b"].append(err.mean(axis=0))
    for k in range(N - 1):
        err = d["r_inter"][k] - phi(p, dendrite_inter(p) * d["v_inter"][k])  # (8)
        out["IP"].append(_batch_outer(err, d.get("r_ip", d["r"])[k]))  # the rates that reached v^I_k
        out["c"].append(err.mean(axis=0))
        out["PI"].append(_batch_outer(-d["v_apical"][k], r_top_inter[k]))  # (9)
        err = d["r"][k] - phi(p, r_top[k] @ w["B"][k].T)  # (10)
        out["B"].append(_batch_outer(err, r_top[k]))
    return out


def _rate(p: Params, name: str, k: int) -> float:
    table = {"W": p.eta_W, "b": p.eta_W, "B": p.eta_B, "PI": p.eta_PI, "IP": p.eta_IP, "c": p.eta_IP}
    return float(table[name][k])


# --------------------------------------------------------------------------------------------------
# Time stepping


def step(p: Params, w: dict, traces: dict, s: dict, x: np.ndarray, target: np.ndarray, target_on: bool,
         plastic: bool = True) -> tuple[dict, dict, dict]:
    """One synchronous forward-Euler step of potentials, input/target filters, traces and weights."""
    d = dendrites(p, w, s, target_on)
    if p.integrator == "euler":
        du, du_inter = time_derivatives(p, s, d, target_on)
        u = [a + p.dt * b for a, b in zip(s["u"], du, strict=True)]
        u_inter = [a + p.dt * b for a, b in zip(s["u_inter"], du_inter, strict=True)]
    else:  # exact relaxation towards the steady state of docs/model.md §2 for the dendrites held over dt
        inf = steady_state_rhs(p, s, d, target_on)
        N = len(s["u"])
        g_out = p.g_lk + p.g_B + (p.g_som if target_on else 0.0)
        g_u = [p.g_lk + p.g_B + p.g_A] * (N - 1) + [g_out]
        u = [a + (ui - a) * np.exp(-g * p.dt) for a, ui, g in zip(inf["u"], s["u"], g_u, strict=True)]
        g_i = p.g_lk + p.g_D + p.g_som
        u_inter = [a + (ui - a) * np.exp(-g_i * p.dt) for a, ui in zip(inf["u_inter"], s["u_inter"], strict=True)]
    if p.tau_0 > 0:
        a = p.dt / p.tau_0 if p.integrator == "euler" else 1.0 - np.exp(-p.dt / p.tau_0)
        r_in = s["r_in"] + a * (x - s["r_in"])
        u_trgt = s["u_trgt"] + a * (target - s["u_trgt"]) if target_on else u[-1].copy()
    else:
        r_in = np.broadcast_to(x, s["r_in"].shape).copy()
        u_trgt = np.broadcast_to(target, u[-1].shape).copy() if target_on else u[-1].copy()
    s_next = {"u": u, "u_inter": u_inter, "r_in": r_in, "u_trgt": u_trgt}
    if p.prospective:  # this step's ŭ, for the apical dendrites at the next step (docs/model.md §8)
        s_next["u_pro"], s_next["u_inter_pro"] = d["u_pro"], d["u_inter_pro"]
    if not plastic:
        return w, traces, s_next
    w_next, tr_next = apply_increments(p, w, traces, increments(p, w, s, d))
    return w_next, tr_next, s_next


def apply_increments(p: Params, w: dict, traces: dict, delta: dict) -> tuple[dict, dict]:
    """One Euler step of weights and traces: W += dt·η·Δ, Δ += dt/τ_w·(δ − Δ); W += dt·η·δ if τ_w = 0.

    Arrays with η = 0 (and the biases when biases are off) keep their weights and traces."""
    w_next: dict = {}
    tr_next: dict = {}
    for name in WEIGHT_NAMES:
        w_next[name], tr_next[name] = [], []
        learns = p.bias or name not in ("b", "c")
        for k, (wk, tk, dk) in enumerate(zip(w[name], traces[name], delta[name], strict=True)):
            eta = _rate(p, name, k) if learns else 0.0
            if eta == 0.0:
                w_next[name].append(wk)
                tr_next[name].append(tk)
            elif p.tau_w > 0:
                a = p.dt / p.tau_w if p.integrator == "euler" else 1.0 - np.exp(-p.dt / p.tau_w)
                w_next[name].append(wk + p.dt * eta * tk)
                tr_next[name].append(tk + a * (dk - tk))
            else:
                w_next[name].append(wk + p.dt * eta * dk)
                tr_next[name].append(tk)
    return w_next, tr_next


def run(p: Params, w: dict, s: dict, x: np.ndarray, target: np.ndarray, target_on: np.ndarray,
        steps_per_pattern: int, stride: int, traces: dict | None = None,
        plastic: bool = True, lag_steps: int = 0) -> tuple[dict, dict, dict, list[dict]]:
    """Present patterns x[P, B, n_0] (targets target[P, B, n_N], flags target_on[P]) back to back.

    Returns the final weights, traces and state, and a snapshot (deep copy of the state) after every
    ``stride`` steps. ``lag_steps``: the first steps of each pattern change no weight or trace.
    """
    traces = zeros_like(w) if traces is None else traces
    snaps = []
    n_steps = steps_per_pattern * x.shape[0]
    pending = zeros_like(w)  # increments summed while the weights are held (update_every > 1)
    for n in range(n_steps):
        q = n // steps_per_pattern
        learn = plastic and n % steps_per_pattern >= lag_steps
        if p.update_every == 1 or not plastic:
            w, traces, s = step(p, w, traces, s, x[q], target[q], bool(target_on[q]), learn)
        else:
            d = dendrites(p, w, s, bool(target_on[q]))
            delta = increments(p, w, s, d)
            _, _, s_next = step(p, w, traces, s, x[q], target[q], bool(target_on[q]), plastic=False)
            if learn:
                pending = {k: [a + b for a, b in zip(pending[k], delta[k], strict=True)] for k in pending}
            s = s_next
            if (n + 1) % p.update_every == 0:
                w, traces = apply_increments(p, w, traces, pending)
                pending = zeros_like(w)
        if (n + 1) % stride == 0:
            snaps.append(copy_state(s))
    return w, traces, s, snaps


def steady_state_rhs(p: Params, s: dict, d: dict, target_on: bool) -> dict:
    """Right-hand sides of the steady-state formulas of docs/model.md §2, evaluated at ``s`` / ``d``."""
    N = len(s["u"])
    hidden = [(p.g_B * d["v_basal"][k] + p.g_A * (d["v_apical"][k] + _xi(s, k))) / (p.g_lk + p.g_B + p.g_A)
              for k in range(N - 1)]
    if target_on:
        out = (p.g_B * d["v_basal"][-1] + p.g_som * s["u_trgt"]) / (p.g_lk + p.g_B + p.g_som)
    else:
        out = p.g_B * d["v_basal"][-1] / (p.g_lk + p.g_B)
    upper = d["u_upper"] if p.prospective else s["u"]  # interneurons follow ŭ_{k+1} in prospective mode
    inter = [(p.g_D * d["v_inter"][k] + p.g_som * upper[k + 1]) / (p.g_lk + p.g_D + p.g_som)
             for k in range(N - 1)]
    return {"u": [*hidden, out], "u_inter": inter}


# --------------------------------------------------------------------------------------------------
# PAL (docs/model.md §12), forward Euler only


@dataclass(frozen=True)
class PalParams:
    """PAL's numbers: apical OU noise σ, τ_ξ; high-pass τ_HP; B's rate η_B per hidden layer; decay α."""

    sigma: float = 0.05
    tau_xi: float = 0.1
    tau_hp: float = 0.1
    eta_B: tuple[float, ...] = ()
    alpha: float = 0.0


def pal_step(p: Params, q: PalParams, w: dict, traces: dict, s: dict, x: np.ndarray, target: np.ndarray,
             target_on: bool, draws: list) -> tuple[dict, dict, dict]:
    """One step with PAL. The state also holds ``xi`` (ξ_k(t)), ``r_hp`` (r̃_{k+1}(t − dt)) and ``r_prev``
    (r_{k+1}(t − dt)); ``draws`` are the N(0,1) numbers of ξ's step, one (B, n_k) array per hidden layer.

    The somata see v_A + ξ (in ``dendrites`` and ``time_derivatives`` above); rule (9) v_A alone. Then
    r̃(t) = r̃ + (r_{k+1}(t) − r_{k+1}(t − dt)) − dt/τ_HP·r̃, B_k += dt·η_B·(mean_b ξ_k r̃_{k+1}(t)ᵀ − α B_k)
    (no τ_w trace), ξ ← ξ + (1/τ_ξ)(σ√(dt τ_ξ)·N(0,1) − dt·ξ). ``p.eta_B`` (rule 10) must be zero."""
    assert not any(p.eta_B) and p.integrator == "euler"
    d = dendrites(p, w, s, target_on)
    w_next, tr_next, s_next = step(p, w, traces, s, x, target, target_on)
    N = len(s["u"])
    r_hp = [s["r_hp"][k] + (d["r"][k + 1] - s["r_prev"][k]) - p.dt / q.tau_hp * s["r_hp"][k] for k in range(N - 1)]
    w_next["B"] = [w["B"][k] + p.dt * q.eta_B[k] * (_batch_outer(s["xi"][k], r_hp[k]) - q.alpha * w["B"][k])
                   for k in range(N - 1)]
    s_next["xi"] = [xi + (q.sigma * np.sqrt(p.dt * q.tau_xi) * n - p.dt * xi) / q.tau_xi
                    for xi, n in zip(s["xi"], draws, strict=True)]
    s_next["r_hp"] = r_hp
    s_next["r_prev"] = [r.copy() for r in d["r"][1:]]
    return w_next, tr_next, s_next


# --------------------------------------------------------------------------------------------------
# Helpers


def zeros_like(w: dict) -> dict:
    return {name: [np.zeros_like(a) for a in w[name]] for name in WEIGHT_NAMES}


def copy_state(s: dict) -> dict:
    return {k: [a.copy() for a in v] if isinstance(v, list) else v.copy() for k, v in s.items()}


def random_weights(rng: np.random.Generator, sizes: tuple[int, ...], scale: float = 1.0,
                   bias_scale: float = 0.0) -> dict:
    """Uniform weights in [−scale, scale], biases in [−bias_scale, bias_scale], float64."""
    N = len(sizes) - 1

    def unif(shape: tuple[int, ...], sc: float) -> np.ndarray:
        return rng.uniform(-sc, sc, shape)

    return {
        "W": [unif((sizes[k + 1], sizes[k]), scale) for k in range(N)],
        "b": [unif((sizes[k + 1],), bias_scale) for k in range(N)],
        "B": [unif((sizes[k + 1], sizes[k + 2]), scale) for k in range(N - 1)],
        "PI": [unif((sizes[k + 1], sizes[k + 2]), scale) for k in range(N - 1)],
        "IP": [unif((sizes[k + 2], sizes[k + 1]), scale) for k in range(N - 1)],
        "c": [unif((sizes[k + 2],), bias_scale) for k in range(N - 1)],
    }


def rest_state(sizes: tuple[int, ...], batch: int) -> dict:
    """All potentials and filters at 0."""
    N = len(sizes) - 1
    return {"u": [np.zeros((batch, sizes[k + 1])) for k in range(N)],
            "u_inter": [np.zeros((batch, sizes[k + 2])) for k in range(N - 1)],
            "r_in": np.zeros((batch, sizes[0])), "u_trgt": np.zeros((batch, sizes[-1]))}


def random_state(rng: np.random.Generator, sizes: tuple[int, ...], batch: int, scale: float = 1.0) -> dict:
    N = len(sizes) - 1
    return {
        "u": [rng.uniform(-scale, scale, (batch, sizes[k + 1])) for k in range(N)],
        "u_inter": [rng.uniform(-scale, scale, (batch, sizes[k + 2])) for k in range(N - 1)],
        "r_in": rng.uniform(0.0, 1.0, (batch, sizes[0])),
        "u_trgt": rng.uniform(-scale, scale, (batch, sizes[-1])),
    }


# --------------------------------------------------------------------------------------------------
# Adapters to the package's containers (layout only; no equations)


def params_of(model) -> Params:
    """The reference parameters of a ``microcircuit.config.Model``."""
    g, pl, sim, net = model.conductances, model.plasticity, model.simulation, model.network
    assert sim.nudging == "current", "the reference implements the current form of the teaching current"
    t = net.transfer
    return Params(g_lk=g.g_lk, g_B=g.g_B, g_A=g.g_A, g_D=g.g_D, g_som=g.g_som, dt=sim.dt, tau_0=sim.tau_0,
                  tau_w=pl.tau_w, eta_W=tuple(pl.eta_W), eta_IP=tuple(pl.eta_IP), eta_PI=tuple(pl.eta_PI),
                  eta_B=tuple(pl.eta_B), bias=net.bias, kind=t.kind, gamma=t.gamma, beta=t.beta,
                  theta=t.theta, integrator=sim.integrator, update_every=pl.update_every,
                  prospective=sim.prospective, update_order=sim.update_order)


def to_package_weights(w: dict):
    from microcircuit.network import Weights

    return Weights(*(tuple(np.asarray(a) for a in w[name]) for name in WEIGHT_NAMES))


def from_package_weights(w) -> dict:
    return {name: [np.asarray(a, np.float64) for a in getattr(w, name)] for name in WEIGHT_NAMES}


def to_package_state(s: dict):
    from microcircuit.dynamics import State

    return State(tuple(s["u"]), tuple(s["u_inter"]), s["r_in"], s["u_trgt"], tuple(s.get("u_pro", ())),
                 tuple(s.get("u_inter_pro", ())), tuple(s.get("xi", ())), tuple(s.get("r_hp", ())),
                 tuple(s.get("r_prev", ())))


def from_package_state(s) -> dict:
    out = {"u": [np.asarray(a, np.float64) for a in s.u], "u_inter": [np.asarray(a, np.float64) for a in s.u_inter],
           "r_in": np.asarray(s.r_in, np.float64), "u_trgt": np.asarray(s.u_trgt, np.float64)}
    if s.u_pro:
        out["u_pro"] = [np.asarray(a, np.float64) for a in s.u_pro]
        out["u_inter_pro"] = [np.asarray(a, np.float64) for a in s.u_inter_pro]
    for name in ("xi", "r_hp", "r_prev"):  # PAL (docs/model.md §12)
        if getattr(s, name):
            out[name] = [np.asarray(a, np.float64) for a in getattr(s, name)]
    return out
