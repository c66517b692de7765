"""Which function implementation a numba compilation error is about.

numba reports a typing error where it notices it, which for a user function
that returns the wrong type is the kernel line storing the result, and its
message never says which of Brian's functions was involved. After a failed
compilation (only then: nothing here runs in a normal time step) these
helpers look at what numba did compile and where its message points, to
name the function: ``"The numba implementation of function 'usersin'
returns unicode_type ..."``.
"""

import ast
import os
import re

from brian2.core.functions import Function
from numba import types
from numba.core.dispatcher import Dispatcher

from .compat import function_return_type

__all__ = ["implementation_names", "function_at_fault", "check_source_syntax"]

#: numba's references to source lines: 'File "x.py", line 5:' and '... at /a/x.py (5)'
_LOCATIONS = re.compile(r'File "([^"]+)", line (\d+):|\bat (\S+\.py) \((\d+)\)')

#: what Brian's return types may be in compiled code (numba casts between them)
_SCALARS = (types.Integer, types.Float, types.Boolean)

_EXPECTED = {"float": "a float", "integer": "an integer", "boolean": "a boolean"}


def check_source_syntax(code, name):
    """Raise a ``SyntaxError`` naming function ``name`` if ``code`` is not Python.

    Checked when the implementation's source is pasted into a module, so
    that the error names the function rather than only the generated file.
    """
    try:
        compile(code, f"<numba implementation of '{name}'>", "exec")
    except SyntaxError as exc:
        text = (exc.text or "").strip()
        raise SyntaxError(
            f"The numba implementation of function '{name}' is not valid Python: "
            f"{exc.msg} (line {exc.lineno} of its source: {text!r})."
        ) from exc


def implementation_names(variables, codeobj_class):
    """``{name in generated code: (Brian's name, Function)}`` of the functions used.

    Dependencies (e.g. ``_rand`` of ``poisson``) are included.
    """
    names = {}

    def add(brian_name, func):
        impl = func.implementations[codeobj_class]
        code_name = impl.name if impl.name is not None else brian_name
        if code_name in names:
            return
        names[code_name] = (brian_name, func)
        for dep_name, dep in (impl.dependencies or {}).items():
            add(dep_name, dep)

    for name, var in sorted(variables.items()):
        if isinstance(var, Function):
            try:
                add(name, var)
            except KeyError:  # no numba implementation: reported elsewhere
                continue
    return names


def function_at_fault(exc, module_globals, path, functions):
    """A sentence naming the function behind numba error ``exc``, or None.

    Parameters
    ----------
    exc : numba.core.errors.NumbaError
        The error that compiling the module's kernel raised.
    module_globals : dict
        The generated module's namespace (its compiled functions).
    path : str
        The generated module's file, whose line numbers numba's message uses.
    functions : dict
        ``implementation_names`` of the code object.

    Returns
    -------
    str or None
        ``"The numba implementation of function 'f' ..."``, without a final
        full stop, or None if no function implementation is to blame.
    """
    for code_name, (brian_name, func) in functions.items():
        compiled = module_globals.get(code_name)
        if compiled is None:
            continue
        prefix = f"The numba implementation of function '{brian_name}'"
        if not isinstance(compiled, Dispatcher):
            if callable(compiled) and re.search(rf"\b{re.escape(code_name)}\b", str(exc)):
                return (f"{prefix} is not compiled by numba (decorate it with "
                        "@_numba.njit)")
            continue
        for signature in compiled.nopython_signatures:
            if not isinstance(signature.return_type, _SCALARS):
                expected = _EXPECTED.get(function_return_type(func), "a number")
                arguments = ", ".join(str(arg) for arg in signature.args)
                returned = types.unliteral(signature.return_type)
                return (f"{prefix} returns {returned} for arguments ({arguments}), "
                        f"where Brian expects {expected}")
    line = _line_in_function(str(exc), path, _function_lines(path, functions))
    if line is not None:
        code_name, number = line
        return (f"The numba implementation of function '{functions[code_name][0]}' "
                f"does not compile (line {number} of the generated code)")
    return None


def _function_lines(path, functions):
    """``[(first line, last line, name in code)]`` of the functions in the file."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return []
    spans = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in functions:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            spans.append((first, node.end_lineno, node.name))
    return spans


def _line_in_function(message, path, spans):
    """The first (innermost) line in a function that numba's message points to."""
    base = os.path.basename(path)
    for match in _LOCATIONS.finditer(message):
        file, number = (match.group(1), match.group(2)) if match.group(1) else (
            match.group(3), match.group(4))
        if os.path.basename(file) != base:
            continue
        number = int(number)
        for first, last, name in spans:
            if first <= number <= last:
                return name, number
    return None
