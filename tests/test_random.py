"""Random numbers: numpy's global RandomState is the single source of truth."""

import numpy as np
import pytest
from brian2 import Network, NeuronGroup, StateMonitor, defaultclock, ms, prefs, seed
from conftest import run_script


def _draw(n=1000, func="rand"):
    G = NeuronGroup(n, "x : 1")
    G.run_regularly(f"x = {func}()")
    net = Network(G)
    net.run(0.1 * ms)
    return G.x[:].copy()


@pytest.mark.long
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


NUMPY_SEED_ALONE = """
import sys
import numpy as np
import brian2_numba
from brian2 import NeuronGroup, Network, ms, prefs
prefs.codegen.runtime.numba.cache_dir = sys.argv[1]

def draw(n, func, target='numba'):
    prefs.codegen.target = target
    G = NeuronGroup(n, 'x : 1')
    G.run_regularly('x = %s()' % func)
    Network(G).run(0.1*ms)
    return G.x[:].copy()

# a fresh process: the buffers are empty, Brian's seed() is never called
results = {}
for func in ('rand', 'randn'):
    np.random.seed(7)
    results[func + '_numba'] = draw(40000, func)  # two whole buffers: empty again
    np.random.seed(7)
    results[func + '_numba_again'] = draw(40000, func)
    np.random.seed(7)
    results[func + '_numpy'] = draw(40000, func, 'numpy')
    np.random.seed(8)
    results[func + '_other_seed'] = draw(40000, func)
# numbers left in a buffer were drawn before the reseed: np.random.seed
# does not discard them (Brian's seed() does), as with the Cython target
np.random.seed(7)
results['rand_part'] = draw(10000, 'rand')
np.random.seed(7)
results['rand_rest'] = draw(10000, 'rand')
np.savez(sys.argv[2], **results)
"""


@pytest.mark.long
def test_numpy_seed_alone_drives_the_kernels(numba_target, tmp_path):
    """np.random.seed, without Brian's seed(), decides every number the kernels draw.

    In a fresh process (empty buffers) the kernels draw numpy's stream from
    the seeded state: the same numbers as the numpy target, which calls
    numpy.random directly, and the same again after the same np.random.seed.
    """
    results_file = tmp_path / "results.npz"
    run_script(NUMPY_SEED_ALONE, numba_target, results_file)
    results = np.load(results_file)
    for func in ("rand", "randn"):
        drawn = results[f"{func}_numba"]
        np.testing.assert_array_equal(drawn, getattr(np.random.RandomState(7), func)(40000))
        np.testing.assert_array_equal(results[f"{func}_numba_again"], drawn)
        np.testing.assert_array_equal(results[f"{func}_numpy"], drawn)
        assert not np.any(results[f"{func}_other_seed"] == drawn)
    reference = np.random.RandomState(7).rand(20000)
    np.testing.assert_array_equal(results["rand_part"], reference[:10000])
    np.testing.assert_array_equal(results["rand_rest"], reference[10000:])


def _draw_with(target, n, func="rand"):
    prefs.codegen.target = target  # the fixture restores the preferences
    return _draw(n, func)


@pytest.mark.long
def test_brian_seed_resets_numpy_and_the_buffers():
    """Brian's seed() also discards what is left in the buffers."""
    for func in ("rand", "randn"):
        _draw_with("numba", 30000, func)  # leaves 10000 numbers in the buffer
        seed(7)
        a = _draw_with("numba", 30000, func)  # more than one buffer refill
        _draw_with("numba", 5000, func)
        seed(7)
        b = _draw_with("numba", 30000, func)
        seed(7)
        reference = _draw_with("numpy", 30000, func)
        seed(8)
        c = _draw_with("numba", 30000, func)
        np.testing.assert_array_equal(a, reference)
        np.testing.assert_array_equal(b, reference)
        assert not np.any(c == reference)


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


def _noisy_model(target):
    prefs.codegen.target = target
    seed(3)
    # 101 neurons x 300 steps: more than one buffer of randn, an odd number a step
    G = NeuronGroup(101, "dv/dt = -v/(10*ms) + xi/sqrt(ms) : 1", method="euler")
    M = StateMonitor(G, "v", record=True)
    Network(G, M).run(30 * ms)
    return M.v[:].copy()


@pytest.mark.long
def test_noisy_model_same_as_numpy():
    """xi draws numpy's randn stream, in the numpy target's order: identical results.

    The numpy target calls numpy.random.randn for each step; numba reads the
    same stream through its buffers and does the same float operations, so
    the trajectories are bitwise equal, not only statistically alike.
    """
    numba_v = _noisy_model("numba")
    numpy_v = _noisy_model("numpy")
    assert numba_v.std() > 0.5  # the noise is there (v would stay at 0 without it)
    np.testing.assert_array_equal(numba_v, numpy_v)
    np.testing.assert_array_equal(_noisy_model("numba"), numba_v)


@pytest.mark.long
def test_ornstein_uhlenbeck_variance():
    """Many independent OU processes: their spread is the analytic one.

    dv = -v/tau dt + sigma*sqrt(2/tau) dW from v = 0 has variance
    sigma^2 * (1 - exp(-2t/tau)); Euler-Maruyama with a = dt/tau gives exactly
    sigma^2 * 2a * (1 - (1-a)^(2n)) / (1 - (1-a)^2) after n steps (under 1 % more
    here). Independent of numpy's target: a wrong noise amplitude, noise
    shared between neurons or steps, or no noise fails the 5-sigma bounds.
    """
    from scipy import stats

    n_neurons, sigma, tau = 20000, 0.5, 10 * ms
    seed(17)
    G = NeuronGroup(n_neurons, "dv/dt = -v/tau + sigma*sqrt(2/tau)*xi : 1",
                    method="euler", namespace={"sigma": sigma, "tau": tau})
    M = StateMonitor(G, "v", record=True, dt=10 * ms)
    Network(G, M).run(30 * ms + defaultclock.dt / 2)  # records at 0, 10, 20, 30 ms
    a = float(defaultclock.dt / tau)
    steps = np.round(np.asarray(M.t / defaultclock.dt)).astype(int)
    np.testing.assert_equal(steps, [0, 100, 200, 300])
    variance = sigma**2 * 2 * a * (1 - (1 - a) ** (2 * steps)) / (1 - (1 - a) ** 2)
    continuous = sigma**2 * (1 - np.exp(-2 * steps * a))
    np.testing.assert_allclose(variance, continuous, rtol=0.01)
    v = M.v[:]
    np.testing.assert_equal(v[:, 0], 0)
    for k in (1, 2, 3):
        sample = v[:, k]
        # the sample variance of N normal values has standard deviation var*sqrt(2/(N-1))
        bound = 5 * variance[k] * np.sqrt(2 / (n_neurons - 1))
        assert abs(sample.var(ddof=1) - variance[k]) < bound
        assert abs(sample.mean()) < 5 * np.sqrt(variance[k] / n_neurons)
        # normal, with that variance (a p-value below 1e-4 has that probability)
        assert stats.kstest(sample, stats.norm(scale=np.sqrt(variance[k])).cdf).pvalue > 1e-4
    # correlation over 10 ms: (1-a)^100 * sqrt(var(10 ms) / var(20 ms)), and
    # independent neurons: the sample correlation has sd about (1-rho^2)/sqrt(N)
    rho = (1 - a) ** 100 * np.sqrt(variance[1] / variance[2])
    sample_rho = np.corrcoef(v[:, 1], v[:, 2])[0, 1]
    assert abs(sample_rho - rho) < 5 * (1 - rho**2) / np.sqrt(n_neurons)


@pytest.mark.long
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


@pytest.mark.long
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


@pytest.mark.long
def test_mt19937_inline_matches_numpy_from_any_position():
    """With numpy's MT19937 the refill runs its algorithm inline, on numpy's state:
    the same numbers and the same state afterwards as numpy's own draws, also
    when the state's position is odd (a double's two words span two states)
    and across many regenerations of the state."""
    for func, skip in [("rand", 0), ("rand", 1), ("rand", 623), ("randn", 1)]:
        seed(5)
        generator = np.random.get_bit_generator()
        assert type(generator) is np.random.MT19937
        generator.random_raw(skip)  # one 32-bit word each
        drawn = _draw(45000, func)  # three refills
        state_after = generator.state["state"]
        reference = np.random.RandomState(5)
        reference._bit_generator.random_raw(skip)
        expected = np.concatenate([getattr(reference, func)(20000) for _ in range(3)])
        np.testing.assert_array_equal(drawn, expected[:45000], err_msg=f"{func} {skip}")
        expected_state = reference._bit_generator.state["state"]
        assert state_after["pos"] == expected_state["pos"]
        np.testing.assert_array_equal(state_after["key"], expected_state["key"])


def test_other_bit_generators_are_drawn_through_next_double():
    """Any other bit generator (here PCG64) is drawn through its next_double."""
    original = np.random.get_bit_generator()
    try:
        np.random.set_bit_generator(np.random.PCG64(3))
        seed_state = np.random.get_bit_generator().state
        seed(None)  # empties the buffers without touching the generator
        np.random.get_bit_generator().state = seed_state
        drawn = _draw(25000)
        reference = np.random.Generator(np.random.PCG64(3))
        expected = np.concatenate([reference.random(20000), reference.random(20000)])
        np.testing.assert_array_equal(drawn, expected[:25000])
    finally:
        np.random.set_bit_generator(original)


def test_mt19937_code_is_flat():
    """The MT19937 code pasted into a kernel module is three helpers, the
    tempering written out in them: numba inlines helpers once per call site
    and recursively, and a helper per step of the algorithm multiplied the
    compile time of connect(p=...) by ten."""
    import re

    from brian2 import Synapses

    import brian2_numba

    prefs.codegen.target = "numba"
    G = NeuronGroup(20, "v : 1", threshold="rand() < 0.1")
    S = Synapses(G, G, on_pre="v_post += 1")
    S.connect(p=0.2)
    net = Network(G, S)
    net.run(1 * ms)
    sources = []
    for blocks in brian2_numba.generated_files(net).values():
        for path in blocks.values():
            with open(path) as f:
                sources.append(f.read())
    with_rand = [source for source in sources if "def _rand(" in source]
    assert with_rand
    for source in with_rand:
        helpers = re.findall(r"^def (_mt19937_\w+)\(", source, re.M)
        assert sorted(helpers) == ["_mt19937_fill", "_mt19937_generate", "_mt19937_next_double"]


def test_code_that_runs_once_refills_through_next_double(monkeypatch):
    """connect(p=...) and rand() initial values compile without the MT19937
    code (their refills call numpy's next_double) and draw the same numbers."""
    from brian2 import Synapses, start_scope
    from brian2.utils.stringtools import deindent

    from brian2_numba import random_numbers

    def build():
        start_scope()
        prefs.codegen.target = "numba"
        prefs.codegen.string_expression_target = "numba"
        seed(11)
        G = NeuronGroup(300, "v : 1")
        G.v = "rand()"
        S = Synapses(G, G)
        S.connect(p=0.05)
        G.v = "v + randn() * 0.01"
        return np.array(G.v[:]), np.array(S.i[:]), np.array(S.j[:])

    rand_code = deindent(random_numbers.RAND_CODE).strip()
    assert "_mt19937_fill" in random_numbers.code_for_template(rand_code, "stateupdate")
    assert "_mt19937_" not in random_numbers.code_for_template(rand_code, "synapses_create_generator")
    try:
        once = build()
        monkeypatch.setattr(random_numbers, "_ONCE_VARIANTS", {})  # the full refills
        full = build()
    finally:
        prefs.codegen.string_expression_target = "numpy"
    for a, b in zip(once, full, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(once[1]) > 1000
