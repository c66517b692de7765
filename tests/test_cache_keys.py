"""Brian's memoisation keys from ``brian2_numba.cache_keys``: the very keys of Brian's own.

The reference is Brian's own ``_hashable``, from a fresh copy of
``brian2/utils/caching.py`` (its recursion stays in the copy). Every key
that a model of every kind computes while it is built and run is compared,
as are awkward objects one by one; a key must be equal, with the same hash
and type, or raise the same error. Also: the replacement is installed only
over the function it reproduces, the environment can keep Brian's, and the
memoised results are found again at the next run.
"""

import collections
import importlib.util
import weakref

import numpy as np
import pytest
from brian2 import (
    BinomialFunction,
    Cylinder,
    Function,
    Hz,
    Network,
    NeuronGroup,
    PoissonGroup,
    PoissonInput,
    PopulationRateMonitor,
    SpatialNeuron,
    SpikeGeneratorGroup,
    SpikeMonitor,
    StateMonitor,
    Synapses,
    TimedArray,
    cm,
    ms,
    mV,
    ohm,
    start_scope,
    uF,
    um,
)
from brian2.codegen.translation import make_statements
from brian2.utils import caching
from conftest import run_script

from brian2_numba import cache_keys, compat


def _brians_own_hashable():
    """Brian's ``_hashable`` from a fresh copy of its module (it recurses into itself)."""
    spec = importlib.util.spec_from_file_location("_brian_caching_copy", caching.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._hashable


BRIANS = _brians_own_hashable()
#: the function installed at import (test_the_replacement_is_installed_at_import)
FAST = caching._hashable


def _key_or_error(function, obj):
    try:
        return function(obj), None
    except Exception as exc:  # noqa: BLE001 (the error itself is compared)
        return None, (type(exc), str(exc))


def _assert_same_key(obj):
    expected, expected_error = _key_or_error(BRIANS, obj)
    got, error = _key_or_error(FAST, obj)
    assert error == expected_error, obj
    if expected_error is None:
        assert type(got) is type(expected), obj
        assert got == expected, obj
        assert hash(got) == hash(expected), obj


class _WithState:
    """A user's object that says what it is for caching (duck-typed, as Brian's test is)."""

    def __init__(self, *state):
        self._state_tuple = state


class _StrWithState(str):
    _state_tuple = ("not the string",)


class _DictWithState(dict):
    @property
    def _state_tuple(self):
        return tuple(sorted(self))


class _Dynamic:
    def __getattr__(self, name):
        if name == "_state_tuple":
            return (1, 2)
        raise AttributeError(name)


class _Failing:
    @property
    def _state_tuple(self):
        raise AttributeError("no state")

    __hash__ = None


def test_awkward_objects_get_brians_keys():
    start_scope()
    group = NeuronGroup(3, "dv/dt = -v / (10*ms) : volt\nx : 1 (shared)")
    variable = group.variables["v"]
    objects = [
        "v", 1, 1.0, True, None, 1j, b"x", (), [], {}, set(), frozenset({1, 2}),
        [1, [2, (3, "a")]], {"a": [1, 2], "b": {"c": {1, 2}}},
        collections.OrderedDict(a=1), collections.defaultdict(list, a=[1]),
        _StrWithState("s"), _DictWithState(a=1), _WithState(1, [2, {"x": 3}]),
        _Dynamic(), _Failing(), np.float64(1.5), np.int32(2), np.dtype("float32"),
        3 * mV, np.array(2.0) * mV, np.ones(3) * mV, np.ones(3), [np.ones(2)],
        variable, weakref.proxy(variable), group.variables, dict(group.variables),
        group.variables["x"], group.variables["t"], group.variables["N"],
        Function(lambda x: x, arg_units=[1], return_unit=1),
        TimedArray([1, 2, 3] * mV, dt=1 * ms),
        BinomialFunction(10, 0.5), group.equations, type(group),
    ]
    for obj in objects:
        _assert_same_key(obj)


def _every_kind_of_model():
    """Objects of every kind Brian's code generation sees, in one network."""
    stimulus = TimedArray(np.array([1.0, 2.0, 0.5]) * mV, dt=0.2 * ms)
    neurons = NeuronGroup(
        8, """dv/dt = (I - v + stimulus(t)) / tau : volt (unless refractory)
              I : volt (constant)
              tau : second (shared, constant)
              ge : 1
              total : 1""",
        threshold="v > 5*mV", reset="v = 0*mV", refractory=0.2 * ms, method="euler",
        namespace={"stimulus": stimulus})
    neurons.I = "10*mV * i / N"
    neurons.tau = 2 * ms
    neurons.run_regularly("ge *= 0.5", dt=0.3 * ms)
    noisy = NeuronGroup(4, "dx/dt = -x / (3*ms) + xi / sqrt(ms) : 1", method="euler")
    synapses = Synapses(neurons, neurons, "w : 1\ntotal_post = w : 1 (summed)",
                        on_pre="ge += w", on_post="w *= 0.9", delay=0.1 * ms)
    synapses.connect(p=0.5)
    synapses.w = "rand()"
    delayed = Synapses(neurons[:4], neurons[4:], on_pre="v_post += 1*mV")
    delayed.connect(j="i")
    delayed.delay = "i * 0.1*ms"
    poisson = PoissonGroup(5, rates=200 * Hz)
    into = Synapses(poisson, neurons, on_pre="v_post += 0.5*mV")
    into.connect(p=0.3)
    generator = SpikeGeneratorGroup(2, [0, 1, 0], [0.1, 0.2, 0.4] * ms)
    driven = Synapses(generator, neurons, on_pre="v_post += 2*mV")
    driven.connect(j="i")
    poisson_input = PoissonInput(neurons, "v", 3, 100 * Hz, weight=0.1 * mV)
    binomial = BinomialFunction(20, 0.3, name="draws")
    counted = NeuronGroup(3, "k : 1", namespace={"draws": binomial})
    counted.run_regularly("k = draws()")
    axon = SpatialNeuron(Cylinder(length=100 * um, diameter=2 * um, n=4),
                         "Im = 1e-3*siemens/cm**2 * (-v) : amp/meter**2",
                         Cm=1 * uF / cm**2, Ri=100 * ohm * cm, method="exponential_euler")
    monitors = [SpikeMonitor(neurons), StateMonitor(neurons, ["v", "ge"], record=[0, 3]),
                PopulationRateMonitor(neurons), StateMonitor(axon, "v", record=0)]
    return Network(neurons, noisy, synapses, delayed, poisson, into, generator, driven,
                   poisson_input, counted, axon, *monitors)


def test_every_key_of_a_model_of_every_kind_is_brians(monkeypatch):
    start_scope()
    compared = []

    def compare(obj):  # the whole key, down to every variable of a dictionary
        _assert_same_key(obj)
        compared.append(type(obj))
        if isinstance(obj, dict):
            compared.extend(type(value) for value in obj.values())
        return FAST(obj)

    monkeypatch.setattr(caching, "_hashable", compare)
    net = _every_kind_of_model()
    net.run(1 * ms)
    net.run(0.5 * ms)
    assert len(compared) > 1000
    kinds = {kind.__name__ for kind in compared}
    assert {"ArrayVariable", "DynamicArrayVariable", "Constant", "Subexpression",
            "TimedArray", "BinomialFunction", "dict", "str"} <= kinds, kinds


def test_the_replacement_is_installed_at_import():
    assert caching._hashable.__qualname__ == "make_hashable.<locals>.hashable"
    assert compat.hashable_source_digest(BRIANS) in compat.HASHABLE_SOURCE_DIGESTS


def test_another_function_is_left_in_place(monkeypatch):
    def someone_elses(obj):
        return BRIANS(obj)

    monkeypatch.setattr(caching, "_hashable", someone_elses)
    assert not compat.install_cache_keys(cache_keys.make_hashable)
    assert caching._hashable is someone_elses
    monkeypatch.setattr(caching, "_hashable", BRIANS)  # Brian's own: replaced
    assert compat.install_cache_keys(cache_keys.make_hashable)
    assert caching._hashable is not BRIANS


@pytest.mark.parametrize("setting, replaced", [(None, True), ("0", False), ("1", True)])
def test_the_environment_can_keep_brians_function(numba_target, setting, replaced):
    variable = cache_keys.ENVIRONMENT_VARIABLE
    result = run_script(
        """
        import brian2_numba
        from brian2.utils import caching
        print(caching._hashable.__module__)
        """, numba_target, env={} if setting is None else {variable: setting},
        unset=[variable] if setting is None else [])
    module = result.stdout.split()[-1]
    assert (module == "brian2_numba.cache_keys") == replaced, module


def test_a_second_run_finds_what_the_first_memoised():
    start_scope()
    net = _every_kind_of_model()
    statistics = make_statements._cache_statistics
    net.run(0.5 * ms)  # the second run still creates new code (as with Brian's keys)
    net.run(0.5 * ms)
    misses, hits = statistics.misses, statistics.hits
    net.run(0.5 * ms)
    assert statistics.misses == misses
    assert statistics.hits > hits
