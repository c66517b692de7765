"""Kernels that only go through events are not called on steps without any.

A reset, an event monitor and the pushing of spikes into a queue declare
their eventspace (``_ONLY_WITH_EVENTS`` in the generated module); the code
object, and the fused loop, skip them when its count is 0. Results must not
change: the steps skipped are those on which the kernel would do nothing.
"""

import collections

import numpy as np
from brian2 import (
    EventMonitor,
    Network,
    NeuronGroup,
    SpikeMonitor,
    Synapses,
    defaultclock,
    ms,
    prefs,
    start_scope,
)

import brian2_numba
from brian2_numba.codeobject import NumbaCodeObject

GATED = ("reset", "spikemonitor", "synapses_push_spikes")


def _sparse_network():
    """Spikes on a few steps only; a custom event with a reset of its own, rarer still."""
    G = NeuronGroup(5, """dv/dt = (1.05 - v)/(10*ms) : 1
                          x : 1""",
                    threshold="v > 1", reset="v = 0", method="exact",
                    events={"half": "v > 0.5 and x < 3"})
    G.run_on_event("half", "x += 1")
    G.v = "i * 0.2"
    S = Synapses(G, G, "w : 1", on_pre="v_post += w", delay=1 * ms)
    S.connect("i != j")
    S.w = "0.01 * i"
    spikes = SpikeMonitor(G)
    halves = EventMonitor(G, "half")
    return Network(G, S, spikes, halves), G, spikes, halves


def _run(target, fused=True):
    start_scope()
    defaultclock.dt = 0.1 * ms
    prefs.codegen.target = target
    prefs.codegen.runtime.numba.fused = fused
    net, G, spikes, halves = _sparse_network()
    net.run(30 * ms)
    net.run(20 * ms)  # a second run: the gates are set up again
    return net, {"i": spikes.i[:].copy(), "t": spikes.t_[:].copy(), "v": G.v[:].copy(),
                 "x": G.x[:].copy(), "half_i": halves.i[:].copy(),
                 "half_t": halves.t_[:].copy(), "half_count": halves.count[:].copy()}


def test_results_unchanged_in_every_mode():
    """Fused and per-object numba give numpy's results, events being sparse."""
    _, numpy_result = _run("numpy")
    assert 0 < len(np.unique(numpy_result["t"])) < 200  # most of the 500 steps: no spike
    assert 0 < len(numpy_result["half_i"])
    for fused in (True, False):
        _, result = _run("numba", fused)
        for key, value in numpy_result.items():
            np.testing.assert_allclose(result[key], value, rtol=1e-12, err_msg=key)
    prefs.codegen.target = "numba"
    prefs.codegen.runtime.numba.fused = True


def test_fused_loop_gates_exactly_those_entries():
    """In the fused loop's source, the entries of these templates, and only they, are gated."""
    net, _ = _run("numba", fused=True)
    with open(brian2_numba.generated_files(net)[net.name]["loop"]) as f:
        lines = f.read().splitlines()
    entries = [(comment, call) for comment, call in zip(lines[:-1], lines[1:], strict=True)
               if comment.strip().startswith("# entry ")]
    assert len(entries) == 9  # update, 2 thresholds, pusher, pathway, 2 resets, 2 monitors
    gated = 0
    for comment, call in entries:
        template = comment.split(":")[1].split(",")[0].strip()
        assert ("_events_" in call) == (template in GATED), (comment, call)
        assert comment.endswith("if there are events") == (template in GATED), comment
        gated += template in GATED
    assert gated == 5  # 2 resets, 2 monitors, 1 pusher


def test_per_object_calls_only_on_steps_with_events(monkeypatch):
    """Per-object: each gated kernel runs once per step with events, and no more."""
    calls = collections.Counter()
    compile_block = NumbaCodeObject.compile_block

    def counting(self, block):
        compiled = compile_block(self, block)
        if block == "run" and compiled is not None and compiled.events is not None:
            # the group's generated name depends on what ran before: keep its eventspace
            space = compiled.events_name.rsplit("__", 1)[1]
            kernel, key = compiled.main, (space, self.template_name)

            def main(*args):
                calls[key] += 1
                return kernel(*args)
            compiled.main = main
        return compiled

    monkeypatch.setattr(NumbaCodeObject, "compile_block", counting)
    _, result = _run("numba", fused=False)
    prefs.codegen.runtime.numba.fused = True

    def steps(times):
        return len(np.unique(np.round(np.asarray(times) / 0.1e-3)))

    spike_steps, half_steps = steps(result["t"]), steps(result["half_t"])
    assert 0 < half_steps < 200 and 0 < spike_steps < 200  # of 500 steps
    expected = {}
    for template in GATED:  # the reset, the monitor and the pusher of spikes
        expected[("spikespace", template)] = spike_steps
    for template in ("reset", "spikemonitor"):  # run_on_event and the EventMonitor
        expected[("halfspace", template)] = half_steps
    assert dict(calls) == expected
