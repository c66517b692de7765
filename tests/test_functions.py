"""Functions on the numba target: defaults, user implementations, clear errors."""

import numpy as np
import pytest
from brian2 import (
    BinomialFunction,
    BrianObjectException,
    Function,
    NeuronGroup,
    TimedArray,
    check_units,
    implementation,
    prefs,
    run,
    seed,
)
from brian2.core.functions import DEFAULT_FUNCTIONS

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
def test_math_functions(func, reference):
    x = np.array([-1.5, -0.5, 0.0, 0.25, 1.75])
    np.testing.assert_allclose(_evaluate(f"{func}(x)", values=x), reference(x), rtol=1e-14)


def test_functions_with_domains():
    x = np.array([0.1, 0.5, 1.0, 2.0, 10.0])
    np.testing.assert_allclose(_evaluate("log(x)", values=x), np.log(x), rtol=1e-14)
    np.testing.assert_allclose(_evaluate("log10(x)", values=x), np.log10(x), rtol=1e-14)
    np.testing.assert_allclose(_evaluate("sqrt(x)", values=x), np.sqrt(x), rtol=1e-14)
    np.testing.assert_allclose(_evaluate("log1p(x)", values=x), np.log1p(x), rtol=1e-14)
    y = x / 20
    np.testing.assert_allclose(_evaluate("arcsin(x)", values=y), np.arcsin(y), rtol=1e-14)
    np.testing.assert_allclose(_evaluate("arccos(x)", values=y), np.arccos(y), rtol=1e-14)


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


def test_timedarray_1d_and_2d():
    from brian2 import defaultclock

    values = np.arange(10.0)
    ta = TimedArray(values, dt=defaultclock.dt * 2)
    G = NeuronGroup(1, "v = ta(t) : 1", namespace={"ta": ta})
    values2d = np.arange(12.0).reshape(6, 2)
    ta2 = TimedArray(values2d, dt=defaultclock.dt)
    H = NeuronGroup(2, "v : 1")
    H.run_regularly("v = ta2(t, i)", when="start")
    from brian2 import StateMonitor

    M = StateMonitor(G, "v", record=0)
    MH = StateMonitor(H, "v", record=True, when="end")
    run(8 * defaultclock.dt)
    np.testing.assert_equal(M.v[0], [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_equal(MH.v.T, values2d[[0, 1, 2, 3, 4, 5, 5, 5]])


def test_binomial_and_poisson_statistics():
    seed(11)
    binomial = BinomialFunction(100, 0.1, approximate=False)  # inversion
    binomial_normal = BinomialFunction(1000, 0.3)  # normal approximation
    G = NeuronGroup(20000, "b1 : 1\nb2 : 1\np : 1")
    G.run_regularly("b1 = binomial()\nb2 = binomial_normal()\np = poisson(3.5)")
    run(defaultclock_dt())
    assert abs(G.b1[:].mean() - 10) < 0.15
    assert abs(G.b2[:].mean() - 300) < 0.5
    assert abs(G.p[:].mean() - 3.5) < 0.06
    assert abs(G.p[:].var() - 3.5) < 0.15
    assert np.all(G.b1[:] == np.round(G.b1[:]))


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


def test_all_default_functions_have_numba_implementations():
    from brian2_numba import NumbaCodeObject

    for name, func in DEFAULT_FUNCTIONS.items():
        if isinstance(func, Function):
            func.implementations[NumbaCodeObject]  # raises KeyError if missing


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
