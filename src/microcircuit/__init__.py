"""microcircuit: dendritic cortical microcircuits (Sacramento, Costa, Bengio & Senn, NeurIPS 2018) in JAX.

The functional core: configs (frozen dataclasses) → weights and state (pytrees) → ``simulate`` (a
jit-compiled ``lax.scan`` of the pure ``step``) → recorded traces.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("microcircuit")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

from . import preflight  # the module: preflight.preflight(cfg), preflight.EULER_ACCURACY
from .config import (
    Conductances,
    Config,
    ConfigError,
    Init,
    Model,
    NetworkSpec,
    Pal,
    Plasticity,
    Record,
    Schedule,
    Simulation,
    Spiking,
    Stimulus,
    Transfer,
    apply_overrides,
    load_toml,
    to_toml,
)
from .dynamics import Dendrites, State, dendrites, init_state
from .errors import DivergenceError, InputError
from .network import Weights, init_weights, self_predicting
from .plasticity import increments, zero_traces
from .presets import get_preset, preset_names
from .simulate import Solution, Stream, simulate, step
from .transfer import dphi, phi, phi_inv

__all__ = [
    "Conductances",
    "Config",
    "ConfigError",
    "Dendrites",
    "DivergenceError",
    "Init",
    "InputError",
    "Model",
    "NetworkSpec",
    "Pal",
    "Plasticity",
    "Record",
    "Schedule",
    "Simulation",
    "Solution",
    "Spiking",
    "State",
    "Stimulus",
    "Stream",
    "Transfer",
    "Weights",
    "__version__",
    "apply_overrides",
    "dendrites",
    "dphi",
    "get_preset",
    "increments",
    "init_state",
    "init_weights",
    "load_toml",
    "phi",
    "phi_inv",
    "preflight",
    "preset_names",
    "self_predicting",
    "simulate",
    "step",
    "to_toml",
    "zero_traces",
]
