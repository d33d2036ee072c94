"""Hyper-parameter search for the MNIST presets on the validation split (never the test set).

Each trial runs a preset with --set style overrides for a few epochs and records the validation error
of every epoch and the best one. Results go to a JSON-lines file (one trial a line) and to stdout. The
test error that ``run`` computes at the end is deliberately dropped here: choices use validation only.

    python scripts/mnist_search.py --data /work/shared/data/mnist.npz --grid mc1 --epochs 1 \
        --n-train 10000 --out docs/mnist_search.jsonl
    python scripts/mnist_search.py --table docs/mnist_search.jsonl   # the markdown table of all trials
    python scripts/mnist_search.py ... --trial 'network.init.W=0.1' 'training.lr_backprop=0.3'

Microcircuit trials are written in terms of (λ_A, λ_N, η_3, IP factor): ``mc_sets`` turns them into
conductances (g_lk = 0.1, g_B = g_D = 1), bottom-up rates with the inverse-mixing-factor scaling
(η_{k} = η_{k+1}/λ_A) and interneuron rates that let IP_k track W_{k+1} to first order
(η^IP_k = f · a_{k+1} · η_{k+1} / λ_I, a = 1 − λ_A below a hidden layer, 1 below the output).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from microcircuit.config import apply_overrides
from microcircuit.experiments import mnist as mnist_exp
from microcircuit.presets import get_preset

G_LK, G_B, G_D = 0.1, 1.0, 1.0


def g_from_lambda(lam: float, rest: float) -> float:
    """The conductance g with g / (rest + g) = lam."""
    return lam * rest / (1.0 - lam)


def rates(lam_A: float, lam_N: float, eta_out: float, f_ip: float = 1.0, depth: int = 3) -> dict:
    g_som = g_from_lambda(lam_N, G_LK + G_B)
    lam_I = g_som / (G_LK + G_D + g_som)
    eta_W = [eta_out / lam_A ** (depth - 1 - k) for k in range(depth)]
    eta_IP = [f_ip * ((1 - lam_A) if k + 1 < depth - 1 else 1.0) * eta_W[k + 1] / lam_I for k in range(depth - 1)]
    return {"g_A": g_from_lambda(lam_A, G_LK + G_B), "g_som": g_som, "eta_W": eta_W, "eta_IP": eta_IP}


def fmt(xs: list[float]) -> str:
    return "[" + ",".join(f"{x:.4g}" for x in xs) + "]"


def mc_sets(
    lam_A: float,
    lam_N: float,
    eta_out: float,
    f_ip: float = 1.0,
    W: float = 0.05,
    B: float = 0.05,
    depth: int = 3,
    ip_zero: tuple[int, ...] = (),
    w_zero: tuple[int, ...] = (),
) -> list[str]:
    r = rates(lam_A, lam_N, eta_out, f_ip, depth)
    eta_W = [0.0 if k in w_zero else x for k, x in enumerate(r["eta_W"])]
    eta_IP = [0.0 if k in ip_zero else x for k, x in enumerate(r["eta_IP"])]
    return [
        f"conductances.g_A={r['g_A']:.4g}",
        f"conductances.g_som={r['g_som']:.4g}",
        f"plasticity.eta_W={fmt(eta_W)}",
        f"plasticity.eta_IP={fmt(eta_IP)}",
        f"network.init.W={W}",
        f"network.init.B={B}",
    ]


def grid(name: str) -> list[list[str]]:
    if name == "base":
        return [[]]
    if name == "bp1":  # backprop: learning rate x initial scale
        return [
            [f"training.lr_backprop={lr}", f"network.init.W={s}"]
            for lr, s in itertools.product((0.1, 0.3, 1.0), (0.05, 0.1, 0.2))
        ]
    if name == "ip":  # does IP tracking matter? base λ's, base η_3 x m, IP by the tracking formula
        return [mc_sets(0.3, 0.1, m * 1e-4, f) for m, f in itertools.product((1, 3, 10), (0.0, 1.0))]
    if name == "mc1":  # λ's x output rate x init
        out = []
        for lam_A, lam_N in ((0.3, 0.1), (0.3, 0.3), (0.5, 0.5)):
            for eff in (0.01, 0.03, 0.1):  # effective output rate 100 · η_3 · λ_N
                for W in (0.05, 0.2):
                    out.append(mc_sets(lam_A, lam_N, eff / (100 * lam_N), 1.0, W, W))
        return out
    if name == "mc2":  # λ's x effective output rate x IP factor, init 0.3
        out = []
        for lam_A, lam_N in ((0.3, 0.1), (0.5, 0.5), (0.7, 0.7)):
            for eff in (0.03, 0.1):
                for f in (1.0, 0.3):
                    out.append(mc_sets(lam_A, lam_N, eff / (100 * lam_N), f, 0.3, 0.3))
        return out
    if name == "mc3":  # strong nudging: λ_A, λ_N in {0.5, 0.8}; init W 0.15/(1 − λ_A) keeps u_k's spread
        out = []
        for lam_A, lam_N in itertools.product((0.5, 0.8), (0.5, 0.8)):
            for eff in (0.05, 0.1):
                out.append(mc_sets(lam_A, lam_N, eff / (100 * lam_N), 1.0, round(0.15 / (1 - lam_A), 3), 0.3))
        return out
    if name == "mc4":  # λ_A = λ_N = 0.8: output rate x init W x feedback scale B
        return [
            mc_sets(0.8, 0.8, eff / 80, 1.0, W, B)
            for eff, W, B in itertools.product((0.03, 0.05), (0.75, 1.5), (0.3, 1.0, 3.0))
        ]
    if name == "mc5":  # λ_A = λ_N = 0.8: larger feedback
        return [
            mc_sets(0.8, 0.8, eff / 80, 1.0, W, B)
            for eff, W, B in itertools.product((0.05, 0.07), (0.5, 0.75), (3.0, 10.0, 30.0))
        ]
    if name == "mc6":  # λ pairs x feedback scale around the mc5 optimum (output rate 0.05, init W 0.5)
        return [
            mc_sets(lam_A, lam_N, 0.05 / (100 * lam_N), 1.0, 0.5, B)
            for (lam_A, lam_N), B in itertools.product(
                ((0.8, 0.8), (0.6, 0.8), (0.8, 0.5), (0.9, 0.9)), (1.5, 3.0, 5.0)
            )
        ]
    if name == "mc7":  # λ_A = 0.8: λ_N x output rate x B, init W 0.5
        return [
            mc_sets(0.8, lam_N, eff / (100 * lam_N), 1.0, 0.5, B)
            for lam_N, eff, B in itertools.product((0.3, 0.5), (0.03, 0.05, 0.07), (2.0, 3.0))
        ]
    if name == "mc8":  # the best of mc6/mc7, longer (run with --epochs 3 --n-train 20000)
        out = [
            mc_sets(0.8, 0.3, 0.03 / 30, 1.0, 0.5, 3.0),
            mc_sets(0.8, 0.5, 0.05 / 50, 1.0, 0.5, 3.0),
            mc_sets(0.8, 0.5, 0.03 / 50, 1.0, 0.5, 3.0),
            mc_sets(0.8, 0.8, 0.05 / 80, 1.0, 0.5, 5.0),
        ]
        return [*out, [*mc_sets(0.8, 0.5, 0.05 / 50, 1.0, 0.5, 3.0), "training.lr_decay=0.7"]]
    if name == "mc9":  # stability over epochs: smaller rates, lr decay (run with --epochs 4 --n-train 20000)
        d7 = ["training.lr_decay=0.7"]
        return [
            mc_sets(0.8, 0.3, 0.03 / 30, 1.0, 0.5, 3.0) + d7,
            mc_sets(0.8, 0.3, 0.02 / 30, 1.0, 0.5, 3.0),
            mc_sets(0.8, 0.3, 0.03 / 30, 1.0, 0.5, 2.0) + d7,
            mc_sets(0.8, 0.5, 0.03 / 50, 1.0, 0.5, 3.0) + d7,
            mc_sets(0.8, 0.3, 0.03 / 30, 1.0, 0.3, 3.0) + d7,
        ]
    if name == "mc10":  # gentler decay, longer (run with --epochs 6 --n-train 20000)
        return [
            [*mc_sets(0.8, 0.3, 0.03 / 30, 1.0, 0.5, 2.0), "training.lr_decay=0.8"],
            [*mc_sets(0.8, 0.3, 0.015 / 30, 1.0, 0.5, 3.0), "training.lr_decay=0.85"],
            [*mc_sets(0.8, 0.3, 0.03 / 30, 1.0, 0.5, 3.0), "training.lr_decay=0.8"],
        ]
    if name == "var1":  # shallow / frozen-W_2 variants at the chosen λ's (--epochs 3 --n-train 20000)
        d8 = ["training.lr_decay=0.8"]
        out = [
            mc_sets(0.8, 0.3, eff / 30, 1.0, 0.5, 3.0, w_zero=(0, 1), ip_zero=ipz) + d8
            for eff, ipz in itertools.product((0.03, 0.1), ((0, 1), (0,)))
        ]
        return [*out, mc_sets(0.8, 0.3, 0.03 / 30, 1.0, 0.5, 3.0, w_zero=(1,)) + d8]
    if name == "var2":  # shallow / frozen-W_2 need larger random hidden weights (--epochs 3 --n-train 20000)
        d8 = ["training.lr_decay=0.8"]
        out = [mc_sets(0.8, 0.3, 0.03 / 30, 1.0, W, 3.0, w_zero=(0, 1), ip_zero=(0,)) + d8 for W in (1.5, 3.0, 5.0)]
        return out + [mc_sets(0.8, 0.3, 0.03 / 30, 1.0, W, 3.0, w_zero=(1,)) + d8 for W in (1.5, 3.0)]
    if name == "var3":  # shallow / frozen-W_2 at intermediate init (--epochs 3 --n-train 20000)
        d8 = ["training.lr_decay=0.8"]
        out = [
            mc_sets(0.8, 0.3, eff / 30, 1.0, W, 3.0, w_zero=(0, 1), ip_zero=(0,)) + d8
            for eff, W in ((0.03, 1.0), (0.05, 0.75))
        ]
        return out + [mc_sets(0.8, 0.3, 0.03 / 30, 1.0, W, 3.0, w_zero=(1,)) + d8 for W in (0.75, 1.0)]
    if name == "lf1":  # learned feedback, 784-1000-10 (--preset mnist-learned-feedback --epochs 2 --n-train 20000)
        return [
            [
                *mc_sets(0.8, 0.3, 0.03 / 30, 1.0, 0.5, 3.0, depth=2),
                f"plasticity.eta_PI=[{pi}]",
                f"plasticity.eta_B=[{b}]",
                "training.lr_decay=0.8",
            ]
            for pi, b in itertools.product((1e-3, 1e-2), (1e-5, 1e-4))
        ]
    if name == "var4":  # shallow / frozen-W_2 with weaker apical coupling λ_A = 0.3 (IP_1 frozen: W_2 is)
        d8 = ["training.lr_decay=0.8"]
        out = [mc_sets(0.3, 0.3, 0.03 / 30, 1.0, W, 3.0, w_zero=(0, 1), ip_zero=(0,)) + d8 for W in (0.3, 0.5)]
        return out + [mc_sets(0.3, 0.3, 0.03 / 30, 1.0, 0.5, B, w_zero=(1,), ip_zero=(0,)) + d8 for B in (0.3, 1.0)]
    if name == "lf2":
        d8 = ["training.lr_decay=0.8"]
        return [
            [
                *mc_sets(0.8, 0.3, eff / 30, 1.0, 0.5, B, depth=2),
                "plasticity.eta_PI=[0.001]",
                "plasticity.eta_B=[1e-05]",
                *d8,
            ]
            for eff, B in ((0.05, 3.0), (0.03, 1.0), (0.03, 10.0))
        ]
    if name == "mc11":  # λ_A = 0.5 (found on the quick subset), compare with mc10 (--epochs 6 --n-train 20000)
        return [[*mc_sets(0.5, 0.3, eff / 30, 1.0, 0.5, 3.0), "training.lr_decay=0.8"] for eff in (0.02, 0.03)]
    if name == "var5":  # variants at the chosen λ_A = 0.5, λ_N = 0.3 (--epochs 3 --n-train 20000)
        d8 = ["training.lr_decay=0.8"]
        out = [mc_sets(0.5, 0.3, eff / 30, 1.0, 0.5, 3.0, w_zero=(0, 1), ip_zero=(0,)) + d8 for eff in (0.02, 0.05)]
        return out + [mc_sets(0.5, 0.3, 0.02 / 30, 1.0, 0.5, B, w_zero=(1,), ip_zero=(0,)) + d8 for B in (1.0, 3.0)]
    raise SystemExit(f"unknown grid {name!r}")


def table(path: Path) -> str:
    """A markdown table of the trials in a JSON-lines file (``--table``)."""
    lines = [
        "| # | tag | preset | overrides | n_train | epochs | validation error per epoch (%) | best (%) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        r = json.loads(line)
        sets = " ".join(x.split(".", 1)[-1] for x in r["sets"]) or "(preset as is)"
        curve = " ".join(f"{100 * v:.1f}" for v in r.get("val_curve", []))
        best = f"{100 * r['validation_error']:.2f}" if "validation_error" in r else r.get("error", "")
        lines.append(
            f"| {i} | {r.get('tag', '')} | {r['preset']} | {sets} | {r['n_train']} | {r['epochs']} | {curve} | {best} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--table":
        print(table(Path(sys.argv[2])))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="MNIST path or 'mnist' (the cache)")
    ap.add_argument("--preset", default="mnist")
    ap.add_argument("--grid", default=None, help="a named grid (see grid())")
    ap.add_argument("--trial", nargs="*", action="append", default=[], help="one trial's KEY=VALUE overrides")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    todo = (grid(args.grid) if args.grid else []) + list(args.trial)
    if not todo:
        ap.error("nothing to run: give --grid NAME or --trial [KEY=VALUE ...] (a bare --trial runs the preset)")
    for sets in todo:
        cfg = apply_overrides(
            get_preset(args.preset),
            [
                f"training.data={json.dumps(args.data)}",
                f"training.epochs={args.epochs}",
                f"training.n_train={args.n_train}",
                *sets,
            ],
        )
        vals: list[float] = []
        orig = mnist_exp.error_rate

        def spy(
            model, w, x, y, batch=1000, _vals=vals, _orig=orig, _n=cfg.training.n_validation
        ):  # record every epoch's validation error
            e = _orig(model, w, x, y, batch)
            if x.shape[0] == _n:
                _vals.append(round(e, 4))
            return e

        mnist_exp.error_rate = spy
        t = time.perf_counter()
        row = {"preset": args.preset, "sets": sets, "epochs": args.epochs, "n_train": args.n_train, "tag": args.tag}
        try:
            s = mnist_exp.run(cfg, None)
            row.update(
                validation_error=s["validation_error"],
                best_epoch=s["best_epoch"],
                seconds_per_epoch=s["seconds_per_epoch"],
            )
        except Exception as e:  # a diverging trial is a result too
            row["error"] = str(e)[:200]
        finally:
            mnist_exp.error_rate = orig
        row["val_curve"] = vals[: args.epochs]
        row["wall_s"] = round(time.perf_counter() - t, 1)
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
