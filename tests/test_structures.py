"""The numba-side spike queue and monitor recordings (brian2_numba.structures)."""

import numpy as np
import pytest
from brian2 import (
    Network,
    NeuronGroup,
    PopulationRateMonitor,
    SpikeGeneratorGroup,
    SpikeMonitor,
    StateMonitor,
    Synapses,
    defaultclock,
    ms,
    network_operation,
    prefs,
    start_scope,
)

from brian2_numba.structures import monitors as monitor_module
from brian2_numba.structures import spikequeue as queue_module

DT = 0.1  # ms


def _input(seed, n_sources=8, n_spikes=60, t_max=40):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n_sources, n_spikes)
    steps = rng.integers(0, int(t_max / DT), n_spikes)
    pairs = sorted(set(zip(steps.tolist(), indices.tolist(), strict=False)))
    steps, indices = map(np.array, zip(*pairs, strict=False))
    return indices, steps


def _network(target, seed, homogeneous=False, n_sources=8, n_targets=6, shuffled=False):
    """Spike sources onto targets through synapses with random integer
    weights and random delays (0 to 5 ms, or 1.7 ms for all if
    ``homogeneous``), created source by source or (``shuffled``) in random
    order; returns (net, parts)."""
    start_scope()
    prefs.codegen.target = target
    defaultclock.dt = DT * ms
    rng = np.random.default_rng(seed + 1)
    indices, steps = _input(seed, n_sources)
    gen = SpikeGeneratorGroup(n_sources, indices, steps * DT * ms)
    G = NeuronGroup(n_targets, "v : 1")
    S = Synapses(gen, G, "w : 1", on_pre="v_post += w")
    pre, post = np.nonzero(rng.random((n_sources, n_targets)) < 0.6)
    if shuffled:
        order = rng.permutation(len(pre))
        pre, post = pre[order], post[order]
    S.connect(i=pre, j=post)
    S.w = rng.integers(1, 1000, len(S))
    delay_steps = rng.integers(0, 51, len(S))
    S.delay = (17 if homogeneous else delay_steps) * DT * ms
    mon = StateMonitor(G, "v", record=True, when="end")
    net = Network(gen, G, S, mon)
    return net, (indices, steps, pre, post, S, mon)


def _brute_force(indices, steps, pre, post, weights, delay_steps, n_targets, n_steps):
    """v of every target after each time step, from first principles."""
    arrivals = np.zeros((n_steps, n_targets))
    for source, step in zip(indices, steps, strict=False):
        for s in np.nonzero(pre == source)[0]:
            if step + delay_steps[s] < n_steps:
                arrivals[step + delay_steps[s], post[s]] += weights[s]
    return np.cumsum(arrivals, axis=0)


@pytest.mark.parametrize("shuffled", [False, True], ids=["by_source", "shuffled"])
@pytest.mark.parametrize("homogeneous", [False, True], ids=["heterogeneous", "homogeneous"])
def test_queue_matches_brute_force_with_store_restore(homogeneous, shuffled):
    net, (indices, steps, pre, post, S, mon) = _network("numba", 3, homogeneous,
                                                        shuffled=shuffled)
    weights = S.w[:].copy()
    delay_steps = np.round(S.delay[:] / ms / DT).astype(int)
    net.run(20 * ms)
    # the synapses kernel runs through syn_ptr's ranges only for sorted sources
    assert queue_module.spikequeue_for(S.pre.queue).in_order[0] == (not shuffled)
    net.store()  # spikes are in flight now
    net.run(30 * ms)
    first = mon.v[:].copy()
    net.restore()
    net.run(30 * ms)
    np.testing.assert_equal(mon.v[:], first)
    expected = _brute_force(indices, steps, pre, post, weights, delay_steps, 6, 500)
    np.testing.assert_equal(first.T, expected)
    assert expected[-1].sum() > 0


@pytest.mark.parametrize("homogeneous", [False, True], ids=["heterogeneous", "homogeneous"])
def test_queue_same_as_numpy_with_dt_change_and_new_synapses(homogeneous):
    results = {}
    for target in ["numba", "numpy"]:
        net, (_, _, _, _, S, mon) = _network(target, 5, homogeneous)
        net.run(15 * ms)
        defaultclock.dt = DT / 2 * ms  # queued spikes are re-binned
        net.run(10 * ms)
        S.connect(i=0, j=0)  # a synapse created between runs
        S.w[-1] = 10000
        S.delay[-1] = 1 * ms
        net.run(15 * ms)
        results[target] = mon.v[:].copy()
    np.testing.assert_equal(results["numba"], results["numpy"])


# three events at once: 3 * 100 synapses in one slot, or 3 neuron entries
@pytest.mark.parametrize("delay, needed", [("(j % 3) * ms", 300), ("2 * ms", 3)],
                         ids=["heterogeneous", "homogeneous"])
def test_queue_grows(monkeypatch, delay, needed):
    monkeypatch.setattr(queue_module, "MIN_CAPACITY", 2)
    results = {}
    for target in ["numba", "numpy"]:
        start_scope()
        prefs.codegen.target = target
        gen = SpikeGeneratorGroup(3, [0, 1, 2, 0, 1, 2], [1, 1, 1, 2, 3, 3] * ms)
        G = NeuronGroup(300, "v : 1")
        S = Synapses(gen, G, "w : 1", on_pre="v_post += w")
        S.connect(p=1)
        S.delay = delay
        S.w = "1 + i + 3*j"
        mon = StateMonitor(G, "v", record=[0, 100, 299])
        Network(gen, G, S, mon).run(10 * ms)
        results[target] = mon.v[:].copy()
        if target == "numba":
            from brian2_numba.structures import spikequeue_for

            assert spikequeue_for(S.pre.queue).queue.shape[1] >= needed
    np.testing.assert_equal(results["numba"], results["numpy"])


def _monitored(target):
    start_scope()
    prefs.codegen.target = target
    G = NeuronGroup(50, "dv/dt = (1 + 0.01*i - v)/(5*ms) : 1", threshold="v > 1",
                    reset="v = 0", method="exact")
    spikes = SpikeMonitor(G, record=True)
    some = SpikeMonitor(G[10:20], variables=["v"])
    states = StateMonitor(G, ["v"], record=[0, 7, 49])
    rate = PopulationRateMonitor(G[5:40])
    net = Network(G, spikes, some, states, rate)
    net.run(30 * ms)
    net.run(20 * ms)
    return {
        "i": spikes.i[:].copy(), "t": spikes.t_[:].copy(), "count": spikes.count[:].copy(),
        "some_i": some.i[:].copy(), "some_v": some.v[:].copy(), "N": int(spikes.N[:]),
        "v": states.v[:].copy(), "states_t": states.t_[:].copy(), "rate": rate.rate_[:].copy(),
        "rate_t": rate.t_[:].copy(),
    }


@pytest.mark.long
def test_monitors_same_as_numpy_with_flushes_and_growth(monkeypatch):
    # tiny buffers: many flushes, and steps with more spikes than fit at once
    monkeypatch.setattr(monitor_module, "BUFFER_VALUES", 4)
    numba_result = _monitored("numba")
    numpy_result = _monitored("numpy")
    assert numba_result["N"] == len(numba_result["i"]) > 100
    for key in numpy_result:
        np.testing.assert_equal(numba_result[key], numpy_result[key], err_msg=key)


def test_monitors_readable_during_run():
    G = NeuronGroup(5, "dv/dt = (1 + i)/(2*ms) : 1", threshold="v > 1", reset="v = 0",
                    method="euler")
    spikes = SpikeMonitor(G)
    states = StateMonitor(G, "v", record=True)
    seen = []

    @network_operation(when="end")
    def read():
        seen.append((len(spikes.i[:]), spikes.num_spikes, states.v[:].shape[1],
                     len(states.t[:])))

    Network(G, spikes, states, read).run(10 * ms)
    steps = [s[3] for s in seen]
    assert steps == list(range(1, 101))
    assert all(n_i == n for n_i, n, _, _ in seen)
    assert [s[2] for s in seen] == steps
    assert seen[-1][0] == spikes.num_spikes > 0


@pytest.mark.long
def test_switching_target_between_runs():
    def simulate(second_target):
        start_scope()
        prefs.codegen.target = "numba"
        gen = SpikeGeneratorGroup(2, [0, 1, 0, 1], [1, 2, 9.5, 9.9] * ms)
        G = NeuronGroup(2, "v : 1")
        S = Synapses(gen, G, on_pre="v_post += (1 + i) * (1 + j)", delay=3 * ms)
        S.connect()
        spikes = SpikeMonitor(gen)
        states = StateMonitor(G, "v", record=True)
        net = Network(gen, G, S, spikes, states)
        net.run(10 * ms)  # spikes at 9.5 and 9.9 ms still in the queue
        prefs.codegen.target = second_target
        net.run(10 * ms)
        return states.v[:].copy(), spikes.t_[:].copy()

    numba_then_numpy = simulate("numpy")
    numba_only = simulate("numba")
    np.testing.assert_equal(numba_then_numpy[0], numba_only[0])
    np.testing.assert_equal(numba_then_numpy[1], numba_only[1])
    assert numba_only[0][:, -1].tolist() == [6, 12]


def test_arrays_grow_in_place_only_through_in_place():
    """The fused loop re-packs kernel arguments when in_place counted a resize;
    a resize in place anywhere else would leave it a dangling data pointer."""
    import pathlib

    import brian2_numba

    package = pathlib.Path(brian2_numba.__file__).parent
    offenders = [str(path.relative_to(package))
                 for path in [*package.rglob("*.py"), *package.rglob("*.py_")]
                 if "refcheck" in path.read_text() and path.name != "in_place.py"]
    assert offenders == []
