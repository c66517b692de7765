"""Attacks on the kernel cache: planted files must never run.

Each test plants a payload where an attacker could, under the name the
victim's process would load, and checks that the payload did not run (its
marker file is absent) and that the results are still right. The payloads
are real: bytecode that Python's own loader would execute, and pickles that
numba's cache would unpickle.
"""

import importlib.util
import marshal
import os
import pickle
import shutil

import pytest
from conftest import run_cache_model

#: every test here starts Python processes
pytestmark = pytest.mark.long

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
POSIX = hasattr(os, "geteuid")
NOBODY = 65534


class _Payload:
    """Unpickling this writes the marker file (what a planted pickle could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


def _plant_pickles(kernel_dir, names, marker):
    """A payload under each of numba's file names (index and data)."""
    os.makedirs(kernel_dir, exist_ok=True)
    for name in names:
        with open(os.path.join(kernel_dir, name), "wb") as f:
            pickle.dump(_Payload(marker), f)


def _kernel_names(cache_dir):
    return sorted(f for f in os.listdir(os.path.join(cache_dir, "kernels"))
                  if f.endswith((".nbi", ".nbc")))


@pytest.fixture
def reference(tmp_path):
    """A first run (its results, and the file names it created)."""
    cache_dir = tmp_path / "reference"
    result, _ = run_cache_model(cache_dir)
    return result, cache_dir


def _assert_same(result, reference):
    assert result["i"] == reference[0]["i"] and result["t"] == reference[0]["t"]


def test_planted_bytecode_does_not_run(reference, tmp_path):
    """A valid ``__pycache__/*.pyc`` next to a genuine ``.gen.py`` is ignored.

    Python's file loader would run it (its timestamp and size match), even
    with PYTHONDONTWRITEBYTECODE set.
    """
    _, cache_dir = reference
    marker = tmp_path / "marker"
    sources = [f for f in os.listdir(cache_dir) if f.endswith(".gen.py")]
    assert sources
    for name in sources:
        path = os.path.join(cache_dir, name)
        with open(path) as f:
            genuine = f.read()
        payload = f"open({str(marker)!r}, 'w').write('payload ran')\n" + genuine
        code = compile(payload, path, "exec")
        info = os.stat(path)
        pyc = importlib.util.cache_from_source(path)
        os.makedirs(os.path.dirname(pyc), exist_ok=True)
        with open(pyc, "wb") as f:  # a timestamp-based pyc, as py_compile writes it
            f.write(importlib.util.MAGIC_NUMBER + b"\0\0\0\0")
            f.write(int(info.st_mtime).to_bytes(4, "little"))
            f.write((info.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
            f.write(marshal.dumps(code))
    for unset in ([], ["PYTHONDONTWRITEBYTECODE"]):
        result, _ = run_cache_model(cache_dir, unset=unset)
        assert not marker.exists()
        _assert_same(result, reference)
        assert result["stats"]["misses"] == 0  # the genuine kernels were used


@pytest.mark.skipif(not POSIX, reason="POSIX file modes")
def test_world_writable_cache_dir_is_refused(reference, tmp_path):
    """Anyone could have written into it: no kernel is loaded from it."""
    _, cache_dir = reference
    marker = tmp_path / "marker"
    _plant_pickles(cache_dir / "kernels", _kernel_names(cache_dir), marker)
    os.chmod(cache_dir, 0o777)
    result, stderr = run_cache_model(cache_dir)
    assert not marker.exists()
    assert "is not used: it can be written by other users (mode 0777" in stderr
    _assert_same(result, reference)
    assert result["stats"]["hits"] == 0


@pytest.mark.skipif(not POSIX, reason="POSIX file modes")
def test_world_writable_kernel_dir_is_refused(reference, tmp_path):
    _, cache_dir = reference
    marker = tmp_path / "marker"
    _plant_pickles(cache_dir / "kernels", _kernel_names(cache_dir), marker)
    os.chmod(cache_dir / "kernels", 0o757)
    result, stderr = run_cache_model(cache_dir)
    assert not marker.exists()
    assert "its subdirectory 'kernels' is not safe" in stderr
    _assert_same(result, reference)


def test_symlinked_cache_dir_is_refused(reference, tmp_path):
    """A link planted under the name we would use points to the attacker's files."""
    _, cache_dir = reference
    marker = tmp_path / "marker"
    planted = tmp_path / "attacker"
    shutil.copytree(cache_dir, planted)
    _plant_pickles(planted / "kernels", _kernel_names(cache_dir), marker)
    link = tmp_path / "link"
    os.symlink(planted, link)
    result, stderr = run_cache_model(link)
    assert not marker.exists()
    assert "is a symbolic link" in stderr
    _assert_same(result, reference)


@pytest.mark.skipif(not ROOT, reason="needs root to give files to another user")
def test_shared_numba_cache_dir_with_a_planted_directory(reference, tmp_path):
    """NUMBA_CACHE_DIR shared by all users (mode 1777), our directory
    pre-created there by another user, full of payloads under the names our
    kernels have: refused, with a warning that names the owner."""
    _, cache_dir = reference
    marker = tmp_path / "marker"
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    planted = shared / "brian2-numba"
    shutil.copytree(cache_dir, planted)
    _plant_pickles(planted / "kernels", _kernel_names(cache_dir), marker)
    for folder, _dirs, files in os.walk(planted):
        os.chown(folder, NOBODY, NOBODY)
        os.chmod(folder, 0o755)
        for name in files:
            os.chown(os.path.join(folder, name), NOBODY, NOBODY)
    result, stderr = run_cache_model("-", env={"NUMBA_CACHE_DIR": str(shared)})
    assert not marker.exists()
    assert f"is owned by user id {NOBODY}, not by you" in stderr
    _assert_same(result, reference)
    assert result["stats"]["hits"] == 0


@pytest.mark.skipif(not ROOT, reason="needs root to give a file to another user")
def test_planted_file_of_another_user_is_not_loaded(reference, tmp_path):
    """Inside a private directory, a cache file someone else owns is not unpickled."""
    _, cache_dir = reference
    marker = tmp_path / "marker"
    names = _kernel_names(cache_dir)
    _plant_pickles(cache_dir / "kernels", names, marker)
    for name in names:
        os.chown(cache_dir / "kernels" / name, NOBODY, NOBODY)
    result, stderr = run_cache_model(cache_dir)
    assert not marker.exists()
    assert "is not safe to load: it is owned by user id" in stderr
    _assert_same(result, reference)
    # the files were replaced by the user's own, valid ones
    again, stderr = run_cache_model(cache_dir)
    assert again["stats"]["misses"] == 0 and "not safe" not in stderr


def test_numbas_own_cache_locations_are_not_read(reference, tmp_path):
    """Payloads where numba's own ``cache=True`` would look (next to the file,
    and below NUMBA_CACHE_DIR) are never unpickled."""
    from numba.core.caching import _CacheLocator

    _, cache_dir = reference
    marker = tmp_path / "marker"
    numba_dir = tmp_path / "numba"
    names = _kernel_names(cache_dir)
    shutil.rmtree(cache_dir / "kernels")  # compile again, looking for a cache
    _plant_pickles(cache_dir / "__pycache__", names, marker)
    subpath = _CacheLocator.get_suitable_cache_subpath(str(cache_dir / "x.py"))
    _plant_pickles(numba_dir / subpath, names, marker)
    result, _ = run_cache_model(cache_dir, env={"NUMBA_CACHE_DIR": str(numba_dir)})
    assert not marker.exists()
    _assert_same(result, reference)


def test_trust_checks(tmp_path):
    """The directory test itself, on each kind of directory."""
    from brian2_numba.trust import untrusted_reason

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert untrusted_reason(str(private)) is None
    os.symlink(private, tmp_path / "link")
    assert "symbolic link" in untrusted_reason(str(tmp_path / "link"))
    assert "not a directory" in untrusted_reason(str(_touch(tmp_path / "file")))
    assert "cannot be inspected" in untrusted_reason(str(tmp_path / "missing"))
    if POSIX:
        os.chmod(private, 0o770)
        assert "can be written by other users (mode 0770" in untrusted_reason(str(private))
        os.chmod(private, 0o700)
        open_parent = tmp_path / "open"
        open_parent.mkdir()
        (open_parent / "cache").mkdir(mode=0o700)
        os.chmod(open_parent, 0o777)
        assert "no sticky bit" in untrusted_reason(str(open_parent / "cache"))
        os.chmod(open_parent, 0o1777)
        assert untrusted_reason(str(open_parent / "cache")) is None


def _touch(path):
    path.write_text("")
    return path

