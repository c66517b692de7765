"""The kernel cache: hits across processes, concurrency, damage, unwritable dirs."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from conftest import run_script, script_env

# A small model with state update, threshold, reset, synapses and a monitor;
# prints the spikes and numba's cache statistics as JSON.
MODEL = """
import json, sys
import brian2_numba
from brian2 import *
prefs.codegen.target = 'numba'
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
                  "stats": brian2_numba.cache_stats()}))
"""


def _run_model(cache_dir, **kwds):
    result = run_script(MODEL, cache_dir, **kwds)
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_second_process_compiles_nothing(numba_target):
    first, _ = _run_model(numba_target)
    second, _ = _run_model(numba_target)
    assert first["stats"]["misses"] > 0
    assert first["stats"]["hits"] == 0
    assert second["stats"]["misses"] == 0
    assert second["stats"]["hits"] == first["stats"]["misses"]
    assert second["i"] == first["i"] and second["t"] == first["t"]
    assert len(first["i"]) > 0


def test_concurrent_cold_compile(numba_target):
    """Four processes compile the same kernels into one empty cache at once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MODEL, str(numba_target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=script_env(),
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(r["i"] == results[0]["i"] and r["t"] == results[0]["t"] for r in results)
    # and the cache they left behind is complete and valid
    after, _ = _run_model(numba_target)
    assert after["stats"]["misses"] == 0
    assert after["i"] == results[0]["i"]


def _cache_files(cache_dir, suffix):
    found = []
    for folder, _, files in os.walk(cache_dir):
        found += [os.path.join(folder, f) for f in files if f.endswith(suffix)]
    return sorted(found)


@pytest.mark.parametrize("suffix", [".nbi", ".nbc"])
def test_truncated_numba_cache_file_is_recompiled(numba_target, suffix):
    reference, _ = _run_model(numba_target)
    damaged = _cache_files(numba_target, suffix)
    assert damaged
    for path in damaged:
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    result, stderr = _run_model(numba_target)
    assert "unreadable numba cache entry" in stderr
    assert result["i"] == reference["i"] and result["t"] == reference["t"]
    assert result["stats"]["misses"] > 0
    # the recompiled kernels were stored again
    again, stderr = _run_model(numba_target)
    assert again["stats"]["misses"] == 0
    assert "unreadable" not in stderr


def test_damaged_generated_source_is_rewritten(numba_target):
    reference, _ = _run_model(numba_target)
    sources = _cache_files(numba_target, ".gen.py")
    assert sources
    with open(sources[0], "r+") as f:
        f.truncate(10)
    result, stderr = _run_model(numba_target)
    assert "was damaged" in stderr
    assert result["i"] == reference["i"]


def test_unwritable_cache_dir_runs_uncached(numba_target, tmp_path):
    # A path below a regular file can never be created, not even by root.
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    unwritable = blocker / "cache"
    reference, _ = _run_model(numba_target)
    result, stderr = _run_model(unwritable)
    assert "cannot be written" in stderr
    assert result["i"] == reference["i"] and result["t"] == reference["t"]
    assert result["stats"]["hits"] == 0
    assert not os.path.exists(unwritable)


def _as_unprivileged_user():
    """Command prefix that runs a process as 'nobody' (for root), or None."""
    if not hasattr(os, "geteuid"):
        return None
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    # the interpreter itself may not be readable for 'nobody' (e.g. under /root)
    works = subprocess.run(prefix + [sys.executable, "-c", "import brian2_numba"],
                           capture_output=True, cwd="/")
    return prefix if works.returncode == 0 else None


@pytest.mark.skipif(_as_unprivileged_user() is None,
                    reason="root ignores permissions and no unprivileged user can run "
                    "this Python (test_unwritable_cache_dir_runs_uncached covers root)")
def test_read_only_cache_dir_runs_uncached(numba_target):
    reference, _ = _run_model(numba_target)
    # a directory with kernels in it, readable but not writable for the user
    shared = tempfile.mkdtemp(prefix="brian2_numba_readonly_")
    try:
        readonly = os.path.join(shared, "cache")
        shutil.copytree(numba_target, readonly)
        for folder, dirs, files in os.walk(shared):
            os.chmod(folder, 0o555)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o444)
        result = subprocess.run(
            _as_unprivileged_user() + [sys.executable, "-c", MODEL, readonly],
            capture_output=True, text=True, timeout=600,
            env=script_env(HOME=shared),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "cannot be written" in result.stderr
        output = json.loads(result.stdout.strip().splitlines()[-1])
        assert output["i"] == reference["i"] and output["t"] == reference["t"]
        assert output["stats"]["hits"] == 0
    finally:
        for folder, dirs, files in os.walk(shared):
            os.chmod(folder, 0o755)
        shutil.rmtree(shared)


def test_cache_directory_is_private(numba_target):
    _run_model(numba_target)
    assert os.stat(numba_target).st_mode & 0o777 == 0o700


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    from brian2_numba.cache import default_cache_directory

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert default_cache_directory() == str(tmp_path / "numba" / "brian2-numba")
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_cache_directory() == str(tmp_path / "xdg" / "brian2-numba")


def test_script_next_to_default_cache_imports_the_package(tmp_path):
    """The default cache directory must not shadow the package: a script
    started in $NUMBA_CACHE_DIR (cwd first on sys.path) imports the real one."""
    from brian2_numba.cache import default_cache_directory

    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    os.makedirs(os.path.join(str(tmp_path), os.path.basename(default_cache_directory())))
    result = subprocess.run(
        [sys.executable, "-c", "import brian2_numba; print(brian2_numba.__file__)"],
        capture_output=True, text=True, cwd=str(tmp_path), env=dict(os.environ, **env),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("__init__.py")


def test_clear_cache(numba_target):
    from brian2 import NeuronGroup, clear_cache, run, ms

    G = NeuronGroup(2, "dv/dt = -v/(10*ms) : 1")
    run(1 * ms)
    assert os.listdir(numba_target)
    clear_cache("numba")
    assert not os.path.exists(numba_target)
    np.testing.assert_equal(G.v[:], 0)
