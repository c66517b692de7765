"""Run-once code objects through numpy on a cold cache (brian2_numba.run_once).

Which run-once code objects fall back to Brian's numpy code object and which
compile, and that the results never depend on it: with the fallback on and
off, and on a cold and a warm cache in fresh processes, under ``seed()``.
"""

import json
import logging

import numpy as np
import pytest
from brian2 import NeuronGroup, Synapses, prefs
from brian2.codegen.runtime.numpy_rt import NumpyCodeObject
from brian2.devices.device import runtime_device
from brian2.utils.logger import catch_logs
from conftest import run_script

import brian2_numba
from brian2_numba import run_once
from brian2_numba.codeobject import NumbaCodeObject


@pytest.fixture
def created(monkeypatch):
    """The run-once code objects created during the test: ``[(template, class)]``."""
    made = []
    inner = runtime_device.code_object

    def recording(*args, **kwds):
        codeobj = inner(*args, **kwds)
        if codeobj.template_name in run_once.RUN_ONCE_TEMPLATES:
            made.append((codeobj.template_name, type(codeobj)))
        return codeobj

    monkeypatch.setattr(runtime_device, "code_object", recording)
    prefs.codegen.string_expression_target = "numba"
    return made


def _misses():
    return brian2_numba.cache_stats()["misses"]


def test_cheap_code_runs_through_numpy(created):
    G = NeuronGroup(100, "v : 1\nx : 1")
    before = _misses()
    G.v = "i * 0.5 + 3"
    G.x["i > 3"] = "v - 2*i"
    values = G.v["v > 10"]
    S = Synapses(G, G)
    S.connect(j="(i + 1) % 100")
    S.connect(i=[1, 2], j=[3, 4])
    assert created == [
        ("group_variable_set_conditional", NumpyCodeObject),
        ("group_variable_set_conditional", NumpyCodeObject),
        ("group_variable_get_conditional", NumpyCodeObject),
        ("synapses_create_generator", NumpyCodeObject),
        ("synapses_create_array", NumpyCodeObject),
    ]
    assert _misses() == before  # no kernel compiled
    assert np.array_equal(values, np.arange(15, 100) * 0.5 + 3)
    index = np.arange(100)
    assert np.array_equal(G.x[:], np.where(index > 3, index * 0.5 + 3 - 2 * index, 0))
    assert S.N == 102 and list(S.j[:5]) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("expression, why", [
    ("rand()", "draws random numbers"),
    ("randn() * 0.1", "draws random numbers"),
    ("exp(i * 0.1)", "calls exp()"),
    ("(i * 0.1) ** 1.5", "power other than 2"),
])
def test_code_numpy_computes_differently_compiles(created, expression, why):
    G = NeuronGroup(10, "v : 1")
    with catch_logs(log_level=logging.DEBUG, only_from=("brian2_numba.run_once",)) as logs:
        G.v = expression
    assert created == [("group_variable_set_conditional", NumbaCodeObject)]
    assert [message for _, _, message in logs if why in message]


def test_square_runs_through_numpy(created):
    G = NeuronGroup(10, "v : 1")
    G.v = "(i * 0.1) ** 2 + abs(i - 5) + sqrt(i * 1.0) + floor(i / 3)"
    assert created == [("group_variable_set_conditional", NumpyCodeObject)]


def test_connection_probability_compiles(created):
    G = NeuronGroup(20, "v : 1")
    S = Synapses(G, G)
    S.connect(p=0.3)
    S.connect(j="k for k in sample(N_post, size=3)")
    assert created == [("synapses_create_generator", NumbaCodeObject)] * 2


def test_float32_compiles(created):
    G = NeuronGroup(10, "v : 1", dtype={"v": np.float32})
    G.v = "i * 0.1"
    assert created == [("group_variable_set_conditional", NumbaCodeObject)]


def test_user_function_compiles(created):
    from brian2 import check_units, implementation

    @implementation("numba", "@_numba.njit\ndef twice(x):\n    return 2 * x")
    @check_units(x=1, result=1)
    def twice(x):
        return 2 * x

    G = NeuronGroup(10, "v : 1")
    G.v = "twice(i * 1.0)"
    assert created == [("group_variable_set_conditional", NumbaCodeObject)]
    assert np.array_equal(G.v[:], 2.0 * np.arange(10))


def test_large_work_compiles(created):
    # numpy's synapse creation loops over the sources in Python: 20000 of them
    # take longer than compiling the kernel
    G = NeuronGroup(20000, "v : 1")
    S = Synapses(G, G)
    S.connect(j="i")
    assert created == [("synapses_create_generator", NumbaCodeObject)]
    assert S.N == 20000


def test_estimate():
    G = NeuronGroup(10**6, "v : 1")
    S = Synapses(G, G)
    variables = dict(S.variables)
    kwds = {"outer_index_size": "N_pre", "result_index_size": "N_post",
            "iterator_func": "range",
            "iterator_kwds": {"low": "0", "high": "1", "step": "1"}}
    seconds = run_once.numpy_seconds("synapses_create_generator", variables, kwds)
    assert seconds > run_once.RUN_ONCE_TEMPLATES["synapses_create_generator"]
    # range(i-3, i+4): 7 candidates per source, not N_post
    kwds["iterator_kwds"] = {"low": "i - 3", "high": "i + 4", "step": "1"}
    assert run_once._range_length(kwds["iterator_kwds"], variables, 10**6) == 7
    kwds["iterator_kwds"] = {"low": "0", "high": "N_post", "step": "2"}
    assert run_once._range_length(kwds["iterator_kwds"], variables, 1) == 500000
    kwds["iterator_kwds"] = {"low": "0", "high": "i", "step": "1"}
    assert run_once._range_length(kwds["iterator_kwds"], variables, 10**6) == 10**6


def test_pref_off_compiles(created):
    prefs.codegen.runtime.numba.run_once_fallback = False
    G = NeuronGroup(10, "v : 1")
    G.v = "i * 0.5"
    S = Synapses(G, G)
    S.connect(j="i")
    assert created == [("group_variable_set_conditional", NumbaCodeObject),
                       ("synapses_create_generator", NumbaCodeObject)]


def test_kernel_in_memory_is_used(created):
    G = NeuronGroup(10, "v : 1")
    prefs.codegen.runtime.numba.run_once_fallback = False
    G.v = "i * 0.25"
    prefs.codegen.runtime.numba.run_once_fallback = True
    G.v = "i * 0.25"
    assert created == [("group_variable_set_conditional", NumbaCodeObject)] * 2


def test_get_indices_compiles(created):
    # numpy's group_get_indices returns float64 indices, the kernel int32
    G = NeuronGroup(10, "v : 1")
    S = Synapses(G, G)
    S.connect(j="i")
    indices = S.indices["i > 4"]
    assert created[-1] == ("group_get_indices", NumbaCodeObject)
    assert indices.dtype == np.int32


# A model mixing random and deterministic initialisers and connections; prints
# its results and which run-once code objects ran through numpy, as JSON.
MODEL = """
import json, sys
import brian2_numba
from brian2 import *
from brian2.codegen.runtime.numpy_rt import NumpyCodeObject
from brian2.devices.device import runtime_device
from brian2.utils.logger import catch_logs
prefs.codegen.target = 'numba'
prefs.codegen.string_expression_target = 'numba'
prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
prefs.codegen.runtime.numba.run_once_fallback = sys.argv[2] == 'on'
prefs.codegen.runtime.numba.advisor = False
numpy_ran = []
inner = runtime_device.code_object
def recording(*args, **kwds):
    codeobj = inner(*args, **kwds)
    if isinstance(codeobj, NumpyCodeObject):
        numpy_ran.append(codeobj.template_name)
    return codeobj
runtime_device.code_object = recording
seed(4321)
G = NeuronGroup(50, '''dv/dt = (I - v)/(10*ms) : 1
                       I : 1
                       x : 1''', threshold='v > 1', reset='v = 0', method='exact')
G.v = 'rand()'
G.I = '1.2 + 0.01*i'
G.x = 'i * 0.5 - 3'
G.I['i % 7 == 0'] = 'I + randn() * 0.1'
S = Synapses(G, G, 'w : 1', on_pre='v += w')
S.connect(j='(i + 3) % 50')
S.connect(p=0.1)
S.connect(j='k for k in range(i - 2, i + 3)', skip_if_invalid=True)
S.w = '0.01 * (i + j)'
S.w['i > j'] = 'rand() * 0.05'
M = SpikeMonitor(G)
run(30*ms)
print(json.dumps({"v": G.v[:].tolist(), "I": G.I[:].tolist(), "x": G.x[:].tolist(),
                  "w": S.w[:].tolist(), "i": S.i[:].tolist(), "j": S.j[:].tolist(),
                  "spikes_i": M.i[:].tolist(), "spikes_t": M.t_[:].tolist(),
                  "later": G.x['x > 10'].tolist(), "numpy_ran": numpy_ran}))
"""


def _run(cache_dir, fallback):
    return json.loads(run_script(MODEL, cache_dir, fallback).stdout.strip().splitlines()[-1])


@pytest.mark.long
def test_cold_and_warm_start_agree(numba_target, tmp_path):
    cold = _run(numba_target, "on")
    warm = _run(numba_target, "on")
    off = _run(tmp_path / "other-cache", "off")
    # deterministic code went through numpy, cold and warm (never compiled)
    assert cold["numpy_ran"] == warm["numpy_ran"]
    assert "synapses_create_generator" in cold["numpy_ran"]
    assert "group_variable_set_conditional" in cold["numpy_ran"]
    assert off["numpy_ran"] == []
    numpy_ran = cold.pop("numpy_ran"), warm.pop("numpy_ran"), off.pop("numpy_ran")
    assert cold == warm == off
    assert len(cold["spikes_i"]) > 0 and numpy_ran


@pytest.mark.long
def test_kernel_on_disk_is_used(numba_target):
    code = """
    import sys
    import brian2_numba
    from brian2 import *
    prefs.codegen.target = 'numba'
    prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
    prefs.codegen.runtime.numba.run_once_fallback = sys.argv[2] == 'on'
    G = NeuronGroup(10, 'v : 1')
    S = Synapses(G, G)
    S.connect(j='(i + 1) % 10')
    print(brian2_numba.cache_stats()["hits"], brian2_numba.cache_stats()["misses"])
    """
    first = run_script(code, numba_target, "off").stdout.split()
    second = run_script(code, numba_target, "on").stdout.split()
    assert first == ["0", "1"]  # compiled, saved
    assert second == ["1", "0"]  # loaded from disk, not run through numpy


def test_group_with_its_own_codeobj_class_compiles(created):
    G = NeuronGroup(10, "v : 1", codeobj_class=NumbaCodeObject)
    G.v = "i * 0.5"
    assert created == [("group_variable_set_conditional", NumbaCodeObject)]


def test_without_disk_cache_falls_back(created):
    # nothing is ever cached across processes: every start is a cold one
    prefs.codegen.runtime.numba.cache = False
    G = NeuronGroup(10, "v : 1")
    S = Synapses(G, G)
    S.connect(j="(i + 2) % 10")
    assert created == [("synapses_create_generator", NumpyCodeObject)]
    assert list(S.j[:]) == [(k + 2) % 10 for k in range(10)]


def test_generated_files_and_introspector_after_a_fallback(created):
    from brian2 import Network, ms

    import brian2_numba.introspect as introspect

    G = NeuronGroup(10, "dv/dt = -v/(10*ms) : 1", threshold="v > 0.5", reset="v = 0",
                    method="exact")
    G.v = "i * 0.1"
    S = Synapses(G, G, "w : 1", on_pre="v += w")
    S.connect(j="(i + 1) % 10")
    net = Network(G, S)
    net.run(1 * ms)
    assert ("synapses_create_generator", NumpyCodeObject) in created
    files = brian2_numba.generated_files(net)
    assert any("stateupdater" in name for name in files)
    templates = introspect.list(net).column("template")
    assert "stateupdate" in templates
    assert not set(templates) & set(run_once.RUN_ONCE_TEMPLATES)
