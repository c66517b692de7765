"""numba's on-disk cache of compiled kernels, as this package runs it.

numba's own ``cache=True`` picks a directory by itself (next to the source
file, or below ``$NUMBA_CACHE_DIR``, created 0755 with 0644 files), trusts
whatever pickles it finds there, and fails with a raw ``RuntimeError`` if
the directory disappears. The generated kernels therefore carry no
``cache=True``; :func:`attach` gives each one a :class:`KernelCache`, which

* keeps the compiled kernels in ``<cache_dir>/kernels`` whatever
  ``NUMBA_CACHE_DIR`` says, so ``clear_cache('numba')`` removes them;
* stamps them with the content hash of the source that was verified and
  executed (not the file's mtime), so a changed file cannot match;
* loads an index or data file only if the current user owns it and nobody
  else can write it (see :mod:`brian2_numba.trust`), re-checking the
  directory whenever it has to be created again;
* writes files 0600 under names ``clear_cache`` recognises;
* treats an unreadable entry as a miss (recompile, numba#10434) and a failed
  save (full disk, directory deleted) as a warning.

A kernel compiled with other options than its module's (the fused loop's
variant without numba's Python wrapper, :func:`brian2_numba.cache.loop_kernel`)
is a *variant*: its files get a name of their own, since numba's index key
(the signature and the machine) does not tell the two apart.
"""

import contextlib
import os
import sys
import tempfile
import time

from brian2.utils.logger import get_logger
from numba.core.caching import CompileResultCacheImpl, FunctionCache, IndexDataCacheFile

from .trust import make_private_directory, untrusted_file_reason, untrusted_reason

__all__ = ["KERNEL_DIR_NAME", "KernelCache", "attach"]

logger = get_logger(__name__)

#: the subdirectory of the cache directory that holds numba's files
KERNEL_DIR_NAME = "kernels"


class UntrustedCacheError(Exception):
    """A cache directory or file that someone else could have written.

    Not an ``OSError``: numba reads a missing data file as a miss and would
    swallow it silently.
    """


class _KernelLocator:
    """Where and under which stamp numba stores one kernel (numba's locator API)."""

    def __init__(self, py_func, kernel_dir, source_hash):
        self._kernel_dir = kernel_dir
        self._source_hash = source_hash
        self._lineno = py_func.__code__.co_firstlineno
        self._py_file = py_func.__code__.co_filename  # numba's warnings name it

    def ensure_cache_path(self):
        if not os.path.isdir(self._kernel_dir):  # made before loading: deleted since
            logger.warn(f"The kernel directory '{self._kernel_dir}' disappeared while a "
                        "kernel was compiled; it is created again.",
                        name_suffix="kernel_dir_recreated", once=True)
        make_private_directory(os.path.dirname(self._kernel_dir))
        make_private_directory(self._kernel_dir)
        for directory in (os.path.dirname(self._kernel_dir), self._kernel_dir):
            reason = untrusted_reason(directory)
            if reason:
                raise UntrustedCacheError(f"'{directory}' is not safe to use: {reason}")

    def get_cache_path(self):
        return self._kernel_dir

    def get_source_stamp(self):
        return self._source_hash

    def get_disambiguator(self):
        return str(self._lineno)


class _KernelCacheImpl(CompileResultCacheImpl):
    """numba's serialisation of compile results, with our locator only.

    numba's ``CacheImpl.__init__`` searches its locator list (which
    ``NUMBA_CACHE_LOCATOR_CLASSES`` can change); ours is not negotiable.
    """

    def __init__(self, py_func, kernel_dir, source_hash, variant=""):
        self._lineno = py_func.__code__.co_firstlineno
        self._locator = _KernelLocator(py_func, kernel_dir, source_hash)
        modname = py_func.__module__
        fullname = f"{modname}.{py_func.__qualname__}" + (f".{variant}" if variant else "")
        self._filename_base = self.get_filename_base(fullname, getattr(sys, "abiflags", ""))


class _KernelCacheFile(IndexDataCacheFile):
    """Index and data files: checked before loading, written 0600."""

    def save(self, key, data):
        if untrusted_file_reason(self._index_path):  # replace it, unread
            self._save_index({})
        super().save(key, data)

    def _load_index(self):
        self._check(self._index_path)
        return super()._load_index()

    def _load_data(self, name):
        self._check(self._data_path(name))
        return super()._load_data(name)

    @staticmethod
    def _check(path):
        reason = untrusted_file_reason(path)
        if reason:
            raise UntrustedCacheError(f"'{path}' is not safe to load: {reason}")

    @contextlib.contextmanager
    def _open_for_write(self, filepath):
        # mkstemp creates the file 0600; the temporary name ends like the
        # final one, so clear_cache recognises a leftover of a crash
        directory, name = os.path.split(filepath)
        stem, suffix = os.path.splitext(name)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".tmp-{stem}-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            os.replace(tmp, filepath)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class KernelCache(FunctionCache):
    """The disk cache of one kernel, or of one variant of it (see the module docstring)."""

    def __init__(self, py_func, kernel_dir, source_hash, variant=""):
        # FunctionCache.__init__ would instantiate numba's own CacheImpl
        self._name = repr(py_func) + (f" ({variant})" if variant else "")
        self._py_func = py_func
        #: where and under which stamp it is kept (what a variant's cache needs)
        self.kernel_dir = kernel_dir
        self.source_hash = source_hash
        self._impl = _KernelCacheImpl(py_func, kernel_dir, source_hash, variant)
        self._cache_path = kernel_dir
        self._cache_file = _KernelCacheFile(
            cache_path=kernel_dir,
            filename_base=self._impl.filename_base,
            source_stamp=source_hash,
        )
        self.enable()

    def has_index(self, variant=None):
        """Whether an index of compiled signatures exists (this kernel was saved).

        ``variant``: of that variant of the kernel instead.
        """
        if variant is not None:
            return KernelCache(self._py_func, self.kernel_dir, self.source_hash,
                               variant).has_index()
        return os.path.exists(self._cache_file._index_path)

    def load_overload(self, sig, target_context):
        start = time.perf_counter()
        try:
            return super().load_overload(sig, target_context)
        except UntrustedCacheError as exc:
            logger.warn(
                f"Not loading the cached kernel {self._name}: {exc}. It is compiled "
                "again (and the file replaced by one of yours).",
                name_suffix="untrusted_cache_entry",
            )
        except Exception as exc:  # any unreadable entry: recompile
            logger.warn(
                f"Discarding an unreadable numba cache entry for {self._name} "
                f"({type(exc).__name__}: {exc}); the kernel is compiled again.",
                name_suffix="corrupt_cache_entry",
            )
            with contextlib.suppress(OSError):
                self.flush()
        finally:  # for brian2_numba.introspect
            self.load_seconds = getattr(self, "load_seconds", 0.0) + time.perf_counter() - start
        return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except (OSError, UntrustedCacheError) as exc:
            logger.warn(
                f"Could not save the compiled kernel {self._name} to the cache "
                f"({exc}); it will be compiled again next time.",
                name_suffix="cache_save_failed",
                once=True,
            )


def attach(dispatcher, kernel_dir, source_hash, variant=""):
    """Give a kernel (an ``@njit`` dispatcher) its disk cache.

    ``variant``: a name for a dispatcher of the same function with other
    options, which must not share the kernel's files.
    """
    dispatcher._cache = KernelCache(dispatcher.py_func, kernel_dir, source_hash, variant)
