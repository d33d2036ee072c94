"""Analyses of finished run folders (``microcircuit analyze ...``): learning curves of several MNIST runs in
one figure (:mod:`.curves`), where a trained MNIST network's errors are (:mod:`.breakdown`), and whether it
settles when run as a circuit (:mod:`.settle`)."""

from .breakdown import error_breakdown
from .curves import LearningCurve, learning_curve, plot_learning_curves
from .settle import SettleReport, plot_settle, settle_check, write_settle

__all__ = [
    "LearningCurve", "SettleReport", "error_breakdown", "learning_curve", "plot_learning_curves", "plot_settle",
    "settle_check", "write_settle",
]
