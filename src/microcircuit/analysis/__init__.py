"""Analyses of finished run folders (``microcircuit analyze ...``): learning curves of several MNIST runs in
one figure (:mod:`.curves`), where a trained MNIST network's errors are (:mod:`.breakdown`), whether it
settles when run as a circuit (:mod:`.settle`), how the training methods of a sweep scale with depth,
width and data set (:mod:`.scaling`), and what a run or a ``simulate`` result recorded (:mod:`.traces`:
``describe``, ``plot``). :mod:`.output` checks and writes the figures the commands save."""

from .breakdown import error_breakdown
from .curves import LearningCurve, learning_curve, plot_learning_curves
from .scaling import ScalingReport, analyze_scaling
from .settle import SettleReport, plot_settle, settle_check, write_settle

__all__ = [
    "LearningCurve", "ScalingReport", "SettleReport", "analyze_scaling", "error_breakdown", "learning_curve",
    "plot_learning_curves", "plot_settle", "settle_check", "write_settle",
]
