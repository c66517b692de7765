"""Shared fixtures: every test gets the numba target and its own cache directory."""

import os
import subprocess
import sys
import textwrap

import pytest

import brian2_numba  # noqa: F401
from brian2 import prefs, set_device
from brian2.devices import reinit_devices


@pytest.fixture(autouse=True)
def numba_target(tmp_path):
    """Target 'numba' with a fresh cache directory; preferences restored after."""
    prefs._backup()
    set_device("runtime")
    prefs.codegen.target = "numba"
    prefs.codegen.runtime.numba.cache_dir = str(tmp_path / "cache")
    yield tmp_path / "cache"
    prefs._restore()
    reinit_devices()


def script_env(**extra):
    """Environment for test subprocesses.

    numba stores compiled kernels next to the generated files, unless
    NUMBA_CACHE_DIR points elsewhere: keep them together for the tests.
    """
    return dict(os.environ, NUMBA_CACHE_DIR="", **extra)


def run_script(code, cache_dir, *args, env=None, timeout=600):
    """Run ``code`` in a fresh Python process (cache dir passed as argv[1])."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(cache_dir), *map(str, args)],
        capture_output=True,
        text=True,
        env=script_env(**(env or {})),
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result
