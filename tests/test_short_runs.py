"""Many short run() calls (issue #9): what changes between two runs is picked up.

Protocols loop over short runs and change things in between: constants of
the namespace, ``dt``, synapses, groups, delays, a ``restore()``. Each test
runs one such protocol on the numpy target (the reference) and on numba and
compares spikes exactly and state traces to a tight tolerance; a control run
on numpy *without* the change shows that the change matters, so that the
comparison is not vacuous. Spikes in flight through the delays cross the
boundaries between the runs throughout.

Also: Brian's warning for an object that was never included in a network
still comes (through the ``gc.collect()`` in every ``run()``, which
``gc.freeze()`` at import must not silence for the user's objects), and
``BRIAN2_NUMBA_FREEZE_GC=0`` turns the freeze off.
"""

import gc
import json

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
    run,
    start_scope,
)
from brian2.utils.logger import catch_logs
from conftest import run_script

DT = 0.1 * ms

#: LIF neurons; the constants (tau, I_ext, theta, v_reset) come from outside
EQS = "dv/dt = (I_ext - v) / tau : 1 (unless refractory)"


@pytest.fixture(autouse=True)
def _fresh_scope():
    """Every test starts (and leaves) with a fresh scope and dt = 0.1 ms."""
    start_scope()
    defaultclock.dt = DT
    yield
    start_scope()
    defaultclock.dt = DT


def _lif(n=6, **kwds):
    """n LIF neurons with v spread over [0, 1): they spike at different times."""
    G = NeuronGroup(n, EQS, threshold="v > theta", reset="v = v_reset",
                    refractory=0.5 * ms, method="exact", **kwds)
    G.v = "i * 1.0 / N"
    return G


def _result(spikes, state=None, **extra):
    """Copies of what the monitors recorded (they are reused or restored later)."""
    out = {"i": np.array(spikes.i[:]), "t": np.array(spikes.t_[:])}
    if state is not None:
        out["v"] = np.array(state.v[:])
        out["v_t"] = np.array(state.t_[:])
    out.update({key: np.array(value) for key, value in extra.items()})  # copies: views
    # of monitors' arrays do not keep their memory alive once the monitor is gone
    return out


def _on(target, protocol, *args):
    """``protocol(*args)`` in a fresh scope on ``target``, dt reset to 0.1 ms."""
    start_scope()
    defaultclock.dt = DT
    prefs.codegen.target = target
    try:
        return protocol(*args)
    finally:
        prefs.codegen.target = "numba"


def _assert_same(reference, result):
    """Spikes and integers exactly, state variables to 1e-12 (relative)."""
    assert reference.keys() == result.keys()
    for key, expected in reference.items():
        if key == "v":
            np.testing.assert_allclose(result[key], expected, rtol=1e-12, atol=1e-14,
                                       err_msg=key)
        else:
            np.testing.assert_array_equal(result[key], expected, err_msg=key)


def _differs(a, b):
    """Whether two results differ at all (for the controls)."""
    return a.keys() != b.keys() or any(
        np.shape(a[key]) != np.shape(b[key]) or not np.array_equal(a[key], b[key])
        for key in a)


def _check(protocol, *args):
    """numba gives numpy's result with the change; without it, numpy's differs."""
    reference = _on("numpy", protocol, True, *args)
    _assert_same(reference, _on("numba", protocol, True, *args))
    assert _differs(reference, _on("numpy", protocol, False, *args)), \
        "the change between the runs made no difference: the test checks nothing"
    return reference


def _in_flight(reference, longest, end):
    """Whether a spike was in flight at ``end`` (ms): a source spiked at most
    its longest delay before it. ``longest``: {source: ms} or ms for all."""
    if not isinstance(longest, dict):
        longest = dict.fromkeys(range(6), longest)
    t = reference["t"] / 1e-3
    window = np.array([longest.get(i, -np.inf) for i in reference["i"]])
    return bool(np.any((t >= end - window - 1e-9) & (t <= end + 1e-9)))


# -- constants of the namespace -------------------------------------------------

#: (tau, I_ext, theta, v_reset, w) for each short run: a fast drive, then a
#: threshold nothing reaches, then another drive, reset and synaptic weight
SCHEDULE = [(2 * ms, 2.0, 1.0, 0.0, 0.1), (2 * ms, 2.0, 10.0, 0.0, 0.1),
            (1 * ms, 3.0, 1.0, 0.3, -0.2), (2 * ms, 1.5, 0.9, 0.1, 0.3)]


def _local_namespace_protocol(change, magic):
    G = _lif()
    S = Synapses(G, G, on_pre="v_post += w", delay=0.5 * ms)
    S.connect("i != j")
    spikes, state = SpikeMonitor(G), StateMonitor(G, "v", record=True)
    net = None if magic else Network(G, S, spikes, state)
    counts = []
    # (Brian reads these from the locals: noqa)
    for tau, I_ext, theta, v_reset, w in SCHEDULE if change else SCHEDULE[:1] * 4:  # noqa: B007
        if magic:
            run(2 * ms)  # the magic network, as a script does
        else:
            net.run(2 * ms)
        counts.append(spikes.num_spikes)
    return _result(spikes, state, counts=counts)


@pytest.mark.long
@pytest.mark.parametrize("magic", [True, False], ids=["run", "net.run"])
def test_constants_from_the_local_namespace(magic):
    """tau, I_ext, theta, v_reset and w: this frame's locals, reassigned."""
    reference = _check(_local_namespace_protocol, magic)
    counts = reference["counts"]
    assert counts[0] > 0 and counts[1] == counts[0] < counts[2] < counts[3]


def _explicit_namespace_protocol(change):
    """The group's own namespace (changed in G.namespace) and the run's (for S)."""
    tau, I_ext, theta, v_reset, w = SCHEDULE[0]
    G = _lif(namespace=dict(tau=tau, I_ext=I_ext, theta=theta, v_reset=v_reset))
    S = Synapses(G, G, on_pre="v_post += w", delay=0.5 * ms)
    S.connect("i != j")
    spikes, state = SpikeMonitor(G), StateMonitor(G, "v", record=True)
    net = Network(G, S, spikes, state)
    counts = []
    # (Brian reads these from the locals: noqa)
    for tau, I_ext, theta, v_reset, w in SCHEDULE if change else SCHEDULE[:1] * 4:  # noqa: B007
        G.namespace.update(tau=tau, I_ext=I_ext, theta=theta, v_reset=v_reset)
        net.run(2 * ms, namespace={"w": w})
        counts.append(spikes.num_spikes)
    return _result(spikes, state, counts=counts)


def test_constants_from_group_and_run_namespaces():
    reference = _check(_explicit_namespace_protocol)
    counts = reference["counts"]
    assert counts[0] > 0 and counts[1] == counts[0] < counts[2] < counts[3]


def _synaptic_constant_protocol(change):
    """A constant only the synapses use, via the run namespace, read in on_pre."""
    G = _lif(namespace=dict(tau=2 * ms, I_ext=2.0, theta=1.0, v_reset=0.0))
    S = Synapses(G, G, "w : 1", on_pre="v_post += w * gain", delay=0.7 * ms)
    S.connect("i != j")
    S.w = "0.05 * (1 + (i + j) % 3)"
    state = StateMonitor(G, "v", record=True)
    spikes = SpikeMonitor(G)
    net = Network(G, S, spikes, state)
    for gain in [1.0, -3.0, 0.0, 2.0] if change else [1.0] * 4:
        net.run(1.5 * ms, namespace={"gain": gain})
    return _result(spikes, state)


@pytest.mark.long
def test_constant_read_by_synapses():
    _check(_synaptic_constant_protocol)


# -- dt -------------------------------------------------------------------------

def _dt_protocol(change):
    G = _lif(namespace=dict(tau=2 * ms, I_ext=2.0, theta=1.0, v_reset=0.0))
    S = Synapses(G, G, "w : 1", on_pre="v_post += w")
    S.connect("i != j")
    S.w = "0.05 * (1 + (i + j) % 3)"
    S.delay = "(1 + (i + 2 * j) % 4) * 0.35 * ms"  # heterogeneous, re-binned with dt
    spikes, state = SpikeMonitor(G), StateMonitor(G, "v", record=True)
    net = Network(G, S, spikes, state)
    for dt in [0.1, 0.05, 0.2, 0.1] if change else [0.1] * 4:
        defaultclock.dt = dt * ms
        net.run(2 * ms)
    return _result(spikes, state)


@pytest.mark.long
def test_dt_changed_between_runs():
    reference = _check(_dt_protocol)
    assert len(reference["v_t"]) == 20 + 40 + 10 + 20  # each run at its dt
    assert _in_flight(reference, 1.4, 2.0)


# -- synapses and groups added --------------------------------------------------

def _added_synapses_protocol(change, homogeneous):
    G = _lif(namespace=dict(tau=2 * ms, I_ext=2.0, theta=1.0, v_reset=0.0))
    if homogeneous:
        S = Synapses(G, G, "w : 1", on_pre="v_post += w", delay=1.2 * ms)
    else:
        S = Synapses(G, G, "w : 1", on_pre="v_post += w")
    S.connect(i=[0, 1, 2], j=[3, 4, 5])
    S.w = 0.2
    spikes, state = SpikeMonitor(G), StateMonitor(G, "v", record=True)
    net = Network(G, S, spikes, state)
    if not homogeneous:
        S.delay = "(1 + i) * 0.4 * ms"
    net.run(2 * ms)
    if change:  # spikes of 0-2 are in flight now
        S.connect(i=[3, 4, 5, 0], j=[0, 1, 2, 5])
        S.w[3:] = -0.3
        if not homogeneous:
            S.delay[3:] = "(6 - i) * 0.3 * ms"
    net.run(3 * ms)
    return _result(spikes, state, synapses=len(S))


@pytest.mark.parametrize("homogeneous", [True, False], ids=["homogeneous", "heterogeneous"])
def test_synapses_added_between_runs(homogeneous):
    reference = _check(_added_synapses_protocol, homogeneous)
    assert reference["synapses"] == 7
    assert _in_flight(reference, {i: 1.2 if homogeneous else (1 + i) * 0.4 for i in range(3)},
                      2.0)


def _added_group_protocol(change):
    ns = dict(tau=2 * ms, I_ext=2.0, theta=1.0, v_reset=0.0)
    G = _lif(namespace=ns)
    S = Synapses(G, G, on_pre="v_post += 0.1", delay=0.5 * ms)
    S.connect("i != j")
    spikes, state = SpikeMonitor(G), StateMonitor(G, "v", record=True)
    net = Network(G, S, spikes, state)
    net.run(2 * ms)
    H = NeuronGroup(4, "dv/dt = -v / (3 * ms) : 1", threshold="v > 0.5", reset="v = 0",
                    method="exact")
    into = Synapses(G, H, on_pre="v_post += 0.2", delay=1 * ms)
    into.connect("j == i % 4")
    back = Synapses(H, G, on_pre="v_post -= 0.5", delay=0.3 * ms)
    back.connect(j="i")
    late = SpikeMonitor(H)
    net.add(H, into, back, late)
    if not change:  # the control: in the network (no warning), but never run
        for obj in (H, into, back, late):
            obj.active = False
    net.run(3 * ms)
    net.run(2 * ms)
    return _result(spikes, state, late_i=late.i[:], late_t=late.t_[:], v_H=H.v[:])


@pytest.mark.long
def test_group_added_between_runs():
    reference = _check(_added_group_protocol)
    assert len(reference["late_i"]) > 0


# -- delays ---------------------------------------------------------------------

#: delays of each run: homogeneous (one value) or heterogeneous (an expression)
DELAYS = {"homogeneous": [1 * ms, 2 * ms, 0.3 * ms, 0 * ms],
          "heterogeneous": ["(1 + j) * 0.3 * ms", "(6 - i) * 0.25 * ms", "0 * ms",
                            "((i + j) % 3) * 0.6 * ms"]}


def _delay_protocol(change, kind):
    G = _lif(namespace=dict(tau=2 * ms, I_ext=2.0, theta=1.0, v_reset=0.0))
    if kind == "homogeneous":
        S = Synapses(G, G, "w : 1", on_pre="v_post += w", delay=DELAYS[kind][0])
    else:
        S = Synapses(G, G, "w : 1", on_pre="v_post += w")
    S.connect("i != j")
    S.w = "0.05 * (1 + (i + j) % 3)"
    spikes, state = SpikeMonitor(G), StateMonitor(G, "v", record=True)
    net = Network(G, S, spikes, state)
    for delay in DELAYS[kind] if change else DELAYS[kind][:1] * 4:
        S.delay = delay
        net.run(2 * ms)
    return _result(spikes, state)


@pytest.mark.long
@pytest.mark.parametrize("kind", ["homogeneous", "heterogeneous"])
def test_delay_changed_between_runs(kind):
    reference = _check(_delay_protocol, kind)
    assert _in_flight(reference, 1.0 if kind == "homogeneous" else
                      {i: (6 if i < 5 else 5) * 0.3 for i in range(6)}, 2.0)


# -- store / restore ------------------------------------------------------------

def _restore_protocol(homogeneous):
    G = _lif(namespace=dict(tau=2 * ms, I_ext=2.0, theta=1.0, v_reset=0.0))
    if homogeneous:
        S = Synapses(G, G, "w : 1", on_pre="v_post += w", delay=1.3 * ms)
    else:
        S = Synapses(G, G, "w : 1", on_pre="v_post += w")
    S.connect("i != j")
    S.w = "0.05 * (1 + (i + j) % 3)"
    spikes, state = SpikeMonitor(G), StateMonitor(G, "v", record=True)
    net = Network(G, S, spikes, state)
    if not homogeneous:
        S.delay = "(1 + (i + 2 * j) % 4) * 0.35 * ms"
    net.run(2.5 * ms)
    stored = _result(spikes, state)
    net.store()  # spikes in flight
    for _ in range(3):
        net.run(1 * ms)
    first = _result(spikes, state)
    net.restore()
    restored = _result(spikes, state)
    for _ in range(3):
        net.run(1 * ms)
    second = _result(spikes, state)
    return stored, first, restored, second


@pytest.mark.long
@pytest.mark.parametrize("homogeneous", [True, False], ids=["homogeneous", "heterogeneous"])
def test_restore_between_runs_repeats_the_run(homogeneous):
    results = {target: _on(target, _restore_protocol, homogeneous)
               for target in ("numpy", "numba")}
    for target, (stored, first, restored, second) in results.items():
        _assert_same(stored, restored)  # the monitors went back too
        for key in first:  # bit for bit: the same code ran on the same state
            np.testing.assert_array_equal(second[key], first[key], err_msg=f"{target} {key}")
        assert len(first["t"]) > len(stored["t"])  # it spiked after the store
    for reference, result in zip(results["numpy"], results["numba"], strict=False):
        _assert_same(reference, result)
    # spikes were in flight at the store
    assert _in_flight(results["numpy"][0], 1.3 if homogeneous else 1.4, 2.5)


# -- Brian's warning for unused objects -------------------------------------------

def _unused_group():
    """A NeuronGroup nobody keeps: freed only when the collector finds its cycles."""
    NeuronGroup(3, "dv/dt = -v / (10 * ms) : 1", name="short_runs_never_used")


def test_unused_object_warning_still_comes_from_run():
    prefs.logging.warn_for_unused_objects = True
    G = _lif(namespace=dict(tau=2 * ms, I_ext=2.0, theta=1.0, v_reset=0.0))
    net = Network(G)
    net.run(1 * ms)
    with catch_logs() as logs:
        _unused_group()
        assert not [log for log in logs if "short_runs_never_used" in log[2]]
        net.run(1 * ms)  # its gc.collect() collects the group
        net.run(1 * ms)
    found = [log for log in logs if "short_runs_never_used" in log[2]]
    assert len(found) == 1, logs
    level, name, message = found[0]
    assert level == "WARNING" and name.endswith("unused_brian_object")
    assert "was never included in a network" in message
    assert gc.get_freeze_count() > 0  # with the freeze on (the default)


class _CountedCollector:
    """Stands in for the gc module in brian2_numba.network: counts collect()."""

    def __init__(self):
        self.calls = 0

    def collect(self, *args):
        self.calls += 1
        return gc.collect(*args)


def test_run_collects_garbage_only_when_it_can_show(monkeypatch):
    """The fused run() calls gc.collect() (milliseconds) unless no object would
    warn and no named object is new since the last run: repeated runs of one
    network do not collect."""
    from brian2_numba import compat, network

    prefs.logging.warn_for_unused_objects = True
    gc.collect()  # other tests' garbage
    G = _lif(namespace=dict(tau=2 * ms, I_ext=2.0, theta=1.0, v_reset=0.0))
    net = Network(G, SpikeMonitor(G))
    net.run(1 * ms)  # now every object of the test has been in a network
    counted = _CountedCollector()
    monkeypatch.setattr(network, "gc", counted)
    with catch_logs() as logs:
        net.run(1 * ms)
        net.run(1 * ms)
        assert counted.calls == 0
        kept = NeuronGroup(2, "v : 1", name="short_runs_kept_unused")
        net.run(1 * ms)
        assert counted.calls == 1  # a new object
        net.run(1 * ms)
        assert counted.calls == 2  # it would warn if it were collected
        kept._cycle = [kept]  # freed by the collector only, not when the name goes
        del kept  # still tracked, uncollected: the next run() collects it
        net.run(1 * ms)
        assert counted.calls == 3
        # then none, once it is gone (Python 3.12 frees a cycle whose finaliser
        # logged a moment later: at most one more collection)
        net.run(1 * ms)
        collected = counted.calls
        assert collected <= 4
        net.run(1 * ms)
        assert counted.calls == collected
    found = [log for log in logs if "short_runs_kept_unused" in log[2]]
    assert len(found) == 1 and "never included in a network" in found[0][2]
    # with the warning off, 2.11's loop does not collect, 2.10's does
    prefs.logging.warn_for_unused_objects = False
    try:
        NeuronGroup(2, "v : 1", name="short_runs_silent_unused")
        net.run(1 * ms)
        assert counted.calls == collected + int(compat.warns_for_unused_objects())
    finally:
        prefs.logging.warn_for_unused_objects = True
    gc.collect()


def _names_of_networks_made_in_a_loop(fused):
    """The object names of four networks, each made and run in a function."""
    def simulate():
        G = NeuronGroup(3, "dv/dt = -v / (10 * ms) : 1", method="exact")
        net = Network(G, StateMonitor(G, "v", record=0))
        net.run(0.5 * ms)
        return sorted(obj.name for obj in net.objects)

    gc.collect()
    prefs.codegen.runtime.numba.fused = fused
    try:
        return [simulate() for _ in range(4)]
    finally:
        prefs.codegen.runtime.numba.fused = True


def test_networks_made_in_a_loop_get_the_names_of_brians_loop():
    """Garbage objects keep their names until collected, and the names are in
    the kernels' arguments: a sweep in a loop gets Brian's names (and kernels)."""
    fused = _names_of_networks_made_in_a_loop(True)
    assert fused == _names_of_networks_made_in_a_loop(False)
    assert fused[2] == fused[0] and fused[3] == fused[1]  # two sets of names, reused


# -- the freeze itself ------------------------------------------------------------

_FREEZE_COUNT = """
import gc, json, os
before = gc.get_freeze_count()  # not 0 on Python 3.12: the interpreter's own
import brian2_numba
print(json.dumps({"before": before, "after": gc.get_freeze_count(),
                  "setting": os.environ.get("BRIAN2_NUMBA_FREEZE_GC")}))
"""


@pytest.mark.parametrize("setting", [None, "1", "0", " 0 "])
def test_freeze_at_import_and_its_switch(tmp_path, setting):
    """By default the import freezes what is alive; BRIAN2_NUMBA_FREEZE_GC=0 does not."""
    if setting is None:
        done = run_script(_FREEZE_COUNT, tmp_path, unset=["BRIAN2_NUMBA_FREEZE_GC"],
                          timeout=300)
    else:
        done = run_script(_FREEZE_COUNT, tmp_path, env={"BRIAN2_NUMBA_FREEZE_GC": setting},
                          timeout=300)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["setting"] == setting
    if setting is not None and setting.strip() == "0":
        assert found["after"] == found["before"]  # 0 on 3.13, 375 on 3.12
    else:  # numba's tables and everything imported
        assert found["after"] > found["before"] + 10_000


# -- no full collection while code is generated and compiled -------------------------


def test_full_collections_postponed_restores_the_thresholds():
    from brian2_numba.collector import POSTPONED_THRESHOLD, full_collections_postponed

    before = gc.get_threshold()
    with full_collections_postponed():
        assert gc.get_threshold()[2] == POSTPONED_THRESHOLD
        assert gc.get_threshold()[:2] == before[:2]  # the young generations as before
        with full_collections_postponed():  # nested
            assert gc.get_threshold()[2] == POSTPONED_THRESHOLD
        assert gc.get_threshold()[2] == POSTPONED_THRESHOLD
    assert gc.get_threshold() == before
    with pytest.raises(ZeroDivisionError):
        with full_collections_postponed():
            1 / 0
    assert gc.get_threshold() == before
    gc.set_threshold(before[0], before[1], 2 * POSTPONED_THRESHOLD)  # a user's own setting
    try:
        with full_collections_postponed():
            assert gc.get_threshold()[2] == 2 * POSTPONED_THRESHOLD
        assert gc.get_threshold()[2] == 2 * POSTPONED_THRESHOLD
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize("fused", [True, False])
def test_a_cold_run_generates_and_compiles_with_full_collections_postponed(numba_target,
                                                                          fused):
    """Brian's code generation and numba's compilation (of code not in memory or on
    disk) run inside the postponement, the young generations are still collected
    there, and the user's thresholds are back afterwards."""
    from brian2_numba.collector import POSTPONED_THRESHOLD

    prefs.codegen.runtime.numba.fused = fused
    before = gc.get_threshold()
    # an equation of this test only: its kernels are compiled here, not loaded
    G = NeuronGroup(20, f"dv/dt = ({1.25 + fused} - v) / (10*ms) : 1", threshold="v > 1",
                    reset="v = 0", method="exact")
    net = Network(G, SpikeMonitor(G))
    collections = []  # (generation, postponed?) of every collection that starts

    def note(phase, info):
        if phase == "start":
            collections.append((info["generation"], gc.get_threshold()[2] == POSTPONED_THRESHOLD))

    gc.callbacks.append(note)
    try:
        net.run(2 * ms)
    finally:
        gc.callbacks.remove(note)
    assert gc.get_threshold() == before
    inside = [generation for generation, postponed in collections if postponed]
    assert all(generation < 2 for generation in inside)  # none of them full
    # most of the run's allocating is generating and compiling: most collections
    # start while full ones are postponed
    assert len(inside) > len(collections) / 2, collections
