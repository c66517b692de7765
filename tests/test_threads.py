"""Multi-threaded kernels: the same results for every thread count, in every set-up.

``parallel_threshold = 0`` makes every kernel that can be split parallel, so
that the small test models exercise the parallel templates; each test checks
that parallel kernels were in fact generated.
"""

import json
import sys

import numpy as np
import pytest
from brian2 import (
    Network,
    NeuronGroup,
    SpikeMonitor,
    StateMonitor,
    Synapses,
    defaultclock,
    ms,
    prefs,
    seed,
    start_scope,
)
from brian2.utils.logger import catch_logs
from conftest import run_script

import brian2_numba
from brian2_numba import threads
from brian2_numba.bench.models import MODELS


def _parallel_code_objects(net):
    """``{code object name: template}`` of the code objects whose kernel is parallel."""
    found = {}
    for name, blocks in brian2_numba.generated_files(net).items():
        for path in blocks.values():
            with open(path) as f:
                source = f.read()
            if "parallel=True" in source:
                found[name] = source.split("from template '")[1].split("'")[0]
    return found


def _parallel_templates(net):
    """The templates of the code objects whose kernel is parallel."""
    return set(_parallel_code_objects(net).values())


def _run_model(name, thread_count, fused=True):
    """A benchmark model at its quick size, with monitors: what it recorded."""
    start_scope()
    defaultclock.dt = 0.1 * ms
    prefs.codegen.runtime.numba.threads = thread_count
    prefs.codegen.runtime.numba.parallel_threshold = 0
    prefs.codegen.runtime.numba.fused = fused
    seed(11)
    model = MODELS[name]
    built = model.build(model.quick_size)
    net = Network(built.objects)
    net.run(model.quick_duration_ms * ms)
    record = built.record
    values = getattr(record, built.var)[:]
    result = {"i": built.spikes.i[:].copy(), "t": built.spikes.t_[:].copy(),
              "recorded": np.asarray(values).copy()}
    return result, _parallel_templates(net)


@pytest.mark.long
@pytest.mark.parametrize("name", ["cuba", "cobahh", "stdp", "brunel_hakim_heterog"])
def test_identical_for_one_and_two_threads(name):
    serial, serial_parallel = _run_model(name, 1)
    parallel, parallel_templates = _run_model(name, 2)
    assert serial_parallel == set()
    # Brunel-Hakim: the state update draws random numbers (xi), so it stays serial
    assert {"threshold"} <= parallel_templates
    assert ("stateupdate" in parallel_templates) == (name != "brunel_hakim_heterog")
    if name != "cobahh":  # COBAHH: conductances summed by the state update
        assert "synapses" in parallel_templates
    assert len(serial["i"]) > 0
    for key in serial:
        np.testing.assert_array_equal(serial[key], parallel[key], err_msg=key)


@pytest.mark.long
def test_identical_in_brians_loop():
    fused, _ = _run_model("brunel_hakim_heterog", 2)
    per_object, templates = _run_model("brunel_hakim_heterog", 2, fused=False)
    assert "synapses" in templates
    for key in fused:
        np.testing.assert_array_equal(fused[key], per_object[key], err_msg=key)


def _plastic_network(thread_count):
    """Every parallel template: pre and post pathways, a summed variable, monitors."""
    start_scope()
    prefs.codegen.runtime.numba.threads = thread_count
    prefs.codegen.runtime.numba.parallel_threshold = 0
    G = NeuronGroup(300, """dv/dt = (1.2 - v + I_syn)/(10*ms) : 1 (unless refractory)
                            I_syn : 1
                            count : 1""",
                    threshold="v > 1", reset="v = 0; count += 1", refractory=2 * ms,
                    method="euler")
    G.v = "(i * 7919 % 300) / 300.0"
    G.count["i < 100"] = "i * 0.5"  # group_variable_set_conditional
    S = Synapses(G, G, """w : 1
                          dapre/dt = -apre/(5*ms) : 1 (event-driven)
                          dapost/dt = -apost/(5*ms) : 1 (event-driven)""",
                 on_pre="v_post += w; apre += 0.01; w = clip(w + apost, 0, 0.05)",
                 on_post="apost -= 0.012; w = clip(w + apre, 0, 0.05)")
    S.connect(j="(i + k) % 300 for k in range(1, 20)")  # several synapses per target
    S.w = "0.04 * ((i * 31 + j) % 17) / 17.0"
    S.delay = "((i + j) % 5) * 0.3*ms"
    C = Synapses(G, G, """c : 1
                          I_syn_post = c * v_pre : 1 (summed)""")
    C.connect(j="(7 * i + k) % 300 for k in range(3)")
    C.c = "0.001 * (i % 11)"
    spikes = SpikeMonitor(G)
    states = StateMonitor(G, ["v", "I_syn"], record=True)
    net = Network(G, S, C, spikes, states)
    net.run(40 * ms)
    recorded = {"i": spikes.i[:], "t": spikes.t_[:], "v": states.v[:], "I": states.I_syn[:],
                "w": S.w[:], "count": G.count[:]}
    return {k: np.array(v) for k, v in recorded.items()}, _parallel_templates(net)


def test_every_parallel_template_gives_the_serial_result():
    serial, _ = _plastic_network(1)
    parallel, templates = _plastic_network(2)
    assert templates >= {"stateupdate", "threshold", "reset", "synapses",
                         "summed_variable", "statemonitor"}
    assert len(serial["i"]) > 100
    for key in serial:
        np.testing.assert_array_equal(serial[key], parallel[key], err_msg=key)


def test_serial_below_the_threshold_and_with_one_thread():
    prefs.codegen.runtime.numba.threads = 2
    prefs.codegen.runtime.numba.parallel_threshold = 3000  # items x operations (3 here)
    small = NeuronGroup(999, "dv/dt = -v/(10*ms) : 1", threshold="v > 1", reset="v = 0",
                        name="small")
    large = NeuronGroup(1000, "dv/dt = -v/(10*ms) : 1", name="large")
    net = Network(small, large)
    net.run(1 * ms)
    assert list(_parallel_code_objects(net)) == ["large_stateupdater_codeobject"]
    prefs.codegen.runtime.numba.threads = 1
    net.run(1 * ms)
    assert _parallel_templates(net) == set()


def test_random_numbers_keep_a_kernel_serial():
    """One buffered stream in neuron order: the same draws as with one thread."""
    def noisy(thread_count):
        start_scope()
        prefs.codegen.runtime.numba.threads = thread_count
        prefs.codegen.runtime.numba.parallel_threshold = 0
        seed(3)
        G = NeuronGroup(200, "dv/dt = -v/(10*ms) + xi/sqrt(ms) : 1", method="euler")
        net = Network(G)
        net.run(2 * ms)
        return G.v[:].copy(), _parallel_templates(net)

    serial, _ = noisy(1)
    parallel, templates = noisy(2)
    assert "stateupdate" not in templates
    np.testing.assert_array_equal(serial, parallel)


def test_partition_of():
    def partition(reads, writes, indices, random=False, scalars=()):
        return threads.partition_of(
            set(reads), set(writes), array_of=lambda n: n.split("_")[0],
            index_of=lambda n: indices[n], scalar=lambda n: n in scalars,
            draws_random_numbers=random)

    own = {"v": "_idx", "w": "_idx"}
    assert partition(["v"], ["v"], own) == ("_idx", True)
    assert partition(["w"], ["v"], own) == ("_idx", False)
    assert partition(["v"], ["v"], own, random=True)[0] is None
    assert partition([], ["v"], own, scalars=["v"])[0] is None
    post = {"v_post": "_post", "w": "_idx"}
    assert partition(["v_post", "w"], ["v_post", "w"], post) == ("_post", True)
    # v written through the postsynaptic index and read through the presynaptic one
    both = {"v_post": "_post", "v_pre": "_pre"}
    assert partition(["v_pre"], ["v_post"], both)[0] is None
    # writes through the pre- and the postsynaptic index
    two = {"v_post": "_post", "x_pre": "_pre"}
    assert partition([], ["v_post", "x_pre"], two)[0] is None


def test_operation_count():
    """A kernel's work per item: operators and assignments one, calls ten."""
    assert threads.operation_count("v = _v") == 1
    assert threads.operation_count("_v = a + b * exp(c)") == 1 + 2 + 10
    assert threads.operation_count("_cond = (v > 1) and not_refractory") == 1 + 2


def test_thread_count_preference():
    prefs.codegen.runtime.numba.threads = "auto"
    assert 1 <= threads.requested_threads() <= threads.numba.config.NUMBA_NUM_THREADS
    prefs.codegen.runtime.numba.threads = threads.numba.config.NUMBA_NUM_THREADS + 1
    with catch_logs(only_from=("brian2_numba",)) as logs:
        assert threads.requested_threads() == threads.numba.config.NUMBA_NUM_THREADS
    assert any("NUMBA_NUM_THREADS" in message for _, _, message in logs)
    for bad in (0, -1, 1.5, "two", True):
        with pytest.raises(Exception, match="threads"):
            prefs.codegen.runtime.numba.threads = bad


# -- processes and Python threads ---------------------------------------------

#: a model whose kernels are parallel; prints its spikes and the cache stats
THREADED_MODEL = """
import json, sys
import brian2_numba, numba
from brian2 import *
prefs.codegen.target = 'numba'
prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
prefs.codegen.runtime.numba.threads = int(sys.argv[2])
prefs.codegen.runtime.numba.parallel_threshold = 0
G = NeuronGroup(400, 'dv/dt = (1.2 - v)/(10*ms) : 1', threshold='v > 1', reset='v = 0',
                method='exact')
G.v = '(i * 7919 % 400) / 400.0'
S = Synapses(G, G, 'w : 1', on_pre='v_post += w')
S.connect(j='(i + k) % 400 for k in range(5)')
S.w = '0.02 * (i % 3)'
M = SpikeMonitor(G)
run(30*ms)
print(json.dumps({"i": M.i[:].tolist(), "t": (M.t/ms).tolist(),
                  "stats": brian2_numba.cache_stats(),
                  "layer": numba.threading_layer(), "threads": numba.get_num_threads()}))
"""


def _threaded_model(cache_dir, thread_count, **env):
    result = run_script(THREADED_MODEL, cache_dir, thread_count, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.long
def test_cache_hit_with_another_thread_count(numba_target):
    first, _ = _threaded_model(numba_target, 3, NUMBA_NUM_THREADS="3")
    second, _ = _threaded_model(numba_target, 2, NUMBA_NUM_THREADS="2")
    assert (first["threads"], second["threads"]) == (3, 2)
    assert first["stats"]["misses"] > 0
    assert second["stats"]["misses"] == 0 and second["stats"]["hits"] > 0
    assert (first["i"], first["t"]) == (second["i"], second["t"])


def _layers():
    """The threading layers numba can load here (workqueue always can)."""
    layers = ["workqueue"]
    for layer, module in (("omp", "omppool"), ("tbb", "tbbpool")):
        try:
            __import__(f"numba.np.ufunc.{module}")
            layers.append(layer)
        except ImportError:
            pass
    return layers


#: runs THREADED_MODEL's network in this process, then in a child started with
#: the method argv[3]; prints both results and the child's warnings
MULTIPROCESSING = """
import json, multiprocessing, sys
import numba
from brian2.utils.logger import catch_logs
code = {model!r}

def simulate(queue=None):
    import io, contextlib
    out = io.StringIO()
    with catch_logs(only_from=("brian2_numba",)) as logs, contextlib.redirect_stdout(out):
        exec(code, {{"__name__": "model"}})
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    result["warnings"] = [message for _, _, message in logs]
    if queue is None:
        return result
    queue.put(result)

if __name__ == "__main__":
    parent = simulate()
    context = multiprocessing.get_context(sys.argv[3])
    queue = context.Queue()
    child = context.Process(target=simulate, args=(queue,))
    child.start()
    result = queue.get(timeout=300)
    child.join(60)
    print(json.dumps({{"parent": parent, "child": result, "exitcode": child.exitcode}}))
"""


@pytest.mark.long
@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("layer", _layers())
def test_fork_and_spawn(numba_target, layer, method, tmp_path):
    script = tmp_path / "processes.py"
    script.write_text(MULTIPROCESSING.format(model=THREADED_MODEL))
    result = run_script(f"import runpy, sys; sys.argv[0] = {str(script)!r}; "
                        f"runpy.run_path({str(script)!r}, run_name='__main__')",
                        numba_target, 2, method, env={"NUMBA_THREADING_LAYER": layer})
    found = json.loads(result.stdout.strip().splitlines()[-1])
    parent, child = found["parent"], found["child"]
    assert found["exitcode"] == 0
    assert parent["layer"] == layer
    assert (parent["i"], parent["t"]) == (child["i"], child["t"])
    forked_unsafely = method == "fork" and layer in threads._FORK_UNSAFE_LAYERS
    assert any("not fork-safe" in w for w in child["warnings"]) == forked_unsafely


#: two networks on their own clocks, run at once from two Python threads
PYTHON_THREADS = """
import json, sys, threading
import brian2_numba, numba
from brian2 import *
prefs.codegen.target = 'numba'
prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
prefs.codegen.runtime.numba.threads = 2
prefs.codegen.runtime.numba.parallel_threshold = 0

def build():
    G = NeuronGroup(2000, 'dv/dt = (1.1 - v)/(10*ms) : 1', threshold='v > 1',
                    reset='v = 0', method='exact', clock=Clock(0.1*ms))
    G.v = 'i / 2000.0'
    M = SpikeMonitor(G)
    return Network(G, M), M

networks = [build() for _ in range(2)]
for net, _ in networks:
    net.run(1*ms)
counts = {}
def simulate(k):
    net, monitor = networks[k]
    net.run(100*ms)
    counts[k] = int(monitor.num_spikes)
workers = [threading.Thread(target=simulate, args=(k,)) for k in range(2)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps({"counts": [counts[0], counts[1]], "layer": numba.threading_layer()}))
"""


@pytest.mark.long
@pytest.mark.parametrize("layer", _layers())
def test_runs_from_several_python_threads(numba_target, layer):
    """workqueue would abort the process (numba#8563): such runs take turns."""
    result = run_script(PYTHON_THREADS, numba_target, env={"NUMBA_THREADING_LAYER": layer})
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["layer"] == layer
    assert found["counts"][0] == found["counts"][1] > 0

