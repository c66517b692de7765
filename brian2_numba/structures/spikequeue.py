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
  (read sequentially while queueing), or one value if homogeneous.
  ``in_order[0]`` is 1 when the synapses are sorted by source (the usual
  case: ``connect`` creates them source by source), so that ``syn_idx`` is
  ``arange``: the synapses kernel then runs through ``syn_ptr``'s ranges
  directly and reads one array less per synapse (for 5 million synapses,
  31 against 52 µs per step of 48 spikes).

The arrays keep their identity (they are resized in place), so the kernels
get them as ordinary arguments, bound once per code object. A step that
overflows a slot is undone (the push kernel walks its events a second
time), then the queue grows and the step is queued again: a time step costs
the same however long the ring is.

Brian's own queue stays the reference between runs: before a run, Brian
prepares it (delays, ``dt`` changes, new synapses) and this queue takes over
its content; after the run, the content goes back. So ``store``/``restore``
and switching targets between runs keep working (for the latter, see
``match_push_code_object``). When ``dt``, the synapses and the delays are
those of the previous run, the preparation is skipped: Brian's would
rebuild the same lists, and at millions of synapses that was most of the
cost of a short ``run()`` (see ``NumbaSpikeQueue._unchanged``).

The delays are checked before either queue sees them (every run: they can
change between runs): Brian's C++ queue converts them to ``int`` unchecked
(NaN, inf and huge values are undefined behaviour, a negative delay lands
in some other slot), and the kernels index the ring with them.
"""

import os
import weakref

import numpy as np
from brian2 import second
from brian2.codegen.codeobject import create_runner_codeobj

from ..compat import (
    pathway_delays,
    queue_source_range,
    queue_state,
    restore_queue_state,
)
from .in_place import resize
from .queue_arguments import queue_namespace

__all__ = ["NumbaSpikeQueue", "spikequeue_for", "match_push_code_object", "pathway_of"]

#: smallest capacity of a queue slot (unless the ring is very long, see RING_ENTRIES)
MIN_CAPACITY = 64

#: a new ring has at most this many entries (beyond what it must hold), so
#: that very long delays cost about 4 bytes per slot, not 4 * MIN_CAPACITY
RING_ENTRIES = 1 << 22

#: the longest delay in time steps: Brian's C++ queue rounds delays to int
#: (int32), and slot numbers (up to the longest delay + 1) are int32 too
MAX_DELAY_STEPS = np.iinfo(np.int32).max - 1

#: memory per time step of the longest delay, besides the ring's entries:
#: Brian's C++ queue (an empty std::vector, 24 bytes), its content as Python
#: lists while it is taken over or handed back (about 64), our counts (4)
BYTES_PER_SLOT = 92


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
        self.in_order = np.ones(1, dtype=np.int32)
        self.delays = np.zeros(1, dtype=np.int32)
        self.name = None  # the pathway's, once prepared (for error messages)
        # what the connectivity arrays were built from (see ``_unchanged``)
        self._built_from = None

    def namespace(self):
        """The queue's arrays under the names the templates use (see queue_arguments)."""
        return queue_namespace(self)

    def prepare(self, pathway):
        """Let Brian's queue prepare for a run, then take over its content.

        Brian's queue handles changed delays, ``dt`` (re-binning queued
        spikes) and synapses; the delays are checked first (see the module
        docstring).
        """
        self.name = pathway.name
        sources = pathway.synapse_sources.get_value()
        if not self._unchanged(pathway, sources):
            self._build(pathway)
        self._take_over(pathway, len(sources))  # (preparing adds no synapses)

    def _unchanged(self, pathway, sources):
        """Whether dt, the synapses and the delays are those of the last ``_build``.

        Then Brian's queue needs no preparation (its ``prepare`` would
        rebuild the same per-source lists, at about 5 ns per synapse) and
        the delays no check, and the connectivity arrays are still right.
        The raw values are compared, not a version counter: users write
        delays and synapses in place (``S.delay[:] = ...``) between runs.
        This costs a copy of the sources and delays (12 bytes per synapse)
        and two comparisons per run. Brian's queue must also not have been
        prepared by another target since (its ``dt`` then differs from ours,
        and it would re-bin what we hand back wrongly).
        """
        if self._built_from is None:
            return False
        clocks, old_sources, old_delays = self._built_from
        return (clocks == _clocks(pathway)
                and np.array_equal(old_sources, sources)
                and np.array_equal(old_delays, pathway_delays(pathway)))

    def _build(self, pathway):
        """Check the delays, prepare Brian's queue, build the CSR arrays."""
        self._built_from = None  # (if anything below raises)
        dt = pathway.source.clock.dt_
        raw_delays = np.array(pathway_delays(pathway), copy=True)
        delays = self._delay_steps(pathway, dt)
        pathway.initialise_queue()
        sources = pathway.synapse_sources.get_value()
        # synapses of each source neuron, in synapse order
        if np.all(sources[1:] >= sources[:-1]):  # the usual case: no sorting
            order = None
            _set(self.syn_idx, np.arange(len(sources), dtype=np.int32))
        else:
            order = np.argsort(sources, kind="stable")
            _set(self.syn_idx, order.astype(np.int32))
        self.in_order[0] = order is None
        per_source = np.bincount(sources - self.source_start, minlength=len(self.syn_ptr) - 1)
        self.syn_ptr[0] = 0
        np.cumsum(per_source[: len(self.syn_ptr) - 1], out=self.syn_ptr[1:])
        if len(delays) == 0 or np.all(delays == delays[0]):
            _set(self.delays, delays[:1] if len(delays) else np.zeros(1, np.int32))
        else:
            _set(self.delays, delays if order is None else delays[order])
        self._built_from = (_clocks(pathway), sources.copy(), raw_delays)

    def _take_over(self, pathway, n_synapses):
        """Copy the spikes queued in Brian's queue into the ring."""
        offset, slots = queue_state(pathway.queue)
        n_slots = max(len(slots), 1)
        if self.delays.max(initial=0) >= n_slots:  # Brian's queue prevents this
            raise ValueError(f"The spike queue of '{pathway.name}' has {n_slots} time "
                             f"steps, too few for its delays of up to "
                             f"{self.delays.max()} steps.")
        longest = max(map(len, slots), default=0)
        self._check_memory(n_slots, 2 * longest, f"the {longest} spikes queued for one time step")
        capacity = max(2 * longest, min(MIN_CAPACITY, max(1, RING_ENTRIES // n_slots)))
        resize(self.queue, (n_slots, capacity))
        self.queue[:] = 0
        resize(self.counts, n_slots)
        self.counts[:] = 0
        for slot, synapses in enumerate(slots):
            if not synapses:
                continue
            synapses = np.asarray(synapses, dtype=np.int64)
            if synapses.min() < 0 or synapses.max() >= n_synapses:
                # (numpy would raise an IndexError, Cython write out of bounds)
                raise ValueError(f"The spike queue of '{pathway.name}' holds spikes for "
                                 f"synapses that do not exist (there are {n_synapses}).")
            self.queue[slot, : len(synapses)] = -1 - synapses
            self.counts[slot] = len(synapses)
        self.offset[0] = offset % n_slots

    def _delay_steps(self, pathway, dt):
        """The delays in time steps, rounded as Brian's C++ queue: (int)(delay / dt + 0.5).

        Raises an error for delays that are NaN, infinite, negative or too
        long for an int32 number of steps, or would need more memory than
        the machine has (Brian's C++ queue would abort the process).
        """
        delays = np.asarray(pathway_delays(pathway), dtype=np.float64)  # as C++: double
        invalid = ~np.isfinite(delays) | (delays < 0)
        if invalid.any():
            raise ValueError(_delay_message(pathway, delays, invalid,
                                            "delays have to be finite and non-negative"))
        steps = delays / dt
        steps += 0.5
        too_long = steps >= MAX_DELAY_STEPS + 1
        if too_long.any():
            raise ValueError(_delay_message(
                pathway, delays, too_long,
                f"the spike queue holds delays of up to {MAX_DELAY_STEPS} time steps "
                f"({MAX_DELAY_STEPS * dt * second} with dt = {dt * second})"))
        steps = steps.astype(np.int32)
        longest = int(steps.max(initial=0))
        self._check_memory(longest + 1, 1, f"delays of up to {longest} time steps "
                                           f"({longest * dt * second} with dt = {dt * second})")
        return steps

    def _check_memory(self, n_slots, capacity, reason):
        """Raise a MemoryError if a ring of ``n_slots`` x ``capacity`` cannot fit."""
        needed = n_slots * (BYTES_PER_SLOT + 4 * capacity)
        available = _physical_memory()
        if available is not None and needed > available:
            raise MemoryError(f"The spike queue of '{self.name}' would need about "
                              f"{needed / 2**30:.3g} GiB for {reason}, but this machine "
                              f"has {available / 2**30:.3g} GiB of memory.")

    def store(self, pathway):
        """Hand the queue's content back to Brian's queue (after a run)."""
        slots = [[]] * len(self.counts)  # (Brian copies them) most slots are empty
        for slot in np.flatnonzero(self.counts).tolist():
            slots[slot] = self._synapses(self.queue[slot, : self.counts[slot]])
        restore_queue_state(pathway.queue, (int(self.offset[0]), slots))

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
        self._check_memory(old.shape[0], capacity,
                           f"{needed} spikes in one of its {old.shape[0]} time steps")
        resize(self.queue, (old.shape[0], capacity))
        self.queue[:] = 0
        self.queue[:, : old.shape[1]] = old


def _delay_message(pathway, delays, bad, why):
    """An error message naming the pathway and its first bad delay."""
    first = int(np.flatnonzero(bad)[0])
    value = delays[first] * second if np.isfinite(delays[first]) else f"{delays[first]} s"
    if pathway.variables["delay"].scalar:  # one delay for the whole pathway
        which = f"its delay is {value}"
    else:
        which = f"synapse {first} has the delay {value}"
        if bad.sum() > 1:
            which += f" ({bad.sum()} of {len(delays)} synapses have such delays)"
    return f"Invalid delay for the synaptic pathway '{pathway.name}': {which}, but {why}."


def _clocks(pathway):
    """The time steps that a pathway's queue depends on (source's) or warns about."""
    return (pathway.source.clock.dt_, pathway.synapses.clock.dt_, pathway.target.clock.dt_)


def _physical_memory():
    """Bytes of memory of this machine, or None if unknown (e.g. on Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _set(array, values):
    """Give ``array`` the content (and length) of ``values``, in place."""
    resize(array, len(values))
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
        source_start, source_end = queue_source_range(brian_queue)
        queue = _queues[brian_queue] = NumbaSpikeQueue(source_start, source_end)
    return queue


def pathway_of(synapses, brian_queue):
    """The pathway of ``synapses`` whose queue is ``brian_queue``.

    (The synapses code object belongs to the Synapses object, not to the
    pathway, but sees the pathway's queue.)
    """
    for obj in synapses.contained_objects:
        if getattr(obj, "queue", None) is brian_queue:
            return obj
    raise LookupError(f"'{synapses.name}' has no pathway with this spike queue.")


def match_push_code_object(pathway, caller):
    """Give the pathway a push code object of its synapses code object's target.

    Brian creates a pathway's push code object once, in its first run, but
    the synapses code object anew in every run, for the target of that run.
    Brian's own targets can be mixed like that, as both go through Brian's
    queue, but numba's two code objects share a NumbaSpikeQueue that no
    other target sees: after a switch of target, spikes would be pushed into
    one queue and taken from the other. So, if the targets differ, a push
    code object of the synapses code object's target replaces the old one in
    ``pathway.code_objects`` for this run (Brian sets that list anew in every
    run), and is prepared. Returns whether it did. ``caller`` says which of
    the two is numba's, ``"push"`` or ``"synapses"``.
    """
    push, synapses = pathway.code_objects
    if push.__class__ is synapses.__class__:
        return False
    if caller == "push":
        # the other target's pusher prepares Brian's queue for this run (its
        # dt may differ): ours must prepare it again in the next numba run.
        # (If Brian's own pusher is the other target's, it prepares Brian's
        # queue in every run, before the synapses code object calls this.)
        spikequeue_for(pathway.queue)._built_from = None
    eventspace = pathway.eventspace_name
    replacement = create_runner_codeobj(
        pathway,
        "",  # no code, as Brian's SynapticPathway.create_code_objects
        "synapses_push_spikes",
        name=f"{pathway.name}_push_spikes",
        check_units=False,
        additional_variables=pathway.variables,
        needed_variables=[eventspace],
        template_kwds={"eventspace_variable": pathway.source.variables[eventspace]},
        run_namespace={},
        codeobj_class=synapses.__class__,
    )
    pathway.code_objects[0] = replacement  # a strong reference, until the next run
    replacement.before_run()
    return True
