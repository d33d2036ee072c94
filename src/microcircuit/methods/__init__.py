"""Training methods of the classification experiment, one module each behind one interface (:class:`Method`).

=============================  ===============================================================  ==================
``training.method``            what learns, and how                                             module
=============================  ===============================================================  ==================
``microcircuit``               the circuit's rules (7)–(10) at the swept steady state (§6)     :mod:`.circuit`
``dynamics``                   the circuit in continuous time (§2–§3; prospective: §8)           :mod:`.continuous`
``backprop``                   the feed-forward network of §5, SGD along backprop               :mod:`.feedforward`
``feedback_alignment``         the same, error sent down through the fixed B_k                  :mod:`.feedforward`
``direct_feedback_alignment``  the same, output error sent to every hidden layer by fixed D_k   :mod:`.feedforward`
=============================  ===============================================================  ==================
"""

from __future__ import annotations

from ..config import TRAINING_METHODS, ConfigError
from .base import Arrays, Carry, Method, steady_error_rate
from .circuit import Circuit
from .continuous import ContinuousTime, dynamic_error_rate
from .feedforward import FeedForward

__all__ = ["METHODS", "Arrays", "Carry", "Method", "dynamic_error_rate", "get_method", "steady_error_rate"]

METHODS: dict[str, Method] = {
    "microcircuit": Circuit(),
    "dynamics": ContinuousTime(),
    "backprop": FeedForward("backprop"),
    "feedback_alignment": FeedForward("feedback_alignment"),
    "direct_feedback_alignment": FeedForward("direct_feedback_alignment"),
}
assert tuple(sorted(METHODS)) == tuple(sorted(TRAINING_METHODS))


def get_method(name: str) -> Method:
    """The method of ``training.method = name``."""
    if name not in METHODS:
        raise ConfigError(f"training.method: unknown method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]
