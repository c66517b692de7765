"""Shared fixtures: every test gets the numba target and its own cache directory.

Brian's own fixture (``brian2.conftest.setup_and_teardown``) sets the
preferences and the device before each test, from the defaults with the
target 'numba' (Brian's ``PreferencePlugin``, as in ``brian2.test``), so no
test sees another's preferences.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from brian2 import prefs
from brian2.conftest import setup_and_teardown  # noqa: F401  (autouse, see numba_target)
from brian2.devices import reinit_devices

from brian2_numba.compat import preference_plugin


def pytest_configure(config):
    """Every test starts from Brian's default preferences, with target 'numba'."""
    prefs.reset_to_defaults()
    prefs.codegen.target = "numba"
    config.pluginmanager.register(preference_plugin(dict(prefs)), "brian2_numba_prefs")


@pytest.fixture(autouse=True)
def numba_target(setup_and_teardown, tmp_path):  # noqa: F811  (Brian's fixture first)
    """A fresh cache directory (the returned path); devices reset afterwards."""
    prefs.codegen.runtime.numba.cache_dir = str(tmp_path / "cache")
    yield tmp_path / "cache"
    reinit_devices()


def script_env(unset=(), **extra):
    """Environment for test subprocesses: this process's, changed as asked.

    It is passed on as it is (``NUMBA_CACHE_DIR`` and
    ``PYTHONDONTWRITEBYTECODE`` included), so that the cache tests run in
    whatever set-up CI chose; ``unset`` removes variables, ``extra`` sets them.
    """
    env = dict(os.environ, **extra)
    for name in unset:
        env.pop(name, None)
    return env


def run_script(code, cache_dir, *args, env=None, unset=(), prefix=(), timeout=600):
    """Run ``code`` in a fresh Python process (cache dir passed as argv[1]).

    ``prefix`` is a command to run it under (e.g. as another user).
    """
    result = subprocess.run(
        [*prefix, sys.executable, "-c", textwrap.dedent(code), str(cache_dir),
         *map(str, args)],
        capture_output=True,
        text=True,
        env=script_env(unset, **(env or {})),
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _works(prefix):
    try:
        done = subprocess.run(prefix + [sys.executable, "-c", "import brian2_numba"],
                              capture_output=True, cwd="/", timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def unprivileged_prefix():
    """A command prefix under which file permissions are enforced, or None.

    ``[]`` for a normal user. For root: a user namespace in which this
    process's files look like the user's own but no capability bypasses
    their modes (``unshare --user``), else the user 'nobody' if it can run
    this Python.
    """
    if not hasattr(os, "geteuid"):
        return None
    if os.geteuid() != 0:
        return []
    for prefix in (
        ["unshare", "--user", "--map-user=1000", "--map-group=1000"],
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
    ):
        if shutil.which(prefix[0]) and _works(prefix):
            return prefix
    return None


# A small model with state update, threshold, reset, synapses and a monitor;
# prints the spikes and numba's cache statistics as JSON (cache dir: argv[1],
# or the default location if argv[1] is '-').
CACHE_MODEL = """
import json, sys
import brian2_numba
from brian2 import *
prefs.codegen.target = 'numba'
if sys.argv[1] != '-':
    prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
G = NeuronGroup(5, 'dv/dt = (2 - v)/(10*ms) : 1', threshold='v > 1', reset='v = 0',
                method='exact')
G.v = 'i * 0.2'
S = Synapses(G, G, 'w : 1', on_pre='v += w')
S.connect(j='(i + 1) % 5')
S.w = 0.1
M = SpikeMonitor(G)
run(20*ms)
print(json.dumps({"i": M.i[:].tolist(), "t": (M.t / ms).tolist(),
                  "stats": brian2_numba.cache_stats(),
                  "cache_dir": brian2_numba.cache.configured_cache_directory()}))
"""


def run_cache_model(cache_dir, **kwds):
    """Run CACHE_MODEL in a new process; returns (its JSON output, its stderr)."""
    import json

    result = run_script(CACHE_MODEL, cache_dir, **kwds)
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr
