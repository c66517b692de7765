"""pytest plugin for running Brian2's own test suite on the ``numba`` target.

Load it with ``-p brian2_numba.pytest_plugin`` (``python -m
brian2_numba.brian_suite`` does): pytest-xdist passes ``-p`` to its workers,
which are fresh processes that only import brian2 and would otherwise not
know the target. It also

* gives Brian's ``fake_randn`` test helper a numba implementation (it only
  has C++ and Cython ones), as Brian2CUDA does for its target;
* marks the tests that cannot pass on this target by design as strict
  ``xfail`` (``EXPECTED_FAILURES``, each with its reason and the exception
  it must fail with);
* checks ``test_random_values_fixed_seed_numbers`` (whose reference values
  are keyed by target name) against Cython's values: numba fills the same
  kind of buffers from numpy's generator, so it must draw the very same
  numbers;
* turns the cost advisor off (``BRIAN2_NUMBA_ADVISOR=0``; Brian's tests
  check that their short runs on a cold cache log no warnings);
* lets subprocesses started by tests (which run scripts that only import
  brian2) register the target too, through a ``sitecustomize`` on
  ``PYTHONPATH`` that imports brian2_numba right after brian2. A user's
  script would say ``import brian2_numba`` instead.
"""

import os
import sys
import tempfile

# Brian's tests check that their short, cold runs log no warnings: no cost
# advice there (read when the preferences are registered, on import)
os.environ.setdefault("BRIAN2_NUMBA_ADVISOR", "0")

import brian2_numba  # noqa: E402, F401  (registers the target in this process)

_FAKE_RANDN = '''
@_numba.njit
def randn(_vectorisation_idx):
    """Brian's fake_randn test helper: always 0.5."""
    return 0.5
'''

_SITECUSTOMIZE = '''
"""Written by brian2_numba's pytest plugin: import brian2_numba after brian2."""
import importlib.util
import sys


class _RegisterNumbaTarget:
    def find_spec(self, name, path=None, target=None):
        if name != "brian2":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_brian2 = spec.loader.exec_module

        def exec_module(module):
            exec_brian2(module)
            import brian2_numba  # noqa: F401

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _RegisterNumbaTarget())
'''


#: Brian tests that fail on the numba target by design: test id -> (reason,
#: (exception, type of its cause, text in the cause)). Only that failure
#: counts as expected; any other exception fails the test (strict xfail).
EXPECTED_FAILURES = {
    "test_functions.py::test_user_defined_function": (
        "the user function has only C++ and Cython implementations; with no "
        "numba implementation the target raises a clear NotImplementedError "
        "naming the function, by design",
        # Brian's run() wraps it: BrianObjectException from NotImplementedError
        ("BrianObjectException", NotImplementedError, "Cannot use function 'usersin'"),
    ),
}


def _expected_exception(name, cause_type, cause_text):
    """The ``raises=`` of an expected failure.

    With pytest >= 8.4, a ``RaisesExc`` that also checks the exception's
    cause; with older versions, the exception type alone.
    """
    import pytest
    from brian2.core import base

    exception_type = getattr(base, name)
    raises_exc = getattr(pytest, "RaisesExc", None)
    if raises_exc is None:
        return exception_type

    def caused_as_expected(exception):
        cause = exception.__cause__
        return isinstance(cause, cause_type) and cause_text in str(cause)

    return raises_exc(exception_type, check=caused_as_expected)


#: (test module, dict of reference random values keyed by configuration)
RANDOM_REFERENCE_VALUES = ("test_neurongroup.py", "_random_values")


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        for test_id, (reason, exception) in EXPECTED_FAILURES.items():
            if item.nodeid.endswith(test_id):
                item.add_marker(pytest.mark.xfail(
                    reason=reason, strict=True, raises=_expected_exception(*exception)))
        module_file, dict_name = RANDOM_REFERENCE_VALUES
        if item.nodeid.split("::")[0].endswith(module_file):
            reference = getattr(item.module, dict_name, {})
            cython = reference.get(("RuntimeDevice", "cython", None))
            if cython is not None:
                reference.setdefault(("RuntimeDevice", "numba", None), cython)


def _patch_fake_randn(conftest):
    fake_randn = getattr(conftest, "fake_randn", None)
    if fake_randn is not None and "numba" not in fake_randn.implementations:
        fake_randn.implementations.add_implementation("numba", code=_FAKE_RANDN)


def pytest_plugin_registered(plugin, manager):
    if getattr(plugin, "__name__", "") == "brian2.conftest":
        _patch_fake_randn(plugin)


_HOOK_DIR_VARIABLE = "BRIAN2_NUMBA_SITECUSTOMIZE_DIR"


def install_subprocess_hook():
    """Put the ``sitecustomize`` on ``PYTHONPATH`` of this process (and so of
    all its children: xdist workers and the subprocesses tests start).

    Idempotent; returns the directory if this call created it, else None.
    """
    if os.environ.get(_HOOK_DIR_VARIABLE):
        return None
    hook_dir = tempfile.mkdtemp(prefix="brian2_numba_sitecustomize_")
    with open(os.path.join(hook_dir, "sitecustomize.py"), "w") as f:
        f.write(_SITECUSTOMIZE)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = hook_dir + (os.pathsep + old if old else "")
    os.environ[_HOOK_DIR_VARIABLE] = hook_dir
    return hook_dir


def pytest_configure(config):
    if "brian2.conftest" in sys.modules:
        _patch_fake_randn(sys.modules["brian2.conftest"])
    config._brian2_numba_hook_dir = install_subprocess_hook()


def pytest_unconfigure(config):
    hook_dir = getattr(config, "_brian2_numba_hook_dir", None)
    if hook_dir:
        import shutil

        shutil.rmtree(hook_dir, ignore_errors=True)
