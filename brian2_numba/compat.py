"""Every Brian2 internal that brian2_numba relies on, in one place.

No public Brian2 API lets a runtime target shadow the C++ spike queue, share
the device's random number buffers, register a cache directory or append
synapses that it created itself, so brian2_numba uses some private parts of
Brian2. Each is wrapped here by one small function, which says what it wraps;
where a public equivalent exists, it is used instead. A new Brian2 release
then means checking this module (``tests/test_compat.py`` exercises every
function), not the whole package.

Importing brian2_numba on a Brian2 version outside ``SUPPORTED_SERIES``
raises an ``ImportError`` (:func:`check_brian_version`), unless the
environment variable ``BRIAN2_NUMBA_ALLOW_UNTESTED_BRIAN=1`` turns it into a
warning, which also lists the internals that are missing.
"""

import functools
import hashlib
import inspect
import os
import warnings

import brian2
import numpy as np
from packaging.version import InvalidVersion, Version

__all__ = [
    "SUPPORTED_SERIES",
    "SUPPORTED_REQUIREMENT",
    "ALLOW_UNTESTED_VARIABLE",
    "check_brian_version",
    "missing_internals",
    "register_cache_directory",
    "pathway_delays",
    "queue_state",
    "restore_queue_state",
    "queue_source_range",
    "resize_synapses",
    "update_synapse_numbers",
    "device_random_buffers",
    "extend_runtime_random_state",
    "timedarray_find_K",
    "register_timedarray_implementation",
    "binomial_constants",
    "binomial_normal_constants",
    "register_binomial_implementation",
    "function_return_type",
    "code_objects",
    "clock_end",
    "warns_for_unused_objects",
    "an_object_would_warn_when_collected",
    "tracked_objects",
    "set_network_clocks",
    "maximum_run_time",
    "set_maximum_run_time",
    "stop_network",
    "network_stopped",
    "set_globally_running",
    "set_last_run",
    "check_for_invalid_states",
    "clear_profiling_info",
    "set_loop_file",
    "loop_file",
    "HASHABLE_SOURCE_DIGESTS",
    "hashable_source_digest",
    "install_cache_keys",
    "preference_plugin",
]

#: the (major, minor) series of Brian2 that brian2_numba is tested with
SUPPORTED_SERIES = ((2, 10), (2, 11))

#: the same as a requirement (keep equal to pyproject.toml)
SUPPORTED_REQUIREMENT = "brian2>=2.10,<2.12"

#: set to 1 to import brian2_numba on an untested Brian2 version (with a warning)
ALLOW_UNTESTED_VARIABLE = "BRIAN2_NUMBA_ALLOW_UNTESTED_BRIAN"

#: the runtime device's random number arrays (Brian >= 2.11: numbers, not a pointer)
_RANDOM_BUFFER_NAMES = ("rand_buffer", "rand_buffer_index", "randn_buffer", "randn_buffer_index")


# -- the version gate ---------------------------------------------------------


def _series_text():
    return " and ".join(f"{major}.{minor}.x" for major, minor in SUPPORTED_SERIES)


def check_brian_version(version=None, environ=None):
    """Refuse (or, if allowed, warn about) a Brian2 version that is not tested.

    Parameters
    ----------
    version : str, optional
        The version to check; default: the imported ``brian2.__version__``.
    environ : mapping, optional
        Where to look for ``BRIAN2_NUMBA_ALLOW_UNTESTED_BRIAN``; default
        ``os.environ``.

    Raises
    ------
    ImportError
        If ``version`` is not in ``SUPPORTED_SERIES`` and the variable is not
        set (to anything but ``0`` or nothing).
    """
    from . import __version__

    version = brian2.__version__ if version is None else version
    environ = os.environ if environ is None else environ
    try:
        if Version(version).release[:2] in SUPPORTED_SERIES:
            return
    except InvalidVersion:
        pass
    if environ.get(ALLOW_UNTESTED_VARIABLE, "") in ("", "0"):
        raise ImportError(
            f"brian2_numba {__version__} supports Brian2 {_series_text()}, but Brian2 "
            f"{version} is installed. Install a supported version "
            f"(pip install '{SUPPORTED_REQUIREMENT}'), or set "
            f"{ALLOW_UNTESTED_VARIABLE}=1 to try this one anyway (brian2_numba "
            "uses some of Brian2's internals, which may have changed)."
        )
    missing = missing_internals()
    warnings.warn(
        f"brian2_numba {__version__} is not tested with Brian2 {version} "
        f"(supported: {_series_text()}); continuing because "
        f"{ALLOW_UNTESTED_VARIABLE} is set."
        + (f" Brian2 internals that brian2_numba needs and that are missing: "
           f"{', '.join(missing)}." if missing else ""),
        UserWarning,
        stacklevel=2,
    )


def missing_internals():
    """Names of the Brian2 internals wrapped here that the installed Brian2 lacks.

    Only what can be checked without creating Brian objects.
    """
    from brian2.devices.device import RuntimeDevice
    from brian2.input.binomial import BinomialFunction
    from brian2.input.timedarray import TimedArray
    from brian2.synapses.synapses import Synapses

    checks = {
        "brian2._cache_dirs_and_extensions": lambda: isinstance(
            brian2._cache_dirs_and_extensions, dict),
        "Synapses._resize": lambda: callable(Synapses._resize),
        "Synapses._update_synapse_numbers": lambda: callable(Synapses._update_synapse_numbers),
        "brian2.input.timedarray._find_K": lambda: callable(_timedarray_module()._find_K),
        "brian2.input.binomial._pre_calc_constants": lambda: callable(
            _binomial_module()._pre_calc_constants),
        "brian2.input.binomial._pre_calc_constants_approximated": lambda: callable(
            _binomial_module()._pre_calc_constants_approximated),
        "TimedArray.implementations": lambda: isinstance(TimedArray.implementations, dict),
        "BinomialFunction.implementations": lambda: isinstance(
            BinomialFunction.implementations, dict),
        "RuntimeDevice.get_random_state": lambda: callable(RuntimeDevice.get_random_state),
        "RuntimeDevice.set_random_state": lambda: callable(RuntimeDevice.set_random_state),
        "Device._set_maximum_run_time": lambda: callable(RuntimeDevice._set_maximum_run_time),
        "Network._globally_stopped": lambda: hasattr(_network_class(), "_globally_stopped"),
        "Network._globally_running": lambda: hasattr(_network_class(), "_globally_running"),
        "BrianObject.__instances__": lambda: callable(_brian_object_class().__instances__),
        "Nameable.__instances__": lambda: callable(_nameable_class().__instances__),
        "BrianLogger.exception_occured": lambda: isinstance(
            _brian_logger_class().exception_occured, bool),
        "Group._check_for_invalid_states": lambda: callable(
            _group_class()._check_for_invalid_states),
        "Clock.epsilon_dt": lambda: isinstance(_clock_class().epsilon_dt, float),
        "brian2.tests.PreferencePlugin": lambda: callable(_preference_plugin_class()),
        "brian2.utils.caching._hashable": lambda: callable(_caching_module()._hashable),
    }
    for name in ("_full_state", "_restore_from_full_state", "_state_tuple"):
        checks[f"SpikeQueue.{name}"] = lambda name=name: hasattr(_cython_spike_queue(), name)
    missing = []
    for name, check in checks.items():
        try:
            present = check()
        except (AttributeError, ImportError):
            present = False
        if not present:
            missing.append(name)
    return missing


def _brian_object_class():
    from brian2.core.base import BrianObject

    return BrianObject


def _nameable_class():
    from brian2.core.names import Nameable

    return Nameable


def _brian_logger_class():
    from brian2.utils.logger import BrianLogger

    return BrianLogger


def _timedarray_module():
    import brian2.input.timedarray as module

    return module


def _binomial_module():
    import brian2.input.binomial as module

    return module


def _cython_spike_queue():
    from brian2.synapses.cythonspikequeue import SpikeQueue

    return SpikeQueue


# -- cache directory ------------------------------------------------------------


def register_cache_directory(target, registration):
    """Let ``brian2.clear_cache(target)`` find the target's cache.

    Wraps ``brian2._cache_dirs_and_extensions`` (``{target: (directory,
    suffixes)}``), which Brian's own Cython target fills; there is no public
    registration.
    """
    brian2._cache_dirs_and_extensions[target] = registration


# -- spike queue and synapses -------------------------------------------------------


def pathway_delays(pathway):
    """The delays of a ``SynapticPathway`` (one value if homogeneous), in seconds.

    Public equivalent of ``pathway._delays``: its variable ``delay``, which
    Brian's own ``_full_state`` reads too.
    """
    return pathway.variables["delay"].get_value()


def queue_state(queue):
    """``(offset, [synapse indices per time slot])`` of Brian's C++ spike queue.

    Wraps ``SpikeQueue._full_state()`` (what ``store`` saves).
    """
    return queue._full_state()


def restore_queue_state(queue, state):
    """Give Brian's C++ spike queue the content ``state`` (as ``queue_state``'s).

    Wraps ``SpikeQueue._restore_from_full_state()`` (what ``restore`` uses).
    """
    queue._restore_from_full_state(state)


def queue_source_range(queue):
    """``(source_start, source_end)`` that Brian's spike queue was created with.

    Wraps ``SpikeQueue._state_tuple`` (``(start, end, dtype)``).
    """
    source_start, source_end = queue._state_tuple[:2]
    return source_start, source_end


def resize_synapses(synapses, number):
    """Resize all synaptic variables of ``synapses`` to ``number`` synapses, set ``N``.

    Wraps ``Synapses._resize``, which Brian's own synapse creation calls.
    """
    synapses._resize(number)


def update_synapse_numbers(synapses, old_number):
    """Update ``N_incoming``/``N_outgoing`` (and the multisynaptic index) after creation.

    Wraps ``Synapses._update_synapse_numbers``; ``old_number`` is the number
    of synapses before the new ones were appended.
    """
    synapses._update_synapse_numbers(old_number)


# -- random numbers ----------------------------------------------------------------


def device_random_buffers(device):
    """The runtime device's ``rand``/``randn`` buffers and indices, or None.

    Wraps ``RuntimeDevice.rand_buffer``, ``rand_buffer_index``,
    ``randn_buffer`` and ``randn_buffer_index``: Brian 2.11 keeps float64
    numbers (and int32[1] indices) there and includes them in
    ``get_random_state``; Brian 2.10 keeps a pointer for Cython (None here).
    Returns ``{attribute name: array}``.
    """
    buffers = {name: getattr(device, name, None) for name in _RANDOM_BUFFER_NAMES}
    if not all(isinstance(array, np.ndarray) for array in buffers.values()):
        return None
    numbers = (buffers["rand_buffer"], buffers["randn_buffer"])
    indices = (buffers["rand_buffer_index"], buffers["randn_buffer_index"])
    if all(a.dtype == np.float64 and a.size > 1 for a in numbers) and all(
            a.dtype == np.int32 and a.size == 1 for a in indices):
        return buffers
    return None


def extend_runtime_random_state(key, on_seed, get_state, set_state):
    """Make the runtime device's random state cover extra state (Brian 2.10).

    Wraps ``RuntimeDevice.seed``, ``get_random_state`` and
    ``set_random_state`` class-wide (all runtime devices, also ones created
    later): Brian has no hook for them. After the original method,
    ``on_seed()`` runs, ``get_state()`` is stored as ``state[key]``, and
    ``set_state(state.get(key))`` restores it (None: stored without it).
    """
    from brian2.devices.device import RuntimeDevice

    original_seed = RuntimeDevice.seed
    original_get = RuntimeDevice.get_random_state
    original_set = RuntimeDevice.set_random_state

    def seed(self, seed=None):
        original_seed(self, seed)
        on_seed()

    def get_random_state(self):
        state = original_get(self)
        state[key] = get_state()
        return state

    def set_random_state(self, state):
        original_set(self, state)
        set_state(state.get(key))

    RuntimeDevice.seed = seed
    RuntimeDevice.get_random_state = get_random_state
    RuntimeDevice.set_random_state = set_random_state


# -- functions -----------------------------------------------------------------------


def timedarray_find_K(group_dt, dt):
    """The upsampling factor of a TimedArray with step ``dt`` in a group with ``group_dt``.

    Wraps ``brian2.input.timedarray._find_K``, which Brian's targets use.
    """
    return _timedarray_module()._find_K(group_dt, dt)


def register_timedarray_implementation(target, code_1d, code_2d):
    """Code factories ``(values, dt, name) -> (owner -> code)`` of TimedArray for ``target``.

    Wraps the class-level table ``TimedArray.implementations`` (``{target:
    (1-D, 2-D)}``), where Brian's own targets register theirs.
    """
    from brian2.input.timedarray import TimedArray

    TimedArray.implementations[target] = (code_1d, code_2d)


def binomial_constants(n, p):
    """``(reverse, q, P, qn, bound)`` of binomial sampling by inversion.

    Wraps ``brian2.input.binomial._pre_calc_constants``.
    """
    return _binomial_module()._pre_calc_constants(n, p)


def binomial_normal_constants(n, p):
    """``(loc, scale)`` of the normal approximation of a binomial distribution.

    Wraps ``brian2.input.binomial._pre_calc_constants_approximated``.
    """
    return _binomial_module()._pre_calc_constants_approximated(n, p)


def register_binomial_implementation(target, code):
    """Code factory ``(n, p, use_normal, name) -> (code, dependencies)`` for ``target``.

    Wraps the class-level table ``BinomialFunction.implementations``, where
    Brian's own targets register theirs.
    """
    from brian2.input.binomial import BinomialFunction

    BinomialFunction.implementations[target] = code


def function_return_type(func):
    """``'float'``, ``'integer'``, ``'boolean'`` or ``'highest'``: a Function's result type.

    Wraps ``Function._return_type`` (set by ``@check_units(result=...)`` and
    ``@declare_types``), which Brian's own code reads.
    """
    return getattr(func, "_return_type", None) or "float"


# -- the network loop (brian2_numba.network) -----------------------------------------
# (the classes are looked up once: the fused loop asks at every run() and chunk)


@functools.cache
def _network_class():
    from brian2.core.network import Network

    return Network


@functools.cache
def _group_class():
    from brian2.groups.group import Group

    return Group


@functools.cache
def _clock_class():
    from brian2.core.clocks import Clock

    return Clock


def code_objects(obj):
    """What ``BrianObject.run`` calls, in order (``obj._code_objects``)."""
    return list(obj._code_objects)


def clock_end(clock):
    """The time step at which the current run ends (``Clock._i_end``)."""
    return clock._i_end


def warns_for_unused_objects():
    """Whether ``Network.run`` collects garbage first (2.11's preference; 2.10 always)."""
    from brian2.core.preferences import prefs

    if "logging.warn_for_unused_objects" in prefs:
        return bool(prefs["logging.warn_for_unused_objects"])
    return True


def tracked_objects():
    """Weak references to every named Brian object, alive or not collected yet.

    A copy of Brian's instance tracker (``Nameable.__instances__()``): groups,
    clocks, code objects, ... A garbage object keeps its name taken (for
    ``find_name``) until the collector frees it.
    """
    from brian2.core.names import Nameable

    return set(Nameable.__instances__())


def an_object_would_warn_when_collected():
    """Whether a live Brian object would warn "never included in a network" when freed.

    The test of ``BrianObject.__del__`` (2.10 and 2.11), applied to every
    object of Brian's instance tracker (``BrianObject.__instances__()``, weak
    references: garbage that is not collected yet is still in it). If none
    would warn, the ``gc.collect()`` that ``Network.run`` does for that
    warning has nothing to show.
    """
    from brian2.core.base import BrianObject
    from brian2.core.preferences import prefs
    from brian2.utils.logger import BrianLogger

    if BrianLogger.exception_occured or not prefs["logging.warn_for_unused_objects"]:
        return False
    for reference in list(BrianObject.__instances__()):
        obj = reference()
        if (obj is not None and getattr(obj, "_network", "uninitialized") is None
                and getattr(obj, "group", None) is None):
            return True
    return False


def set_network_clocks(net, clocks):
    """``Network._clocks``, which ``Network._nextclocks`` and stop() read."""
    net._clocks = set(clocks)


def maximum_run_time(device):
    """The device's ``_maximum_run_time`` (set by ``set_device(..., maximum_run_time=)``)."""
    return getattr(device, "_maximum_run_time", None)


def set_maximum_run_time(device, seconds):
    """``Device._set_maximum_run_time``: every ``run()`` stops after ``seconds`` of
    wall time (``None``: no limit); a sweep's warm-up uses 0."""
    device._set_maximum_run_time(seconds)


def stop_network(net):
    """What ``Network.stop()`` does (``net._stopped = True``)."""
    net._stopped = True


def network_stopped(net):
    """``net._stopped`` or ``Network._globally_stopped`` (the magic ``stop()``)."""
    return bool(net._stopped or _network_class()._globally_stopped)


def set_globally_running(running):
    """``Network._globally_running``, true while any network runs."""
    _network_class()._globally_running = running


def set_last_run(device, seconds, completed_fraction):
    """``device._last_run_time`` and ``_last_run_completed_fraction``."""
    device._last_run_time = seconds
    device._last_run_completed_fraction = completed_fraction


def check_for_invalid_states(group):
    """``Group._check_for_invalid_states`` (Brian's warning for NaN after a run)."""
    group._check_for_invalid_states()


def clear_profiling_info(net):
    """No profile for this run (``net._profiling_info = None``), as Brian does."""
    net._profiling_info = None


def set_loop_file(net, path):
    """Remember the generated loop of a network, for ``generated_files``."""
    net._brian2_numba_loop_file = path


def loop_file(net):
    """The generated loop file of a network's last fused run, or None."""
    return getattr(net, "_brian2_numba_loop_file", None)


# -- memoisation (brian2_numba.cache_keys) ------------------------------------------------

#: sha256 of the source of ``brian2.utils.caching._hashable`` that
#: :mod:`brian2_numba.cache_keys` reproduces (Brian 2.10 and 2.11: the same)
HASHABLE_SOURCE_DIGESTS = frozenset({
    "bb709c33e575bb93c24deaa5978c11eec7b6dfeb63f639d9d30d1e251e7c80e2",
})


def _caching_module():
    from brian2.utils import caching

    return caching


def hashable_source_digest(function):
    """sha256 of a function's source, or None where Python cannot find it."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()


def install_cache_keys(make_hashable):
    """Let ``brian2.utils.caching.cached`` compute its keys with a faster function.

    ``brian2.utils.caching._hashable`` is replaced with
    ``make_hashable(brian2.utils.caching._hashable)`` if its source is the one
    that function reproduces (:data:`HASHABLE_SOURCE_DIGESTS`); ``cached``
    looks it up at every call. Returns True if it was replaced; False leaves
    Brian's own (another version of it, or already replaced).
    """
    caching = _caching_module()
    if hashable_source_digest(caching._hashable) not in HASHABLE_SOURCE_DIGESTS:
        return False
    caching._hashable = make_hashable(caching._hashable)
    return True


# -- the test suites (tests/conftest.py, brian2_numba.brian_suite) -----------------------


def _preference_plugin_class():
    from brian2.tests import PreferencePlugin

    return PreferencePlugin


def preference_plugin(preferences):
    """Brian's pytest plugin that hands ``preferences`` to every test.

    ``brian2.tests.PreferencePlugin``: with it, the fixture
    ``brian2.conftest.setup_and_teardown`` sets these preferences (and the
    runtime device) before each test, in this process and in pytest-xdist's
    workers, as in ``brian2.test``.
    """
    return _preference_plugin_class()(preferences)
