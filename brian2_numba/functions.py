"""numba implementations of Brian's functions.

Each implementation is either ``code=None`` (the name is imported at the top of
every generated module, see ``HEADER_IMPORTS``) or numba-compatible Python
source that is pasted into the generated module, like Cython's support code.
Pasting the source (instead of importing compiled helpers) keeps every
generated file self-contained, readable, and correctly invalidated in the
cache when a helper changes. Helpers are inlined into the kernels that call
them (``HELPER_DECORATOR``), so pasting them costs no extra compilation.

Implementations are registered under the *string* ``'numba'``, so that Brian
finds them for `NumbaCodeObject` and for nothing else.
"""

import inspect
import re

from brian2.core.functions import DEFAULT_FUNCTIONS
from brian2.utils.stringtools import deindent

from .compat import (
    binomial_constants,
    binomial_normal_constants,
    register_binomial_implementation,
    register_timedarray_implementation,
    timedarray_find_K,
)
from .njit_lines import HELPER_DECORATOR
from .random_numbers import RAND_CALL, RANDN_CALL, register_random_functions

__all__ = ["register_functions", "HEADER_IMPORTS", "python_function_source"]

#: numpy functions that every generated module imports under Brian's names
#: (numba compiles them for scalars with numpy's semantics, e.g. log(0) = -inf)
HEADER_IMPORTS = (
    "sin",
    "cos",
    "tan",
    "sinh",
    "cosh",
    "tanh",
    "exp",
    "log",
    "log10",
    "expm1",
    "log1p",
    "sqrt",
    "arcsin",
    "arccos",
    "arctan",
    "ceil",
    "floor",
)

SUPPORT_CODE = {
    "int": (
        "int_",
        f'''
        {HELPER_DECORATOR}
        def int_(value):
            """Brian's int(): truncate towards zero, as a 32-bit integer."""
            return _numpy.int32(value)
        ''',
    ),
    "sign": (
        "_sign",
        f'''
        {HELPER_DECORATOR}
        def _sign(value):
            """Brian's sign(): -1, 0 or 1 (an integer, as in Cython/C++)."""
            return (0 < value) * 1 - (value < 0) * 1
        ''',
    ),
    "clip": (
        "_clip",
        f'''
        {HELPER_DECORATOR}
        def _clip(value, low, high):
            """Brian's clip(): value limited to [low, high]."""
            if value < low:
                return low
            if value > high:
                return high
            return value
        ''',
    ),
    "timestep": (
        "_timestep",
        f'''
        {HELPER_DECORATOR}
        def _timestep(t, dt):
            """Brian's timestep(): the time step of t, robust to rounding."""
            return _numpy.int64((t + 1e-3 * dt) / dt)
        ''',
    ),
    "exprel": (
        "_exprel",
        f'''
        {HELPER_DECORATOR}
        def _exprel(x):
            """Brian's exprel(): (exp(x) - 1)/x, accurate near 0."""
            if abs(x) < 1e-16:
                return 1.0
            elif x > 717:  # near log(DBL_MAX)
                return _numpy.inf
            return _numpy.expm1(x) / x
        ''',
    ),
}


def _timedarray_1d(values, dt, name):
    """Dynamic implementation: the upsampling factor depends on the owner's dt."""

    def numba_code(owner):
        K = timedarray_find_K(owner.clock.dt_, dt)
        return f'''
        {HELPER_DECORATOR}
        def {name}(t, {name}_values):
            """TimedArray '{name}': value at time t (clipped to the array)."""
            epsilon = {float(dt)!r} / {K}
            i = int((t / epsilon + 0.5) / {K})
            if i < 0:
                i = 0
            if i >= {len(values)}:
                i = {len(values) - 1}
            return {name}_values[i]
        '''

    return numba_code


def _timedarray_2d(values, dt, name):
    def numba_code(owner):
        K = timedarray_find_K(owner.clock.dt_, dt)
        rows, cols = values.shape
        return f'''
        {HELPER_DECORATOR}
        def {name}(t, i, {name}_values):
            """TimedArray '{name}': value at time t for index i (nan outside)."""
            if i < 0 or i >= {cols}:
                return _numpy.nan
            epsilon = {float(dt)!r} / {K}
            step = int((t / epsilon + 0.5) / {K})
            if step < 0:
                step = 0
            elif step >= {rows}:
                step = {rows - 1}
            return {name}_values[step * {cols} + i]  # values are flattened
        '''

    return numba_code


def _binomial(n, p, use_normal, name):
    """Same algorithms as Brian's Cython target (inversion, or normal approx.)."""
    if use_normal:
        loc, scale = binomial_normal_constants(n, p)
        code = f'''
        {HELPER_DECORATOR}
        def {name}(_vectorisation_idx, _numpy_generator, _randn_buffer, _randn_buffer_index):
            """Binomial(n={n}, p={p}), normal approximation."""
            return {RANDN_CALL} * {scale!r} + {loc!r}
        '''
        return code, {"_randn": DEFAULT_FUNCTIONS["randn"]}
    reverse, q, P, qn, bound = binomial_constants(n, p)
    result = f"{int(n)} - X" if reverse else "X"
    code = f'''
    {HELPER_DECORATOR}
    def {name}(_vectorisation_idx, _numpy_generator, _rand_buffer, _rand_buffer_index):
        """Binomial(n={n}, p={p}) by inversion (numpy's rk_binomial_inversion)."""
        X = 0
        px = {qn!r}
        U = {RAND_CALL}
        while U > px:
            X += 1
            if X > {bound!r}:
                X = 0
                px = {qn!r}
                U = {RAND_CALL}
            else:
                U -= px
                px = (({int(n)} - X + 1) * {P!r} * px) / (X * {q!r})
        return {result}
    '''
    return code, {"_rand": DEFAULT_FUNCTIONS["rand"]}


_DECORATOR = re.compile(r"^\s*@", re.MULTILINE)


def python_function_source(func, name):
    """Source of a user's Python function (or numba dispatcher), renamed to ``name``.

    Used for ``@implementation('numba', some_python_function)``: the source is
    pasted into the generated module and compiled with ``@_numba.njit``, so it
    must be self-contained (``numpy``/``np`` and ``math`` are available).
    """
    py_func = getattr(func, "py_func", func)
    try:
        source = deindent(inspect.getsource(py_func))
    except (OSError, TypeError) as exc:
        raise TypeError(
            f"Cannot read the source code of the numba implementation "
            f"'{getattr(py_func, '__name__', py_func)}' ({exc}); give the "
            "implementation as a source string instead."
        ) from exc
    lines = source.splitlines()
    while lines and _DECORATOR.match(lines[0]):
        lines.pop(0)
    source = "\n".join(lines)
    source = re.sub(
        rf"^def\s+{re.escape(py_func.__name__)}\s*\(", f"def {name}(", source, count=1
    )
    return f"@_numba.njit\n{source}"


def register_functions():
    """Register the numba implementations of all of Brian's default functions."""
    for name in HEADER_IMPORTS:
        DEFAULT_FUNCTIONS[name].implementations.add_implementation("numba", code=None)
    DEFAULT_FUNCTIONS["abs"].implementations.add_implementation("numba", code=None)
    for brian_name, (numba_name, code) in SUPPORT_CODE.items():
        DEFAULT_FUNCTIONS[brian_name].implementations.add_implementation(
            "numba", code=deindent(code), name=numba_name
        )
    register_random_functions()
    register_timedarray_implementation("numba", _timedarray_1d, _timedarray_2d)
    register_binomial_implementation("numba", _binomial)

