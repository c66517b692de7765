"""See and steer what the target does: the code objects of a network.

::

    import brian2_numba.introspect as introspect
    net.run(10*ms)
    introspect.list(net)                       # every code object, its kernel, its cost
    print(introspect.source('*stateupdater*'))  # the generated source
    introspect.params('*stateupdater*')        # the kernel's arguments, now
    introspect.namespace('*stateupdater*')     # everything the code object binds
    introspect.override('*stateupdater*', edited_source)  # used from the next run()
    introspect.revert('*stateupdater*')

Without a network, the functions look at the network that ran last on this
target. Patterns are shell-style (``fnmatch``) patterns on code object names
(``net.run`` creates them, so they exist once the network has run). Tables
show as HTML in Jupyter and as text in a terminal.

Like the cppyy runtime draft of Brian (brian2#1769), which added an
introspector to a runtime target; the code objects here are numba kernels in
generated ``.py`` files, so an override is a Python source.
"""

import builtins
import fnmatch
import html
import time
import weakref

import numba
import numpy as np
from numba.core import event
from numba.core.errors import NumbaError

from . import compat
from .cache import kernel_forms, load_module
from .codeobject import _CompiledBlock
from .inspection import _code_objects
from .network import last_network
from .overrides import remove_overrides, set_override
from .templating import tidy

__all__ = ["list", "source", "params", "namespace", "override", "revert", "Table"]

# -- compile times ------------------------------------------------------------

#: kernel (dispatcher) -> seconds numba spent compiling it (nested compilations
#: of other kernels, e.g. the loop's callees, not included)
_compile_seconds = weakref.WeakKeyDictionary()


class _CompileTimer(event.Listener):
    """Times numba's compilations of each dispatcher, without nested ones."""

    def __init__(self):
        self._stack = []  # [start, seconds of nested compilations]

    def on_start(self, ev):
        self._stack.append([time.perf_counter(), 0.0])

    def on_end(self, ev):
        start, nested = self._stack.pop()
        took = time.perf_counter() - start
        if self._stack:
            self._stack[-1][1] += took
        dispatcher = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
        if dispatcher is not None:
            try:
                _compile_seconds[dispatcher] = _compile_seconds.get(dispatcher, 0.0) + took - nested
            except TypeError:  # not weak-referenceable
                pass


event.register("numba:compile", _CompileTimer())

# -- the network -----------------------------------------------------------------

def _network(net):
    if net is not None:
        return net
    current = last_network()
    if current is None:
        raise ValueError("No network that ran on the 'numba' target exists (any "
                         "more): pass the network (net=...).")
    return current


def _matching(pattern, net):
    """The network's numba code objects whose name matches ``pattern``."""
    net = _network(net)
    codeobjs = builtins.list(_code_objects(net))
    found = [c for c in codeobjs if fnmatch.fnmatchcase(c.name, pattern)]
    if not found:
        names = ", ".join(sorted(c.name for c in codeobjs)) or "none"
        raise KeyError(f"No code object of network '{net.name}' matches '{pattern}' "
                       f"(its numba code objects: {names}).")
    return found


# -- tables -------------------------------------------------------------------------

class Table:
    """Rows of values with column names: text in a terminal, HTML in Jupyter.

    ``columns`` is the list of column names, ``rows`` the list of rows
    (tuples), ``column(name)`` the values of one column.
    """

    def __init__(self, columns, rows):
        self.columns = builtins.list(columns)
        self.rows = [tuple(row) for row in rows]

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def column(self, name):
        """The values of one column."""
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def __str__(self):
        cells = [self.columns] + [[_text(v) for v in row] for row in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row)
                       + "</tr>" for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# -- what the functions show --------------------------------------------------------

def _kernel_cost(compiled):
    """(cache, seconds) of a block's kernel: 'hit'/'miss' and load/compile time.

    Of the kernel itself, or else of its variant for the fused loop
    (:func:`brian2_numba.cache.loop_kernel`), whichever was compiled or loaded.
    """
    if getattr(compiled.main, "stats", None) is None:
        return None, None
    kernels = kernel_forms(compiled.main)
    for kernel in kernels:
        stats = kernel.stats
        if sum(stats.cache_misses.values()):
            return "miss", _compile_seconds.get(kernel)
        if sum(stats.cache_hits.values()):
            return "hit", getattr(kernel._cache, "load_seconds", None)
    for kernel in kernels:
        if kernel.overloads:
            return "compiled", _compile_seconds.get(kernel)
    return "not loaded", None  # not run in this process (an inactive object)


def _profiled_times(net):
    try:
        return {name: float(t) for name, t in net.profiling_info}
    except (ValueError, TypeError):  # not profiled
        return {}


def list(net=None):  # noqa: A001 (the name the issue and cppyy's introspector use)
    """Every numba code object of the network, with its kernel and its cost.

    Parameters
    ----------
    net : `Network`, optional
        Default: the network that ran last on this target.

    Returns
    -------
    Table
        Columns: code object, owner, template, blocks, kernel file, cache
        (``hit``, ``miss``, ``compiled``, or ``not loaded`` for a kernel
        that did not run in this process; of the kernel or of its variant for
        the fused loop), seconds (loading or compiling it),
        profiled seconds (after ``run(..., profile=True)``). The network's
        compiled loop, if its last run was fused, is the last row.
    """
    net = _network(net)
    profiled = _profiled_times(net)
    rows = []
    for codeobj in _code_objects(net):
        blocks = [block for block, compiled in codeobj.compiled_code.items() if compiled]
        compiled = codeobj.compiled_code.get("run")
        cache, seconds = _kernel_cost(compiled) if compiled else (None, None)
        rows.append((codeobj.name, codeobj.owner.name, codeobj.template_name,
                     ",".join(blocks), compiled.path if compiled else None, cache, seconds,
                     profiled.get(codeobj.name)))
    loop = compat.loop_file(net)
    if loop:
        rows.append((f"{net.name} (loop)", net.name, "network_run", "run", loop,
                     None, None, None))
    return Table(["code object", "owner", "template", "blocks", "kernel file", "cache",
                  "seconds", "profiled seconds"], rows)


def _block(codeobj, block):
    compiled = codeobj.compiled_code.get(block)
    if compiled is None:
        raise KeyError(f"Code object '{codeobj.name}' has no compiled '{block}' block "
                       f"(it has: {', '.join(b for b, c in codeobj.compiled_code.items() if c)}).")
    return compiled


def source(pattern, block="run", net=None):
    """The source of a block of the matching code objects.

    Returns
    -------
    str or dict
        The source if one code object matches, else ``{name: source}``.
    """
    sources = {}
    for codeobj in _matching(pattern, net):
        with open(_block(codeobj, block).path, encoding="utf-8") as f:
            sources[codeobj.name] = f.read()
    return next(iter(sources.values())) if len(sources) == 1 else sources


def _value(value):
    """(type, dtype, shape, value) of an argument; the value only if it is one number."""
    if isinstance(value, np.ndarray):
        scalar = value.item() if value.size == 1 else None
        return "array", str(value.dtype), value.shape, scalar
    if isinstance(value, (bool, int, float, np.number)):
        return type(value).__name__, str(np.asarray(value).dtype), (), value
    if isinstance(value, tuple):
        return "tuple", None, (len(value),), None
    return type(value).__name__, None, None, None


def params(pattern, block="run", net=None):
    """The arguments the kernels of the matching code objects get, with their values now.

    Returns
    -------
    Table
        Columns: code object, parameter, type, dtype, shape, value (for
        single numbers).
    """
    rows = []
    for codeobj in _matching(pattern, net):
        compiled = _block(codeobj, block)
        for name, value in zip(compiled.parameters, compiled.args, strict=False):
            rows.append((codeobj.name, name, *_value(value)))
    return Table(["code object", "parameter", "type", "dtype", "shape", "value"], rows)


def namespace(pattern, net=None):
    """Everything the matching code objects bind, under its generated name.

    Returns
    -------
    Table
        Columns: code object, name, type, dtype, shape, value.
    """
    rows = []
    for codeobj in _matching(pattern, net):
        for name, value in sorted(codeobj.namespace.items()):
            rows.append((codeobj.name, name, *_value(value)))
    return Table(["code object", "name", "type", "dtype", "shape", "value"], rows)


def override(pattern, new_source, block="run", net=None):
    """Use ``new_source`` instead of the generated source, from the next ``run()`` on.

    The source is checked against each matching code object of the network
    first: it must define ``main`` with parameters the code object can bind,
    and compile for the arguments it gets now. Then it replaces ``block`` of
    every code object (of any network) whose name matches ``pattern``, until
    :func:`revert`. Like generated code, it is cached by content.

    Raises
    ------
    KeyError
        If no code object of the network matches.
    ValueError
        If the source has a syntax error, defines no ``main``, needs an
        argument the code object does not have, or does not compile.
    """
    code = tidy(new_source)
    for codeobj in _matching(pattern, net):
        where = f"The source given for '{block}' of code object '{codeobj.name}'"
        try:
            module = load_module(code)
        except SyntaxError as exc:
            raise ValueError(f"{where} has a syntax error: {exc}") from exc
        if not hasattr(module, "main"):
            raise ValueError(f"{where} defines no function 'main' ({module.__file__}).")
        try:
            compiled = _CompiledBlock(module, codeobj.namespace)
        except KeyError as exc:
            raise ValueError(f"{where} does not fit the code object: {exc.args[0]}") from None
        if isinstance(compiled.main, numba.core.dispatcher.Dispatcher):
            try:
                compiled.main.compile(tuple(numba.typeof(arg) for arg in compiled.args))
            except NumbaError as exc:
                raise ValueError(f"{where} does not compile for its arguments "
                                 f"({module.__file__}): {exc}") from exc
    set_override(pattern, block, code)


def revert(pattern=None):
    """Generated code again, from the next ``run()``, where ``override`` set another.

    Removes the overrides whose pattern matches ``pattern`` (all if None) and
    returns how many it removed.
    """
    return len(remove_overrides(pattern))
