"""Functions on the numba target: defaults, user implementations, clear errors."""

import numpy as np
import pytest
from brian2 import (
    BinomialFunction,
    BrianObjectException,
    Function,
    Network,
    NeuronGroup,
    TimedArray,
    check_units,
    implementation,
    prefs,
    run,
    seed,
)
from brian2.core.functions import DEFAULT_FUNCTIONS
from scipy import stats

from brian2_numba.codeobject import KernelCompilationError


def _evaluate(expression, n=5, values=None):
    """Value of ``expression`` (of x) for x = values, computed by a numba kernel."""
    if values is not None:
        n = len(values)
    G = NeuronGroup(n, "x : 1\ny : 1")
    G.x = values if values is not None else np.linspace(-2, 2, n)
    G.run_regularly(f"y = {expression}")
    run(defaultclock_dt())
    return G.y[:]


def defaultclock_dt():
    from brian2 import defaultclock

    return defaultclock.dt


@pytest.mark.parametrize(
    "func, reference",
    [
        ("sin", np.sin), ("cos", np.cos), ("tan", np.tan), ("sinh", np.sinh),
        ("cosh", np.cosh), ("tanh", np.tanh), ("exp", np.exp), ("arctan", np.arctan),
        ("expm1", np.expm1), ("abs", np.abs), ("sign", np.sign),
        ("ceil", np.ceil), ("floor", np.floor),
    ],
)
@pytest.mark.long
def test_math_functions(func, reference):
    x = np.array([-1.5, -0.5, 0.0, 0.25, 1.75])
    np.testing.assert_allclose(_evaluate(f"{func}(x)", values=x), reference(x), rtol=1e-14)


@pytest.mark.long
def test_functions_with_domains():
    x = np.array([0.1, 0.5, 1.0, 2.0, 10.0])
    np.testing.assert_allclose(_evaluate("log(x)", values=x), np.log(x), rtol=1e-14)
    np.testing.assert_allclose(_evaluate("log10(x)", values=x), np.log10(x), rtol=1e-14)
    np.testing.assert_allclose(_evaluate("sqrt(x)", values=x), np.sqrt(x), rtol=1e-14)
    np.testing.assert_allclose(_evaluate("log1p(x)", values=x), np.log1p(x), rtol=1e-14)
    y = x / 20
    np.testing.assert_allclose(_evaluate("arcsin(x)", values=y), np.arcsin(y), rtol=1e-14)
    np.testing.assert_allclose(_evaluate("arccos(x)", values=y), np.arccos(y), rtol=1e-14)


@pytest.mark.long
def test_exprel_clip_int_timestep():
    x = np.array([-3.0, -1e-20, 0.0, 1e-5, 2.5])
    np.testing.assert_allclose(
        _evaluate("exprel(x)", values=x), [np.expm1(-3) / -3, 1, 1, np.expm1(1e-5) / 1e-5, np.expm1(2.5) / 2.5]
    )
    np.testing.assert_equal(_evaluate("clip(x, -1, 1)", values=x), np.clip(x, -1, 1))
    np.testing.assert_equal(_evaluate("int(x)", values=x), [-3, 0, 0, 0, 2])
    x = np.array([0.0, 0.3, 1.0, 2.05, 7.0]) * 1e-3
    np.testing.assert_equal(
        _evaluate("timestep(x*second, 0.1*ms)", values=x), [0, 3, 10, 20, 70]
    )


def test_division_semantics():
    """Python semantics for // and %, division by zero as in numpy (no error)."""
    x = np.array([-7.0, -1.0, 0.0, 1.0, 7.0])
    np.testing.assert_equal(_evaluate("x // 2", values=x), x // 2)
    np.testing.assert_equal(_evaluate("x % 3", values=x), x % 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_equal(_evaluate("1/x", values=x), 1 / x)


def test_division_by_zero_error_model_python():
    prefs.codegen.runtime.numba.error_model = "python"
    with pytest.raises(BrianObjectException) as exc:
        _evaluate("1/x", values=np.array([1.0, 0.0]))
    assert isinstance(exc.value.__cause__, ZeroDivisionError)


_DIVISION_MODEL = """
a : integer
b : integer
x : 1
y : 1
int_floordiv : integer
int_mod : integer
float_div : 1
float_floordiv : 1
float_mod : 1
"""
_DIVISIONS = {
    "int_floordiv": "a // b", "int_mod": "a % b",
    "float_div": "x / y", "float_floordiv": "x // y", "float_mod": "x % y",
}


def _divisions(target):
    """// and % of integers, / // % of floats, by 0 and by 3, on ``target``."""
    prefs.codegen.target = target  # the fixture restores the preferences
    G = NeuronGroup(10, _DIVISION_MODEL)
    G.a = [-7, -1, 0, 1, 7] * 2
    G.b = [0] * 5 + [3] * 5
    G.x = G.a[:]
    G.y = G.b[:]
    G.run_regularly("\n".join(f"{name} = {code}" for name, code in _DIVISIONS.items()))
    with np.errstate(divide="ignore", invalid="ignore"):  # numpy warns, numba does not
        Network(G).run(defaultclock_dt())
    return {name: getattr(G, name)[:].copy() for name in _DIVISIONS}


def test_division_by_zero_error_model_numpy():
    """The default: integer // 0 and % 0 give 0, float division inf/nan, as numpy does."""
    assert prefs.codegen.runtime.numba.error_model == "numpy"
    result = _divisions("numba")
    zero, three = slice(0, 5), slice(5, 10)
    np.testing.assert_equal(result["int_floordiv"][zero], 0)
    np.testing.assert_equal(result["int_mod"][zero], 0)
    by_zero = [-np.inf, -np.inf, np.nan, np.inf, np.inf]  # -7, -1, 0, 1, 7 divided by 0
    np.testing.assert_equal(result["float_div"][zero], by_zero)
    np.testing.assert_equal(result["float_floordiv"][zero], by_zero)
    np.testing.assert_equal(result["float_mod"][zero], np.nan)
    # Python's rounding towards -inf for the other divisor
    np.testing.assert_equal(result["int_floordiv"][three], [-3, -1, 0, 0, 2])
    np.testing.assert_equal(result["int_mod"][three], [2, 2, 0, 1, 1])
    np.testing.assert_equal(result["float_mod"][three], [2, 2, 0, 1, 1])
    assert result["int_floordiv"].dtype == result["int_mod"].dtype == np.int32
    numpy_result = _divisions("numpy")
    for name in _DIVISIONS:
        np.testing.assert_array_equal(result[name], numpy_result[name], err_msg=name)


@pytest.mark.parametrize("name", list(_DIVISIONS))
def test_division_by_zero_error_model_python_for_each_operation(name):
    """error_model 'python': each of the five divisions by zero raises."""
    prefs.codegen.runtime.numba.error_model = "python"
    G = NeuronGroup(2, _DIVISION_MODEL)
    G.a = G.x = [5, 5]
    G.b = G.y = [2, 0]
    G.run_regularly(f"{name} = {_DIVISIONS[name]}")
    with pytest.raises(BrianObjectException) as exc:
        Network(G).run(defaultclock_dt())
    assert isinstance(exc.value.__cause__, ZeroDivisionError)


@pytest.mark.long
def test_timedarray_1d_and_2d():
    from brian2 import defaultclock

    values = np.arange(10.0)
    ta = TimedArray(values, dt=defaultclock.dt * 2)
    G = NeuronGroup(1, "v = ta(t) : 1", namespace={"ta": ta})
    values2d = np.arange(12.0).reshape(6, 2)
    ta2 = TimedArray(values2d, dt=defaultclock.dt)  # noqa: F841  (run_regularly finds it by name)
    H = NeuronGroup(2, "v : 1")
    H.run_regularly("v = ta2(t, i)", when="start")
    from brian2 import StateMonitor

    M = StateMonitor(G, "v", record=0)
    MH = StateMonitor(H, "v", record=True, when="end")
    run(8 * defaultclock.dt)
    np.testing.assert_equal(M.v[0], [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_equal(MH.v.T, values2d[[0, 1, 2, 3, 4, 5, 5, 5]])


def _sample(target, expression, n=30000, namespace=None):
    """n values of ``expression`` (one per neuron) on ``target``, after seed(11)."""
    prefs.codegen.target = target  # the fixture restores the preferences
    seed(11)
    G = NeuronGroup(n, "x : 1", namespace=namespace)
    G.run_regularly(f"x = {expression}")
    Network(G).run(defaultclock_dt())
    return G.x[:].copy()


def _chi_square_pvalue(samples, distribution):
    """Pearson's chi-square test of integer samples against a discrete distribution.

    One bin per value, the tails below the 0.1 % and above the 99.9 %
    quantiles merged: with 30000 samples every bin expects at least 5.
    """
    low, high = distribution.ppf(0.001), distribution.isf(0.001)
    inner = np.arange(low + 1, high)
    observed = [np.sum(samples <= low), *(np.sum(samples == k) for k in inner),
                np.sum(samples >= high)]
    expected = [distribution.cdf(low), *distribution.pmf(inner), distribution.sf(high - 1)]
    return stats.chisquare(observed, np.array(expected) * len(samples)).pvalue


def _assert_moments(samples, distribution):
    """Sample mean and variance within 5 standard errors of the distribution's.

    Standard errors: sd/sqrt(N) for the mean, var*sqrt((kurtosis_excess + 2)/N)
    for the variance (large N).
    """
    mean, var, kurtosis = (float(m) for m in distribution.stats(moments="mvk"))
    N = len(samples)
    assert abs(samples.mean() - mean) < 5 * np.sqrt(var / N), (samples.mean(), mean)
    assert abs(samples.var(ddof=1) - var) < 5 * var * np.sqrt((kurtosis + 2) / N), (
        samples.var(ddof=1), var)


@pytest.mark.parametrize("n, p", [(100, 0.1), (20, 0.8)])  # p > 0.5: n - X
@pytest.mark.long
def test_binomial_inversion_distribution(n, p):
    binomial = BinomialFunction(n, p, approximate=False)
    samples = _sample("numba", "binomial()", namespace={"binomial": binomial})
    assert np.all(samples == np.round(samples)) and 0 <= samples.min() and samples.max() <= n
    reference = stats.binom(n, p)
    _assert_moments(samples, reference)
    # with a fixed seed: a p-value below 1e-4 would have that probability
    assert _chi_square_pvalue(samples, reference) > 1e-4
    # numpy's np.random.binomial uses the same inversion on the same stream
    numpy_samples = _sample("numpy", "binomial()", namespace={"binomial": binomial})
    np.testing.assert_array_equal(samples, numpy_samples)


@pytest.mark.long
def test_binomial_normal_approximation_distribution():
    n, p = 1000, 0.3
    binomial = BinomialFunction(n, p)  # n*p > 5 and n*(1-p) > 5: normal approximation
    samples = _sample("numba", "binomial()", namespace={"binomial": binomial})
    _assert_moments(samples, stats.binom(n, p))
    normal = stats.norm(n * p, np.sqrt(n * p * (1 - p)))
    _assert_moments(samples, normal)
    assert stats.kstest(samples, normal.cdf).pvalue > 1e-4
    # numpy.random.normal(loc, scale) is loc + scale * randn on the same stream
    numpy_samples = _sample("numpy", "binomial()", namespace={"binomial": binomial})
    np.testing.assert_array_equal(samples, numpy_samples)


@pytest.mark.parametrize("lam", [3.5, 25.0])  # multiplication of uniforms; PTRS
def test_poisson_distribution(lam):
    samples = _sample("numba", f"poisson({lam})")
    assert np.all(samples == np.round(samples)) and samples.min() >= 0
    reference = stats.poisson(lam)
    _assert_moments(samples, reference)
    assert _chi_square_pvalue(samples, reference) > 1e-4
    np.testing.assert_array_equal(samples, _sample("numpy", f"poisson({lam})"))


def test_user_function_numba_source_string():
    @implementation(
        "numba",
        """
        @_numba.njit
        def usersquare(x):
            return x * x
        """,
    )
    @check_units(x=1, result=1)
    def usersquare(x):
        return x * x

    G = NeuronGroup(3, "x : 1\ny : 1")
    G.x = [1, 2, 3]
    G.run_regularly("y = usersquare(x)")
    run(defaultclock_dt())
    np.testing.assert_equal(G.y[:], [1, 4, 9])


def _cube_numba(x):
    return x**3 + np.float64(0)


def test_user_function_python_callable():
    @implementation("numba", _cube_numba)
    @check_units(x=1, result=1)
    def cube(x):
        return x**3

    G = NeuronGroup(3, "x : 1\ny : 1")
    G.x = [1, 2, 3]
    G.run_regularly("y = cube(x)")
    run(defaultclock_dt())
    np.testing.assert_equal(G.y[:], [1, 8, 27])


def test_user_function_with_namespace_array():
    table = np.array([10.0, 20.0, 30.0])

    @implementation(
        "numba",
        """
        @_numba.njit
        def lookup(k, _lookup_table):
            return _lookup_table[int(k)]
        """,
        namespace={"_lookup_table": table},
    )
    @check_units(k=1, result=1)
    def lookup(k):
        return table[np.asarray(k, dtype=int)]

    G = NeuronGroup(3, "y : 1")
    G.run_regularly("y = lookup(2 - i)")
    run(defaultclock_dt())
    np.testing.assert_equal(G.y[:], [30, 20, 10])


def test_missing_implementation_names_the_function():
    @implementation("cython", "cdef double only_cython(double x):\n    return x")
    @check_units(x=1, result=1)
    def only_cython(x):
        return x

    G = NeuronGroup(1, "y : 1")
    G.run_regularly("y = only_cython(1.0)")
    with pytest.raises(BrianObjectException) as exc:
        run(defaultclock_dt())
    cause = exc.value.__cause__
    assert isinstance(cause, NotImplementedError)
    assert "only_cython" in str(cause) and "numba" in str(cause)


def test_uncompilable_implementation_gives_clear_error():
    @implementation(
        "numba",
        """
        @_numba.njit
        def broken(x):
            return undefined_name_in_broken(x)
        """,
    )
    @check_units(x=1, result=1)
    def broken(x):
        return x

    G = NeuronGroup(1, "y : 1")
    G.run_regularly("y = broken(1.0)")
    with pytest.raises(BrianObjectException) as exc:
        run(defaultclock_dt())
    message = str(exc.value)
    assert "numba could not compile" in message
    cause = exc.value.__cause__
    assert isinstance(cause, KernelCompilationError)
    assert "undefined_name_in_broken" in str(cause)
    assert len(str(cause).splitlines()) <= 21


#: each of Brian's default functions: an expression calling it on x, values of x in its domain
_POSITIVE = [1e-3, 0.1, 0.5, 1.0, 2.5, 10.0]
_SMALL = [-0.9, -0.5, 0.0, 1e-9, 0.3, 0.99]
_ANY = [-2.5, -1.0, -1e-9, 0.0, 1e-9, 0.5, 1.75]
DEFAULT_FUNCTION_CALLS = {
    **{name: (f"{name}(x)", _ANY) for name in (
        "cos", "sin", "tan", "cosh", "sinh", "tanh", "exp", "expm1", "exprel",
        "ceil", "floor", "arctan", "abs", "sign", "int")},
    **{name: (f"{name}(x)", _POSITIVE) for name in ("log", "log10", "log1p", "sqrt")},
    "arccos": ("arccos(x)", _SMALL),
    "arcsin": ("arcsin(x)", _SMALL),
    "clip": ("clip(x, -1, 0.7)", _ANY),
    "timestep": ("timestep(x*ms, 0.1*ms)", _POSITIVE),
    "rand": ("rand() + 0*x", _ANY),
    "randn": ("randn() + 0*x", _ANY),
    "poisson": ("poisson(x)", _POSITIVE + [30.0]),
}


def _call_default_function(target, name):
    expression, values = DEFAULT_FUNCTION_CALLS[name]
    prefs.codegen.target = target  # the fixture restores the preferences
    seed(21)
    G = NeuronGroup(len(values), "x : 1\ny : 1")
    G.x = values
    G.run_regularly(f"y = {expression}")
    Network(G).run(defaultclock_dt())
    return G.y[:].copy()


@pytest.mark.long
def test_all_default_functions_have_numba_implementations():
    """Every function Brian defines runs in a numba kernel, with the numpy target's result."""
    from brian2_numba import NumbaCodeObject

    names = {name for name, func in DEFAULT_FUNCTIONS.items() if isinstance(func, Function)}
    assert names == set(DEFAULT_FUNCTION_CALLS)  # a new function needs a call here
    for name in sorted(names):
        assert NumbaCodeObject in DEFAULT_FUNCTIONS[name].implementations, name
        numba_values = _call_default_function("numba", name)
        numpy_values = _call_default_function("numpy", name)
        assert np.all(np.isfinite(numba_values)), name
        # rand, randn and poisson draw numpy's stream: equal; the others to 1e-14
        np.testing.assert_allclose(numba_values, numpy_values, rtol=1e-14, atol=0,
                                   err_msg=name)


def _error_of(name, implementation_code):
    """The exception that running ``y = name(x)`` raises, and its cause."""
    func = Function(lambda x: x, arg_units=[1], return_unit=1)
    func.implementations.add_implementation("numba", code=implementation_code, name=name)
    G = NeuronGroup(2, "x : 1\ny : 1", namespace={name: func})
    G.run_regularly(f"y = {name}(x)")
    with pytest.raises(BrianObjectException) as exc:
        run(defaultclock_dt())
    return str(exc.value), exc.value.__cause__


def test_wrong_return_type_names_the_function():
    message, cause = _error_of("gives_text", '''
        @_numba.njit
        def gives_text(x):
            return "text"
        ''')
    assert ("The numba implementation of function 'gives_text' returns unicode_type "
            "for arguments (float64), where Brian expects a float, so numba could not "
            "compile the 'run' block") in message
    assert isinstance(cause, KernelCompilationError)


def _pair(x):
    return (x, 1.0)


def test_wrong_return_type_of_a_python_callable_names_the_function():
    message, _ = _error_of("gives_pair", _pair)
    assert ("The numba implementation of function 'gives_pair' returns "
            "UniTuple(float64 x 2)") in message


def test_typing_error_inside_the_function_names_it():
    message, cause = _error_of("adds_text", '''
        @_numba.njit
        def adds_text(x):
            return x + "a"
        ''')
    assert "The numba implementation of function 'adds_text' does not compile (line " in message
    assert "numba could not compile the 'run' block" in message
    assert "add(float64, " in str(cause)


@pytest.mark.long
def test_uncompiled_implementation_names_the_function():
    message, _ = _error_of("not_jitted", '''
        def not_jitted(x):
            return x
        ''')
    assert ("The numba implementation of function 'not_jitted' is not compiled by numba "
            "(decorate it with @_numba.njit)") in message


def test_syntax_error_names_the_function():
    func = Function(lambda x: x, arg_units=[1], return_unit=1)
    func.implementations.add_implementation("numba", code='''
        @_numba.njit
        def typo(x)
            return x
        ''', name="typo")
    G = NeuronGroup(1, "y : 1", namespace={"typo": func})
    G.run_regularly("y = typo(1.0)")
    with pytest.raises(BrianObjectException) as exc:
        run(defaultclock_dt())
    cause = exc.value.__cause__
    assert isinstance(cause, SyntaxError)
    assert str(cause) == ("The numba implementation of function 'typo' is not valid "
                          "Python: expected ':' (line 2 of its source: 'def typo(x)').")


def _vector_lines(group):
    """The lines of a group's generated ``run_regularly`` kernel."""
    from brian2_numba import generated_files

    files = [path for blocks in generated_files(group).values()
             for block, path in blocks.items() if block == "run"]
    return [line for path in files for line in open(path, encoding="utf-8")]


def test_powers_of_exp_are_folded_into_one_exponential():
    """``exp(a) ** b`` is computed as ``exp(a * b)``: one call, one rounding."""
    x = np.array([-3.0, -0.5, 0.0, 0.7, 4.0])
    G = NeuronGroup(len(x), "x : 1\ny : 1")
    G.x = x
    G.run_regularly("y = exp(x)**0.05 + 1/exp(-x/3)**2.5 + exp(x)**2")
    run(defaultclock_dt())
    reference = np.exp(x) ** 0.05 + 1 / np.exp(-x / 3) ** 2.5 + np.exp(x) ** 2
    np.testing.assert_allclose(G.y[:], reference, rtol=1e-14)
    statement = [line for line in _vector_lines(G) if line.strip().startswith("y =")]
    assert statement and all("**" not in line for line in statement), statement
    # exp(800) overflows, exp(800 * 0.05) does not
    np.testing.assert_allclose(_evaluate("exp(x)**0.05", values=[800.0]), [np.exp(40.0)])


def test_exp_powers_fold_only_calls_of_exp_with_one_argument():
    from brian2_numba.generator import NumbaNodeRenderer

    fold = NumbaNodeRenderer(fold_exp_powers=True).render_expr
    assert fold("exp(a*v)**0.05") == "exp((a * v) * 0.05)"
    assert fold("1/exp(x)**(2+y)") == "1 / (exp(x * (2 + y)))"
    for unchanged in ["expm1(x)**2", "(exp(x) + 1)**2", "x**exp(y)"]:
        assert fold(unchanged) == NumbaNodeRenderer().render_expr(unchanged)
    # without the flag (the generator sets it only for Brian's own exp)
    assert NumbaNodeRenderer().render_expr("exp(x)**2") == "exp(x) ** 2"
