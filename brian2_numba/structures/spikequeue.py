"""A spike queue that compiled kernels can use: numpy arrays, no methods.

Brian (>= 2.10) keeps the spike queue of a synaptic pathway in C++ behind
Cython; numba cannot call it. ``NumbaSpikeQueue`` holds the same state in
arrays that the ``synapses_push_spikes`` and ``synapses`` kernels read and
write directly:

* ``queue[slot, k]``: what arrives in ``slot`` (a ring of ``n_slots`` time
  steps, ``offset[0]`` is the current one), ``counts[slot]`` how many
  entries: a source neuron (entry >= 0) stands for all its synapses, which
  is how events are queued when all synapses have the same delay (queueing
  costs one entry per event, not one per synapse); a single synapse ``s`` is
  the entry ``-1 - s`` (heterogeneous delays, and spikes taken over from
  Brian's queue);
* ``syn_ptr``/``syn_idx``: the synapses of each source neuron (CSR, in
  synapse order, so spikes are queued in exactly the order of Brian's C++
  queue), ``delays``: their delays in time steps, in the same CSR order
  (read sequentially while queueing), or one value if homogeneous;
* ``saved_counts``: scratch space, so that a step that overflows a slot can
  be undone (then the queue grows and the step is queued again).

The arrays keep their identity (they are resized in place), so the kernels
get them as ordinary arguments, bound once per code object.

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
    """State of one synaptic pathway's queue, in arrays (see module docstring).

    The arrays are created once and later resized *in place*, so code
    objects can hold them as kernel arguments for good.
    """

    def __init__(self, source_start, source_end):
        self.source_start = source_start
        self.source_end = source_end
        self.offset = np.zeros(1, dtype=np.int32)
        self.counts = np.zeros(1, dtype=np.int32)
        self.queue = np.zeros((1, MIN_CAPACITY), dtype=np.int32)
        self.syn_ptr = np.zeros(source_end - source_start + 1, dtype=np.int32)
        self.syn_idx = np.zeros(0, dtype=np.int32)
        self.delays = np.zeros(1, dtype=np.int32)
        self.saved_counts = np.zeros(1, dtype=np.int32)

    def namespace(self):
        """The queue's arrays under the names the templates use."""
        return {
            "_numba_queue": self,
            "_queue_ring": self.queue,
            "_queue_counts": self.counts,
            "_queue_offset": self.offset,
            "_queue_syn_ptr": self.syn_ptr,
            "_queue_syn_idx": self.syn_idx,
            "_queue_delays": self.delays,
            "_queue_saved_counts": self.saved_counts,
            "_queue_source_start": self.source_start,
            "_queue_source_end": self.source_end,
        }

    def prepare(self, pathway):
        """Take over the prepared state of Brian's queue for ``pathway``.

        Call after ``pathway.initialise_queue()``, which lets Brian's queue
        handle changed delays, ``dt`` (re-binning queued spikes) and synapses.
        """
        dt = pathway.source.clock.dt_
        sources = pathway.synapse_sources.get_value()
        # synapses of each source neuron, in synapse order
        if np.all(sources[1:] >= sources[:-1]):  # the usual case: no sorting
            order = None
            _set(self.syn_idx, np.arange(len(sources), dtype=np.int32))
        else:
            order = np.argsort(sources, kind="stable")
            _set(self.syn_idx, order.astype(np.int32))
        per_source = np.bincount(sources - self.source_start, minlength=len(self.syn_ptr) - 1)
        self.syn_ptr[0] = 0
        np.cumsum(per_source[: len(self.syn_ptr) - 1], out=self.syn_ptr[1:])
        # delays in time steps, rounded as Brian's C++ queue: (int)(delay / dt + 0.5)
        steps = pathway._delays.get_value() / dt
        steps += 0.5
        delays = steps.astype(np.int32)
        del steps
        if len(delays) == 0 or np.all(delays == delays[0]):
            _set(self.delays, delays[:1] if len(delays) else np.zeros(1, np.int32))
        else:
            _set(self.delays, delays if order is None else delays[order])
        # the queued spikes
        offset, slots = pathway.queue._full_state()
        n_slots = max(len(slots), 1)
        if self.delays.max(initial=0) >= n_slots:  # Brian's queue prevents this
            raise ValueError(f"The spike queue of '{pathway.name}' has {n_slots} time "
                             f"steps, too few for its delays of up to "
                             f"{self.delays.max()} steps.")
        capacity = max(MIN_CAPACITY, 2 * max((len(s) for s in slots), default=0))
        self.queue.resize((n_slots, capacity), refcheck=False)
        self.queue[:] = 0
        self.counts.resize(n_slots, refcheck=False)
        self.counts[:] = 0
        self.saved_counts.resize(n_slots, refcheck=False)
        for slot, synapses in enumerate(slots):
            self.queue[slot, : len(synapses)] = -1 - np.asarray(synapses, dtype=np.int64)
            self.counts[slot] = len(synapses)
        self.offset[0] = offset % n_slots

    def store(self, pathway):
        """Hand the queue's content back to Brian's queue (after a run)."""
        slots = [self._synapses(self.queue[slot, : self.counts[slot]])
                 for slot in range(len(self.counts))]
        pathway.queue._restore_from_full_state((int(self.offset[0]), slots))

    def _synapses(self, entries):
        """The synapse indices that queue entries stand for, in order."""
        synapses = []
        for entry in entries.tolist():
            if entry < 0:
                synapses.append(-1 - entry)
            else:
                synapses.extend(self.syn_idx[self.syn_ptr[entry]:self.syn_ptr[entry + 1]].tolist())
        return synapses

    def grow(self, needed):
        """Make every slot hold at least ``needed`` entries."""
        old = self.queue.copy()
        capacity = max(needed, 2 * old.shape[1])
        self.queue.resize((old.shape[0], capacity), refcheck=False)
        self.queue[:] = 0
        self.queue[:, : old.shape[1]] = old


def _set(array, values):
    """Give ``array`` the content (and length) of ``values``, in place."""
    array.resize(len(values), refcheck=False)
    array[:] = values


_queues = weakref.WeakKeyDictionary()  # Brian's queue -> ours


def spikequeue_for(brian_queue):
    """The ``NumbaSpikeQueue`` shadowing Brian's queue of a pathway.

    Keyed by Brian's queue object, which both code objects of a pathway can
    see (their owners differ: the pathway pushes, the Synapses object
    processes).
    """
    queue = _queues.get(brian_queue)
    if queue is None:
        source_start, source_end, _ = brian_queue._state_tuple
        queue = _queues[brian_queue] = NumbaSpikeQueue(source_start, source_end)
    return queue
