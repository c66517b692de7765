"""The fused simulation loop against Brian's per-object loop: identical results.

Each model is built twice in a fresh scope, once with
``prefs.codegen.runtime.numba.fused`` on (the default) and once off, and
everything it recorded must be bit for bit the same.
"""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from brian2 import (
    Hz,
    Network,
    NeuronGroup,
    PoissonGroup,
    PoissonInput,
    PopulationRateMonitor,
    SpikeGeneratorGroup,
    SpikeMonitor,
    StateMonitor,
    Synapses,
    defaultclock,
    ms,
    mV,
    network_operation,
    prefs,
    second,
    seed,
    start_scope,
)
from brian2.codegen.runtime.numpy_rt import NumpyCodeObject
from brian2.utils.logger import catch_logs
from conftest import script_env


def _both(build, *args):
    """``build(*args)`` fused and per-object: (fused results, per-object results)."""
    results = []
    for fused in (True, False):
        start_scope()
        defaultclock.dt = 0.1 * ms
        prefs.codegen.runtime.numba.fused = fused
        seed(2024)
        results.append(build(*args))
    prefs.codegen.runtime.numba.fused = True
    return results


def _assert_identical(fused, per_object):
    assert fused.keys() == per_object.keys()
    for key in fused:
        np.testing.assert_array_equal(np.asarray(fused[key]), np.asarray(per_object[key]),
                                      err_msg=key)


def _network(delay="1*ms", n=20):
    G = NeuronGroup(n, "dv/dt = (1.2 - v)/(10*ms) : 1 (unless refractory)",
                    threshold="v > 1", reset="v = 0", refractory=2 * ms, method="exact")
    G.v = "i / (1.0 * N)"
    S = Synapses(G, G, "w : 1", on_pre="v_post += w")
    S.connect("i != j")
    S.w = "0.02 + 0.001 * j"
    S.delay = delay
    return G, S


def _spikes(monitor):
    return {"i": monitor.i[:].copy(), "t": monitor.t_[:].copy()}


@pytest.mark.long
def test_recorded_results_identical():
    """Growing monitors (all three kinds), heterogeneous delays, two pathways."""

    def build():
        G, S = _network(delay="(j % 5) * 0.3*ms")
        back = Synapses(G, G, on_post="v_pre -= 0.01")
        back.connect(j="(i + 3) % N")
        spikes = SpikeMonitor(G)
        states = StateMonitor(G, ["v"], record=True)
        rate = PopulationRateMonitor(G)
        net = Network(G, S, back, spikes, states, rate)
        net.run(200 * ms)
        return {**_spikes(spikes), "v": states.v[:].copy(), "rate": rate.rate_[:].copy(),
                "rate_t": rate.t_[:].copy(), "final_v": G.v[:].copy()}

    fused, per_object = _both(build)
    assert len(fused["i"]) > 100
    _assert_identical(fused, per_object)


@pytest.mark.long
def test_several_clocks_and_a_network_operation():
    """Groups on 0.1 and 0.3 ms, run_regularly on 1 ms, an operation on 2 ms
    that changes the state, and one on the default clock reading it."""

    def build():
        G, S = _network()
        H = NeuronGroup(5, "dv/dt = (1.5 - v)/(5*ms) : 1", threshold="v > 1", reset="v = 0",
                        dt=0.3 * ms, method="exact")
        G.run_regularly("v += 0.05 * (i % 3)", dt=1 * ms)
        feed = Synapses(H, G, on_pre="v_post += 0.1")
        feed.connect(j="i")
        seen = []

        @network_operation(dt=2 * ms)
        def kick():
            G.v[:5] += 0.1
            seen.append(repr((kick.clock.variables['t'].get_value().item(), float(np.asarray(G.v_[:])[0]))))

        @network_operation
        def observe():
            seen.append(repr(float(np.asarray(H.v_[:])[1])))

        spikes = SpikeMonitor(G)
        net = Network(G, S, H, feed, kick, observe, spikes)
        net.run(30 * ms)
        return {**_spikes(spikes), "seen": np.array(seen),
                "v": G.v[:].copy(), "h": H.v[:].copy(), "t": [float(net.t)]}

    fused, per_object = _both(build)
    _assert_identical(fused, per_object)


@pytest.mark.long
def test_stop_in_the_middle_of_a_run():
    def build():
        G, S = _network()
        spikes = SpikeMonitor(G)

        @network_operation
        def stop_at_some_point():
            if len(spikes.i) >= 30:
                net.stop()

        net = Network(G, S, spikes, stop_at_some_point)
        net.run(1 * second)
        stopped_at = float(net.t)
        net.run(5 * ms)  # a later run continues from there
        return {**_spikes(spikes), "t": [stopped_at, float(net.t)], "v": G.v[:].copy()}

    fused, per_object = _both(build)
    assert fused["t"][0] < 0.5
    _assert_identical(fused, per_object)


@pytest.mark.long
def test_report_calls():
    """Called at the start, on time while running, and at the end."""
    calls = []

    def report(elapsed, completed, start, duration):
        calls.append((time.time(), float(elapsed), completed, float(start), float(duration)))

    start_scope()
    G, S = _network(n=500)
    net = Network(G, S, SpikeMonitor(G))
    net.run(1 * ms)
    calls.clear()
    began = time.time()
    net.run(4 * second, report=report, report_period=0.2 * second)
    took = time.time() - began
    assert calls[0][1:3] == (0.0, 0.0) and calls[-1][2] == 1.0
    assert all(c[3] == 0.001 and c[4] == 4.0 for c in calls)
    middle = calls[1:-1]
    # one call per report period, give or take the chunk length (~50 ms);
    # a loaded machine (CI) can stretch a chunk, so at least half of them
    assert len(middle) >= int(took / 0.2) // 2 > 0, (took, len(middle))
    assert len(middle) <= took / 0.2 + 1
    gaps = np.diff([c[0] for c in calls[:-1]])
    assert np.all(gaps >= 0.2 - 0.01)
    assert np.all(np.diff([c[2] for c in calls]) >= 0)


@pytest.mark.long
def test_store_restore_with_spikes_in_flight():
    def build():
        G, S = _network(delay="(i % 4) * 0.5*ms + 1*ms")
        spikes = SpikeMonitor(G)
        net = Network(G, S, spikes)
        net.run(23.35 * ms)
        net.store()
        net.run(20 * ms)
        first = _spikes(spikes)
        first_v = G.v[:].copy()
        net.restore()
        net.run(20 * ms)
        return {**{f"first_{k}": v for k, v in first.items()}, "first_v": first_v,
                **_spikes(spikes), "v": G.v[:].copy()}

    fused, per_object = _both(build)
    _assert_identical(fused, per_object)
    np.testing.assert_array_equal(fused["first_v"], fused["v"])


@pytest.mark.long
def test_inputs_and_summed_variables():
    """SpikeGeneratorGroup, PoissonGroup, PoissonInput, a summed variable,
    values changed between runs."""

    def build():
        G = NeuronGroup(8, """dv/dt = (I - v)/(10*ms) : 1
                              I : 1""", threshold="v > 1", reset="v = 0", method="euler")
        gen = SpikeGeneratorGroup(3, [0, 1, 2, 1, 0], [1, 2, 3, 7, 11] * ms)
        to_g = Synapses(gen, G, on_pre="v_post += 0.4")
        to_g.connect(j="i*2")
        poisson = PoissonGroup(10, rates=200 * Hz)
        noise = Synapses(poisson, G, on_pre="v_post += 0.05", delay=0.5 * ms)
        noise.connect(p=0.5)
        drive = PoissonInput(G, "v", 5, 100 * Hz, weight=0.03)
        summed = Synapses(G, G, "I_post = 0.3 * (1 + i % 2) : 1 (summed)")
        summed.connect(j="(i + 1) % N")
        spikes = SpikeMonitor(G)
        net = Network(G, gen, to_g, poisson, noise, drive, summed, spikes)
        net.run(30 * ms)
        noise.delay = 2 * ms
        G.v = 0.5
        net.run(30 * ms)
        return {**_spikes(spikes), "v": G.v[:].copy(), "I": G.I[:].copy()}

    fused, per_object = _both(build)
    assert len(fused["i"]) > 10
    _assert_identical(fused, per_object)


@pytest.mark.long
def test_spatial_neuron():
    from brian2 import Cylinder, SpatialNeuron, cm, msiemens, ohm, uA, ufarad, um

    def build():
        morpho = Cylinder(length=1 * cm, diameter=20 * um, n=40)
        neuron = SpatialNeuron(morpho, "Im = gL * (EL - v) : amp/meter**2\nI : amp (point current)",
                               Cm=1 * ufarad / cm**2, Ri=100 * ohm * cm,
                               namespace={"gL": 0.1 * msiemens / cm**2, "EL": -70 * mV})
        neuron.v = -70 * mV
        neuron.I[0] = 0.1 * uA
        monitor = StateMonitor(neuron, "v", record=[0, 20, 39])
        net = Network(neuron, monitor)
        net.run(5 * ms)
        return {"v": monitor.v_[:].copy()}

    fused, per_object = _both(build)
    _assert_identical(fused, per_object)


@pytest.mark.long
def test_unfusable_object_runs_brians_loop():
    """A group with numpy code objects: Brian's loop for that run, one INFO line."""

    def build():
        G = NeuronGroup(5, "dv/dt = (1.1 - v)/(5*ms) : 1", threshold="v > 1", reset="v = 0",
                        method="exact", codeobj_class=NumpyCodeObject, name="numpy_group")
        spikes = SpikeMonitor(G)
        net = Network(G, spikes)
        with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
            net.run(20 * ms)
        messages = [message for level, name, message in logs if "not_fused" in name]
        return {**_spikes(spikes), "messages": messages}

    fused, per_object = _both(build)
    assert len(fused["messages"]) == 1 and "'numpy_group'" in fused["messages"][0]
    assert per_object["messages"] == []
    np.testing.assert_array_equal(fused["i"], per_object["i"])


def test_profile_runs_brians_loop():
    from brian2 import profiling_summary

    start_scope()
    G, S = _network()
    net = Network(G, S)
    net.run(5 * ms, profile=True)
    summary = profiling_summary(net)
    assert any("stateupdater" in name for name in summary.names)


@pytest.mark.long
def test_loop_is_generated_and_cached(numba_target):
    """The loop shows up in generated_files; a second process compiles nothing."""
    script = textwrap.dedent("""
        import json, sys
        import brian2_numba
        from brian2 import *
        prefs.codegen.target = 'numba'
        prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
        G = NeuronGroup(10, 'dv/dt = (1.1 - v)/(10*ms) : 1', threshold='v > 1',
                        reset='v = 0', method='exact')
        S = Synapses(G, G, on_pre='v_post += 0.01', delay=1*ms)
        S.connect()
        M = SpikeMonitor(G)
        net = Network(G, S, M)
        net.run(50*ms)
        print(json.dumps({"loop": brian2_numba.generated_files(net)[net.name]["loop"],
                          "stats": brian2_numba.cache_stats(), "n": len(M.i)}))
    """)
    outputs = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", script, str(numba_target)],
                                capture_output=True, text=True, env=script_env(), timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    first, second = outputs
    assert first["loop"] == second["loop"] and os.path.exists(first["loop"])
    with open(first["loop"]) as f:
        source = f.read()
    assert "from template 'network_run'" in source and "from brian2_numba_" in source
    assert first["stats"]["misses"] > 0 and second["stats"]["misses"] == 0
    assert first["n"] == second["n"] > 0


@pytest.mark.long
def test_kernels_and_their_loop_variants_are_cached_apart(numba_target):
    """The fused loop's kernels (no Python wrapper) and Brian's loop's kernels
    share a cache directory, never an entry: a per-object run after a fused
    one compiles its kernels (calling a variant from Python would crash), and
    then each mode loads its own, with the same results."""
    script = textwrap.dedent("""
        import builtins, json, os, sys
        import brian2_numba
        from brian2 import *
        prefs.codegen.target = 'numba'
        prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
        prefs.codegen.runtime.numba.fused = sys.argv[2] == 'fused'
        G = NeuronGroup(10, 'dv/dt = (1.1 - v)/(10*ms) : 1', threshold='v > 1',
                        reset='v = 0', method='exact')
        G.v = 'i / 10.0'
        S = Synapses(G, G, on_pre='v_post += 0.05')
        S.connect()
        S.delay = 'j * 0.2*ms'
        M = SpikeMonitor(G)
        net = Network(G, S, M)
        net.run(30*ms)
        files = os.listdir(os.path.join(sys.argv[1], 'kernels'))
        print(json.dumps({"stats": brian2_numba.cache_stats(), "i": M.i[:].tolist(),
                          "t": M.t_[:].tolist(),
                          "variants": builtins.sum('.main.loop-' in name and name.endswith('.nbi')
                                               for name in files)}))
    """)
    outputs = []
    for mode in ("fused", "per_object", "fused", "per_object"):
        result = subprocess.run([sys.executable, "-c", script, str(numba_target), mode],
                                capture_output=True, text=True, env=script_env(), timeout=600)
        assert result.returncode == 0, (mode, result.stderr[-3000:])
        outputs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    first_fused, first_per_object, fused, per_object = outputs
    assert first_fused["stats"]["misses"] > 0 and first_fused["variants"] >= 4
    assert first_per_object["stats"]["misses"] >= first_fused["variants"]
    assert fused["stats"]["misses"] == 0 and per_object["stats"]["misses"] == 0
    assert len(first_fused["i"]) > 10
    for output in outputs[1:]:
        assert (output["i"], output["t"]) == (first_fused["i"], first_fused["t"])


INTERRUPTED = """
import json, sys, time
import brian2_numba
from brian2 import *
prefs.codegen.target = 'numba'
prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
prefs.core.stop_on_keyboard_interrupt = sys.argv[2] == 'stop'
G = NeuronGroup(2000, 'dv/dt = (1.2 - v)/(10*ms) : 1', threshold='v > 1', reset='v = 0',
                method='exact')
G.v = 'i / 2000.0'
S = Synapses(G, G, on_pre='v_post += 0.001', delay=1*ms)
S.connect(j='(i + k) % N for k in range(20)')
M = SpikeMonitor(G)
net = Network(G, S, M)
net.run(1*ms)
print('ready', flush=True)
try:
    net.run(1000*second)
    interrupted = None
except KeyboardInterrupt:
    interrupted = float(net.t)
stopped_at = float(net.t)
net.run(3*ms)  # continues from where it stopped
print(json.dumps({"interrupted": interrupted, "t": stopped_at, "after": float(net.t),
                  "spikes": len(M.i), "last": float(M.t[-1]) if len(M.t) else 0.0}))
"""


@pytest.mark.long
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
@pytest.mark.parametrize("on_interrupt", ["stop", "raise"])
def test_keyboard_interrupt_stops_a_long_run(numba_target, on_interrupt):
    """Ctrl-C stops within a chunk at the end of a time step: as a stop()
    (Brian's default, prefs.core.stop_on_keyboard_interrupt) or as a
    KeyboardInterrupt; either way a later run() continues from there."""
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, str(numba_target), on_interrupt],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env())
    assert process.stdout.readline().strip() == "ready"
    time.sleep(2)
    sent = time.time()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert time.time() - sent < 10  # stopped within a chunk, and the rest of the script ran
    assert process.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    if on_interrupt == "stop":
        assert result["interrupted"] is None and "Simulation stop requested" in err
    else:
        assert result["interrupted"] == result["t"]
    assert 0.001 < result["t"] < 1000
    # stopped at the end of a time step, with the monitor's data complete
    assert abs(result["t"] * 10000 - round(result["t"] * 10000)) < 1e-6
    assert result["spikes"] > 0 and result["last"] < result["after"]
    assert abs(result["after"] - result["t"] - 0.003) < 1e-9


def _run_logging_not_fused(delay, duration):
    """Spikes, v and the 'not fused' INFO lines of a run of ``_network(delay)``."""
    G, S = _network(delay=delay)
    spikes = SpikeMonitor(G)
    net = Network(G, S, spikes)
    with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
        net.run(duration)
    return {**_spikes(spikes), "v": G.v[:].copy(),
            "messages": [m for level, name, m in logs if "not_fused" in name]}


def test_loop_that_does_not_compile_runs_objects_one_by_one(monkeypatch):
    """If numba cannot compile a loop, the run still happens (one INFO line)."""
    from numba.core.errors import TypingError

    import brian2_numba.network as network

    original = network._FusedLoop.compile

    def compile_only_python_entries(self):
        if any(entry.codeobj is not None for entry in self.entries):
            raise TypingError("a forced typing error")
        return original(self)

    monkeypatch.setattr(network._FusedLoop, "compile", compile_only_python_entries)
    fused, per_object = _both(_run_logging_not_fused, "(j % 3) * 0.5*ms", 30 * ms)
    assert len(fused["messages"]) == 1 and "a forced typing error" in fused["messages"][0]
    assert "could not compile its loop" in fused["messages"][0]
    np.testing.assert_array_equal(fused["i"], per_object["i"])
    np.testing.assert_array_equal(fused["v"], per_object["v"])


def test_kernel_that_cannot_be_called_is_named(monkeypatch):
    """A kernel whose compiled function cannot be found: the INFO line names its
    code object (not the loop), and the run happens one object at a time."""
    import brian2_numba.network as network

    original = network.address_of

    def no_address_for_the_threshold(kernel, arguments, argument_types=None):
        with open(kernel.py_func.__code__.co_filename) as source:
            header = source.readline()  # "... from template 'threshold'."
        if "'threshold'" in header:
            raise network.KernelAddressError("no function found (forced)")
        return original(kernel, arguments, argument_types)

    monkeypatch.setattr(network, "address_of", no_address_for_the_threshold)
    fused, per_object = _both(_run_logging_not_fused, "1*ms", 10 * ms)
    (message,) = fused["messages"]
    # (the group's name depends on what ran before: neurongroup, neurongroup_4)
    assert re.search(r"the kernel of 'neurongroup(_\d+)?_spike_thresholder_codeobject",
                     message), message
    assert "no function found (forced)" in message
    np.testing.assert_array_equal(fused["i"], per_object["i"])
    np.testing.assert_array_equal(fused["v"], per_object["v"])


def test_loop_calls_kernels_without_compiling_them_again():
    """The loop's machine code holds the loop only: kernels are called at their
    addresses (brian2_numba.kernel_calls), not linked in and compiled again."""

    import brian2_numba
    from brian2_numba.cache import kernel_forms, loaded_dispatchers

    # (other tests in this process may have run the same kernels one by one)
    overloads_before = {kernel: len(kernel.overloads) for kernel in loaded_dispatchers()}
    start_scope()
    G, S = _network(delay="(j % 3) * 0.5*ms")
    spikes = SpikeMonitor(G)
    net = Network(G, S, spikes)
    net.run(5 * ms)
    loop_file = brian2_numba.generated_files(net)[net.name]["loop"]
    loop_module = os.path.basename(loop_file).split(".")[0]
    loop = sys.modules[loop_module].main
    (llvm,) = loop.inspect_llvm().values()
    defined = re.findall(r"^define [^@]*@\"?([^(\"]+)", llvm, re.M)
    kernel_modules = {name for name in re.findall(r"brian2_numba_[0-9a-f]{32}", " ".join(defined))}
    assert defined and kernel_modules == {loop_module}
    with open(loop_file) as f:
        assert f.read().count("_run_packed(_state, ") >= 4  # every kernel, packed
    # it calls the kernels' variants without numba's Python wrapper; the
    # kernels themselves (which Brian's loop would call) were not compiled
    kernels = [codeobj.compiled_code["run"].main for obj in net.sorted_objects
               for codeobj in obj._code_objects if codeobj.compiled_code.get("run")]
    assert len(kernels) >= 4
    for kernel in kernels:
        forms = kernel_forms(kernel)
        assert len(forms) == 2
        variant = forms[1]
        assert variant.targetoptions["no_cpython_wrapper"]
        assert variant.overloads
        assert len(kernel.overloads) == overloads_before.get(kernel, 0)


def test_kernel_still_full_after_make_room_is_an_error(monkeypatch):
    """A make_room that makes no room: a Brian error naming the monitor's code
    object, not an endless loop (the kernel runs again in the loop, not in Python)."""
    from brian2.core.base import BrianObjectException

    from brian2_numba.structures import monitors

    monkeypatch.setattr(monitors, "BUFFER_VALUES", 4)
    monkeypatch.setattr(monitors.PendingRecords, "make_room", lambda self, rows: None)
    start_scope()
    G, S = _network()
    spikes = SpikeMonitor(G)
    net = Network(G, S, spikes)
    with pytest.raises(BrianObjectException) as raised:
        net.run(50 * ms)
    message = str(raised.value)
    assert "spikemonitor" in message and "still found a structure full" in message, message


def test_kernels_called_with_argument_tuples(monkeypatch):
    """Arguments that are not packed reach the kernel as a tuple (run_at)."""
    import brian2_numba
    import brian2_numba.network as network

    loops = []

    def build():
        G, S = _network(delay="(j % 5) * 0.3*ms")
        spikes = SpikeMonitor(G)
        states = StateMonitor(G, "v", record=[0, 7])
        net = Network(G, S, spikes, states)
        net.run(40 * ms)
        loops.append(brian2_numba.generated_files(net).get(net.name, {}).get("loop"))
        return {**_spikes(spikes), "v": states.v[:].copy(), "final_v": G.v[:].copy()}

    packed = network.pack
    monkeypatch.setattr(network, "pack", lambda arguments: None if len(arguments) % 2 else packed(arguments))
    fused, per_object = _both(build)
    with open(loops[0]) as f:
        source = f.read()
    assert "_run_at(_state, " in source and "_run_packed(_state, " in source  # both ways
    assert len(fused["i"]) > 20
    _assert_identical(fused, per_object)
