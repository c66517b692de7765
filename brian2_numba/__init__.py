"""brian2_numba: a numba code generation target for Brian2 (no C++ compiler).

Usage::

    import brian2_numba
    from brian2 import *
    prefs.codegen.target = 'numba'

Importing the package registers the target ``'numba'``, its preferences
(``codegen.runtime.numba.*``, see :mod:`brian2_numba.preferences`) and its
cache directory (so that ``clear_cache('numba')`` works).
"""

import brian2  # noqa: F401  (Brian first: the version check below reads it)

#: the one source of the version (pyproject.toml reads it); part of every
#: generated file, so a new version compiles everything again
__version__ = "0.1.0"

from .compat import check_brian_version, register_cache_directory  # noqa: E402

check_brian_version()  # ImportError on an untested Brian2 (see compat)

from .preferences import register_preferences  # noqa: E402

register_preferences()

from .cache import (  # noqa: E402
    CACHE_FILE_SUFFIXES,
    cache_stats,
    configured_cache_directory,
    default_cache_directory,
)
from .codeobject import NumbaCodeObject  # noqa: E402
from .functions import register_functions  # noqa: E402
from .inspection import generated_files  # noqa: E402
from .trust import make_private_directory  # noqa: E402

__all__ = [
    "NumbaCodeObject",
    "advise",
    "cache_stats",
    "generated_files",
    "default_cache_directory",
    "test",
]

register_functions()


class _CacheRegistration(tuple):
    """``(directory, suffixes)`` for ``brian2.clear_cache('numba')``.

    Brian reads this pair when it clears or measures the cache; unpacking it
    yields the directory the preferences name *now*, so a changed
    ``codegen.runtime.numba.cache_dir`` is respected.
    """

    def __new__(cls):
        return super().__new__(cls, (None, CACHE_FILE_SUFFIXES))

    def __iter__(self):
        directory = configured_cache_directory()
        try:  # Brian expects the directory to exist (e.g. to measure it)
            make_private_directory(directory)
        except OSError:
            pass
        yield directory
        yield CACHE_FILE_SUFFIXES

    def __getitem__(self, index):
        return tuple(self)[index]


register_cache_directory("numba", _CacheRegistration())

from .network import install as _install_network_run  # noqa: E402

_install_network_run()  # Network.run as one compiled loop (prefs ...numba.fused)

from .run_once import install as _install_run_once  # noqa: E402

_install_run_once()  # run-once code objects through numpy on a cold cache

from . import introspect  # noqa: E402, F401  (times compilations from now on)
from .cache_keys import install as _install_cache_keys  # noqa: E402

_install_cache_keys()  # Brian's memoisation keys, computed faster (see cache_keys)


def test(long_tests=False, per_object=False, workers="auto", additional_args=(), threads=1,
         run_once_fallback=True):
    """Run Brian2's test suite on the 'numba' target: :func:`brian2_numba.brian_suite.test`.

    (Imported when called, so that ``python -m brian2_numba.brian_suite``
    does not find its module imported by the package already.)
    """
    from .brian_suite import test as run_suite

    return run_suite(long_tests, per_object, workers, additional_args, threads,
                     run_once_fallback)


def advise(net=None, duration=None):
    """The predicted cost of a ``run()`` on every configuration: :func:`brian2_numba.advisor.advise`.

    (Imported when called, like :func:`test`.)
    """
    from .advisor import advise as predict

    return predict(net, duration)

from .collector import freeze_long_lived_objects  # noqa: E402

# last: everything the import created is long-lived (see collector)
freeze_long_lived_objects()
