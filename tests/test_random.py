"""Random numbers: numpy's global RandomState is the single source of truth."""

import numpy as np
from brian2 import NeuronGroup, Network, ms, run, seed, get_device, StateMonitor

from conftest import run_script


def _draw(n=1000, func="rand"):
    G = NeuronGroup(n, "x : 1")
    G.run_regularly(f"x = {func}()")
    net = Network(G)
    net.run(0.1 * ms)
    return G.x[:].copy()


def test_seed_makes_runs_reproducible():
    seed(42)
    a, an = _draw(), _draw(func="randn")
    seed(42)
    b, bn = _draw(), _draw(func="randn")
    seed(43)
    c = _draw()
    np.testing.assert_equal(a, b)
    np.testing.assert_equal(an, bn)
    assert not np.array_equal(a, c)
    assert 0 <= a.min() and a.max() < 1 and abs(a.mean() - 0.5) < 0.05
    assert abs(an.mean()) < 0.1 and abs(an.std() - 1) < 0.1


def test_numpy_seed_drives_the_kernels():
    """np.random.seed (not numba's internal generator) decides the numbers."""
    seed(7)
    a = _draw(30000)  # more than one buffer refill
    seed(7)
    np.random.seed(7)  # same state again: same numbers
    b = _draw(30000)
    np.testing.assert_equal(a, b)
    np.random.seed(8)
    get_device().seed(8)
    c = _draw(30000)
    assert not np.array_equal(a, c)


def test_kernels_draw_numpys_stream():
    """Buffers hold exactly what numpy.random.rand/randn(20000) return."""
    for func in ("rand", "randn"):
        seed(11)
        drawn = _draw(25000, func)  # a full buffer and part of the next
        reference = np.random.RandomState(11)
        expected = getattr(reference, func)(20000)
        np.testing.assert_array_equal(drawn[:20000], expected)
        np.testing.assert_array_equal(drawn[20000:], getattr(reference, func)(20000)[:5000])
    # numpy's own state advanced by exactly the two buffers filled
    seed(11)
    _draw(25000, "rand")
    reference = np.random.RandomState(11)
    reference.rand(40000)
    assert np.random.rand() == reference.rand()


def test_replaced_numpy_generator_is_followed():
    """After numpy.random.set_bit_generator, kernels draw from the new one."""
    original = np.random.get_bit_generator()
    try:
        _draw(10)  # the kernels have seen the original generator
        np.random.set_bit_generator(np.random.MT19937(0))
        seed(2024)  # seeds the new generator (in place) and empties the buffers
        np.testing.assert_array_equal(_draw(100), np.random.RandomState(2024).rand(100))
    finally:
        np.random.set_bit_generator(original)


def test_noisy_model_reproducible():
    def simulate():
        seed(3)
        G = NeuronGroup(20, "dv/dt = -v/(10*ms) + xi/sqrt(ms) : 1", method="euler")
        M = StateMonitor(G, "v", record=True)
        run(2 * ms)
        return M.v[:].copy()

    np.testing.assert_equal(simulate(), simulate())


def test_store_restore_random_state():
    G = NeuronGroup(500, "x : 1")
    G.run_regularly("x = rand() + randn()")
    net = Network(G)
    seed(5)
    net.run(0.1 * ms)
    net.store("before", )
    net.run(0.1 * ms)
    first = G.x[:].copy()
    net.restore("before", restore_random_state=True)
    net.run(0.1 * ms)
    np.testing.assert_equal(G.x[:], first)
    net.restore("before", restore_random_state=False)
    net.run(0.1 * ms)
    assert not np.array_equal(G.x[:], first)


RESTORE_IN_NEW_PROCESS = """
import sys
import numpy as np
import brian2_numba
from brian2 import *
prefs.codegen.target = 'numba'
prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
G = NeuronGroup(100, 'x : 1', name='g')
net = Network(G)
net.restore(filename=sys.argv[2], restore_random_state=True)
G.run_regularly('x = rand() + randn()')
net.run(0.1*ms)
np.save(sys.argv[3], G.x[:])
"""


def test_restore_random_state_in_new_process(numba_target, tmp_path):
    seed(123)
    G = NeuronGroup(100, "x : 1", name="g")
    net = Network(G)
    G.run_regularly("x = rand()")
    net.run(0.1 * ms)  # use part of the buffers
    state_file = tmp_path / "state.pkl"
    net.store(filename=str(state_file))
    G2 = NeuronGroup(100, "x : 1", name="g2")
    G2.run_regularly("x = rand() + randn()")
    Network(G2).run(0.1 * ms)
    values_file = tmp_path / "values.npy"
    run_script(RESTORE_IN_NEW_PROCESS, numba_target, state_file, values_file)
    np.testing.assert_equal(np.load(values_file), G2.x[:])
