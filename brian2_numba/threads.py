"""Multi-threaded kernels: which ones run in parallel, and with how many threads.

With ``prefs.codegen.runtime.numba.threads`` above 1, a kernel is generated
with ``parallel=True`` and a ``prange`` loop when

* its template has a parallel form (:data:`PARALLEL_TEMPLATES`),
* its code is safe to split (:func:`partition_of`: no random numbers, and
  every array it writes is accessed through one index only), and
* it has enough work: items (neurons, synapses, recorded indices; ``reset``
  and ``synapses`` count the share that spikes in a step, see ``_SHARE``)
  times the operations of its vector code (:func:`operation_count`), at
  least ``parallel_threshold``, because starting a parallel region costs
  microseconds (about 2 µs with ``omp`` on the 2-core test machine).

Results do not depend on the thread count: loops over neurons write disjoint
elements; ``threshold`` compacts its events in ascending order; synaptic
effects and summed variables are *partitioned by target* (each thread scans
every synapse and handles those whose target index, modulo the thread count,
is its own), so each target sums in the serial order. The number of parts is an
argument of the kernel (``_num_threads``, from the preference at each run;
``numba.get_num_threads()`` inside a kernel would make it uncachable), so
the same compiled kernel serves every thread count (numba's cache is valid
across them, numba#7518).
"""

import contextlib
import ctypes
import os
import re
import sys
import threading

import numba
from brian2.core.preferences import prefs
from brian2.utils.logger import get_logger

__all__ = [
    "THREAD_COUNT_ARGUMENT",
    "PARALLEL_TEMPLATES",
    "partition_of",
    "operation_count",
    "parallel_partition",
    "requested_threads",
    "apply_thread_count",
    "run_lock",
]

logger = get_logger(__name__)

#: the kernel argument with the number of parts of a parallel loop
THREAD_COUNT_ARGUMENT = "_num_threads"

#: template -> what the parallel loop is partitioned by: ``"items"`` (each
#: item writes only its own elements), ``"target"`` (the synaptic templates:
#: by the index of what is written)
PARALLEL_TEMPLATES = {
    "stateupdate": "items",
    "threshold": "items",
    "reset": "items",
    "group_variable_set": "items",
    "group_variable_set_conditional": "items",
    "statemonitor": "items",
    "synapses": "target",
    "summed_variable": "target",
}

_OPERATOR = re.compile(r"\*\*|[-+*/%<>]|==|!=|\band\b|\bor\b|\bnot\b")
_CALL = re.compile(r"\b\w+\s*\(")
#: the operations a function call counts as
_CALL_COST = 10

#: templates whose index array may name an element twice (``G.v[[0, 0]] =``):
#: parallel only if no written array is also read
_REPEATED_INDICES = {"group_variable_set"}

#: kernels that run for the spikes of a step only: the share of their items
#: they count (``reset``: of the group; ``synapses``: of the synapses, about
#: 10 Hz at dt = 0.1 ms; CUBA's effects are some 1000 synapses per step)
_SHARE = {"reset": 0.1, "synapses": 0.001}


def partition_of(reads, writes, array_of, index_of, scalar, draws_random_numbers):
    """What the vector code's writes are indexed by, or ``None`` if it cannot be split.

    Parameters
    ----------
    reads, writes : set of str
        The variables the vector code reads (index variables included) and writes.
    array_of, index_of : callable
        A variable name's array name, and its index name (``'_idx'``,
        ``'_postsynaptic_idx'``, ``'0'`` for scalars, ...).
    scalar : callable
        Whether a variable is a scalar (one element shared by all items).
    draws_random_numbers : bool
        Random numbers come from one buffered stream in item order.

    Returns
    -------
    partition : str or None
        ``'_idx'`` if every write goes to the item's own elements, the name of
        another index if every write goes through it (e.g. ``v_post`` and
        synaptic variables in ``on_pre``), ``None`` if two items could write
        one element in an order that matters.
    reads_written : bool
        Whether an array that is written is also read.
    """
    if draws_random_numbers or any(scalar(name) for name in writes):
        return None, True
    indices = {}
    for name in reads | writes:
        indices.setdefault(array_of(name), set()).add(index_of(name))
    written = {array_of(name) for name in writes}
    partitions = set()
    for array in written:
        if len(indices[array]) != 1:  # e.g. v written as v_post, read as v_pre
            return None, True
        partitions |= indices[array]
    partitions.discard("_idx")
    if len(partitions) > 1:  # writes through the pre- and the postsynaptic index
        return None, True
    reads_written = bool(written & {array_of(name) for name in reads})
    return (partitions.pop() if partitions else "_idx"), reads_written


def requested_threads():
    """The thread count the preference asks for, within what numba can start."""
    value = prefs["codegen.runtime.numba.threads"]
    available = numba.config.NUMBA_NUM_THREADS
    if value == "auto":
        try:
            value = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            value = os.cpu_count() or 1
    if value > available:
        logger.warn(
            f"prefs.codegen.runtime.numba.threads = {value}, but numba starts at most "
            f"{available} threads (NUMBA_NUM_THREADS); using {available}.",
            name_suffix="too_many_threads", once=True,
        )
        value = available
    if _forked_from_threads and value > 1:
        logger.warn(
            "This process was forked from one that ran numba's "
            f"'{_forked_from_threads}' threading layer, which is not fork-safe; its "
            "kernels run single-threaded. Start processes with 'spawn' or "
            "'forkserver', or install tbb (pip install brian2-numba[threads]).",
            name_suffix="forked_single_threaded", once=True,
        )
        value = 1
    return max(1, min(value, available))


def _work(template, owner, variables):
    """How many items the kernel loops over (at code generation)."""
    try:
        if template == "statemonitor":
            return variables["_indices"].size
        group = getattr(owner, "synapses", None) or getattr(owner, "group", owner)
        items = len(group)
    except (KeyError, TypeError, AttributeError, ReferenceError):
        return 0
    return items * _SHARE.get(template, 1)


def operation_count(statement):
    """Operations in a line of generated code: a kernel's cost per item.

    An assignment counts one, an arithmetic or logical operator one, a
    function call (``exp``, ``exprel``, Brian's ``_timestep``) ``_CALL_COST``.
    """
    operators = len(_OPERATOR.findall(statement))
    calls = len(_CALL.findall(statement))
    return 1 + operators + calls * _CALL_COST


def parallel_partition(template, owner, variables, partition, reads_written, operations=1):
    """The partition the kernel is generated with, or ``None`` for a serial kernel.

    ``partition`` and ``reads_written`` are :func:`partition_of`'s answer,
    ``operations`` the :func:`operation_count` of the vector code (a kernel's
    work is its items times its operations).
    """
    kind = PARALLEL_TEMPLATES.get(template)
    if kind is None or partition is None or requested_threads() == 1:
        return None
    if kind == "items" and partition != "_idx":
        return None  # e.g. a reset that writes another group's variable
    if template in _REPEATED_INDICES and reads_written:
        return None
    work = _work(template, owner, variables) * max(1, operations)
    if work < prefs["codegen.runtime.numba.parallel_threshold"]:
        return None
    return partition


# -- running --------------------------------------------------------------------

#: the layers that tolerate parallel kernels started from several Python threads
_THREADSAFE_LAYERS = ("tbb", "omp")
#: the layers whose threads do not survive a fork (GNU OpenMP)
_FORK_UNSAFE_LAYERS = ("omp",)
_forked_from_threads = None
_lock = threading.RLock()  # a network_operation may run another network


def apply_thread_count():
    """``numba.set_num_threads`` from the preference (thread-local in numba).

    With one thread and no parallel kernel run yet, nothing: the first call
    would start numba's threads (about 8 ms, and an OpenMP runtime that a
    forked child must not use) for nothing.
    """
    count = requested_threads()
    if count == 1:
        try:
            numba.threading_layer()
        except ValueError:  # not started: no parallel kernel has run
            return
    numba.set_num_threads(count)


def run_lock():
    """A lock around a run with parallel kernels if the threading layer needs one.

    numba's ``workqueue`` layer aborts the process when two Python threads
    start parallel regions at once (numba#8563); with it, runs from several
    threads take turns. ``tbb`` and ``omp`` need no lock.
    """
    if requested_threads() == 1:
        return contextlib.nullcontext()
    if _threading_layer() in _THREADSAFE_LAYERS:
        return contextlib.nullcontext()
    return _lock


def _threading_layer():
    """numba's threading layer, starting it if no parallel kernel has run yet."""
    try:
        return numba.threading_layer()
    except ValueError:  # not started yet
        from numba.np.ufunc.parallel import _launch_threads

        _launch_threads()
        layer = numba.threading_layer()
        logger.debug(f"numba's threading layer: {layer}")
        return layer


def _after_fork_in_child():
    global _forked_from_threads
    try:
        layer = numba.threading_layer()
    except ValueError:  # no threads were started: nothing inherited
        return
    if layer in _FORK_UNSAFE_LAYERS:
        _forked_from_threads = layer


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _prefer_omp():
    """Try OpenMP before TBB, unless the user chose (``NUMBA_THREADING_LAYER*``).

    numba's own order is tbb, omp, workqueue. On the 2-core test machine a
    parallel region took about 2 µs with omp and 10–20 µs with tbb, which
    decides whether mid-sized kernels gain at all; tbb stays the choice
    where omp is missing, and the one to pick for fork safety.
    """
    if "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ and \
            "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


def _preload_tbb():
    """Make a pip-installed TBB loadable (Linux venvs).

    The ``tbb`` wheel puts ``libtbb.so.12`` in the environment's ``lib``
    directory, where numba's ``tbbpool`` extension does not look, so numba
    falls back to another layer without a word. Loaded here, globally,
    before numba picks its layer. (Elsewhere the loader finds it, or the
    wheel does not exist: macOS.)
    """
    path = os.path.join(sys.prefix, "lib", "libtbb.so.12")
    if sys.platform.startswith("linux") and os.path.exists(path):
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            logger.debug(f"Could not load {path}: {exc}")


_preload_tbb()
_prefer_omp()
