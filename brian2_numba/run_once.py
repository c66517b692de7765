"""Run-once code objects on a cold cache: through numpy instead of compiling.

Brian creates some code objects only to run them once, right away, outside
the time steps: setting variables with string expressions, reading them with
string indices, creating synapses. A numba kernel for one of them costs
70-400 ms to compile (measured below); Brian's numpy code object for the
same work usually takes a few milliseconds. So :func:`install` wraps the
runtime device's ``code_object``: a run-once numba code object whose kernel
is neither in memory nor in the disk cache, whose estimated numpy time is
below the kernel's compile time, and whose results numpy computes bit for bit
as the kernel would, is replaced by Brian's ``NumpyCodeObject`` for the same
abstract code. Everything else (every per-step code object, anything that
draws random numbers, ...) compiles as before. Each fallback is logged at
DEBUG level (logger ``brian2_numba.run_once``) with the reason; so is every
run-once object that compiles, with the reason it must.

``prefs.codegen.runtime.numba.run_once_fallback = False`` turns it off.
The design, the estimate and its constants: docs/design.md, "Run-once code
objects".
"""

import ast
import math

import numpy as np
from brian2.codegen.runtime.numpy_rt import NumpyCodeObject
from brian2.core.functions import DEFAULT_FUNCTIONS, Function
from brian2.core.preferences import prefs
from brian2.core.variables import (
    ArrayVariable,
    AuxiliaryVariable,
    Constant,
    Subexpression,
)
from brian2.devices.device import runtime_device
from brian2.utils.logger import get_logger
from numba.core.dispatcher import Dispatcher

from .codeobject import NumbaCodeObject
from .kernel_cache import KernelCache

__all__ = ["RUN_ONCE_TEMPLATES", "install", "fallback_reason", "kernels_cached", "numpy_seconds"]

logger = get_logger(__name__)

#: Brian's templates whose code objects run once, when created (not per step),
#: with this target's compile time of their kernel in seconds (measured in a
#: fresh process on the 2-core machine of the benchmarks, numba 0.68, after
#: numba's initialisation; rounded down, so that in doubt the kernel compiles)
RUN_ONCE_TEMPLATES = {
    "group_variable_set": 0.07,
    "group_variable_set_conditional": 0.07,
    "group_variable_get": 0.2,
    "group_variable_get_conditional": 0.2,
    "group_get_indices": 0.2,
    "synapses_create_array": 0.12,
    "synapses_create_generator": 0.3,
}

#: run-once templates whose numpy version gives other results than the kernel
NUMPY_DIFFERS = {
    "group_get_indices": "numpy's template returns the indices as float64, the kernel as int32",
}

#: seconds of a numpy code object besides its work: generating its code and
#: executing it (measured: 2-4 ms for the group templates, 12 ms for
#: synapses_create_generator; the larger value for all, so in doubt it compiles)
NUMPY_FIXED_SECONDS = 0.004
GENERATOR_FIXED_SECONDS = 0.012
#: numpy's seconds per item of a vectorised template: 7-13 ns per element
#: for setting a variable with a short expression, 11 ns per element for a
#: conditional set, 12 ns per candidate pair in synapses_create_generator
NUMPY_ITEM_SECONDS = 15e-9
#: per created pair of synapses_create_array (60 ns measured)
ARRAY_PAIR_SECONDS = 70e-9
#: per iteration of synapses_create_generator's Python loop over sources
#: (16 µs measured, for j='i')
GENERATOR_SOURCE_SECONDS = 20e-6

#: functions that numpy and numba compute bit for bit alike on float64 (exact
#: operations or correctly rounded ones): others, such as exp, log, tanh or
#: x**1.7, differ in the last bit for part of the values (numpy's vectorised
#: implementations, e.g. AVX-512, against numba's scalar libm calls; measured:
#: exp on 5% of random arguments, tanh on 20%), and so do user functions
EXACT_FUNCTIONS = ("abs", "ceil", "floor", "sqrt", "clip", "int")


def _identifiers_and_expressions(abstract_code, variables):
    """The parsed statements of the code and of every subexpression they use."""
    trees = []
    for block in abstract_code.values():
        if block.strip():
            trees.append(ast.parse(block))
    seen = set()
    pending = list(trees)
    while pending:
        tree = pending.pop()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in seen:
                seen.add(node.id)
                var = variables.get(node.id)
                if isinstance(var, Subexpression):
                    sub = ast.parse(var.expr, mode="eval")
                    trees.append(sub)
                    pending.append(sub)
    return seen, trees


def _inexact_operation(trees, identifiers, variables):
    """Why numpy could compute other values than the kernel, or ``None``."""
    for name in sorted(identifiers):
        var = variables.get(name)
        if isinstance(var, Function):
            if not getattr(var, "stateless", True):
                return f"it calls {name}(), which draws random numbers"
            if name not in EXACT_FUNCTIONS or DEFAULT_FUNCTIONS.get(name) is not var:
                return (f"it calls {name}(), which numpy may compute differently "
                        "in the last bit")
        elif isinstance(var, (ArrayVariable, Constant, AuxiliaryVariable, Subexpression)):
            dtype = np.dtype(getattr(var, "dtype", np.float64) or np.float64)
            if dtype.kind in "fc" and dtype != np.float64:
                return (f"'{name}' is {dtype}: numpy computes in {dtype}, the "
                        "kernel in float64")
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
                exponent = node.right
                if not (isinstance(exponent, ast.Constant) and exponent.value == 2
                        and isinstance(exponent.value, int)):
                    return "it raises to a power other than 2"
    return None


def _value(variables, name, default=0):
    var = variables.get(name)
    try:
        return int(var.get_value())
    except (AttributeError, TypeError, ValueError):
        return default


def _range_length(iterator_kwds, variables, upper_bound):
    """Values in the generator's ``range(low, high, step)``: a number if the
    bounds differ by a constant (``range(i-3, i+4)``), else ``upper_bound``."""
    import sympy

    low = iterator_kwds.get("low") or "0"
    high = iterator_kwds.get("high")
    step = iterator_kwds.get("step") or "1"
    if high is None:
        return upper_bound
    try:
        length = sympy.sympify(f"(({high}) - ({low})) / ({step})")
        sizes = {sympy.Symbol(name): _value(variables, name)
                 for name in ("N_pre", "N_post", "N") if name in variables}
        length = length.subs(sizes)
        if not length.is_number:
            return upper_bound
        return max(0, math.ceil(abs(float(length))))
    except Exception:  # anything sympy cannot read: the safe bound
        return upper_bound


def numpy_seconds(template_name, variables, template_kwds):
    """The estimated time of Brian's numpy code object for this work.

    Parameters
    ----------
    template_name : str
        One of :data:`RUN_ONCE_TEMPLATES`.
    variables : dict
        The code object's variables (sizes are read from them).
    template_kwds : dict
        The template keywords Brian passes (the parsed generator of
        ``synapses_create_generator``).

    Returns
    -------
    seconds : float
        A fixed cost per code object plus the items times a cost per item;
        for ``synapses_create_generator``, whose numpy template loops in
        Python over the sources, a cost per source plus one per candidate
        pair.
    """
    template_kwds = template_kwds or {}
    if template_name == "synapses_create_generator":
        outer = _value(variables, template_kwds.get("outer_index_size", "N_pre"))
        result_size = _value(variables, template_kwds.get("result_index_size", "N_post"))
        if template_kwds.get("iterator_func") == "range":
            per_source = _range_length(template_kwds.get("iterator_kwds", {}), variables,
                                       result_size)
        else:
            per_source = result_size
        return (GENERATOR_FIXED_SECONDS + outer * GENERATOR_SOURCE_SECONDS
                + outer * per_source * NUMPY_ITEM_SECONDS)
    if template_name == "synapses_create_array":
        sources = variables.get("sources")
        return NUMPY_FIXED_SECONDS + getattr(sources, "size", 0) * ARRAY_PAIR_SECONDS
    indices = variables.get("_group_idx")
    if isinstance(indices, ArrayVariable):
        items = indices.size
    else:
        items = _value(variables, "N")
    return NUMPY_FIXED_SECONDS + items * NUMPY_ITEM_SECONDS


def fallback_reason(owner, abstract_code, variables, template_name, template_kwds):
    """Why numpy may run this code object instead of a compiled kernel.

    Everything but the cache state, which needs the generated kernel.

    Parameters
    ----------
    owner : Group
        The code object's owner.
    abstract_code : dict
        Brian's abstract code, by block.
    variables : dict
        The code object's variables.
    template_name : str
        Brian's template name.
    template_kwds : dict or None
        The template keywords Brian passes.

    Returns
    -------
    (numpy_ok, reason) : (bool, str)
        Whether numpy may run it, and why (or why not), for the log.
    """
    compile_seconds = RUN_ONCE_TEMPLATES.get(template_name)
    if compile_seconds is None:
        return False, "it runs every time step"
    if template_name in NUMPY_DIFFERS:
        return False, NUMPY_DIFFERS[template_name]
    if not prefs["codegen.runtime.numba.run_once_fallback"]:
        return False, "prefs.codegen.runtime.numba.run_once_fallback is off"
    if getattr(owner, "codeobj_class", None) is not None:
        return False, f"its group asks for {owner.codeobj_class.__name__}"
    if prefs["codegen.runtime.numba.fastmath"]:
        return False, "kernels use fastmath, whose values numpy does not reproduce"
    if prefs["codegen.runtime.numba.error_model"] != "numpy":
        return False, "the error model is not numpy's"
    if (template_kwds or {}).get("iterator_func") == "sample":
        return False, "it draws random numbers (a connection probability or sample)"
    try:
        identifiers, trees = _identifiers_and_expressions(abstract_code, variables)
    except SyntaxError:
        return False, "its code could not be analysed"
    inexact = _inexact_operation(trees, identifiers, variables)
    if inexact:
        return False, inexact
    estimate = numpy_seconds(template_name, variables, template_kwds)
    if estimate >= compile_seconds:
        return False, (f"numpy would take about {estimate:.3g} s, compiling "
                       f"{compile_seconds:.3g} s")
    return True, (f"numpy takes about {estimate:.3g} s, compiling its kernel "
                  f"{compile_seconds:.3g} s")


def kernels_cached(codeobj):
    """Whether every kernel of a numba code object is compiled in memory or on disk.

    Parameters
    ----------
    codeobj : NumbaCodeObject
        A compiled (``compile()``) code object.

    Returns
    -------
    cached : bool
        ``True`` if no kernel of it would have to be compiled.
    """
    for compiled in codeobj.compiled_code.values():
        if compiled is None:
            continue
        for value in compiled.module_globals.values():
            if not isinstance(value, Dispatcher) or value.targetoptions.get(
                    "inline", "never") != "never":
                continue
            if value.overloads:
                continue
            cache = getattr(value, "_cache", None)
            if not isinstance(cache, KernelCache) or not cache.has_index():
                return False
    return True


def install():
    """Wrap the runtime device's ``code_object`` (see the module docstring).

    Idempotent.
    """
    original = type(runtime_device).code_object
    if getattr(runtime_device.code_object, "_brian2_numba_run_once", False):
        return

    def code_object(owner, name, abstract_code, variables, template_name,
                    variable_indices, codeobj_class=None, template_kwds=None,
                    override_conditional_write=None, compiler_kwds=None):
        arguments = dict(owner=owner, abstract_code=abstract_code, variables=variables,
                         template_name=template_name, variable_indices=variable_indices,
                         template_kwds=template_kwds,
                         override_conditional_write=override_conditional_write)
        codeobj_class = runtime_device.code_object_class(codeobj_class)
        if not (isinstance(codeobj_class, type) and issubclass(codeobj_class, NumbaCodeObject)
                and template_name in RUN_ONCE_TEMPLATES):
            return original(runtime_device, name=name, codeobj_class=codeobj_class,
                            compiler_kwds=compiler_kwds, **arguments)
        numpy_ok, reason = fallback_reason(owner, abstract_code, variables, template_name,
                                           template_kwds)
        codeobj = original(runtime_device, name=name, codeobj_class=codeobj_class,
                           compiler_kwds=compiler_kwds, **arguments)
        if numpy_ok and kernels_cached(codeobj):
            numpy_ok, reason = False, "its kernel is compiled already (in memory or on disk)"
        if not numpy_ok:
            logger.debug(f"{codeobj.name} ({template_name}) compiles: {reason}",
                         name_suffix="compiled")
            return codeobj
        logger.debug(f"{codeobj.name} ({template_name}) runs through numpy: {reason}",
                     name_suffix="fallback")
        # the name the numba code object got (given explicitly, it is kept)
        return original(runtime_device, name=codeobj.name, codeobj_class=NumpyCodeObject,
                        compiler_kwds={}, **arguments)

    code_object._brian2_numba_run_once = True
    runtime_device.code_object = code_object
