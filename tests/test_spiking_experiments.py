"""The spiking circuit's experiments (docs/spiking.md): learning the self-predicting state with spikes, and
the spiking-bars experiment end to end."""

from __future__ import annotations

import json

from microcircuit import get_preset
from microcircuit.config import apply_overrides


def test_learned_self_prediction_in_spiking_mode():
    """Fig. S1 with spikes: from random lateral weights, rules (8) and (9) with the spike-based post factor
    make both mismatches fall (read at the mean-field limit of the learned weights)."""
    from microcircuit.experiments import self_prediction

    cfg = apply_overrides(get_preset("fig-s1", quick=True), [
        "spiking.enabled=true", "spiking.n=1000", "spiking.tau_syn=3.0", "simulation.sigma=0.0",
        "stimulus.n_patterns=300", "stimulus.duration=50.0", "schedule.segment=150", "plasticity.eta_IP=0.004",
        "plasticity.eta_PI=0.01"])
    summary = self_prediction.run(cfg, None)
    assert summary["apical_error_1_fall"] > 2 and summary["inter_error_1_fall"] > 2


def test_spiking_bars_quick_runs_resumes_and_reports_rates(tmp_path):
    """`microcircuit run spiking-bars --quick`: both arms, the figures, rates within r_max; --resume reads
    the finished arms back instead of training again."""
    from microcircuit.experiments import spiking_bars
    from microcircuit.runs import RunDir

    cfg = apply_overrides(get_preset("spiking-bars", quick=True),
                          ["n_seeds=1", "training.epochs=2", "schedule.segment=2", "spiking.n=30",
                           "schedule.n_test=12"])
    summary = spiking_bars.run(cfg, RunDir.create(tmp_path / "r"))
    for arm in spiking_bars.ARMS:
        row = summary["arms"][arm]
        assert 0 < row["mean_rate_hz"] <= row["max_rate_hz"] <= 1.3 * cfg.spiking.r_max  # Poisson counts may exceed
        assert row["spikes_per_pattern"] > 0
        saved = json.loads((tmp_path / "r" / f"spiking_bars_{arm}.json").read_text())
        assert len(saved["curve_held_out"]) == 2 and saved["spiking"] is True
    for name in ("spiking_bars.png", "spiking_raster.png"):
        assert (tmp_path / "r" / name).stat().st_size > 1000
    again = spiking_bars.run(cfg, RunDir.create(tmp_path / "r", resume=True))
    assert again["arms"] == summary["arms"]
