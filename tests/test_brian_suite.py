"""``python -m brian2_numba.brian_suite``: its modes reach the tests it runs.

Brian's test runner resets the preferences to their defaults in every
process, so the modes are defaults read from the environment; these tests
check that the generated code shows the mode.
"""

import glob
import os
import subprocess
import sys

import pytest
from conftest import script_env


def _suite(cache_dir, *options):
    """Brian's state monitor tests on 'numba' with ``options``: the generated files' text."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "brian2_numba.brian_suite", "-n", "0", *options,
         "--", "-k", "test_state_monitor"],
        capture_output=True, text=True, cwd=cache_dir, timeout=900,
        env=script_env(unset=["BRIAN2_NUMBA_FUSED", "BRIAN2_NUMBA_THREADS",
                              "BRIAN2_NUMBA_PARALLEL_THRESHOLD",
                              "BRIAN2_NUMBA_RUN_ONCE_FALLBACK"],
                       NUMBA_CACHE_DIR=str(cache_dir)),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sources = {}
    for path in glob.glob(os.path.join(cache_dir, "**", "*.gen.py"), recursive=True):
        with open(path) as f:
            sources[path] = f.read()
    return result.stdout, sources


@pytest.mark.long
def test_per_object_mode_runs_brians_loop(tmp_path):
    out, sources = _suite(tmp_path / "per-object", "--per-object")
    sources = list(sources.values())
    assert "per-object loop" in out
    assert sources and not any("from template 'network_run'" in s for s in sources)


@pytest.mark.long
def test_threads_mode_makes_kernels_parallel(tmp_path):
    out, sources = _suite(tmp_path / "threads", "--threads", "2")
    sources = list(sources.values())
    assert "2 threads" in out
    assert any("from template 'network_run'" in s for s in sources)
    parallel = [s for s in sources if "parallel=True" in s]
    assert any("from template 'statemonitor'" in s for s in parallel)
    assert any("from template 'stateupdate'" in s for s in parallel)


def _compiled_set_kernels(sources):
    """How many group_variable_set(_conditional) modules have a compiled kernel."""
    compiled = 0
    for path, source in sources.items():
        if "from template 'group_variable_set" in source:
            stem = os.path.basename(path)[: -len(".gen.py")]
            kernels = os.path.join(os.path.dirname(path), "kernels", stem + ".*.nbi")
            compiled += bool(glob.glob(kernels))
    return compiled


@pytest.mark.long
def test_no_run_once_fallback_mode_compiles_run_once_kernels(tmp_path):
    out, sources = _suite(tmp_path / "default")
    assert "run-once" not in out
    assert _compiled_set_kernels(sources) == 0  # set through numpy
    out, sources = _suite(tmp_path / "off", "--no-run-once-fallback")
    assert "no run-once fallback" in out
    assert _compiled_set_kernels(sources) > 0
