"""``NumbaCodeGenerator``: Brian's abstract code as scalar Python loops for numba.

Mirrors Brian's Cython generator (read arrays, compute, write arrays, per
index), not the vectorised numpy one, because numba compiles explicit loops
best. The output is plain Python syntax, so Brian's base ``NodeRenderer`` is
already right: numba follows Python semantics for ``%`` and ``//``.

Everything a kernel needs from Brian's namespace becomes a kernel *argument*
(``kernel_args``): numba freezes module globals into the compiled (and
cached) code, so a value that can change between runs must never be a
global.
"""

import ast
import copy
import itertools

from brian2.codegen.generators.base import CodeGenerator
from brian2.codegen.translation import get_identifiers_recursively
from brian2.core.functions import DEFAULT_FUNCTIONS, Function
from brian2.core.variables import (
    ArrayVariable,
    AuxiliaryVariable,
    Constant,
    Subexpression,
)
from brian2.parsing.bast import brian_dtype_from_dtype
from brian2.parsing.rendering import NodeRenderer
from brian2.utils.stringtools import deindent, indent, word_substitute

from .diagnostics import check_source_syntax
from .functions import python_function_source
from .random_numbers import BUFFER_POSITIONS, code_for_template
from .threads import (
    THREAD_COUNT_ARGUMENT,
    operation_count,
    parallel_partition,
    partition_of,
)

__all__ = ["NumbaCodeGenerator", "NumbaNodeRenderer"]


class NumbaNodeRenderer(NodeRenderer):
    """Python syntax, plus the namespace arrays of functions as trailing arguments.

    A numba implementation cannot read arrays from globals (they would be
    frozen), so a function whose implementation has a namespace (e.g. the
    random number buffers of ``rand``) gets its namespace entries appended to
    every call: ``rand(_vectorisation_idx)`` becomes
    ``_rand(_vectorisation_idx, _rand_buffer, _rand_buffer_index)``.
    """

    def __init__(self, auto_vectorise=None, trailing_args=None, fold_exp_powers=False):
        super().__init__(auto_vectorise=auto_vectorise)
        self.trailing_args = trailing_args or {}
        self.fold_exp_powers = fold_exp_powers

    def render_BinOp(self, node):
        """``exp(a) ** b`` as ``exp(a * b)`` (with ``fold_exp_powers``).

        Brian's loop-invariant optimisation turns ``exp(-v/(18*mV))`` into
        ``exp(_lio_5 * v) ** 0.0555...``; a power costs three times an
        exponential here, and the C++ compilers of Brian's other targets undo
        it (``-ffast-math``). Since ``exp(a) > 0``, both are equal for every
        real ``b``; the folded form rounds once, and stays finite where
        ``exp(a)`` alone overflows or underflows.
        """
        if (self.fold_exp_powers and isinstance(node.op, ast.Pow)
                and isinstance(node.left, ast.Call) and isinstance(node.left.func, ast.Name)
                and node.left.func.id == "exp" and len(node.left.args) == 1
                and not node.left.keywords):
            product = ast.BinOp(left=node.left.args[0], op=ast.Mult(), right=node.right)
            return self.render_Call(ast.Call(func=node.left.func, args=[product], keywords=[]))
        return super().render_BinOp(node)

    def render_Call(self, node):
        code = super().render_Call(node)
        extra = self.trailing_args.get(node.func.id)
        if extra:
            head = code[:-1]  # without the closing parenthesis
            separator = "" if head.endswith("(") else ", "
            code = f"{head}{separator}{', '.join(extra)})"
        return code


class NumbaCodeGenerator(CodeGenerator):
    """Generates the bodies of ``@numba.njit`` kernels (see module docstring)."""

    class_name = "numba"

    def __init__(self, *args, **kwds):
        super().__init__(*args, **kwds)
        #: function name in code -> names of its namespace entries (trailing args)
        self.trailing_args = {}
        self._support_code = []
        self._kernel_args = []
        self._vector_reads, self._vector_writes = set(), set()
        self._vector_operations = 0
        self._collect_functions()

    # -- functions ---------------------------------------------------------

    def _collect_functions(self):
        """Gather support code and namespace arguments of all used functions.

        Done up front, because the trailing arguments must be known when the
        statements are rendered.
        """
        added = set()
        for varname, var in sorted(self.variables.items()):
            if isinstance(var, Function):
                self._add_function(varname, var, added)

    def _add_function(self, varname, func, added):
        """Add ``func`` (and, first, its dependencies); return its namespace keys."""
        impl = func.implementations[self.codeobj_class]
        code_name = impl.name if impl.name is not None else varname
        if (code_name, func) in added:
            return self.trailing_args.get(code_name, [])
        added.add((code_name, func))
        namespace_keys = []
        for dep_name, dep in (impl.dependencies or {}).items():
            for key in self._add_function(dep_name, dep, added):
                if key not in namespace_keys:
                    namespace_keys.append(key)
        func_namespace = impl.get_namespace(self.owner) or {}
        for key in sorted(func_namespace):
            if key not in namespace_keys:
                namespace_keys.append(key)
        for key in namespace_keys:
            if key not in self._kernel_args:
                self._kernel_args.append(key)
        if namespace_keys:
            self.trailing_args[code_name] = namespace_keys
        code = impl.get_code(self.owner)
        if code is None:
            pass  # available under its own (or its implementation's) name
        elif isinstance(code, str):
            for dep_name, dep in (impl.dependencies or {}).items():
                dep_impl_name = dep.implementations[self.codeobj_class].name
                if dep_impl_name is not None and dep_impl_name != dep_name:
                    code = word_substitute(code, {dep_name: dep_impl_name})
            code = code_for_template(deindent(code).strip(), self.template_name)
            if code not in self._support_code:
                check_source_syntax(code, varname)
                self._support_code.append(code)
        elif callable(code):
            source = python_function_source(code, code_name)
            if source not in self._support_code:
                self._support_code.append(source)
        else:
            raise TypeError(
                f"The numba implementation of function '{varname}' must be "
                "numba-compatible Python source code (a string) or a Python "
                f"function, not {type(code).__name__}."
            )
        return namespace_keys

    # -- aliases -------------------------------------------------------------

    def translate(self, code, dtype):
        """Canonicalise aliases first, then translate as Brian's generators do.

        A scalar loop keeps one local per name, so two names for one array
        element (``v`` and ``v_post``, ``x_pre`` and the ``_y_pre_..._x``
        inside the referred subexpression ``y_pre``) would read stale values
        and lose writes. Renaming before ``make_statements`` also lets it see
        that a subexpression depends on a variable written under another name.
        """
        substitutions = self._alias_substitutions(code)
        if substitutions:
            code = {
                block: word_substitute(block_code, substitutions)
                for block, block_code in code.items()
            }
            self.variables = self._substituted_variables(substitutions)
        return super().translate(code, dtype)

    def _alias_substitutions(self, code):
        """Alias name -> canonical name, for names that are the same array element.

        Names are aliases when they refer to the same writable ``Variable``
        with the same index. Only groups of which the code uses two or more
        names are renamed, so code without aliasing is generated unchanged.
        The canonical name is the variable's own name if it is one of them
        (the name of a conditional-write condition, e.g. ``not_refractory``),
        else the shortest without a leading underscore.
        """
        groups = {}
        for name, var in self.variables.items():
            if isinstance(var, ArrayVariable) and not var.read_only:
                key = (id(var), self.variable_indices[name])
                groups.setdefault(key, []).append(name)
        groups = [names for names in groups.values() if len(names) > 1]
        if not groups:
            return {}
        used = get_identifiers_recursively(list(code.values()), self.variables)
        # the condition of a conditional write is read under its own name
        used |= set(self.get_conditional_write_vars().values())
        substitutions = {}
        for names in groups:
            if len(used.intersection(names)) < 2:
                continue
            own_name = self.variables[names[0]].name
            canonical = min(
                names,
                key=lambda n: (n != own_name, n.startswith("_"), len(n), n),
            )
            for name in names:
                if name != canonical:
                    substitutions[name] = canonical
        return substitutions

    def _substituted_variables(self, substitutions):
        """A copy of ``variables`` whose subexpressions use the canonical names."""
        variables = dict(self.variables)
        for name, var in self.variables.items():
            if isinstance(var, Subexpression) and substitutions.keys() & set(
                var.identifiers
            ):
                var = copy.copy(var)  # the code object keeps the original
                var.expr = word_substitute(var.expr, substitutions)
                var.identifiers = {substitutions.get(i, i) for i in var.identifiers}
                variables[name] = var
        return variables

    # -- expressions and statements ----------------------------------------

    def translate_expression(self, expr):
        expr = word_substitute(expr, self.func_name_replacements)
        renderer = NumbaNodeRenderer(
            auto_vectorise=self.auto_vectorise, trailing_args=self.trailing_args,
            # only Brian's own exp (Brian resolves the name to it even when a
            # namespace defines another; this keeps the fold safe if that changes)
            fold_exp_powers=self.variables.get("exp") is DEFAULT_FUNCTIONS["exp"],
        )
        return renderer.render_expr(expr).strip()

    def translate_statement(self, statement):
        var, op, expr, comment = (
            statement.var,
            statement.op,
            statement.expr,
            statement.comment,
        )
        if op == ":=":
            op = "="
        boolvars = statement.used_boolean_variables
        if (
            boolvars
            and brian_dtype_from_dtype(statement.dtype) == "float"
            and statement.boolean_simplified_expressions
        ):
            # Like Cython: one simplified expression per combination of the
            # boolean variables, so that e.g. refractoriness does not need to
            # evaluate the full expression.
            lines = []
            for n, (assignments, simplified) in enumerate(
                statement.boolean_simplified_expressions.items()
            ):
                condition = " and ".join(
                    name if value else f"not {name}" for name, value in assignments
                )
                if n == 0:
                    keyword = f"if {condition}:"
                elif len(boolvars) > 1:
                    keyword = f"elif {condition}:"
                else:
                    keyword = "else:"
                lines.append(keyword)
                lines.append(
                    indent(f"{var} {op} {self.translate_expression(simplified)}")
                )
            code = "\n".join(lines)
        else:
            code = f"{var} {op} {self.translate_expression(expr)}"
        if comment:
            code += f"  # {comment}"
        return code

    def translate_to_read_arrays(self, read, indices):
        lines = []
        for varname in itertools.chain(sorted(indices), sorted(read)):
            var = self.variables[varname]
            index = self.variable_indices[varname]
            lines.append(f"{varname} = {self.get_array_name(var)}[{index}]")
        return lines

    def translate_to_statements(self, statements, conditional_write_vars):
        lines = []
        for stmt in statements:
            line = self.translate_statement(stmt)
            if stmt.var in conditional_write_vars:
                lines.append(f"if {conditional_write_vars[stmt.var]}:")
                lines.append(indent(line))
            else:
                lines.append(line)
        return lines

    def translate_to_write_arrays(self, write):
        lines = []
        for varname in sorted(write):
            var = self.variables[varname]
            index = self.variable_indices[varname]
            lines.append(f"{self.get_array_name(var)}[{index}] = {varname}")
        return lines

    def translate_one_statement_sequence(self, statements, scalar=False):
        read, write, indices, cond_write = self.arrays_helper(statements)
        return (
            self.translate_to_read_arrays(read, indices)
            + self.translate_to_statements(statements, cond_write)
            + self.translate_to_write_arrays(write)
        )

    def translate_statement_sequence(self, sc_statements, ve_statements):
        # As in Cython: scalar values that the vector code only reads are
        # loaded once, in the scalar code, instead of once per index.
        scalar_code, vector_code = {}, {}
        for block in sc_statements:
            sc_read, sc_write, sc_indices, sc_cond = self.arrays_helper(
                sc_statements[block]
            )
            ve_read, ve_write, ve_indices, ve_cond = self.arrays_helper(
                ve_statements[block]
            )
            for varname in set(ve_read):
                if self.variables[varname].scalar and varname not in ve_write:
                    sc_read.add(varname)
                    ve_read.remove(varname)
            self._vector_reads |= set(ve_read) | set(ve_indices)
            self._vector_writes |= set(ve_write)
            for code, stmts, read, write, indices, cond in [
                (scalar_code, sc_statements[block], sc_read, sc_write, sc_indices, sc_cond),
                (vector_code, ve_statements[block], ve_read, ve_write, ve_indices, ve_cond),
            ]:
                statements = self.translate_to_statements(stmts, cond)
                lines = (
                    self.translate_to_read_arrays(read, indices)
                    + statements
                    + self.translate_to_write_arrays(write)
                )
                code[block] = "\n".join(lines)
            # what each item costs, after the loop invariants moved out
            self._vector_operations += sum(map(operation_count, statements))
        return scalar_code, vector_code, self.determine_keywords()

    # -- keywords for the templates ----------------------------------------

    def _parallel_keywords(self):
        """``parallel``: the partition of a parallel kernel, or ``None`` (see threads)."""
        partition, reads_written = partition_of(
            self._vector_reads,
            self._vector_writes,
            array_of=lambda name: self.get_array_name(self.variables[name]),
            index_of=lambda name: self.variable_indices[name],
            scalar=lambda name: self.variables[name].scalar,
            draws_random_numbers=any(p in self._kernel_args for p in BUFFER_POSITIONS),
        )
        partition = parallel_partition(
            self.template_name, self.owner, self.variables, partition, reads_written,
            self._vector_operations,
        )
        if partition is None or partition == "_idx":
            key = "_idx"
        else:  # the index array, e.g. _synaptic_post for _postsynaptic_idx
            key = f"{self.get_array_name(self.variables[partition])}[_idx]"
        return {"parallel": partition is not None, "partition_key": key}

    def determine_keywords(self):
        """``kernel_args`` (sorted, unique), ``support_code``, ``template_name``, ``parallel``."""
        parallel = self._parallel_keywords()
        args = set(self._kernel_args)
        if parallel["parallel"]:
            args.add(THREAD_COUNT_ARGUMENT)
        for varname, var in self.variables.items():
            if isinstance(var, (AuxiliaryVariable, Subexpression, Function)):
                continue
            if isinstance(var, Constant):
                args.add(varname)
            elif isinstance(var, ArrayVariable):
                args.add(self.get_array_name(var))
                if var.scalar and var.constant:
                    args.add(varname)
        return {
            "kernel_args": sorted(args),
            "support_code": "\n\n\n".join(self._support_code),
            "template_name": self.template_name,
            **parallel,
        }
