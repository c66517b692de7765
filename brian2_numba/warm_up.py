"""Bringing a network's data back into the CPU caches before its first time step.

Between two ``run()`` calls Python runs Brian's ``before_run`` (regenerating
code objects, milliseconds of work on a large heap), which evicts the
kernels' arrays from the caches. The first time steps of the next run then
wait on memory: spikes reach a different part of the synapse arrays at every
step, so a network whose data fits in the caches ran its first hundreds of
steps 2–5 times slower than its steady state (``synapses`` 1000 of the
benchmark tool: 4.6 µs a step in its first 16, 1.0 later). Reading one byte
of every cache line first, with independent loads that the CPU overlaps,
costs a fraction of that (20–70 µs for 0.5–0.8 MB here).

The fused loop does it at the start of each ``run()`` (``_state[WARM]``, see
the template ``network_run.py_``) over :func:`regions`: the kernels' arrays,
smallest first, up to :data:`WARM_BYTES`. Monitors' pending buffers are left
out: kernels only append to them, which the hardware prefetcher streams. The
loop reads the bytes with ``kernel_calls.warm_caches``, beside the other
intrinsics it is compiled with.
"""

import numpy as np

__all__ = ["WARM_BYTES", "LINE_BYTES", "regions"]

#: at most this many bytes are read at the start of a run(): half of a 2 MiB
#: L2 cache (the benchmark machine's), and more than most small networks hold
WARM_BYTES = 1 << 20
#: one load per cache line (64 bytes on x86-64 and most ARM cores; Apple's
#: 128-byte lines are then read twice, which costs little)
LINE_BYTES = 64


def regions(arguments, streams=(), budget=WARM_BYTES):
    """The memory the loop reads at the start of a run, as ``(n, 2)`` rows.

    Parameters
    ----------
    arguments : iterable of tuple
        The kernels' argument tuples; their numpy arrays are candidates, each
        once, smallest first, as long as the total stays within ``budget``.
    streams : iterable of numpy.ndarray
        Arrays to leave out (buffers that kernels only append to).
    budget : int
        The most bytes to read.

    Returns
    -------
    numpy.ndarray
        One row per array (``int64``): the address of its data and its size
        in bytes.
    """
    skipped = {id(array) for array in streams}
    found = {}
    for args in arguments:
        for value in args:
            if (isinstance(value, np.ndarray) and value.nbytes and id(value) not in skipped
                    and value.flags.c_contiguous):
                found[value.ctypes.data] = max(value.nbytes, found.get(value.ctypes.data, 0))
    rows, total = [], 0
    for address, size in sorted(found.items(), key=lambda item: (item[1], item[0])):
        if total + size > budget:
            break
        rows.append((address, size))
        total += size
    return np.array(rows, dtype=np.int64).reshape(len(rows), 2)
