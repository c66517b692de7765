"""The names under which kernels get a pathway's ``NumbaSpikeQueue``.

``NumbaSpikeQueue.namespace`` puts the queue's arrays into a code object's
namespace under these names, and the templates ``synapses.py_`` and
``synapses_push_spikes.py_`` take them as parameters (through the template
global ``queue``: ``{{ queue.ring }}`` renders ``_queue_ring``). The code
object binds a kernel's parameters by name, so both sides must agree: this
module is the one place that says them.
"""

from types import SimpleNamespace

__all__ = ["QUEUE_OBJECT", "QUEUE_ARGUMENTS", "QUEUE_ATTRIBUTES", "template_names", "queue_namespace"]

#: the queue object itself (for the Python blocks: prepare, store, grow)
QUEUE_OBJECT = "_numba_queue"

#: what a kernel is given -> its parameter name
QUEUE_ARGUMENTS = {
    "ring": "_queue_ring",
    "counts": "_queue_counts",
    "offset": "_queue_offset",
    "syn_ptr": "_queue_syn_ptr",
    "syn_idx": "_queue_syn_idx",
    "in_order": "_queue_in_order",
    "delays": "_queue_delays",
    "source_start": "_queue_source_start",
    "source_end": "_queue_source_end",
}

#: the NumbaSpikeQueue attribute behind each argument (where it is not the same word)
QUEUE_ATTRIBUTES = {"ring": "queue"}


def template_names():
    """The template global ``queue``: ``queue.ring == '_queue_ring'``, ...."""
    return SimpleNamespace(object=QUEUE_OBJECT, **QUEUE_ARGUMENTS)


def queue_namespace(queue):
    """``{parameter name: array}`` of ``queue`` (and the queue itself)."""
    names = {QUEUE_OBJECT: queue}
    for what, parameter in QUEUE_ARGUMENTS.items():
        names[parameter] = getattr(queue, QUEUE_ATTRIBUTES.get(what, what))
    return names
