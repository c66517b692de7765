"""A spike queue that compiled kernels can use: numpy arrays, no methods.

Brian (>= 2.10) keeps the spike queue of a synaptic pathway in C++ behind
Cython; numba cannot call it. ``NumbaSpikeQueue`` holds the same state in
arrays that the ``synapses_push_spikes`` and ``synapses`` kernels read and
write directly:

* ``queue[slot, k]``: synapse indices whose spikes arrive in ``slot`` (a ring
  of ``n_slots`` time steps, ``offset[0]`` is the current one), ``counts[slot]``
  how many;
* ``syn_ptr``/``syn_idx``: the synapses of each source neuron (CSR, in
  synapse order, so spikes are queued in exactly the order of Brian's C++
  queue), ``delays``: delays in time steps (one value if homogeneous).

Brian's own queue stays the reference between runs: before a run, Brian
prepares it (delays, ``dt`` changes, new synapses) and this queue takes over
its content; after the run, the content goes back. So ``store``/``restore``
and switching targets between runs keep working.
"""

import weakref

import numpy as np

__all__ = ["NumbaSpikeQueue", "spikequeue_for"]

#: smallest capacity of a queue slot
MIN_CAPACITY = 64


class NumbaSpikeQueue:
    """State of one synaptic pathway's queue, in arrays (see module docstring)."""

    def __init__(self):
        self.offset = np.zeros(1, dtype=np.int32)
        self.counts = np.zeros(1, dtype=np.int32)
        self.queue = np.zeros((1, MIN_CAPACITY), dtype=np.int32)
        self.syn_ptr = np.zeros(1, dtype=np.int32)
        self.syn_idx = np.zeros(0, dtype=np.int32)
        self.delays = np.zeros(1, dtype=np.int32)
        self.source_start = 0
        self.source_end = 0

    def prepare(self, pathway):
        """Take over the prepared state of Brian's queue for ``pathway``.

        Call after ``pathway.initialise_queue()``, which lets Brian's queue
        handle changed delays, ``dt`` (re-binning queued spikes) and synapses.
        """
        dt = pathway.source.clock.dt_
        self.source_start = int(pathway.source.start)
        self.source_end = int(pathway.source.stop)
        sources = np.asarray(pathway.synapse_sources.get_value(), dtype=np.int64)
        real_delays = np.asarray(pathway._delays.get_value(), dtype=np.float64)
        # rounding as in Brian's C++ queue: (int)(delay / dt + 0.5)
        delays = (real_delays / dt + 0.5).astype(np.int32)
        if len(delays) > 1 and np.all(delays == delays[0]):
            delays = delays[:1]
        self.delays = np.ascontiguousarray(delays if len(delays) else np.zeros(1, np.int32))
        n_sources = self.source_end - self.source_start
        order = np.argsort(sources, kind="stable")  # synapse order within a source
        self.syn_idx = order.astype(np.int32)
        per_source = np.bincount(sources - self.source_start, minlength=n_sources)
        self.syn_ptr = np.zeros(n_sources + 1, dtype=np.int32)
        np.cumsum(per_source[:n_sources], out=self.syn_ptr[1:])
        offset, slots = pathway.queue._full_state()
        n_slots = max(len(slots), 1)
        capacity = max(MIN_CAPACITY, 2 * max((len(s) for s in slots), default=0))
        self.queue = np.zeros((n_slots, capacity), dtype=np.int32)
        self.counts = np.zeros(n_slots, dtype=np.int32)
        for slot, spikes in enumerate(slots):
            self.queue[slot, : len(spikes)] = spikes
            self.counts[slot] = len(spikes)
        self.offset[0] = offset % n_slots

    def store(self, pathway):
        """Hand the queue's content back to Brian's queue (after a run)."""
        slots = [
            self.queue[slot, : self.counts[slot]].tolist()
            for slot in range(len(self.counts))
        ]
        pathway.queue._restore_from_full_state((int(self.offset[0]), slots))

    def grow(self, needed):
        """Make every slot hold at least ``needed`` synapse indices."""
        capacity = max(needed, 2 * self.queue.shape[1])
        grown = np.zeros((self.queue.shape[0], capacity), dtype=np.int32)
        grown[:, : self.queue.shape[1]] = self.queue
        self.queue = grown


_queues = weakref.WeakKeyDictionary()  # Brian's queue -> ours


def spikequeue_for(brian_queue):
    """The ``NumbaSpikeQueue`` shadowing Brian's queue of a pathway.

    Keyed by Brian's queue object, which both code objects of a pathway can
    see (their owners differ: the pathway pushes, the Synapses object
    processes).
    """
    queue = _queues.get(brian_queue)
    if queue is None:
        queue = _queues[brian_queue] = NumbaSpikeQueue()
    return queue
