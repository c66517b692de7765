"""Preferences of the ``numba`` target (``prefs.codegen.runtime.numba.*``).

Registered once, on import of :mod:`brian2_numba`. All values are plain
str/int/bool/None, so that Brian's test runner can forward them to xdist workers.

.. document_brian_prefs:: codegen.runtime.numba
"""

import os

from brian2.core.preferences import BrianPreference, prefs

__all__ = ["register_preferences"]


def _is_optional_str(value):
    return value is None or isinstance(value, str)


def _is_thread_count(value):
    return value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


def _environment_int(name, default):
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    return value if value == "auto" else int(value)


def register_preferences():
    """Register the ``codegen.runtime.numba`` category (idempotent).

    Called on import of :mod:`brian2_numba`.
    """
    if "codegen.runtime.numba.cache_dir" in prefs:
        return
    prefs.register_preferences(
        "codegen.runtime.numba",
        "Numba runtime code generation preferences",
        cache_dir=BrianPreference(
            default=None,
            validator=_is_optional_str,
            docs="""
            Directory for the generated ``.py`` files and numba's compiled
            kernels. ``None`` (the default) means ``$NUMBA_CACHE_DIR/brian2-numba``
            if that environment variable is set, otherwise ``brian2-numba`` in
            the user's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache`` on
            Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on
            Windows). The directory is created private (mode 0700, files
            0600), and numba's compiled kernels go into its ``kernels``
            subdirectory. If it cannot be written, or is not private (a
            symbolic link, owned by another user, writable by others),
            kernels are compiled without a disk cache and a warning says why.
            """,
        ),
        cache=BrianPreference(
            default=True,
            docs="""
            Whether to cache compiled kernels on disk (in the ``kernels``
            subdirectory of ``cache_dir``). Without it, every new process
            compiles again.
            """,
        ),
        fastmath=BrianPreference(
            default=False,
            docs="""
            Whether to compile kernels with ``fastmath=True``. Faster for some
            models, but results are no longer bitwise identical to the other
            targets, and NaN/inf handling may change.
            """,
        ),
        error_model=BrianPreference(
            default="numpy",
            validator=lambda v: v in ("numpy", "python"),
            docs="""
            numba's error model. ``'numpy'`` (the default) behaves like the
            numpy target and C++: a float division by zero gives ``inf`` or
            ``nan`` and an integer division or modulo by zero gives 0, without
            an error. ``'python'`` raises ``ZeroDivisionError`` instead (as
            Cython does), at a small cost in speed.
            """,
        ),
        fused=BrianPreference(
            default=os.environ.get("BRIAN2_NUMBA_FUSED", "1").strip() != "0",
            docs="""
            Whether ``Network.run`` runs the whole simulation loop inside one
            generated, cached numba function that calls the kernels in
            Brian's schedule order (returning to Python only for network
            operations, reports, growing structures and Ctrl-C). ``False``
            runs Brian's own Python loop, which calls one kernel at a time.
            Networks that cannot be fused (see the INFO log) use Brian's loop
            either way. The environment variable ``BRIAN2_NUMBA_FUSED=0``
            makes ``False`` the default (for test runners that reset the
            preferences, such as ``brian2.test``).
            """,
        ),
        threads=BrianPreference(
            default=_environment_int("BRIAN2_NUMBA_THREADS", 1),
            validator=_is_thread_count,
            docs="""
            How many threads the kernels with enough work use: a number, or
            ``'auto'`` for the cores this process may run on. Results are the
            same for every thread count (see the user guide, "Threads").
            Kernels below ``parallel_threshold`` items, and kernels that draw
            random numbers, stay single-threaded. More than numba's
            ``NUMBA_NUM_THREADS`` is reduced to it, with a warning. The
            environment variable ``BRIAN2_NUMBA_THREADS`` sets the default.
            """,
        ),
        parallel_threshold=BrianPreference(
            default=_environment_int("BRIAN2_NUMBA_PARALLEL_THRESHOLD", 1_000_000),
            validator=lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            docs="""
            The least work for which a kernel runs in parallel when
            ``threads`` is above 1: its items (neurons, synapses, recorded
            indices) times the operations of its code (a function call counts
            ten). Starting a parallel
            region costs microseconds, more than small loops take; the
            default is where two threads started to pay on a 2-core machine
            (docs: Benchmarks, "Threads"). 0 makes every kernel that can be
            split parallel (for testing). The environment
            variable ``BRIAN2_NUMBA_PARALLEL_THRESHOLD`` sets the default.
            """,
        ),
        advisor=BrianPreference(
            default=os.environ.get("BRIAN2_NUMBA_ADVISOR", "1").strip() != "0",
            docs="""
            Whether the cost advisor logs its estimate before each ``run()``
            (one INFO line, logger ``brian2_numba.advisor``) and warns when
            another configuration (numpy, Cython, cpp_standalone, the fused
            loop or not) is predicted to be at least three times faster for
            that run, compilation included. ``brian2_numba.advise(net,
            duration)`` shows the estimates either way. The environment
            variable ``BRIAN2_NUMBA_ADVISOR=0`` makes ``False`` the default
            (``python -m brian2_numba.brian_suite`` sets it: Brian's tests
            check that their short runs log no warnings).
            """,
        ),
        run_once_fallback=BrianPreference(
            default=os.environ.get("BRIAN2_NUMBA_RUN_ONCE_FALLBACK", "1").strip() != "0",
            docs="""
            Whether code objects that run once, when created (setting
            variables with string expressions, reading them with string
            indices, creating synapses), run through Brian's numpy code
            object instead of a compiled kernel when their kernel is not
            cached and numpy is estimated to finish before the kernel would
            compile. Only code that numpy computes exactly as the kernel
            would qualifies (no random numbers, no ``exp``, ``log``, ...;
            see the design notes, "Run-once code objects"), so the results
            are the same either way. Code that runs every time step always
            compiles. The environment variable
            ``BRIAN2_NUMBA_RUN_ONCE_FALLBACK=0`` makes ``False`` the default.
            """,
        ),
        boundscheck=BrianPreference(
            default=False,
            docs="""
            Whether to check array bounds in kernels (slow, for debugging:
            an out-of-range index raises ``IndexError`` instead of reading or
            writing arbitrary memory).
            """,
        ),
    )
