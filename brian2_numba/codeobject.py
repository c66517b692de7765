"""``NumbaCodeObject``: runs Brian code objects as cached ``@numba.njit`` kernels.

Each block (``before_run``, ``run``, ``after_run``) of a code object is one
generated module (see :mod:`brian2_numba.cache`) that defines ``main``: the
kernel itself for the per-step blocks, or a Python function for work that
needs Brian's Python objects once per run (preparing the spike queue,
creating synapses). The names of ``main``'s parameters are looked up in the
code object's namespace *once*, when the block is compiled, so a time step
costs one call with a ready-made tuple of arguments: no namespace unpacking,
no logging, no introspection.
"""

import functools
import inspect
import weakref

import numpy as np
from brian2.codegen.codeobject import (
    CodeObject,
    check_compiler_kwds,
    constant_or_scalar,
)
from brian2.codegen.targets import codegen_targets
from brian2.codegen.templates import Templater
from brian2.core.base import BrianObjectException
from brian2.core.functions import Function
from brian2.core.variables import (
    ArrayVariable,
    AuxiliaryVariable,
    DynamicArrayVariable,
    Subexpression,
)
from brian2.devices.device import get_device
from brian2.utils.logger import get_logger
from numba.core.dispatcher import Dispatcher
from numba.core.errors import NumbaError

from . import __version__
from .cache import load_module
from .collector import full_collections_postponed
from .diagnostics import function_at_fault, implementation_names
from .functions import HEADER_IMPORTS
from .generator import NumbaCodeGenerator
from .njit_lines import HELPER_DECORATOR, numba_decorator
from .overrides import override_for
from .random_numbers import BUFFER_POSITIONS, RAND_ARGUMENTS, RAND_CALL, numpy_generator
from .structures.queue_arguments import template_names as queue_template_names
from .structures.registry import structure_for
from .templating import affixed, argument_list, array_names, tidy
from .threads import THREAD_COUNT_ARGUMENT, requested_threads

__all__ = ["NumbaCodeObject", "KernelCompilationError"]

logger = get_logger(__name__)


class KernelCompilationError(Exception):
    """numba could not compile a generated kernel (the message says why)."""


def _short_numba_message(exc, max_lines=20):
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + ["[...]"]
    return "\n".join(lines)


class _CompiledBlock:
    """``main`` of a generated module plus its ready-made argument tuple.

    A module may also define ``make_room``: then a truthy return value of
    ``main`` means a data structure was too small (nothing was done);
    ``make_room(result, ...)`` grows it and ``main`` runs again. A module
    that defines ``_ONLY_WITH_EVENTS`` (the name of an eventspace array)
    does nothing on a time step without events there: ``events`` is that
    array, and ``main`` is not called when its count is 0.
    """

    __slots__ = ("main", "parameters", "args", "make_room", "make_room_parameters",
                 "make_room_args", "path", "module_globals", "events_name", "events",
                 "called")

    def __init__(self, module, namespace):
        self.path = module.__file__
        self.module_globals = vars(module)
        self.main = module.main
        self.parameters = _parameter_names(self.main)
        positions = [p for p in self.parameters if p in BUFFER_POSITIONS]
        if positions and isinstance(self.main, Dispatcher):
            self.main = _with_local_positions(
                module.__name__, self.parameters, tuple(positions), numba_decorator()
            ).main
        self.make_room = getattr(module, "make_room", None)
        self.events_name = getattr(module, "_ONLY_WITH_EVENTS", None)
        self.make_room_parameters = (
            _parameter_names(self.make_room)[1:] if self.make_room else ()
        )
        self.called = False
        self.bind(namespace)

    def first_call(self):
        """Call the kernel the first time: numba compiles it or loads it from the cache,
        with no full garbage collection in the middle (see :mod:`.collector`)."""
        with full_collections_postponed():
            result = self.main(*self.args)
        self.called = True
        return result

    def bind(self, namespace):
        """(Re)build the argument tuples from the namespace."""
        missing = [
            p for p in (*self.parameters, *self.make_room_parameters, self.events_name)
            if p is not None and p not in namespace
        ]
        if missing:
            raise KeyError(
                f"Generated code {self.path} needs {missing}, which the "
                "namespace does not provide."
            )
        self.args = tuple(namespace[p] for p in self.parameters)
        self.make_room_args = tuple(namespace[p] for p in self.make_room_parameters)
        self.events = None if self.events_name is None else namespace[self.events_name]


@functools.lru_cache(maxsize=1024)
def _with_local_positions(kernel_module, parameters, positions, decorator):
    """The module of ``random_positions.py_`` for a kernel that draws random numbers.

    Cached: code objects are created anew in every run, their kernels rarely.
    """
    source = NumbaCodeObject.templater.env.get_template("random_positions.py_").render(
        kernel_module=kernel_module,
        parameters=parameters,
        positions=positions,
        decorator=decorator,
        inline_decorator=numba_decorator(inline=True)[1:],
        version=NumbaCodeObject.templater.env.globals["version"],
    )
    return load_module(tidy(source))


#: the parameter names of a generated function, by function (``inspect.signature``
#: costs tens of µs; the kernels outlive the code objects created at every run)
_PARAMETER_NAMES = weakref.WeakKeyDictionary()


def _parameter_names(function):
    function = getattr(function, "py_func", function)
    names = _PARAMETER_NAMES.get(function)
    if names is None:
        names = _PARAMETER_NAMES[function] = tuple(inspect.signature(function).parameters)
    return names



class NumbaCodeObject(CodeObject):
    """Execute Brian code as numba-compiled kernels (no C++ compiler needed).

    Brian creates these for the target ``'numba'``
    (``prefs.codegen.target = 'numba'``); users do not create them.

    Attributes
    ----------
    namespace : dict
        Every value a generated block may take as an argument, under its
        generated name.
    source_files : dict
        ``{block: path}`` of the generated ``.py`` files.
    """

    templater = Templater(
        "brian2_numba",
        ".py_",
        env_globals={
            "numba_decorator": numba_decorator,
            "helper_decorator": HELPER_DECORATOR,
            "argument_list": argument_list,
            "affixed": affixed,
            "array_names": array_names,
            "constant_or_scalar": constant_or_scalar,
            "header_imports": ", ".join(HEADER_IMPORTS),
            "rand_call": RAND_CALL,
            "rand_arguments": RAND_ARGUMENTS,
            "version": __version__,
            "dtype": np.dtype,
            "queue": queue_template_names(),
        },
    )
    generator_class = NumbaCodeGenerator
    class_name = "numba"

    def __init__(
        self,
        owner,
        code,
        variables,
        variable_indices,
        template_name,
        template_source,
        compiler_kwds,
        name="numba_code_object*",
    ):
        check_compiler_kwds(compiler_kwds, [], "numba")
        super().__init__(
            owner,
            code,
            variables,
            variable_indices,
            template_name,
            template_source,
            compiler_kwds=compiler_kwds,
            name=name,
        )
        self.device = get_device()
        self.namespace = {"_owner": self.owner, THREAD_COUNT_ARGUMENT: requested_threads()}
        self.nonconstant_values = []
        self.variables_to_namespace()
        self.structures_to_namespace()

    @classmethod
    def is_available(cls):
        return True  # numba is a hard dependency; nothing to compile or test

    # -- namespace -----------------------------------------------------------

    def _insert_func_namespace(self, func):
        impl = func.implementations[self]
        func_namespace = impl.get_namespace(self.owner)
        if func_namespace is not None:
            self.namespace.update(func_namespace)
        for dep in (impl.dependencies or {}).values():
            self._insert_func_namespace(dep)

    def variables_to_namespace(self):
        """Everything a generated block may ask for, under its generated name."""
        for name, var in self.variables.items():
            if isinstance(var, Function):
                self._insert_func_namespace(var)
                continue
            if isinstance(var, (AuxiliaryVariable, Subexpression)):
                continue
            try:
                value = var.get_value()
            except (TypeError, AttributeError):
                self.namespace[name] = var  # e.g. the spike queue
                continue
            if isinstance(var, ArrayVariable):
                self.namespace[self.device.get_array_name(var, self.variables)] = value
                if var.scalar and var.constant:
                    self.namespace[name] = value.item()
            else:
                self.namespace[name] = value
            if isinstance(var, DynamicArrayVariable):
                dynamic_name = self.device.get_array_name(var, access_data=False)
                self.namespace[dynamic_name] = self.device.get_value(
                    var, access_data=False
                )
                if var.needs_reference_update:
                    array_name = self.device.get_array_name(var, self.variables)
                    self.nonconstant_values.append((array_name, var.get_value))
            self.namespace[f"_var_{name}"] = var

    def structures_to_namespace(self):
        """The numba-side spike queue or monitor recording this template uses.

        Which template uses which: ``brian2_numba.structures.registry``.
        """
        structure = structure_for(self.template_name, self.owner, self.variables)
        if structure is not None:
            self.namespace.update(structure.namespace())

    def update_namespace(self):
        for name, get_value in self.nonconstant_values:
            self.namespace[name] = get_value()

    # -- compiling and running ---------------------------------------------

    def compile_block(self, block):
        code = override_for(self.name, block) or getattr(self.code, block, "").strip()
        if not code or "EMPTY_CODE_BLOCK" in code:
            return None
        module = load_module(tidy(code))
        logger.diagnostic(f"{self.name}.{block}: {module.__file__}")
        return _CompiledBlock(module, self.namespace)

    @property
    def source_files(self):
        """``{block: path}`` of the generated ``.py`` files of this code object."""
        return {
            block: compiled.path
            for block, compiled in self.compiled_code.items()
            if compiled is not None
        }

    def before_run(self):
        numpy_generator()  # in case numpy's global generator was replaced
        super().before_run()

    def _refresh_args(self):
        for compiled in self.compiled_code.values():
            if compiled is not None:
                compiled.bind(self.namespace)

    def __call__(self, **kwds):
        if kwds or self.nonconstant_values:
            self.update_namespace()
            self.namespace.update(kwds)
            self._refresh_args()
        return self.run_block("run")

    def run_block(self, block):
        compiled = self.compiled_code[block]
        if compiled is None:
            return None
        events = compiled.events
        if events is not None and events[len(events) - 1] == 0:
            return None  # a step without events: the kernel would do nothing
        try:
            if compiled.called:
                result = compiled.main(*compiled.args)
            else:
                result = compiled.first_call()
            if compiled.make_room is not None and result:
                compiled.make_room(result, *compiled.make_room_args)
                result = compiled.main(*compiled.args)
            return result
        except NumbaError as exc:
            where = (f"numba could not compile the '{block}' block of code object "
                     f"'{self.name}' (generated code: {compiled.path})")
            culprit = function_at_fault(
                exc, compiled.module_globals, compiled.path,
                implementation_names(self.variables, self),
            )
            raise BrianObjectException(
                f"{culprit}, so {where}." if culprit else f"{where}.",
                self.owner,
            ) from KernelCompilationError(_short_numba_message(exc))
        except Exception as exc:
            raise BrianObjectException(
                f"An exception occurred during the execution of the '{block}' "
                f"block of code object '{self.name}' (generated code: "
                f"{compiled.path}).",
                self.owner,
            ) from exc


codegen_targets.add(NumbaCodeObject)
