"""`microcircuit analyze settle`: a trained MNIST network run as a circuit (the real dynamics, σ = 0, no
target) against the steady state it was trained in, on a small run of the quick preset (embedded subset)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from click.testing import CliRunner, Result

from microcircuit.analysis import settle_check
from microcircuit.analysis.settle import settle_potentials
from microcircuit.errors import InputError
from microcircuit.experiments import mnist as mx
from microcircuit.experiments.common import build
from microcircuit.fixed_point import steady_state
from microcircuit.runs import RunDirError, resume_config

SMALL = ["--set", "training.epochs=8", "--set", "network.sizes=[784,40,30,10]", "--no-progress"]


def cli(*args: object) -> Result:
    from microcircuit.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished steady-state MNIST run (784-40-30-10, 8 epochs on the embedded subset)."""
    out = tmp_path_factory.mktemp("runs") / "mnist"
    r = cli("run", "mnist", "--quick", *SMALL, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_cli_writes_its_report(run: Path, tmp_path: Path) -> None:
    """The command prints the fractions and writes settle-dt0.2.json (consistent with the printed numbers)
    and a PNG into --out."""
    r = cli("analyze", "settle", run, "--n-images", 40, "--duration", 60, "--dt", 0.2, "--out", tmp_path,
            "--no-progress")
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "settle-dt0.2.json").read_text())
    assert summary["n_images"] == 40 and summary["dt_ms"] == 0.2 and summary["duration_ms"] == 60
    assert f"settled (swing < 0.01 in the last 10 ms)   {100 * summary['settled']:.2f} %" in r.output
    assert (tmp_path / "settle-dt0.2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_self_predicting_circuit_settles_at_its_steady_state(run: Path) -> None:
    """Trained from the self-predicting start, the circuit settles on every image within 60 ms, at its exact
    fixed point (float64, to 1e-4) and near the forward sweep, whose class it reads out; the summary's
    fractions are those of the per-image arrays."""
    rep = settle_check(run, duration=60.0, dt=0.2, n_images=40)
    assert rep.swing.shape == (40,) and np.all(rep.settled)
    assert np.max(rep.distance) < 0.05 and np.mean(rep.class_dynamics == rep.class_steady) >= 0.95
    s = rep.summary()
    assert s["settled"] == 1.0 and s["unsettled_images"] == []
    assert s["agreement_with_steady_state"] == pytest.approx(np.mean(rep.class_dynamics == rep.class_steady))
    assert s["error_dynamics"] == pytest.approx(np.mean(rep.class_dynamics != rep.labels))
    assert s["error_steady_state"] < 0.75  # below chance (0.9): the labels are read in test-set order
    cfg = resume_config(run)
    model, w0, _ = build(cfg)
    w = mx.load_best_weights(run / "weights_best.npz", w0)
    x = mx.load_split(cfg)["test"][0][:8]
    model = dataclasses.replace(model, simulation=dataclasses.replace(model.simulation, dt=0.2))
    end, swing = settle_potentials(model, w, x, 60.0, 10.0)
    with jax.enable_x64(True):
        fp = steady_state(model, jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), w),
                          x.astype(np.float64), iterations=4000)
        np.testing.assert_allclose(end, np.asarray(fp.u[-1]), atol=1e-4)
    np.testing.assert_allclose(swing, rep.swing[:8], atol=1e-6)


def test_a_circuit_still_moving_does_not_count_as_settled(run: Path) -> None:
    """2 ms after the image comes on the outputs are still rising: no image counts as settled."""
    rep = settle_check(run, duration=2.0, window=1.0, dt=0.1, n_images=10, tol=1e-3)
    assert not np.any(rep.settled) and np.min(rep.swing) > 1e-3
    assert rep.summary()["settled"] == 0.0 and len(rep.summary()["unsettled_images"]) == 10


def test_refusals(run: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="window"):
        settle_check(run, duration=10.0, window=10.0)
    with pytest.raises(InputError, match="whole number"):
        settle_check(run, duration=10.05, window=1.0, dt=0.1)
    with pytest.raises(RunDirError, match=r"not a run folder|no config"):
        settle_check(tmp_path)
