"""brian2_numba.introspect: list, source, params, namespace, override, revert."""

import gc
import os

import numpy as np
import pytest
from brian2 import Network, NeuronGroup, SpikeMonitor, Synapses, ms, prefs, start_scope

import brian2_numba.introspect as introspect


@pytest.fixture(autouse=True)
def _numba_and_no_overrides():
    prefs.codegen.target = "numba"
    start_scope()
    yield
    introspect.revert()
    start_scope()
    gc.collect()  # the networks' objects: their names are free again


def _network():
    G = NeuronGroup(5, "dv/dt = (2 - v) / (10*ms) : 1", threshold="v > 1", reset="v = 0",
                    method="exact", name="introspected")
    S = Synapses(G, G, on_pre="v_post += 0.1")
    S.connect(p=0.5)
    net = Network(G, S, SpikeMonitor(G))
    net.run(2 * ms)
    return net, G


def test_list_shows_every_code_object_and_its_kernel():
    net, G = _network()
    table = introspect.list()  # the network that ran last
    names = table.column("code object")
    assert "introspected_stateupdater_codeobject" in names
    assert "synapses_pre_push_spikes" in names and f"{net.name} (loop)" in names
    templates = dict(zip(names, table.column("template"), strict=False))
    assert templates["introspected_stateupdater_codeobject"] == "stateupdate"
    for path in table.column("kernel file"):
        assert path is None or os.path.exists(path)
    # every kernel ran (in the fused loop: its variant), so each was loaded or compiled
    caches = table.column("cache")[:-1]
    assert set(caches) <= {"hit", "miss", "compiled", None} and {"hit", "miss"} & set(caches)
    text, page = str(table), table._repr_html_()
    assert "introspected_stateupdater_codeobject" in text and text.count("\n") == len(table) + 1
    assert page.startswith("<table>") and page.count("<tr>") == len(table) + 1
    assert introspect.list(net).rows == table.rows


def test_source_params_and_namespace():
    net, G = _network()
    code = introspect.source("*stateupdater*")
    assert "from template 'stateupdate'" in code and "def main(" in code
    params = introspect.params("*stateupdater*", net=net)
    values = dict(zip(params.column("parameter"), params.column("value"), strict=False))
    assert values["N"] == 5 and values["_array_introspected_v"] is None
    shapes = dict(zip(params.column("parameter"), params.column("shape"), strict=False))
    assert shapes["_array_introspected_v"] == (5,)
    assert "_owner" in introspect.namespace("*stateupdater*").column("name")
    assert isinstance(introspect.source("introspected_*"), dict)  # several match


def test_unknown_pattern_names_the_code_objects():
    net, G = _network()
    with pytest.raises(KeyError, match="introspected_stateupdater_codeobject"):
        introspect.source("*nothing*")


def _replacement(code, params, body):
    """The generated kernel, renamed, called by a new ``main`` that then runs ``body``."""
    arguments = ", ".join(params)
    return (code.replace("def main(", "def _generated_main(")
            + f"\n\n@_numba.njit\ndef main({arguments}):\n"
            + f"    _generated_main({arguments})\n    {body}\n")


def test_override_is_used_from_the_next_run_and_reverted():
    net, G = _network()
    code = introspect.source("*stateupdater*")
    params = introspect.params("*stateupdater*").column("parameter")
    introspect.override("*stateupdater*",
                        _replacement(code, params, "_array_introspected_v[:] = 0.25"))
    net.run(1 * ms)  # the override runs every step: v is 0.25 after the last one
    np.testing.assert_array_equal(G.v[:], 0.25)
    assert introspect.source("*stateupdater*") != code
    assert introspect.revert("*stateupdater*") == 1
    net.run(1 * ms)
    assert introspect.source("*stateupdater*") == code
    assert not np.all(G.v[:] == 0.25)


def test_override_errors_name_the_code_object():
    net, G = _network()
    code = introspect.source("*stateupdater*")
    params = introspect.params("*stateupdater*").column("parameter")
    with pytest.raises(ValueError, match="syntax error"):
        introspect.override("*stateupdater*", code.replace("def main(", "def main(("))
    with pytest.raises(ValueError, match="does not fit.*_no_such_argument"):
        introspect.override("*stateupdater*", code.replace("def main(", "def main(_no_such_argument, "))
    with pytest.raises(ValueError, match="does not compile"):
        introspect.override("*stateupdater*",
                            _replacement(code, params, "_array_introspected_v[:] = undefined_name"))
    with pytest.raises(ValueError, match="defines no function 'main'"):
        introspect.override("*stateupdater*", "x = 1\n")
    assert introspect.revert() == 0  # nothing was registered


def test_without_a_network_the_error_says_so():
    net, G = _network()
    del net, G
    start_scope()
    gc.collect()
    with pytest.raises(ValueError, match="pass the network"):
        introspect.list()
