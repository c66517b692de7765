"""Data-dependent indices that must not crash or corrupt memory (issue #8),
and switching the target between runs with spikes in flight.

Crashes (segfaults before the fixes) are tested in subprocesses.
"""

import json

import numpy as np
import pytest
from brian2 import (
    BrianObjectException,
    Network,
    NeuronGroup,
    PopulationRateMonitor,
    SpikeGeneratorGroup,
    SpikeMonitor,
    StateMonitor,
    Synapses,
    defaultclock,
    ms,
    prefs,
    start_scope,
)
from conftest import run_script

from brian2_numba.compat import queue_state
from brian2_numba.structures import spikequeue as queue_module


def _root_cause(exc):
    """The error under Brian's BrianObjectExceptions."""
    while isinstance(exc, BrianObjectException):
        exc = exc.__cause__
    return exc


# -- invalid delays --------------------------------------------------------------

# Every case in one process (one compilation); prints one JSON line per case.
INVALID_DELAYS = """
import json
import sys
import brian2_numba
from brian2 import *
prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
prefs.codegen.target = 'numba'

def attempt(homogeneous, delay, first=None):
    start_scope()
    gen = SpikeGeneratorGroup(5, [0, 1, 2, 3, 4], [1] * 5 * ms)
    G = NeuronGroup(5, 'v : 1')
    S = Synapses(gen, G, on_pre='v_post += 20', delay=delay if homogeneous else None,
                 name='synapses')
    S.connect(j='i')
    net = Network(gen, G, S)
    if not homogeneous:
        S.delay = 1*ms
        if first is not None:  # a valid first run: delays are checked in every run
            net.run(first)
        S.delay[3] = delay
    try:
        net.run(3*ms)
    except BrianObjectException as exc:
        cause = exc.__cause__
        while isinstance(cause, BrianObjectException):
            cause = cause.__cause__
        return [type(cause).__name__, str(cause)]
    return ['no error', list(G.v[:])]

for homogeneous, delay, first in [
    (False, nan*ms, None), (False, inf*ms, None), (False, -1e6*second, None),
    (False, -1*ms, None), (False, 1e9*second, None), (False, nan*ms, 2*ms),
    (True, -1*ms, None), (True, nan*ms, None), (True, 1e9*second, None),
]:
    print(json.dumps(attempt(homogeneous, delay, first)))
"""


@pytest.mark.long
def test_invalid_delays_raise_errors_naming_pathway_and_value(numba_target):
    result = run_script(INVALID_DELAYS, numba_target)
    results = [json.loads(line) for line in result.stdout.splitlines()]
    invalid = "but delays have to be finite and non-negative"
    too_long = "but the spike queue holds delays of up to 2147483646 time steps"
    expected = [
        "synapse 3 has the delay nan s, " + invalid,
        "synapse 3 has the delay inf s, " + invalid,
        "synapse 3 has the delay -1. Ms, " + invalid,
        "synapse 3 has the delay -1. ms, " + invalid,
        "synapse 3 has the delay 1. Gs, " + too_long,
        "synapse 3 has the delay nan s, " + invalid,
        "its delay is -1. ms, " + invalid,
        "its delay is nan s, " + invalid,
        "its delay is 1. Gs, " + too_long,
    ]
    assert len(results) == len(expected)
    for (kind, message), text in zip(results, expected, strict=False):
        assert kind == "ValueError"
        assert message.startswith(
            f"Invalid delay for the synaptic pathway 'synapses_pre': {text}"), message


@pytest.mark.long
def test_delays_that_need_too_much_memory_raise_memory_error(monkeypatch):
    # 2 s at dt = 0.1 ms: 20001 time steps, about 1.9 MB
    monkeypatch.setattr(queue_module, "_physical_memory", lambda: 2**20, raising=False)
    gen = SpikeGeneratorGroup(2, [0, 1], [1, 1] * ms)
    G = NeuronGroup(2, "v : 1")
    S = Synapses(gen, G, on_pre="v_post += 1")
    S.connect(j="i")
    S.delay = "i * 2 * second"
    with pytest.raises(BrianObjectException) as info:
        Network(gen, G, S).run(1 * ms)
    cause = _root_cause(info.value)
    assert isinstance(cause, MemoryError)
    assert str(cause) == (
        f"The spike queue of '{S.pre.name}' would need about 0.00179 GiB for delays of up "
        "to 20000 time steps (2. s with dt = 100. us), but this machine has 0.000977 GiB "
        "of memory.")


@pytest.mark.long
def test_long_delays_queue_like_numpy():
    """Delays of up to 87.6 s at dt = 1 ms: a ring of 87601 time steps, with fewer
    entries per time step than usual (the ring's memory is limited)."""
    states = {}
    for target in ["numba", "numpy"]:
        start_scope()
        prefs.codegen.target = target
        defaultclock.dt = 1 * ms
        gen = SpikeGeneratorGroup(3, [0, 1, 2, 0, 2], [1, 1, 2, 3, 3] * ms)
        G = NeuronGroup(4, "v : 1")
        S = Synapses(gen, G, "w : 1", on_pre="v_post += w")
        S.connect(p=1)
        S.w = "1 + i + 3*j"
        S.delay = "(1 + i * 4 + j) * 7.3 * second"
        net = Network(gen, G, S)
        net.run(5 * ms)
        offset, slots = queue_state(S.pre.queue)
        states[target] = (offset, [list(slot) for slot in slots])
        if target == "numba":  # (64 entries per time step would be 22 MB)
            assert queue_module.spikequeue_for(S.pre.queue).queue.nbytes <= 2**24
    assert len(states["numpy"][1]) == 87601
    assert sum(map(len, states["numpy"][1])) == 5 * 4
    assert states["numba"] == states["numpy"]


# -- spike generators: more spikes in a time step than the spike space holds ----------

TOO_MANY_SPIKES = """
import sys
import brian2_numba
from brian2 import *
prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
prefs.codegen.target = 'numba'
for indices, times, is_sorted in [
    ([0, 1, 0, 1, 0], [1, 1.01, 1.02, 1.03, 1.04] * ms, False),  # 5 spikes, 2 neurons
    ([2, 1, 0] * 3, [1] * 9 * ms, True),  # (Brian only looks for neighbouring duplicates)
    ([0, 1, 0, 1], [5, 1, 1, 1] * ms, True),  # not sorted by time
]:
    start_scope()
    gen = SpikeGeneratorGroup(max(indices) + 1, indices, times, sorted=is_sorted, name='gen')
    try:
        run(2*ms)
        print('no error')
    except BrianObjectException as exc:
        print(exc.__cause__.__cause__)
"""


@pytest.mark.long
def test_too_many_spikes_in_a_time_step_raise_an_error(numba_target):
    result = run_script(TOO_MANY_SPIKES, numba_target)
    duplicates = ("Using a dt of 100. us, some neurons of SpikeGeneratorGroup 'gen' spike "
                  "more than once during a time step.")
    assert result.stdout.splitlines() == [
        duplicates,
        duplicates,
        "The spikes of SpikeGeneratorGroup 'gen' are not sorted by time (they were given "
        "with sorted=True).",
    ]


@pytest.mark.long
def test_spikes_within_a_time_step_in_any_order_as_numpy():
    results = {}
    for target in ["numba", "numpy"]:
        start_scope()
        prefs.codegen.target = target
        gen = SpikeGeneratorGroup(6, [5, 2, 4, 2], [1.0, 1.05, 1.07, 2.0] * ms)
        G = NeuronGroup(6, "v : 1")
        S = Synapses(gen, G, on_pre="v_post += 1 + i")
        S.connect(j="i")
        spikes = SpikeMonitor(gen)
        Network(gen, G, S, spikes).run(3 * ms)
        results[target] = (spikes.i[:].copy(), spikes.t_[:].copy(), G.v[:].copy())
    for numba_result, numpy_result in zip(results["numba"], results["numpy"], strict=False):
        np.testing.assert_array_equal(numba_result, numpy_result)
    np.testing.assert_array_equal(results["numpy"][0], [5, 2, 4, 2])


# -- switching the target between runs ------------------------------------------------

DELAYS = {
    "homogeneous": 2.5 * ms,
    "heterogeneous": "((3 * i + j) % 7) * 0.7 * ms",  # 0 to 4.2 ms
    "zero": 0 * ms,
}


def _switching_network(delay):
    """Spiking neurons onto targets that sum what arrives, through synapses with
    ``delay``. (With a decay in the targets, numba and numpy differ in the last
    bits even without a switch.)"""
    start_scope()
    defaultclock.dt = 0.1 * ms
    G = NeuronGroup(8, "dv/dt = (1.2 + 0.1 * i - v) / (3 * ms) : 1", threshold="v > 1",
                    reset="v = 0", method="exact")
    H = NeuronGroup(5, "v : 1")
    homogeneous = not isinstance(delay, str)
    S = Synapses(G, H, "w : 1", on_pre="v_post += w", delay=delay if homogeneous else None)
    S.connect(i=[0, 1, 2, 3, 4, 5, 6, 7, 0, 3, 5, 7, 7],
              j=[0, 1, 2, 3, 4, 0, 1, 2, 4, 4, 3, 0, 1])
    S.w = "0.1 * i + 0.01 * j + 0.01"
    if not homogeneous:
        S.delay = delay
    spikes = SpikeMonitor(G)
    states = StateMonitor(H, "v", record=True)
    rate = PopulationRateMonitor(G)
    net = Network(G, H, S, spikes, states, rate)
    return net, S, spikes, states, rate


def _outcome(S, spikes, states, rate):
    offset, slots = queue_state(S.pre.queue)
    return {
        "queue": (offset, [list(slot) for slot in slots]),
        "i": spikes.i[:].copy(), "t": spikes.t_[:].copy(),
        "v": states.v[:].copy(), "states_t": states.t_[:].copy(),
        "rate": rate.rate_[:].copy(), "rate_t": rate.t_[:].copy(),
    }


def _simulate(targets, delay):
    """Run 7.35 ms, then 6 ms on the targets in ``targets``; the outcome after each."""
    net, *parts = _switching_network(delay)
    outcomes = []
    for target, duration in zip(targets, [7.35 * ms, 6 * ms], strict=False):
        prefs.codegen.target = target
        net.run(duration)
        outcomes.append(_outcome(*parts))
    return outcomes


def _assert_same(outcomes, reference):
    for run, (outcome, expected) in enumerate(zip(outcomes, reference, strict=False)):
        assert outcome["queue"] == expected["queue"], f"queue after run {run}"
        for key in expected:
            if key != "queue":
                np.testing.assert_array_equal(outcome[key], expected[key],
                                              err_msg=f"{key} after run {run}")


@pytest.mark.parametrize("kind", DELAYS)
@pytest.mark.long
def test_switching_target_between_runs_keeps_spikes_in_flight(kind):
    delay = DELAYS[kind]
    reference = _simulate(["numpy", "numpy"], delay)
    if kind != "zero":  # spikes are in flight at the switch
        assert sum(map(len, reference[0]["queue"][1])) > 0
    assert len(reference[1]["i"]) > len(reference[0]["i"]) > 0
    for targets in (["numpy", "numba"], ["numba", "numpy"]):
        _assert_same(_simulate(targets, delay), reference)


@pytest.mark.parametrize("kind", DELAYS)
@pytest.mark.long
def test_store_restore_across_target_switches(kind):
    delay = DELAYS[kind]

    def simulate(target, other_target):
        net, *parts = _switching_network(delay)
        prefs.codegen.target = target
        net.run(7.35 * ms)
        net.store()  # spikes in flight
        prefs.codegen.target = other_target
        net.run(3 * ms)
        after_switch = _outcome(*parts)
        prefs.codegen.target = target
        net.restore()
        net.run(3 * ms)
        return [after_switch, _outcome(*parts)]

    reference = simulate("numpy", "numpy")
    for targets in (("numpy", "numba"), ("numba", "numpy")):
        _assert_same(simulate(*targets), reference)


#: (target, dt, duration) of each run: numba's queue skips its preparation
#: when dt, synapses and delays are unchanged, but the other target's runs
#: re-bin Brian's queue to another dt in between
SWITCHING_PLANS = {
    "numba first": [("numba", 0.1, 2.4), ("numpy", 0.05, 1.6), ("numba", 0.1, 2.0),
                    ("numba", 0.1, 1.0), ("numpy", 0.2, 2.4), ("numba", 0.1, 2.0)],
    "numpy first": [("numpy", 0.1, 2.4), ("numba", 0.1, 1.6), ("numpy", 0.05, 2.0),
                    ("numba", 0.1, 1.0), ("numba", 0.1, 1.2), ("numpy", 0.2, 2.4)],
}


def _simulate_plan(plan, delay, on=None):
    """Run ``plan`` (all on target ``on`` if given); the outcome after each run."""
    net, S, *parts = _switching_network(delay)
    outcomes = []
    for target, dt, duration in plan:
        prefs.codegen.target = on or target
        defaultclock.dt = dt * ms
        net.run(duration * ms)
        outcomes.append(_outcome(S, *parts))
    return outcomes


@pytest.mark.long
@pytest.mark.parametrize("plan", SWITCHING_PLANS)
@pytest.mark.parametrize("kind", ["homogeneous", "heterogeneous"])
def test_switching_target_and_dt_between_runs(kind, plan):
    plan = SWITCHING_PLANS[plan]
    reference = _simulate_plan(plan, DELAYS[kind], on="numpy")
    in_flight = [sum(map(len, outcome["queue"][1])) for outcome in reference]
    assert min(in_flight[:-1]) > 0  # spikes cross every switch
    _assert_same(_simulate_plan(plan, DELAYS[kind]), reference)


def test_queue_is_prepared_again_only_when_something_changed(monkeypatch):
    """The preparation (Brian's queue, the delay check, the CSR arrays) is skipped
    for a run whose dt, synapses and delays are those of the previous run."""
    builds = []
    original = queue_module.NumbaSpikeQueue._build
    monkeypatch.setattr(queue_module.NumbaSpikeQueue, "_build",
                        lambda self, pathway: (builds.append(pathway.name),
                                               original(self, pathway))[1])
    prefs.codegen.target = "numba"
    net, S, *parts = _switching_network(DELAYS["heterogeneous"])
    changes = [lambda: None, lambda: None,
               lambda: S.delay.__setitem__(3, 1.1 * ms),  # one delay, in place
               lambda: None,
               lambda: setattr(defaultclock, "dt", 0.05 * ms),
               lambda: S.connect(i=0, j=3),
               lambda: None]
    expected = [1, 1, 2, 2, 3, 4, 4]
    for change, count in zip(changes, expected, strict=False):
        change()
        net.run(1 * ms)
        assert len(builds) == count
