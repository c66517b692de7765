"""The fused loop reads its network's data into the caches before a run's first step."""

import numpy as np
from brian2 import Network, NeuronGroup, SpikeMonitor, StateMonitor, Synapses, ms

from brian2_numba import network, warm_up
from brian2_numba.kernel_calls import READ, WARM


def _bytes_read(array):
    """What the loop adds up for one array: its first byte of every cache line."""
    return int(array.view(np.uint8).reshape(-1)[::warm_up.LINE_BYTES].astype(np.int64).sum())


def test_regions_take_the_smallest_arrays_within_the_budget():
    small, middle, large = np.ones(3, np.int32), np.ones(100), np.ones(1000)
    stream = np.ones(10)
    found = warm_up.regions([(large, 1.5, small), (middle, small, stream)],
                            streams=[stream], budget=small.nbytes + middle.nbytes + 10)
    assert found.dtype == np.int64
    assert found.tolist() == [[small.ctypes.data, small.nbytes],
                              [middle.ctypes.data, middle.nbytes]]


def test_regions_leave_out_empty_and_strided_arrays():
    base = np.ones(100)
    found = warm_up.regions([(np.ones(0), base[::2], base[10:20])])
    assert found.tolist() == [[base[10:20].ctypes.data, 80]]
    assert warm_up.regions([()]).shape == (0, 2)


def test_the_loop_reads_the_regions_once_per_run(monkeypatch):
    """Per run(): the sum of the bytes the loop read is that of the regions, before step 1."""
    G = NeuronGroup(200, "dv/dt = (1.2 - v) / (10*ms) : 1", threshold="v > 1",
                    reset="v = 0", method="exact")
    G.v = "i / 200.0"
    S = Synapses(G, G, "w : 1", on_pre="v_post += w")
    S.connect(p=0.1)
    S.w = 0.01
    spikes, states = SpikeMonitor(G), StateMonitor(G, "v", record=[0, 5])
    net = Network(G, S, spikes, states)
    seen = []
    run = network._FusedLoop.run

    def recording_run(loop, report_due, stopped):
        arrays = {a.ctypes.data: a for entry in loop.entries if entry.args
                  for a in entry.args if isinstance(a, np.ndarray)}
        expected = sum(_bytes_read(arrays[address]) for address, _ in loop.warm_regions)
        buffers = {a.ctypes.data for entry in loop.entries
                   if entry.codeobj.namespace.get("_pending") is not None
                   for a in entry.codeobj.namespace["_pending"].arrays}
        run(loop, report_due, stopped)
        seen.append((loop, expected, buffers))

    monkeypatch.setattr(network._FusedLoop, "run", recording_run)
    net.run(5 * ms)
    net.run(5 * ms)
    assert len(seen) == 2
    for loop, expected, buffers in seen:
        addresses = {int(address) for address, _ in loop.warm_regions}
        assert S.variables["w"].get_value().ctypes.data in addresses
        assert G.variables["v"].get_value().ctypes.data in addresses
        # the monitors' four buffers (i, t; t, v) are not read
        assert len(buffers) == 4 and not addresses & buffers
        assert loop.state[WARM] == 0
        assert loop.state[READ] == expected > 0
    assert spikes.num_spikes > 0

