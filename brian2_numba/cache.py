"""The kernel cache: generated source -> content-hashed ``.py`` file -> module.

numba can only cache (``cache=True``) functions that live in a real file whose
module is importable by name, so each generated block is written to
``<cache_dir>/brian2numba_<hash>.gen.py`` and imported with the module registered
in ``sys.modules`` *before* it executes. numba keeps its compiled kernels next
to it (``__pycache__``). Files are named by a hash of their content and are
never rewritten with other content, which is what keeps numba's cache index
(keyed by the source file) valid.

What the user has stored is never trusted blindly:

* files are written to a temporary name and atomically renamed, so concurrent
  processes compiling the same kernel both succeed;
* a generated file whose content does not match its name (truncated,
  corrupted) is rewritten with a warning;
* a numba cache entry that cannot be loaded is discarded with a warning, and
  the kernel is compiled again;
* an unwritable cache directory means: compile without a disk cache, with a
  warning, in a private temporary directory.
"""

import atexit
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import threading

from brian2.core.preferences import prefs
from brian2.utils.logger import get_logger
from numba.core.caching import FunctionCache, NullCache
from numba.core.dispatcher import Dispatcher

__all__ = [
    "cache_directory",
    "default_cache_directory",
    "load_module",
    "loaded_dispatchers",
    "cache_stats",
]

logger = get_logger(__name__)

MODULE_PREFIX = "brian2numba_"
#: the default cache directory's name; not an importable name, so that a
#: script started next to it cannot import it instead of the package
CACHE_DIR_NAME = "brian2-numba"
#: generated files end like this (and so does nothing else: ``clear_cache``
#: refuses to delete a directory with other files in it)
SOURCE_SUFFIX = ".gen.py"
#: what ``brian2.clear_cache('numba')`` may delete
CACHE_FILE_SUFFIXES = (SOURCE_SUFFIX, ".nbi", ".nbc")

_lock = threading.Lock()
_modules = {}  # module name -> module, for this process
_dispatchers = []  # every kernel loaded in this process (for cache_stats)
_fallback_dir = None  # private temporary directory when the cache is unusable
_unusable_dirs = set()  # cache directories we already warned about


def default_cache_directory():
    """Where kernels go when ``codegen.runtime.numba.cache_dir`` is ``None``."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.path.join(os.environ["NUMBA_CACHE_DIR"], CACHE_DIR_NAME)
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, CACHE_DIR_NAME)


def _is_writable(directory):
    """Create ``directory`` (0700) if needed; True if we can write files into it."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def configured_cache_directory():
    """The cache directory the preferences ask for (not checked or created)."""
    configured = prefs["codegen.runtime.numba.cache_dir"] or default_cache_directory()
    return os.path.abspath(os.path.expanduser(configured))


def cache_directory():
    """The directory to use now, and whether numba may cache kernels there.

    Returns ``(directory, cache_enabled)``. If the configured directory cannot
    be written, warns once and returns a private temporary directory with
    caching disabled.
    """
    global _fallback_dir
    configured = configured_cache_directory()
    if _is_writable(configured):
        return configured, bool(prefs["codegen.runtime.numba.cache"])
    if configured not in _unusable_dirs:
        _unusable_dirs.add(configured)
        logger.warn(
            f"The numba cache directory '{configured}' cannot be written; "
            "kernels are compiled without a disk cache (every new process "
            "compiles them again). Set prefs.codegen.runtime.numba.cache_dir "
            "to a writable directory to fix this.",
            name_suffix="cache_dir_unwritable",
            once=True,
        )
    if _fallback_dir is None:
        _fallback_dir = tempfile.mkdtemp(prefix="brian2_numba_uncached_")
        atexit.register(shutil.rmtree, _fallback_dir, ignore_errors=True)
    return _fallback_dir, False


class _CheckedFunctionCache(FunctionCache):
    """numba's per-function cache, but a broken cache entry means 'recompile'.

    numba raises (``EOFError``, unpickling errors, ...) on a truncated or
    corrupted index or data file (numba#10434); we discard the entry instead.
    Failing to save (full disk, lost permissions) only costs a recompile in
    the next process.
    """

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception as exc:  # any unreadable entry: recompile
            logger.warn(
                f"Discarding an unreadable numba cache entry for "
                f"{self._name} ({type(exc).__name__}: {exc}); the kernel "
                "is compiled again.",
                name_suffix="corrupt_cache_entry",
            )
            try:
                self.flush()
            except OSError:
                pass
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except OSError as exc:
            logger.warn(
                f"Could not save the compiled kernel {self._name} to "
                f"the cache ({exc}); it will be compiled again next time.",
                name_suffix="cache_save_failed",
                once=True,
            )


def _write_atomically(path, content):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=SOURCE_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _ensure_source_file(path, source):
    """Make sure ``path`` holds exactly ``source`` (never rewrite a good file)."""
    try:
        with open(path, encoding="utf-8") as f:
            current = f.read()
    except FileNotFoundError:
        current = None
    except (OSError, UnicodeDecodeError):
        current = ""
    if current == source:
        return
    if current is not None:
        logger.warn(
            f"The generated file '{path}' was damaged (its content does not "
            "match its name); writing it again.",
            name_suffix="corrupt_source_file",
        )
    _write_atomically(path, source)


def module_name(source):
    """The content-derived module name of a generated source."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:32]
    return MODULE_PREFIX + digest


def load_module(source):
    """Import generated ``source`` as a module (from memory, disk, or fresh)."""
    name = module_name(source)
    module = _modules.get(name)
    if module is not None:
        return module
    with _lock:
        module = _modules.get(name)
        if module is not None:
            return module
        directory, cache_enabled = cache_directory()
        path = os.path.join(directory, name + SOURCE_SUFFIX)
        _ensure_source_file(path, source)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        # numba pickles the module environment by name: it must be importable
        # (i.e. in sys.modules) while the module executes and later on.
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        for value in vars(module).values():
            # kernels (declared with cache=True); helper functions are
            # compiled into them and need no cache entry of their own
            if (
                isinstance(value, Dispatcher)
                and value.__module__ == name
                and not isinstance(value._cache, NullCache)
            ):
                value._cache = (
                    _CheckedFunctionCache(value.py_func) if cache_enabled else NullCache()
                )
                _dispatchers.append(value)
        _modules[name] = module
        return module


def loaded_dispatchers():
    """All kernels loaded in this process."""
    return list(_dispatchers)


def cache_stats():
    """Totals of numba's cache hits and misses (compilations) in this process.

    Returns a dict with ``kernels`` (number of kernel functions loaded),
    ``hits`` (signatures loaded from the disk cache) and ``misses``
    (signatures compiled).
    """
    hits = misses = 0
    for dispatcher in _dispatchers:
        hits += sum(dispatcher.stats.cache_hits.values())
        misses += sum(dispatcher.stats.cache_misses.values())
    return {"kernels": len(_dispatchers), "hits": hits, "misses": misses}
