"""Generated source -> content-hashed ``.py`` file -> module -> cached kernels.

numba can only cache functions whose module is importable by name, so each
generated block is registered in ``sys.modules`` as
``brian2_numba_<hash>`` *before* it executes. The source is executed from
memory, the very text whose hash names it; the ``.gen.py`` file is written
for the reader (and tracebacks), never imported, so no bytecode file is read
or written (Python would prefer a planted ``__pycache__/*.pyc``).
:mod:`brian2_numba.kernel_cache` keeps the compiled kernels in
``<cache_dir>/kernels``.

Nothing on disk is trusted blindly:

* files are written to a temporary name (0600) and atomically renamed, so
  concurrent processes compiling the same kernel both succeed;
* a generated file whose content does not match its name (truncated,
  corrupted) is rewritten with a warning;
* the cache directory is used only if :mod:`brian2_numba.trust` finds it
  private (owned by the user, not writable by others, not a symlink);
* a directory that is not private, cannot be written, runs out of space or
  disappears means: compile without a disk cache, with a warning that says
  why.
"""

import atexit
import errno
import hashlib
import importlib.abc
import importlib.util
import os
import shutil
import sys
import tempfile
import threading

import numba
from brian2.core.preferences import prefs
from brian2.utils.logger import get_logger
from numba.core.dispatcher import Dispatcher

from .kernel_cache import KERNEL_DIR_NAME, KernelCache, attach
from .trust import make_private_directory, untrusted_reason

__all__ = [
    "cache_directory",
    "default_cache_directory",
    "load_module",
    "loaded_dispatchers",
    "loop_kernel",
    "kernel_forms",
    "cache_stats",
]

logger = get_logger(__name__)

MODULE_PREFIX = "brian2_numba_"
#: the default cache directory's name; not an importable name, so that a
#: script started next to it cannot import it instead of the package
CACHE_DIR_NAME = "brian2-numba"
#: generated files end like this (and so does nothing else: ``clear_cache``
#: refuses to delete a directory with other files in it)
SOURCE_SUFFIX = ".gen.py"
#: what ``brian2.clear_cache('numba')`` may delete (``.pyc``: bytecode that
#: versions before 0.2 let Python write into the cache directory)
CACHE_FILE_SUFFIXES = (SOURCE_SUFFIX, ".nbi", ".nbc", ".pyc")

#: errors that retrying cannot cure (EDQUOT: a quota; not on every platform)
_DISK_FULL = tuple(getattr(errno, name) for name in ("ENOSPC", "EDQUOT") if hasattr(errno, name))

_lock = threading.Lock()
_modules = {}  # module name -> module, for this process
_dispatchers = []  # every kernel loaded in this process (for cache_stats)
_loop_kernels = {}  # kernel -> its variant for the fused loop (loop_kernel)
_variants_lock = threading.Lock()
_fallback_dir = None  # private temporary directory when the cache is unusable
_unusable_dirs = set()  # cache directories we already warned about


def default_cache_directory():
    """Where kernels go when ``codegen.runtime.numba.cache_dir`` is ``None``.

    Returns
    -------
    directory : str
        ``$NUMBA_CACHE_DIR/brian2-numba`` if that variable is set, else
        ``brian2-numba`` in the user's cache directory (``%LOCALAPPDATA%`` on
        Windows, ``~/Library/Caches`` on macOS, ``$XDG_CACHE_HOME`` or
        ``~/.cache`` elsewhere). Neither checked nor created.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.path.join(os.environ["NUMBA_CACHE_DIR"], CACHE_DIR_NAME)
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, CACHE_DIR_NAME)


def _unusable_reason(directory):
    """Why ``directory`` cannot hold the cache (creating it if needed), or None."""
    kernel_dir = os.path.join(directory, KERNEL_DIR_NAME)
    try:
        make_private_directory(directory)
        make_private_directory(kernel_dir)
    except OSError as exc:
        return f"it cannot be created ({exc.strerror or exc})"
    reason = untrusted_reason(directory)
    if reason:
        return reason
    reason = untrusted_reason(kernel_dir)
    if reason:
        return f"its subdirectory '{KERNEL_DIR_NAME}' is not safe: {reason}"
    try:
        with tempfile.NamedTemporaryFile(dir=kernel_dir, prefix=".probe-"):
            pass
    except OSError as exc:
        return f"it cannot be written ({exc.strerror or exc})"
    return None


def configured_cache_directory():
    """The cache directory the preferences ask for (not checked or created).

    Returns
    -------
    directory : str
        The absolute path of ``codegen.runtime.numba.cache_dir``, or of
        `default_cache_directory` if that preference is ``None``.
    """
    configured = prefs["codegen.runtime.numba.cache_dir"] or default_cache_directory()
    return os.path.abspath(os.path.expanduser(configured))


def _warn_uncached(directory, reason):
    if directory in _unusable_dirs:
        return
    _unusable_dirs.add(directory)
    logger.warn(
        f"The numba cache directory '{directory}' is not used: {reason}. Kernels "
        "are compiled without a disk cache (every new process compiles them "
        "again). Set prefs.codegen.runtime.numba.cache_dir to a directory of "
        "your own to fix this.",
        name_suffix="cache_dir_unusable",
    )


def _uncached_directory():
    """A private temporary directory for the files of an uncached process."""
    global _fallback_dir
    if _fallback_dir is None:
        _fallback_dir = tempfile.mkdtemp(prefix="brian2_numba_uncached_")
        atexit.register(shutil.rmtree, _fallback_dir, ignore_errors=True)
    return _fallback_dir


def cache_directory():
    """The directory to use now, and whether numba may cache kernels there.

    Returns ``(directory, cache_enabled)``. If the configured directory is
    unusable (see :func:`_unusable_reason`), warns once and returns a private
    temporary directory with caching disabled.
    """
    configured = configured_cache_directory()
    reason = _unusable_reason(configured)
    if reason is None:
        return configured, bool(prefs["codegen.runtime.numba.cache"])
    _warn_uncached(configured, reason)
    return _uncached_directory(), False


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


def source_hash(source):
    """The content hash that names a generated source (and stamps its kernels)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:32]


def module_name(source):
    """The content-derived module name of a generated source."""
    return MODULE_PREFIX + source_hash(source)


class _SourceLoader(importlib.abc.InspectLoader):
    """Executes a generated module from the verified source text in memory.

    Python's file loader would run a ``__pycache__/*.pyc`` with a matching
    timestamp instead (whoever wrote it), and write bytecode files. This
    loader compiles ``source`` itself, and serves it to ``inspect`` and
    tracebacks even if the file is gone.
    """

    def __init__(self, source, path):
        self.source = source
        self.path = path

    def get_source(self, fullname):
        return self.source

    def get_code(self, fullname):
        return compile(self.source, self.path, "exec", dont_inherit=True)

    def get_filename(self, fullname):
        return self.path

    def is_package(self, fullname):
        return False


def _place_source(name, source):
    """Write the source file; returns ``(path, cache_enabled)``.

    A failure to write (full disk, the directory deleted meanwhile, lost
    permissions) is retried once after re-creating the directory, then the
    process continues uncached, with a warning.
    """
    error = None  # the first attempt's, reported if the second one works
    for attempt in range(2):
        directory, cache_enabled = cache_directory()
        path = os.path.join(directory, name + SOURCE_SUFFIX)
        try:
            _ensure_source_file(path, source)
            if attempt:
                logger.warn(f"The numba cache directory '{directory}' disappeared while "
                            f"kernels were prepared ({error.strerror or error}); it was "
                            "created again.", name_suffix="cache_dir_recreated")
            return path, cache_enabled
        except OSError as exc:
            error = exc
            if directory == _fallback_dir or exc.errno in _DISK_FULL:
                break
    configured = configured_cache_directory()
    _warn_uncached(configured, f"writing '{path}' failed ({error.strerror or error})")
    path = os.path.join(_uncached_directory(), name + SOURCE_SUFFIX)
    try:
        _ensure_source_file(path, source)
    except OSError:
        pass  # the module runs from memory; only the reader's copy is missing
    return path, False


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
        path, cache_enabled = _place_source(name, source)
        loader = _SourceLoader(source, path)
        spec = importlib.util.spec_from_loader(name, loader, origin=path)
        module = importlib.util.module_from_spec(spec)
        module.__file__ = path
        # numba pickles the module environment by name: it must be importable
        # (i.e. in sys.modules) while the module executes and later on.
        sys.modules[name] = module
        try:
            loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        kernel_dir = os.path.join(os.path.dirname(path), KERNEL_DIR_NAME)
        for value in vars(module).values():
            # kernels; helpers are inlined into them and need no cache entry
            if (
                isinstance(value, Dispatcher)
                and value.__module__ == name
                and value.targetoptions.get("inline", "never") == "never"
            ):
                if cache_enabled:
                    attach(value, kernel_dir, source_hash(source))
                _dispatchers.append(value)
        _modules[name] = module
        return module


def loaded_dispatchers():
    """All kernels loaded in this process (not their variants for the fused loop)."""
    return list(_dispatchers)


#: the variant's cache files: ``<module>.main.loop-<line>.py313.nbi`` and so on
LOOP_VARIANT = "loop"


def loop_kernel(kernel):
    """``kernel`` compiled without numba's Python wrapper, for the fused loop.

    numba compiles a wrapper that unboxes the arguments from Python with
    every kernel: 10–20 % of its compile time. The fused loop calls kernels
    at their addresses (:mod:`brian2_numba.kernel_calls`) and needs none, so
    it compiles this variant (same function and options, cached under names
    of its own) instead; a network that runs one object at a time compiles
    the kernel itself. The variant must never be called from Python: it has
    no entry point there, and numba would call address 0.

    Returns the same dispatcher for the same kernel (:func:`kernel_forms`
    shows whether it exists, without making it).
    """
    variant = _loop_kernels.get(kernel)
    if variant is not None:
        return variant
    with _variants_lock:  # (the loop's module asks for them while load_module runs it)
        variant = _loop_kernels.get(kernel)
        if variant is None:
            options = {**kernel.targetoptions, "no_cpython_wrapper": True}
            variant = numba.jit(**options)(kernel.py_func)
            cache = getattr(kernel, "_cache", None)
            if isinstance(cache, KernelCache):  # else the kernel is uncached too
                attach(variant, cache.kernel_dir, cache.source_hash, LOOP_VARIANT)
            _loop_kernels[kernel] = variant
    return variant


def kernel_forms(kernel):
    """``kernel`` and, if this process made one, its variant for the fused loop."""
    variant = _loop_kernels.get(kernel)
    return (kernel,) if variant is None else (kernel, variant)


def cache_stats():
    """Totals of numba's cache hits and misses (compilations) in this process.

    Returns
    -------
    stats : dict
        ``kernels``: the number of kernel functions loaded, ``hits``: the
        signatures loaded from the disk cache, ``misses``: the signatures
        compiled (of the kernels and of their variants for the fused loop,
        :func:`loop_kernel`).

    Examples
    --------
    A second process that runs the same model compiles nothing:

    >>> brian2_numba.cache_stats()  # doctest: +SKIP
    {'kernels': 7, 'hits': 7, 'misses': 0}
    """
    hits = misses = 0
    for dispatcher in [*_dispatchers, *_loop_kernels.values()]:
        hits += sum(dispatcher.stats.cache_hits.values())
        misses += sum(dispatcher.stats.cache_misses.values())
    return {"kernels": len(_dispatchers), "hits": hits, "misses": misses}
