"""Which targets can run here, and if not, why (a missing compiler is not a crash).

The checks run in a child process (``python -m brian2_numba.bench.targets
TARGET...`` prints ``{target: reason or null}`` as JSON): Cython's check
compiles and imports a test extension, which is best kept out of the
benchmark's own process, in a throw-away cache directory.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

__all__ = ["TARGETS", "NUMBA_TARGETS", "STANDALONE_TARGETS", "unavailable"]

#: every target the benchmark knows, in report order; ``numba_per_object`` is
#: the numba target with Brian's own loop (``prefs.codegen.runtime.numba.fused
#: = False``), ``numba`` its default, the fused loop; the ``*_threads`` targets
#: are ``numba`` with ``prefs.codegen.runtime.numba.threads`` and
#: ``cpp_standalone`` with OpenMP (``openmp_threads``), both at ``--threads``
TARGETS = ("numpy", "cython", "numba", "numba_per_object", "numba_threads",
           "cpp_standalone", "cpp_standalone_threads")

#: the targets that run brian2_numba
NUMBA_TARGETS = ("numba", "numba_per_object", "numba_threads")

#: the targets that run Brian's cpp_standalone device
STANDALONE_TARGETS = ("cpp_standalone", "cpp_standalone_threads")


def _numba():
    try:
        import brian2_numba  # noqa: F401
    except Exception as exc:  # any import failure means: not usable
        return f"brian2_numba cannot be imported ({type(exc).__name__}: {exc})"


def _cython():
    try:
        import Cython  # noqa: F401
    except ImportError:
        return "Cython is not installed (pip install cython)"
    from brian2 import prefs
    from brian2.codegen.runtime.cython_rt import CythonCodeObject

    with tempfile.TemporaryDirectory() as cache:
        prefs.codegen.runtime.cython.cache_dir = cache
        if not CythonCodeObject.is_available():
            return ("Cython's test compilation failed: no working C compiler "
                    "(install gcc or clang, or set CC)")


def _cpp_standalone():
    from brian2 import prefs

    if sys.platform == "win32":
        from brian2.codegen.cpp_prefs import get_msvc_env

        try:
            get_msvc_env()
        except Exception as exc:  # no Visual Studio build tools
            return f"no MSVC compiler found ({exc})"
        return None
    make = prefs.devices.cpp_standalone.make_cmd_unix
    cxx = os.environ.get("CXX", "g++")  # what the generated makefile calls
    missing = [tool for tool in (make, cxx) if shutil.which(tool) is None]
    if missing:
        names = " and ".join(repr(tool) for tool in missing)
        return f"{names} not found (needs make and a C++ compiler)"


_CHECKS = {"numpy": lambda: None, "cython": _cython, "numba": _numba,
           "numba_per_object": _numba, "numba_threads": _numba,
           "cpp_standalone": _cpp_standalone, "cpp_standalone_threads": _cpp_standalone}


def unavailable(targets, timeout=600):
    """``{target: reason}`` for each of ``targets`` that cannot run here."""
    proc = subprocess.run([sys.executable, "-m", __name__, *targets],
                          capture_output=True, text=True, timeout=timeout)
    try:
        found = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = proc.stderr.strip()[-500:]
        return {t: f"the availability check failed: {tail}" for t in targets}
    return {t: reason for t, reason in found.items() if reason}


if __name__ == "__main__":
    results = {}
    for name in sys.argv[1:]:
        try:
            results[name] = _CHECKS[name]()
        except Exception as exc:  # a broken check must not hide the others
            results[name] = f"check failed ({type(exc).__name__}: {exc})"
    print(json.dumps(results))
