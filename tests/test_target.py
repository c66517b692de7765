"""The target as a whole: results, generated code, registration."""

import os

import numpy as np
import pytest
from brian2 import (
    NeuronGroup,
    Network,
    PoissonGroup,
    SpikeGeneratorGroup,
    SpikeMonitor,
    StateMonitor,
    PopulationRateMonitor,
    Synapses,
    defaultclock,
    mV,
    ms,
    prefs,
    run,
    start_scope,
)
from brian2.codegen.targets import codegen_targets

import brian2_numba


def _deterministic_network(target):
    """CUBA-like network without randomness; returns all recorded results."""
    start_scope()
    prefs.codegen.target = target
    prefs.codegen.string_expression_target = target
    eqs = """
    dv/dt = (ge + gi - (v + 49*mV)) / (20*ms) : volt (unless refractory)
    dge/dt = -ge / (5*ms) : volt
    dgi/dt = -gi / (10*ms) : volt
    """
    P = NeuronGroup(200, eqs, threshold="v > -50*mV", reset="v = -60*mV",
                    refractory=5 * ms, method="exact")
    P.v = "-60*mV + (i % 17) * 0.6*mV"
    Ce = Synapses(P, P, "w : volt", on_pre="ge += w", delay=1 * ms)
    Ce.connect("i < 160 and (i + 3*j) % 11 == 0")
    Ce.w = "1.6*mV * (1 + (i % 3)) / 3"
    Ci = Synapses(P, P, on_pre="gi -= 9*mV")
    Ci.connect(i=np.arange(160, 200), j=np.arange(0, 40))
    gen = SpikeGeneratorGroup(3, [0, 1, 2, 1], [1, 2, 3, 10] * ms)
    Sg = Synapses(gen, P, on_pre="v_post += 5*mV")
    Sg.connect(j="k for k in range(3*i, 3*i + 20)")
    spikes = SpikeMonitor(P)
    states = StateMonitor(P, ["v", "ge"], record=[0, 10, 199])
    rate = PopulationRateMonitor(P)
    net = Network(P, Ce, Ci, gen, Sg, spikes, states, rate)
    net.run(60 * ms)
    return {
        "i": spikes.i[:].copy(),
        "t": spikes.t[:].copy(),
        "count": spikes.count[:].copy(),
        "v": states.v[:].copy(),
        "ge": states.ge[:].copy(),
        "rate": rate.rate[:].copy(),
        "synapses": (Ce.i[:].copy(), Ce.j[:].copy()),
    }


def test_same_results_as_numpy():
    numba_result = _deterministic_network("numba")
    numpy_result = _deterministic_network("numpy")
    assert len(numba_result["i"]) > 50
    np.testing.assert_equal(numba_result["synapses"], numpy_result["synapses"])
    for key in ["i", "t", "count", "rate"]:
        np.testing.assert_equal(numba_result[key], numpy_result[key], err_msg=key)
    for key in ["v", "ge"]:
        np.testing.assert_allclose(numba_result[key], numpy_result[key], rtol=1e-12,
                                   atol=1e-15, err_msg=key)


def test_target_registered_by_name():
    assert brian2_numba.NumbaCodeObject in codegen_targets
    from brian2 import get_device

    assert get_device().code_object_class() is brian2_numba.NumbaCodeObject


def test_generated_files_are_readable_python(numba_target):
    G = NeuronGroup(3, "dv/dt = -v/(10*ms) : 1", threshold="v > 1", reset="v = 0")
    net = Network(G)
    net.run(1 * ms)
    files = brian2_numba.generated_files(net)
    assert "neurongroup_stateupdater_codeobject" in files
    for name, blocks in files.items():
        for block, path in blocks.items():
            assert os.path.dirname(path) == str(numba_target)
            source = open(path).read()
            assert f"code object '{name}'" in source
            compile(source, path, "exec")  # valid Python
    stateupdate = open(files["neurongroup_stateupdater_codeobject"]["run"]).read()
    assert "def main(" in stateupdate and "for _idx in range(N):" in stateupdate


def test_generated_files_rejects_other_objects():
    with pytest.raises(TypeError):
        brian2_numba.generated_files("neurongroup")


def test_namespace_values_are_arguments_not_frozen(numba_target):
    """A changed constant is used in the next run (numba freezes globals)."""
    G = NeuronGroup(1, "v : 1")
    G.run_regularly("v = factor", when="start")
    net = Network(G)
    net.run(defaultclock.dt, namespace={"factor": 2.0})
    assert G.v[0] == 2.0
    net.run(defaultclock.dt, namespace={"factor": 5.0})
    assert G.v[0] == 5.0


def test_poisson_group_and_statemonitor_dtype():
    P = PoissonGroup(50, rates=2000 * np.arange(50) / 50 * 1e-0 * (1 / ms) / 1000)
    M = SpikeMonitor(P)
    G = NeuronGroup(2, "v : 1")
    G.run_regularly("v += 0.5")
    S = StateMonitor(G, "v", record=True, dtype=np.float32)
    run(5 * ms)
    assert M.num_spikes > 0
    assert S.v.dtype == np.float32
    np.testing.assert_allclose(S.v[0], 0.5 * np.arange(1, 51))
