"""Configuration: validation errors that name the key, TOML round trip, ``--set`` overrides, fuzzing."""

from __future__ import annotations

import dataclasses
import importlib.util
import string
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microcircuit.config import (
    Conductances,
    Config,
    ConfigError,
    Init,
    Model,
    NetworkSpec,
    Plasticity,
    Record,
    Simulation,
    Stimulus,
    Transfer,
    apply_overrides,
    from_dict,
    load_toml,
    to_dict,
    to_toml,
)
from microcircuit.presets import get_preset

# --------------------------------------------------------------------------------------------------
# Range checks name the key


@pytest.mark.parametrize("name", ["g_B", "g_A", "g_D", "g_som"])
@pytest.mark.parametrize("value", [0.0, -0.5, float("nan"), float("inf")])
def test_conductances_must_be_positive(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"conductances\.{name}"):
        Conductances(**{name: value})


def test_leak_may_be_zero_but_not_negative() -> None:
    assert Conductances(g_lk=0.0).g_lk == 0.0
    with pytest.raises(ConfigError, match=r"conductances\.g_lk"):
        Conductances(g_lk=-0.1)


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan"), float("inf")])
def test_dt_must_be_positive(dt: float) -> None:
    with pytest.raises(ConfigError, match=r"simulation\.dt"):
        Simulation(dt=dt)


def test_exponential_integrator_has_no_euler_bound() -> None:
    """The exponential integrator is stable at any dt: the Euler bounds (2/g, 2·τ_0, 2·τ_w) do not apply."""
    Model(simulation=Simulation(dt=10.0, integrator="exponential"))
    with pytest.raises(ConfigError, match=r"simulation\.dt.*stability"):
        Model(simulation=Simulation(dt=10.0, tau_0=0.0))


def test_dt_beyond_the_euler_stability_bound() -> None:
    """dt·(fastest total conductance) must stay below 2 (docs/model.md §2, forward Euler); every compartment
    counts: hidden soma g_lk+g_B+g_A, output with target g_lk+g_B+g_som, interneuron g_lk+g_D+g_som."""
    Model(simulation=Simulation(dt=1.05))  # defaults: 2/1.9 = 1.0526 ms
    with pytest.raises(ConfigError, match=r"simulation\.dt.*stability"):
        Model(simulation=Simulation(dt=1.06))
    g_A = Conductances(g_A=5.0)  # hidden soma: 2/6.1 = 0.328
    g_som_out = Conductances(g_som=5.0, g_D=0.5)  # output with target: 2/6.1 (interneuron 2/5.6)
    g_D = Conductances(g_D=5.0)  # interneuron: 2/5.9 = 0.339
    for g, ok, bad in ((g_A, 0.32, 0.33), (g_som_out, 0.32, 0.33), (g_D, 0.33, 0.34)):
        Model(conductances=g, simulation=Simulation(dt=ok))
        with pytest.raises(ConfigError, match=r"simulation\.dt"):
            Model(conductances=g, simulation=Simulation(dt=bad))
    with pytest.raises(ConfigError, match=r"simulation\.dt"):  # the τ_0 filter: dt < 2 τ_0
        Simulation(dt=0.5, tau_0=0.2)
    with pytest.raises(ConfigError, match=r"simulation\.dt"):  # through a whole config
        apply_overrides(Config(), ["simulation.dt=2.0"])


def test_learning_rates_per_layer() -> None:
    """One η for all matrices or one per matrix; the wrong number names the key."""
    m = Model(network=NetworkSpec(sizes=(5, 4, 4, 3)), plasticity=Plasticity(eta_W=(0.1, 0.2, 0.3), eta_IP=0.5))
    assert m.plasticity.eta_W == (0.1, 0.2, 0.3)
    assert m.plasticity.eta_IP == (0.5, 0.5)
    with pytest.raises(ConfigError, match=r"plasticity\.eta_W"):
        Model(network=NetworkSpec(sizes=(5, 4, 3)), plasticity=Plasticity(eta_W=(0.1, 0.2, 0.3)))
    with pytest.raises(ConfigError, match=r"plasticity\.eta_W"):
        from_dict(Config, {"network": {"sizes": [5, 4, 4, 3]}, "plasticity": {"eta_W": [0.1, 0.2]}})
    with pytest.raises(ConfigError, match=r"plasticity\.eta_IP"):
        from_dict(Config, {"network": {"sizes": [5, 4, 3]}, "plasticity": {"eta_IP": [0.1, 0.2]}})
    with pytest.raises(ConfigError, match=r"plasticity\.eta_PI"):
        Plasticity(eta_PI=-1.0)


def test_initial_scales_per_matrix() -> None:
    """network.init.W takes one scale per W_k, B (IP, PI) one per hidden layer; the wrong number names the
    key, and init_weights draws each matrix at its own scale."""
    import jax
    import numpy as np

    from microcircuit.network import init_weights

    spec = NetworkSpec(sizes=(200, 100, 100, 50), init=Init(W=(0.1, 1.0, 3.0), B=(2.0, 0.5), PI=(0.0, 1.0)))
    assert spec.init.scales(3) == {"W": (0.1, 1.0, 3.0), "B": (2.0, 0.5), "IP": (1.0, 1.0), "PI": (0.0, 1.0)}
    w = init_weights(spec, Conductances(), jax.random.key(0))
    for got, want in [(w.W, (0.1, 1.0, 3.0)), (w.B, (2.0, 0.5)), (w.PI, (0.0, 1.0))]:
        np.testing.assert_allclose([float(np.abs(x).max()) for x in got], want, rtol=0.01)
    with pytest.raises(ConfigError, match=r"network\.init\.W: needs 3"):
        NetworkSpec(sizes=(5, 4, 4, 3), init=Init(W=(0.1, 0.2)))
    with pytest.raises(ConfigError, match=r"network\.init\.B: needs 1"):
        from_dict(Config, {"network": {"sizes": [5, 4, 3], "init": {"B": [1.0, 2.0]}}})
    with pytest.raises(ConfigError, match=r"network\.init\.PI"):
        Init(PI=(1.0, -1.0))
    cfg = apply_overrides(Config(network=NetworkSpec(sizes=(5, 4, 4, 3))), ["network.init.W=[0.1,0.2,0.3]"])
    assert cfg.network.init.W == (0.1, 0.2, 0.3)


def test_B_transposed_starts_the_feedback_as_the_transposed_forward_weights() -> None:
    """network.init.B_transposed: B_k = W_{k+1}ᵀ · (B's scale / W_{k+1}'s scale); every other matrix is the
    draw it would be without it, and the self-predicting PI_k = −B_k follows. A W_{k+1} of scale 0 is refused."""
    import jax
    import numpy as np

    from microcircuit.network import Weights, init_weights

    def draw(**kw: bool) -> Weights:
        init = Init(W=(0.5, 1.0, 2.0), B=(3.0, 0.5), self_predicting=True, **kw)
        return init_weights(NetworkSpec(sizes=(6, 5, 4, 3), init=init), Conductances(), jax.random.key(1))

    plain, mirrored = draw(), draw(B_transposed=True)
    for i, ratio in enumerate((3.0 / 1.0, 0.5 / 2.0)):
        np.testing.assert_allclose(mirrored.B[i], ratio * np.asarray(mirrored.W[i + 1]).T, rtol=1e-6)
        np.testing.assert_allclose(mirrored.PI[i], -np.asarray(mirrored.B[i]))
        assert not np.allclose(plain.B[i], mirrored.B[i])
    for name in ("W", "b", "IP", "c"):
        for a, b in zip(getattr(plain, name), getattr(mirrored, name), strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match=r"network\.init\.B_transposed: B_2 starts as W_3ᵀ.*scale 0"):
        NetworkSpec(sizes=(6, 5, 4, 3), init=Init(W=(0.5, 1.0, 0.0), B_transposed=True))
    cfg = apply_overrides(Config(network=NetworkSpec(sizes=(5, 4, 3))), ["network.init.B_transposed=true"])
    assert cfg.network.init.B_transposed is True


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"network": {"sizes": [5, 4]}}, "network.sizes"),  # depth 1
        ({"network": {"sizes": [5, 0, 3]}}, "network.sizes"),
        ({"network": {"transfer": {"kind": "relu"}}}, "network.transfer.kind"),
        ({"simulation": {"dtype": "float16"}}, "simulation.dtype"),
        ({"simulation": {"noise": "white"}}, "simulation.noise"),
        ({"simulation": {"integrator": "rk4"}}, "simulation.integrator"),
        ({"plasticity": {"update_every": 0}}, "plasticity.update_every"),
        ({"plasticity": {"update_every": 4, "tau_w": 30.0}}, "plasticity.update_every"),  # needs tau_w = 0
        ({"record": {"stride": 0}}, "record.stride"),
        ({"stimulus": {"high": 0.0}}, "stimulus.high"),
        ({"seed": -1}, "seed"),
        ({"training": {"loss": "hinge"}}, "training.loss"),
        ({"training": {"rule9_state": "target"}}, "training.rule9_state"),
    ],
)
def test_out_of_range_values_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(Config, data)


# --------------------------------------------------------------------------------------------------
# Unknown keys and wrong types


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"conductances\.g_sm.*did you mean.*g_som"):
        from_dict(Config, {"conductances": {"g_sm": 0.1}})
    with pytest.raises(ConfigError, match=r"simulaton.*did you mean.*simulation"):
        from_dict(Config, {"simulaton": {"dt": 0.1}})
    path = tmp_path / "bad.toml"
    path.write_text("[plasticity]\netaW = 0.1\n")
    with pytest.raises(ConfigError, match=r"plasticity\.etaW.*did you mean.*eta_W"):
        load_toml(path)
    with pytest.raises(ConfigError, match=r"sigmaa.*did you mean.*sigma"):
        apply_overrides(Config(), ["simulation.sigmaa=0.2"])
    with pytest.raises(ConfigError, match=r"rate.*did you mean.*rates"):
        Record(quantities=("rate",))


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"network": {"sizes": "5,4,3"}}, "network.sizes"),
        ({"network": {"sizes": [5, 4.5, 3]}}, r"network.sizes\[1\]"),
        ({"seed": 1.5}, "seed"),
        ({"conductances": {"g_B": "one"}}, "conductances.g_B"),
        ({"conductances": {"g_B": True}}, "conductances.g_B"),
        ({"network": {"init": {"self_predicting": "yes"}}}, "network.init.self_predicting"),
        ({"network": {"bias": 1}}, "network.bias"),
        ({"plasticity": {"eta_W": "fast"}}, "plasticity.eta_W"),
        ({"plasticity": {"eta_W": [0.1, "x"]}}, "plasticity.eta_W"),
        ({"simulation": 0.1}, "simulation"),
        ({"record": {"quantities": "u"}}, "record.quantities"),
    ],
)
def test_wrong_types_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(Config, data)


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    path = tmp_path / "broken.toml"
    path.write_text("[network\nsizes = [1,\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(path)


def test_unknown_preset_name(tmp_path: Path) -> None:
    if importlib.util.find_spec("microcircuit.presets") is None:
        pytest.skip("microcircuit.presets does not exist yet")
    from microcircuit.presets import get_preset, preset_names

    names = preset_names()
    assert names
    with pytest.raises(ConfigError, match=r"unknown preset.*did you mean"):
        get_preset(names[0] + "x")
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("no-such-experiment")
    path = tmp_path / "p.toml"
    path.write_text('preset = "no-such-experiment"\n')
    with pytest.raises(ConfigError, match="unknown preset"):
        load_toml(path)
    path.write_text(f'preset = "{names[0]}"\nseed = 5\n')  # a known one, overlaid
    cfg = load_toml(path)
    assert cfg.seed == 5
    assert dataclasses.replace(cfg, seed=get_preset(names[0]).seed) == get_preset(names[0])


# --------------------------------------------------------------------------------------------------
# TOML round trip and overrides


def _custom_config() -> Config:
    return Config(
        name="round-trip",
        experiment="simulate",
        seed=123,
        network=NetworkSpec(sizes=(7, 5, 4, 2), transfer=Transfer(kind="logistic", gamma=0.3), bias=True,
                            init=Init(W=0.5, B=0.25, bias=0.1, self_predicting=True)),
        conductances=Conductances(g_lk=0.05, g_B=1.2, g_A=0.3, g_D=0.9, g_som=0.12),
        plasticity=Plasticity(eta_W=(1e-3, 3.3e-4, 1e-4), eta_IP=(2.2e-3, 6.6e-4), eta_PI=0.0, eta_B=1e-5,
                              tau_w=0.0, learning_lag=5.0),
        simulation=Simulation(dt=0.05, tau_0=3.0, sigma=0.3, noise="dt", dtype="float64", E_exc=1 / 3),
        stimulus=Stimulus(kind="teacher", n_patterns=17, duration=50.0, batch=4, low=-1.0, high=1.0,
                          teacher_sizes=(7, 3, 2)),
        record=Record(quantities=("u", "rates", "self_prediction"), stride=7),
    )


@pytest.mark.parametrize("which", ["default", "custom"])
def test_toml_round_trip(tmp_path: Path, which: str) -> None:
    cfg = Config() if which == "default" else _custom_config()
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(cfg))
    back = load_toml(path)
    assert back == cfg
    assert to_dict(back) == to_dict(cfg)


def test_overrides() -> None:
    cfg = apply_overrides(
        Config(),
        [
            "network.sizes=[5,4,3]",
            "conductances.g_som=0.3",
            "simulation.dtype=float64",  # a bare string
            'network.transfer.kind="logistic"',
            "plasticity.eta_W=[0.1, 0.2]",
            "plasticity.eta_IP=0.05",
            "record.quantities=['u', 'u_inter']",
            "network.bias=true",
            "seed = 7",
        ],
    )
    assert cfg.network.sizes == (5, 4, 3)
    assert cfg.conductances.g_som == 0.3
    assert cfg.simulation.dtype == "float64"
    assert cfg.network.transfer.kind == "logistic"
    assert cfg.plasticity.eta_W == (0.1, 0.2)
    assert cfg.plasticity.eta_IP == 0.05
    assert cfg.model.plasticity.eta_IP == (0.05,)
    assert cfg.record.quantities == ("u", "u_inter")
    assert cfg.network.bias is True
    assert cfg.seed == 7
    # untouched values stay
    assert cfg.conductances.g_A == Config().conductances.g_A
    # later overrides win
    assert apply_overrides(Config(), ["seed=1", "seed=2"]).seed == 2


@pytest.mark.parametrize(
    "text",
    ["seed", "=3", "conductances=0.1", "conductances.g_B.x=1", "network.sizes.0=5", "nosuch.key=1", "seed=1.5"],
)
def test_bad_overrides(text: str) -> None:
    with pytest.raises(ConfigError):
        apply_overrides(Config(), [text])


def test_override_can_change_the_depth() -> None:
    cfg = apply_overrides(Config(), ["network.sizes=[5,4,4,3]"])
    assert cfg.network.depth == 3
    assert cfg.model.plasticity.eta_W == (0.0, 0.0, 0.0)


def test_huge_integer_gives_config_error() -> None:
    with pytest.raises(ConfigError, match=r"conductances\.g_B"):
        apply_overrides(Config(), ["conductances.g_B=1" + "0" * 400])


# --------------------------------------------------------------------------------------------------
# Property tests: whatever comes in, the only exception is ConfigError


def _paths(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf key path of a config dataclass."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(_paths(tp, (*prefix, f.name)))
        else:
            out.append((*prefix, f.name))
    return out


PATHS = _paths(Config)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # TOML's integer range
SCALARS = st.one_of(
    st.booleans(),
    INT64,
    st.integers(min_value=-3, max_value=40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2.0, max_value=2.0),
    st.text(max_size=8),
    st.sampled_from(["soft_rectifier", "logistic", "float64", "dt", "teacher", "u", "rates", "conductance"]),
)
VALUES = st.one_of(st.none(), SCALARS, st.lists(SCALARS, max_size=5),
                   st.dictionaries(st.text(max_size=5), SCALARS, max_size=3))
KEYS = st.one_of(st.sampled_from(PATHS), st.lists(st.text(string.ascii_letters + "_", max_size=8), min_size=1,
                                                  max_size=3).map(tuple))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(KEYS, VALUES), max_size=6))
def test_from_dict_raises_only_config_error(items: list) -> None:
    data: dict = {}
    for path, value in items:
        node = data
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            node = nxt
        else:
            node[path[-1]] = value
    try:
        cfg = from_dict(Config, data)
    except ConfigError:
        return
    assert isinstance(cfg, Config)
    assert from_dict(Config, to_dict(cfg)) == cfg  # whatever is accepted is stable


def _toml_literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, "nan" if v != v else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml_literal(x) for x in v) + "]"


OVERRIDE_VALUES = st.one_of(
    SCALARS.map(_toml_literal),
    st.lists(SCALARS, max_size=4).map(_toml_literal),
    st.text(max_size=12),  # anything at all: a bare string, or broken TOML
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(KEYS.map(".".join), OVERRIDE_VALUES, st.sampled_from(["=", " = ", ""])), max_size=5))
def test_apply_overrides_raises_only_config_error(items: list) -> None:
    overrides = [f"{k}{eq}{v}" for k, v, eq in items]
    try:
        cfg = apply_overrides(Config(), overrides)
    except ConfigError:
        return
    assert isinstance(cfg, Config)


def test_initial_bias_means() -> None:
    """network.init.bias_mean sets where each layer's bias b_k starts (any sign, one per W_k or one for all);
    the interneuron biases of a self-predicting start follow b_{k+1} (§4); a wrong count names the key."""
    import jax
    import numpy as np

    from microcircuit.network import init_weights, self_predicting_weights

    g = Conductances()
    spec = NetworkSpec(sizes=(20, 10, 10, 5), bias=True,
                       init=Init(bias=0.1, bias_mean=(-2.0, 0.5, -3.0), self_predicting=True))
    w = init_weights(spec, g, jax.random.key(0))
    for b, m in zip(w.b, (-2.0, 0.5, -3.0), strict=True):
        assert np.all(np.abs(np.asarray(b) - m) <= 0.1 + 1e-6)
        assert float(np.std(np.asarray(b))) > 0.01  # the spread is kept around the mean
    _, _, c = self_predicting_weights(w, g)
    for got, want in zip(w.c, c, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want))
    assert float(np.asarray(w.c[1]).mean()) < -2.5  # c_2 ∝ b_3 ≈ −3
    no_bias = init_weights(NetworkSpec(sizes=(4, 3, 2), init=Init(bias_mean=-2.0)), g, jax.random.key(0))
    assert all(float(np.abs(np.asarray(b)).max()) == 0.0 for b in no_bias.b)  # biases off: all zero
    with pytest.raises(ConfigError, match=r"network\.init\.bias_mean: needs 3"):
        NetworkSpec(sizes=(5, 4, 4, 3), init=Init(bias_mean=(-1.0, -1.0)))
    with pytest.raises(ConfigError, match=r"network\.init\.bias_mean"):
        Init(bias_mean=float("nan"))
    cfg = apply_overrides(Config(network=NetworkSpec(sizes=(5, 4, 3))), ["network.init.bias_mean=[-1,-2.5]"])
    assert cfg.network.init.bias_mean == (-1.0, -2.5)


def test_key_suggestions_ignore_case() -> None:
    """A key typed in the wrong case is pointed to the right one (eta_pi -> eta_PI), in --set, in a TOML
    table and for presets; a wrong word still gets its closest match."""
    from microcircuit.config import closest

    with pytest.raises(ConfigError, match=r"plasticity\.eta_pi: unknown key \(did you mean 'plasticity\.eta_PI'\?\)"):
        apply_overrides(get_preset("mnist", quick=True), ["plasticity.eta_pi=0.1"])
    with pytest.raises(ConfigError, match=r"did you mean 'conductances\.g_A'"):
        from_dict(Config, {"conductances": {"G_a": 0.1}})
    with pytest.raises(ConfigError, match=r"did you mean 'mnist-backprop'"):
        get_preset("MNIST-Backprop")
    assert closest("eta_wi", ["eta_W", "eta_IP", "tau_w"]) in ("eta_W", "eta_IP")
    assert closest("zzz", ["eta_W"]) is None


def test_the_backprop_presets_change_depth() -> None:
    """The feed-forward baselines read no circuit rates, so their depth can change with network.sizes alone;
    setting a circuit rate on them is refused as unused."""
    from microcircuit.preflight import unused_settings

    sizes = "network.sizes=[784,256,256,256,256,256,10]"
    for name in ("mnist-backprop", "mnist-backprop-ce"):
        cfg = apply_overrides(get_preset(name), [sizes])
        assert cfg.model.network.depth == 6 and cfg.model.plasticity.eta_W == (0.0,) * 6
        assert unused_settings(cfg, ["plasticity.eta_W"]) == ["plasticity.eta_W"]
