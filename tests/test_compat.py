"""brian2_numba.compat: every wrapped Brian2 internal works on the installed Brian2,
and an untested Brian2 version is refused at import (or, if allowed, warned about).
"""

import os
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import brian2
import numpy as np
import pytest
from brian2 import (
    NeuronGroup,
    Synapses,
    check_units,
    declare_types,
    ms,
)
from brian2.core.functions import DEFAULT_FUNCTIONS
from brian2.devices.device import RuntimeDevice, all_devices
from brian2.input.binomial import BinomialFunction
from brian2.input.timedarray import TimedArray
from packaging.version import Version

from brian2_numba import compat, functions

BRIAN_SERIES = Version(brian2.__version__).release[:2]


# -- the version gate -----------------------------------------------------------------


def test_installed_brian_is_supported_and_matches_pyproject():
    assert BRIAN_SERIES in compat.SUPPORTED_SERIES
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    requirements = pyproject["project"]["dependencies"]
    assert compat.SUPPORTED_REQUIREMENT in requirements
    compat.check_brian_version(environ={})


@pytest.mark.parametrize("version", ["2.12.0", "2.9.5", "3.0", "not-a-version"])
def test_untested_brian_is_refused(version):
    with pytest.raises(ImportError) as raised:
        compat.check_brian_version(version, environ={compat.ALLOW_UNTESTED_VARIABLE: "0"})
    message = str(raised.value)
    assert f"supports Brian2 2.10.x and 2.11.x, but Brian2 {version} is installed" in message
    assert "pip install 'brian2>=2.10,<2.12'" in message
    assert "BRIAN2_NUMBA_ALLOW_UNTESTED_BRIAN=1" in message


def test_untested_brian_is_allowed_with_a_warning():
    with pytest.warns(UserWarning, match="not tested with Brian2 2.12.0"):
        compat.check_brian_version("2.12.0", environ={compat.ALLOW_UNTESTED_VARIABLE: "1"})


@pytest.mark.parametrize("version", ["2.10.0", "2.10.1", "2.11.0", "2.11.3.dev4+gabc"])
def test_supported_series_pass_silently(version):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.check_brian_version(version, environ={})


_IMPORT_AS_212 = """
import brian2
brian2.__version__ = "2.12.0"  # what the check reads
try:
    import brian2_numba
except ImportError as exc:
    print("ImportError:", exc)
else:
    print("imported")
"""


@pytest.mark.parametrize("allow", [None, "1"])
@pytest.mark.long
def test_import_on_untested_brian(allow):
    env = {k: v for k, v in os.environ.items() if k != compat.ALLOW_UNTESTED_VARIABLE}
    if allow:
        env[compat.ALLOW_UNTESTED_VARIABLE] = allow
    proc = subprocess.run([sys.executable, "-c", _IMPORT_AS_212], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if allow:
        assert proc.stdout.strip() == "imported"
        assert "UserWarning: brian2_numba" in proc.stderr
        assert "is not tested with Brian2 2.12.0" in proc.stderr
    else:
        assert proc.stdout.startswith("ImportError: brian2_numba ")
        assert "but Brian2 2.12.0 is installed" in proc.stdout


def test_no_wrapped_internal_is_missing():
    assert compat.missing_internals() == []


# -- the accessors ------------------------------------------------------------------------


def test_cache_directory_registration():
    registration = brian2._cache_dirs_and_extensions["numba"]
    directory, suffixes = registration
    assert os.path.isdir(directory) and ".py" in "".join(suffixes)
    compat.register_cache_directory("compat_test", ("/nowhere", [".x"]))
    try:
        assert brian2._cache_dirs_and_extensions["compat_test"] == ("/nowhere", [".x"])
    finally:
        del brian2._cache_dirs_and_extensions["compat_test"]


@pytest.mark.long
def test_pathway_delays_homogeneous_and_heterogeneous():
    G = NeuronGroup(3, "v : 1", threshold="False")
    S1 = Synapses(G, G, on_pre="v += 1", delay=2 * ms)
    S1.connect()
    S2 = Synapses(G, G, "w : 1", on_pre="v += w")
    S2.connect()
    S2.delay = "i * ms"
    np.testing.assert_allclose(compat.pathway_delays(S1.pre), [0.002])
    np.testing.assert_allclose(compat.pathway_delays(S2.pre), np.repeat([0, 1e-3, 2e-3], 3))
    for pathway in (S1.pre, S2.pre):  # the same as the private it replaces
        np.testing.assert_array_equal(compat.pathway_delays(pathway),
                                      pathway._delays.get_value())


def test_queue_state_round_trip_and_source_range():
    G = NeuronGroup(10, "v : 1", threshold="False")
    S = Synapses(G[2:7], G, on_pre="v += 1")
    S.connect(j="i")
    queue = S.pre.queue
    assert compat.queue_source_range(queue) == (2, 7)
    state = (1, [[0, 3], [], [4]])
    compat.restore_queue_state(queue, state)
    offset, slots = compat.queue_state(queue)
    assert (offset, [list(s) for s in slots]) == state


def test_synapse_bookkeeping():
    G = NeuronGroup(3, "v : 1")
    S = Synapses(G, G, "w : 1")
    compat.resize_synapses(S, 2)
    assert len(S) == 2 and len(S.w[:]) == 2
    S.variables["_synaptic_pre"].get_value()[:] = [0, 0]
    S.variables["_synaptic_post"].get_value()[:] = [1, 2]
    compat.update_synapse_numbers(S, 0)
    np.testing.assert_array_equal(S.variables["N_outgoing"].get_value(), [2, 0, 0])
    np.testing.assert_array_equal(S.variables["N_incoming"].get_value(), [0, 1, 1])


def test_device_random_buffers_per_version():
    device = all_devices["runtime"]
    buffers = compat.device_random_buffers(device)
    if BRIAN_SERIES >= (2, 11):  # the device keeps the numbers
        assert buffers["rand_buffer"] is device.rand_buffer
        assert buffers["randn_buffer_index"] is device.randn_buffer_index
        assert buffers["rand_buffer"].dtype == np.float64
    else:  # Brian 2.10: a pointer for Cython
        assert buffers is None


def test_extend_runtime_random_state(monkeypatch):
    for name in ("seed", "get_random_state", "set_random_state"):
        monkeypatch.setattr(RuntimeDevice, name, getattr(RuntimeDevice, name))  # restored after
    calls = []
    compat.extend_runtime_random_state(
        "compat_test", lambda: calls.append("seed"), lambda: "extra", calls.append)
    device = all_devices["runtime"]
    device.seed(3)
    state = device.get_random_state()
    assert state["compat_test"] == "extra"
    device.set_random_state(state)
    device.set_random_state({k: v for k, v in state.items() if k != "compat_test"})
    assert calls == ["seed", "extra", None]


def test_function_internals():
    assert compat.timedarray_find_K(1e-4, 1e-3) == 128
    assert compat.binomial_normal_constants(100, 0.5) == (50, 5)
    reverse, q, P, qn, bound = compat.binomial_constants(10, 0.7)
    assert reverse and np.isclose(P, 0.3) and np.isclose(q, 0.7) and np.isclose(qn, 0.7**10)
    assert TimedArray.implementations["numba"] == (functions._timedarray_1d,
                                                    functions._timedarray_2d)
    assert BinomialFunction.implementations["numba"] is functions._binomial


def test_function_return_type():
    @check_units(x=1, result=1)
    def plain(x):
        return x

    @declare_types(result="integer")
    @check_units(x=1, result=1)
    def counted(x):
        return x

    assert compat.function_return_type(brian2.Function(plain)) == "float"
    assert compat.function_return_type(brian2.Function(counted)) == "integer"
    assert compat.function_return_type(DEFAULT_FUNCTIONS["int"]) == "integer"
    assert compat.function_return_type(object()) == "float"  # no such attribute


def test_maximum_run_time_stops_every_run():
    """A sweep's warm-up: every run() stops after its first steps, then no limit."""
    from brian2 import Network, NeuronGroup, defaultclock, ms

    device = all_devices["runtime"]
    net = Network(NeuronGroup(1, "dv/dt = -v/(10*ms) : 1", method="exact"))
    compat.set_maximum_run_time(device, 0)
    try:
        assert compat.maximum_run_time(device) == 0
        net.run(1000 * ms)
        assert 0 < net.t < 1000 * ms
        net.run(1000 * ms)  # the next run() is cut short too
        assert net.t < 1000 * ms
    finally:
        compat.set_maximum_run_time(device, None)
    assert compat.maximum_run_time(device) is None
    start = net.t
    net.run(10 * defaultclock.dt)
    assert abs(float(net.t - start) - 10 * float(defaultclock.dt)) < 1e-12


def test_an_object_would_warn_when_collected(monkeypatch):
    """Brian's test in BrianObject.__del__, on the live and uncollected objects."""
    import gc

    from brian2 import Network, NeuronGroup, ms
    from brian2.utils.logger import BrianLogger

    gc.collect()
    group = NeuronGroup(1, "v : 1")
    assert compat.an_object_would_warn_when_collected()
    monkeypatch.setattr(BrianLogger, "exception_occured", True)
    assert not compat.an_object_would_warn_when_collected()  # Brian warns no more
    monkeypatch.setattr(BrianLogger, "exception_occured", False)
    Network(group).run(0.1 * ms)  # in a network now: its _network is set
    assert not compat.an_object_would_warn_when_collected()


def test_tracked_objects_are_weak_references_to_named_objects():
    """A new group appears in the copy, which does not keep it alive."""
    import gc
    import weakref

    from brian2 import NeuronGroup

    before = compat.tracked_objects()
    group = NeuronGroup(1, "v : 1")
    new = compat.tracked_objects() - before
    assert all(isinstance(reference, weakref.ref) for reference in new)
    assert any(reference() is group for reference in new)
    reference = weakref.ref(group)
    del group, new
    gc.collect()
    assert reference() is None  # the copy did not keep it
