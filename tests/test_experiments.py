"""The time-continuous experiments end to end, on short settings (config overrides of the quick presets):
each asserts the qualitative result the paper reports (docs/model.md §7)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from microcircuit.config import apply_overrides
from microcircuit.experiments import run_experiment
from microcircuit.experiments.common import build, initial_weights
from microcircuit.presets import PRESETS, fig_s1, get_preset
from microcircuit.runs import RunDir


def _run(name: str, path: Path, overrides: list[str]) -> tuple[dict, RunDir]:
    cfg = apply_overrides(get_preset(name, quick=True), overrides)
    run = RunDir.create(path)
    run.write_config(cfg)
    summary = run_experiment(cfg, run)
    run.write_summary(summary)
    return summary, run


@pytest.fixture(scope="module")
def s1(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, RunDir]:
    """Fig. S1 for 200 patterns (20 s)."""
    path = tmp_path_factory.mktemp("runs") / "fig-s1"
    return _run("fig-s1", path, ["stimulus.n_patterns=200", "schedule.segment=100", "schedule.n_test=20"])


def test_fig_s1_mismatches_fall(s1: tuple[dict, RunDir]) -> None:
    """Only IP and PI learn; the apical and interneuron mismatches (σ = 0, held-out inputs) fall >= 10x."""
    summary, run = s1
    assert summary["apical_error_1_fall"] >= 10, summary["headline"]
    assert summary["inter_error_1_fall"] >= 10, summary["headline"]
    assert (run.path / "fig_s1.png").is_file()


def test_init_from_a_run_folder_and_a_preset(s1: tuple[dict, RunDir], monkeypatch: pytest.MonkeyPatch) -> None:
    """init_from = a run folder gives that run's final weights; init_from = "preset:NAME" runs the preset
    first (here a 5-pattern Fig. S1) and starts from its end state, in the sub-folder init/."""
    _, run = s1
    cfg = apply_overrides(get_preset("fig1", quick=True), [f"init_from={json.dumps(str(run.path))}"])
    _, w0, _ = build(cfg)
    w = initial_weights(cfg, None, w0)
    with np.load(run.file(RunDir.TRACES)) as traces:
        np.testing.assert_array_equal(np.asarray(w.PI[0]), traces["PI_1"])
        np.testing.assert_array_equal(np.asarray(w.IP[0]), traces["IP_1"])
    np.testing.assert_array_equal(np.asarray(w.W[0]), np.asarray(w0.W[0]))  # W, B frozen in Fig. S1

    tiny = lambda quick: apply_overrides(fig_s1(quick), ["stimulus.n_patterns=5", "schedule.segment=5"])  # noqa: E731
    monkeypatch.setitem(PRESETS, "tiny-s1", tiny)
    cfg = apply_overrides(cfg, ['init_from="preset:tiny-s1"'])
    parent = RunDir.create(run.path.parent / "fig1-from-preset")
    w = initial_weights(cfg, parent, w0)
    assert (parent.path / "init" / RunDir.SUMMARY).is_file()
    assert not np.allclose(np.asarray(w.IP[0]), np.asarray(w0.IP[0]))  # it learned


def test_fig1_apical_error_appears_with_the_target_and_vanishes(tmp_path: Path) -> None:
    """From a self-predicting state: the (noise-averaged) apical error rises >= 10x when the target comes
    on, then falls >= 10x while the output learns the target."""
    summary, run = _run("fig1", tmp_path / "fig1", [
        'init_from=""', "network.init.self_predicting=true", "stimulus.n_patterns=40",
    ])
    assert summary["apical_rise"] >= 10, summary["headline"]
    assert summary["apical_fall"] >= 10, summary["headline"]
    assert summary["prediction_error_after"] < summary["prediction_error_before"] / 2, summary["headline"]
    assert (run.path / "fig1.png").is_file()


def test_fig2_presets_differ_only_in_the_learning_rates_and_the_length() -> None:
    """`fig2` runs the paper's rates (docs/model.md §7); `fig2-fast` is the same protocol with η_1, η_2, η^IP
    × 100 and η^PI × 10, and fewer trials."""
    paper, fast = get_preset("fig2"), get_preset("fig2-fast")
    p = paper.plasticity
    assert (p.eta_W, p.eta_IP, p.eta_PI, p.eta_B) == ((0.0011875, 0.0005), 0.0011875, 0.0059375, 0.0)
    assert (paper.n_seeds, paper.stimulus.n_patterns) == (4, 100_000)
    f = fast.plasticity
    assert f.eta_W == pytest.approx((0.11875, 0.05)) and f.eta_IP == pytest.approx(0.11875)
    assert f.eta_PI == pytest.approx(0.059375)
    assert fast.stimulus.n_patterns == 5_000
    same = dataclasses.replace(
        fast, name=paper.name, plasticity=p, stimulus=paper.stimulus, schedule=paper.schedule
    )
    assert same == paper
    assert get_preset("fig2-fast", quick=True).stimulus.n_patterns == get_preset("fig2", quick=True).stimulus.n_patterns


def test_fig2_microcircuit_beats_the_shallow_learner(tmp_path: Path) -> None:
    """Regression against a teacher (the sped-up rates of `fig2-fast`), one fixed seed, 600 trials: the
    microcircuit's test error is below the shallow learner's (W_1 frozen) and below where it started."""
    summary, run = _run("fig2-fast", tmp_path / "fig2", [
        "n_seeds=1", "stimulus.n_patterns=600", "schedule.segment=300", "schedule.n_test=100",
    ])
    mc, sh = summary["microcircuit_test_error_end"], summary["shallow_test_error_end"]
    assert mc < 0.97 * sh, summary["headline"]
    assert mc < 0.9 * summary["microcircuit_test_error_start"], summary["headline"]
    assert summary["inter_error_1_end"] < summary["inter_error_1_start"], summary["headline"]
    # the feed-forward references start where the circuit starts and learn (slowly at first) the same task
    for name in ("backprop", "feedback_alignment"):
        assert summary[f"{name}_test_error_start"] == pytest.approx(summary["microcircuit_test_error_start"], rel=1e-2)
        assert summary[f"{name}_test_error_end"] < summary[f"{name}_test_error_start"], summary["headline"]
    assert (run.path / "fig2.png").is_file()


def test_backprop_link_quick(tmp_path: Path) -> None:
    """The analysis run end to end on depth 2 and 3 with two samples: B = Wᵀ angles below 1° at the
    weakest nudging, far below those at the strongest; a figure."""
    summary, run = _run("backprop-link", tmp_path / "bl", ["stimulus.batch=2"])
    for N in (2, 3):
        for k in range(1, N + 1):
            weak = summary[f"depth{N}_transpose_angle_W{k}_weak"]
            assert weak < 1.0 and weak < summary[f"depth{N}_transpose_angle_W{k}_strong"] / 20
    assert (run.path / "backprop_link.png").is_file()
    assert jax.numpy.isfinite(summary["depth3_random_angle_W1_weak"])
