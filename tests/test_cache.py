"""The kernel cache: hits across processes, concurrency, damage, faults, clear_cache.

Every test that starts Python processes passes this process's environment on,
so CI runs them with and without ``NUMBA_CACHE_DIR`` and
``PYTHONDONTWRITEBYTECODE`` (see ``.ci/run``); tests that depend on one of
them set it themselves.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest
from conftest import CACHE_MODEL as MODEL
from conftest import run_cache_model as _run_model
from conftest import run_script, script_env, unprivileged_prefix

#: every test here starts Python processes
pytestmark = pytest.mark.long


@pytest.mark.parametrize("loop", ["fused", "per-object"])
def test_second_process_compiles_nothing(numba_target, loop):
    env = {"BRIAN2_NUMBA_FUSED": "1" if loop == "fused" else "0"}
    first, _ = _run_model(numba_target, env=env)
    second, _ = _run_model(numba_target, env=env)
    assert first["stats"]["misses"] > 0
    assert first["stats"]["hits"] == 0
    assert second["stats"]["misses"] == 0
    # every kernel compiled in the first is loaded in the second (the fused
    # loop calls them at their addresses: brian2_numba.kernel_calls)
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
    assert "is not used: it cannot be created" in stderr
    assert result["i"] == reference["i"] and result["t"] == reference["t"]
    assert result["stats"]["hits"] == 0
    assert not os.path.exists(unwritable)


@pytest.mark.skipif(unprivileged_prefix() is None,
                    reason="root ignores permissions, and neither a user namespace nor "
                    "'nobody' can run this Python here")
def test_read_only_cache_dir_runs_uncached(numba_target):
    reference, _ = _run_model(numba_target)
    # a directory with kernels in it, readable but not writable for the user
    shared = tempfile.mkdtemp(prefix="brian2_numba_readonly_")
    try:
        readonly = os.path.join(shared, "cache")
        shutil.copytree(numba_target, readonly)
        for folder, _dirs, files in os.walk(shared):
            os.chmod(folder, 0o555)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o444)
        output, stderr = _run_model(readonly, prefix=unprivileged_prefix(),
                                    env={"HOME": shared})
        assert "is not used: it cannot be written" in stderr
        assert output["i"] == reference["i"] and output["t"] == reference["t"]
        assert output["stats"]["hits"] == 0
    finally:
        for folder, _dirs, _files in os.walk(shared):
            os.chmod(folder, 0o755)
        shutil.rmtree(shared)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX file modes")
def test_cache_is_private(numba_target):
    """Directories 0700, files 0600 (numba's own default: 0755 and 0644)."""
    _run_model(numba_target)
    modes = {}
    for folder, _dirs, files in os.walk(numba_target):
        modes[folder] = stat.S_IMODE(os.stat(folder).st_mode)
        for name in files:
            modes[os.path.join(folder, name)] = stat.S_IMODE(
                os.stat(os.path.join(folder, name)).st_mode)
    assert any(path.endswith(".nbc") for path in modes)
    assert any(path.endswith(".gen.py") for path in modes)
    assert {path: mode for path, mode in modes.items()
            if mode != (0o700 if os.path.isdir(path) else 0o600)} == {}


def test_no_bytecode_is_written(numba_target):
    """Generated modules run from their verified source, never from a .pyc."""
    first, _ = _run_model(numba_target, unset=["PYTHONDONTWRITEBYTECODE"])
    second, _ = _run_model(numba_target, unset=["PYTHONDONTWRITEBYTECODE"])
    assert second["stats"]["misses"] == 0 and second["stats"]["hits"] > 0
    found = [os.path.join(folder, name) for folder, dirs, files in os.walk(numba_target)
             for name in dirs + files if name == "__pycache__" or name.endswith(".pyc")]
    assert found == []


def test_kernels_stay_in_the_cache_directory(tmp_path):
    """With NUMBA_CACHE_DIR set, everything goes into $NUMBA_CACHE_DIR/brian2-numba."""
    numba_dir = tmp_path / "numba"
    numba_dir.mkdir()
    result, _ = _run_model("-", env={"NUMBA_CACHE_DIR": str(numba_dir)})
    assert result["cache_dir"] == str(numba_dir / "brian2-numba")
    assert os.listdir(numba_dir) == ["brian2-numba"]
    assert [f for f in os.listdir(numba_dir / "brian2-numba" / "kernels")
            if f.endswith(".nbc")]


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


CLEAR = """
import os, sys, brian2_numba, brian2
if sys.argv[1] != '-':
    brian2.prefs.codegen.runtime.numba.cache_dir = sys.argv[1]
brian2.clear_cache('numba')
"""


@pytest.mark.parametrize("where", ["preference", "NUMBA_CACHE_DIR"])
def test_clear_cache(tmp_path, where):
    """clear_cache removes every file the target wrote, with Python's defaults.

    Bytecode writing is on (as for users), and a leftover of versions that let
    Python write bytecode into the cache is there too.
    """
    numba_dir = tmp_path / "numba"
    numba_dir.mkdir()
    env = {"NUMBA_CACHE_DIR": str(numba_dir)}
    cache_dir = str(tmp_path / "cache") if where == "preference" else "-"
    kwds = dict(env=env, unset=["PYTHONDONTWRITEBYTECODE"])
    first, _ = _run_model(cache_dir, **kwds)
    location = first["cache_dir"]
    assert first["stats"]["misses"] > 0 and os.listdir(location)
    legacy = os.path.join(location, "__pycache__")
    os.makedirs(legacy)
    with open(os.path.join(legacy, "brian2numba_0.gen.cpython-313.pyc"), "wb") as f:
        f.write(b"old bytecode")
    run_script(CLEAR, cache_dir, **kwds)
    assert not os.path.exists(location)
    if where == "NUMBA_CACHE_DIR":
        assert os.listdir(numba_dir) == []
    # nothing compiled is left anywhere: the next process compiles it all again
    again, _ = _run_model(cache_dir, **kwds)
    assert again["stats"]["hits"] == 0
    assert again["stats"]["misses"] == first["stats"]["misses"]
    assert again["i"] == first["i"] and again["t"] == first["t"]


def test_clear_cache_keeps_a_directory_with_other_files(numba_target):
    """Brian's rule: a cache directory with foreign files in it is not deleted."""
    _run_model(numba_target)
    notes = numba_target / "notes.txt"
    notes.write_text("mine")
    refused = run_script(CLEAR.replace("brian2.clear_cache('numba')", """
try:
    brian2.clear_cache('numba')
except OSError as exc:
    print('refused' if 'notes.txt' in str(exc) else exc)
"""), numba_target)
    assert refused.stdout.strip() == "refused"
    assert notes.read_text() == "mine"
    assert [f for f in os.listdir(numba_target) if f.endswith(".gen.py")]


def _tmpfs_works():
    if not (sys.platform.startswith("linux") and shutil.which("unshare")
            and hasattr(os, "geteuid") and os.geteuid() == 0):
        return False
    probe = tempfile.mkdtemp()
    try:
        return subprocess.run(["unshare", "--mount", "mount", "-t", "tmpfs",
                               "-o", "size=64k", "none", probe],
                              capture_output=True).returncode == 0
    finally:
        os.rmdir(probe)


FULL_DISK = """
set -e
mount -t tmpfs -o size=2m none "$1"
mkdir -m 700 "$1/cache" "$1/cache/kernels"
if [ -n "$3" ]; then cp "$3"/*.gen.py "$1/cache/"; fi
dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null || true
exec "$2" -c "$MODEL" "$1/cache"
"""


@pytest.mark.skipif(not _tmpfs_works(), reason="needs root and mount namespaces "
                    "(Linux) for a small full file system")
@pytest.mark.parametrize("sources_exist", [False, True])
def test_full_disk_runs_uncached(numba_target, tmp_path, sources_exist):
    """No space left: for the generated files (compile uncached) or only for
    the compiled kernels (not saved); the results are right either way."""
    reference, _ = _run_model(numba_target)
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["unshare", "--mount", "bash", "-c", FULL_DISK, "full-disk", str(mount_point),
         sys.executable, str(numba_target) if sources_exist else ""],
        capture_output=True, text=True, timeout=600, env=script_env(MODEL=MODEL),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["i"] == reference["i"] and output["t"] == reference["t"]
    assert "No space left on device" in result.stderr
    if sources_exist:
        assert "Could not save the compiled kernel" in result.stderr
    else:
        assert "is not used: writing" in result.stderr
    assert "Traceback" not in result.stderr


VANISHING_CACHE = """
import os, shutil, sys
import brian2_numba.cache as cache
import brian2_numba.kernel_cache as kernel_cache

cache_dir = sys.argv[1]
original_ensure = cache._ensure_source_file
original_save = kernel_cache.KernelCache.save_overload
calls = {"sources": 0, "saves": 0}

def ensure_source_file(path, source):
    calls["sources"] += 1
    if calls["sources"] in (2, 5):  # the cache is deleted before a file is written
        shutil.rmtree(cache_dir)
    return original_ensure(path, source)

def save_overload(self, sig, data):
    calls["saves"] += 1
    if calls["saves"] in (1, 3):  # ... and while a kernel compiles
        shutil.rmtree(cache_dir, ignore_errors=True)
    return original_save(self, sig, data)

cache._ensure_source_file = ensure_source_file
kernel_cache.KernelCache.save_overload = save_overload
exec(open(sys.argv[2]).read())
"""


def test_cache_deleted_during_compilation(numba_target, tmp_path):
    """The cache directory disappears between and during compilations (another
    process ran clear_cache): the run recreates it and completes."""
    reference, _ = _run_model(tmp_path / "reference")
    model = tmp_path / "model.py"
    model.write_text(MODEL)
    result = run_script(VANISHING_CACHE, numba_target, model)
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["i"] == reference["i"] and output["t"] == reference["t"]
    assert "Traceback" not in result.stderr
    assert "disappeared while kernels were prepared" in result.stderr
    assert "disappeared while a kernel was compiled" in result.stderr
    # what was stored after the last deletion is complete and valid
    again, stderr = _run_model(numba_target)
    assert again["i"] == reference["i"] and again["t"] == reference["t"]
    assert again["stats"]["hits"] > 0 and "damaged" not in stderr
