"""Run Brian2's own test suite on the ``numba`` target.

    python -m brian2_numba.brian_suite [-n WORKERS] [--long] [--per-object] [--threads N]
                                       [--no-run-once-fallback] [-- PYTEST_ARGS...]

or, from Python, ``brian2_numba.test()`` (like ``brian2cuda.test()``).

Runs ``brian2.test('numba', test_codegen_independent=False, ...)``: every test
that Brian runs for each code generation target, with this package loaded in
every pytest-xdist worker (``-p brian2_numba.pytest_plugin``). pytest prints
the counts; the exit status is 0 if no test failed. ``--per-object`` runs it
with ``prefs.codegen.runtime.numba.fused = False`` (Brian's own loop).
``--threads N`` runs it with ``threads = N`` and ``parallel_threshold = 0``,
so that every kernel that can run in parallel does (Brian's test networks
are small). ``--no-run-once-fallback`` compiles every run-once code object
(``run_once_fallback = False``): with the fallback on, as users get it, many
of Brian's tests set and read variables through numpy on the cold cache.
"""

import argparse
import os
import shutil
import subprocess
import sys

__all__ = ["test", "main"]

#: read when the preferences are registered (see brian2_numba.preferences)
FUSED_DEFAULT_VARIABLE = "BRIAN2_NUMBA_FUSED"
THREADS_DEFAULT_VARIABLE = "BRIAN2_NUMBA_THREADS"
THRESHOLD_DEFAULT_VARIABLE = "BRIAN2_NUMBA_PARALLEL_THRESHOLD"
RUN_ONCE_FALLBACK_DEFAULT_VARIABLE = "BRIAN2_NUMBA_RUN_ONCE_FALLBACK"
#: the same for the cost advisor: off in Brian's suite, whose tests check that
#: their (short, cold) runs log no warnings
ADVISOR_DEFAULT_VARIABLE = "BRIAN2_NUMBA_ADVISOR"


def test(long_tests=False, per_object=False, workers="auto", additional_args=(),
         threads=1, run_once_fallback=True):
    """Run Brian2's test suite on the ``numba`` target, like ``brian2cuda.test()``.

    The suite runs in a new Python process (``python -m
    brian2_numba.brian_suite``), so it starts from Brian's default
    preferences and leaves this process's untouched. Needs pytest and
    pytest-xdist (the ``test`` extra).

    Parameters
    ----------
    long_tests : bool, optional
        Also run Brian's tests marked ``long`` (about 2 more minutes).
    per_object : bool, optional
        Run with Brian's own loop (``codegen.runtime.numba.fused = False``)
        instead of the fused loop.
    workers : int or str, optional
        pytest-xdist workers: a number, ``'auto'`` (the default), or 0 to
        run in one process.
    additional_args : sequence of str, optional
        More pytest arguments, e.g. ``['-k', 'monitor']``.
    threads : int, optional
        Run with ``codegen.runtime.numba.threads = threads`` and every kernel
        that can be parallel made parallel (``parallel_threshold = 0``).
    run_once_fallback : bool, optional
        ``False``: compile every run-once code object
        (``codegen.runtime.numba.run_once_fallback = False``), so that
        Brian's tests run the numba versions of the templates that set and
        read variables and create synapses.

    Returns
    -------
    success : bool
        Whether no test failed.

    Examples
    --------
    >>> import brian2_numba
    >>> brian2_numba.test(additional_args=['-k', 'test_spikemonitor'])  # doctest: +SKIP
    """
    command = [sys.executable, "-m", "brian2_numba.brian_suite", "-n", str(workers)]
    if long_tests:
        command.append("--long")
    if per_object:
        command.append("--per-object")
    if threads != 1:
        command += ["--threads", str(threads)]
    if not run_once_fallback:
        command.append("--no-run-once-fallback")
    if additional_args:
        command += ["--", *additional_args]
    return subprocess.call(command) == 0


def main(argv=None):
    """``python -m brian2_numba.brian_suite``: returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--workers", default="auto",
                        help="pytest-xdist workers ('auto', or 0 for none)")
    parser.add_argument("--long", action="store_true", help="include long tests")
    parser.add_argument("--per-object", action="store_true",
                        help="Brian's per-object loop instead of the fused loop")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per kernel (every kernel that can be parallel is)")
    parser.add_argument("--no-run-once-fallback", action="store_true",
                        help="compile every run-once code object (no numpy fallback)")
    parser.add_argument("pytest_args", nargs="*",
                        help="extra pytest arguments (after --), e.g. -k monitor")
    options = parser.parse_args(argv)

    # brian2.test resets the preferences to their defaults, in this process
    # and its workers, so the modes are defaults, read from the environment
    # when brian2_numba registers its preferences; `python -m` imported it
    # already, so a new process starts with them
    # (the advisor would warn that numpy runs Brian's tiny tests faster, and
    # Brian's tests check that they log no warnings)
    defaults = {ADVISOR_DEFAULT_VARIABLE: "0"}
    if options.per_object:
        defaults[FUSED_DEFAULT_VARIABLE] = "0"
    if options.threads != 1:
        defaults[THREADS_DEFAULT_VARIABLE] = str(options.threads)
        defaults[THRESHOLD_DEFAULT_VARIABLE] = "0"
    if options.no_run_once_fallback:
        defaults[RUN_ONCE_FALLBACK_DEFAULT_VARIABLE] = "0"
    if any(os.environ.get(name) != value for name, value in defaults.items()):
        arguments = sys.argv[1:] if argv is None else list(argv)
        return subprocess.call([sys.executable, "-m", "brian2_numba.brian_suite", *arguments],
                               env=dict(os.environ, **defaults))


    import brian2

    import brian2_numba  # noqa: F401
    from brian2_numba.pytest_plugin import install_subprocess_hook

    # before any worker starts, so that every process of the run inherits it
    hook_dir = install_subprocess_hook()

    # -rsx: list every skip and expected failure with its reason
    additional = ["-p", "brian2_numba.pytest_plugin", "-p", "no:cacheprovider", "-rsx"]
    if options.workers not in ("0", 0):
        additional += ["-n", str(options.workers)]
    additional += options.pytest_args
    mode = "per-object loop" if options.per_object else "fused loop"
    if options.threads != 1:
        mode += f", {options.threads} threads"
    if options.no_run_once_fallback:
        mode += ", no run-once fallback"
    print(f"Brian2 {brian2.__version__}, numba target, {mode}, "
          f"cache: {brian2_numba.cache.configured_cache_directory()}", flush=True)
    success = brian2.test(
        "numba",
        long_tests=options.long,
        test_codegen_independent=False,
        test_standalone=None,
        test_in_parallel=[],
        additional_args=additional,
    )
    if hook_dir:
        shutil.rmtree(hook_dir, ignore_errors=True)
    return 0 if success else 1


if __name__ == "__main__":
    sys.exit(main())
