"""The two ``@_numba.njit`` lines of generated code.

*Kernels* (what a code object calls) take their options from the
preferences; they are cached on disk by :mod:`brian2_numba.kernel_cache`,
not by numba's ``cache=True`` (which would choose its own directory and
trust whatever it finds there). *Helpers* (Brian's functions, random numbers,
buffer growth) are inlined into every kernel that calls them: numba then
types and optimises them as part of the kernel, with the kernel's options
(error model, fastmath), instead of compiling each helper separately in
every module, which made up about a third of the compile time of a model.
"""

from brian2.core.preferences import prefs

__all__ = ["numba_decorator", "HELPER_DECORATOR"]

HELPER_DECORATOR = '@_numba.njit(inline="always")'


def numba_decorator(inline=False, parallel=False):
    """The ``@_numba.njit(...)`` line for kernels, from the preferences.

    ``inline=True``: the same options for a kernel that another kernel
    inlines (numba IR inlining; see ``random_positions.py_``).
    ``parallel=True``: a kernel with a ``prange`` loop (see
    :mod:`brian2_numba.threads`).
    """
    options = ['inline="always"'] if inline else []
    if parallel:
        options.append("parallel=True")
    options += [
        "nogil=True",
        f"error_model={prefs['codegen.runtime.numba.error_model']!r}",
    ]
    if prefs["codegen.runtime.numba.fastmath"]:
        options.append("fastmath=True")
    if prefs["codegen.runtime.numba.boundscheck"]:
        options.append("boundscheck=True")
    return f"@_numba.njit({', '.join(options)})"
