"""Which template uses which numba-side structure.

A code object of one of these templates gets the structure's arrays as
kernel arguments (``NumbaCodeObject.structures_to_namespace``); every other
template uses none. A new structure, or a new template that uses one, is an
entry here.
"""

from .monitors import records_for
from .spikequeue import spikequeue_for

__all__ = ["STRUCTURES", "structure_for"]


def _spike_queue(owner, variables):
    # both code objects of a pathway see its Brian queue (their owners differ)
    return spikequeue_for(variables["_queue"])


def _spike_records(owner, variables):
    return records_for(owner, sorted(owner.record_variables))


def _state_records(owner, variables):
    return records_for(owner, ["t"] + sorted(owner.recorded_variables))


def _rate_records(owner, variables):
    return records_for(owner, ["rate", "t"])


#: template name -> the function giving the structure of a code object's owner
STRUCTURES = {
    "synapses": _spike_queue,
    "synapses_push_spikes": _spike_queue,
    "spikemonitor": _spike_records,
    "statemonitor": _state_records,
    "ratemonitor": _rate_records,
}


def structure_for(template_name, owner, variables):
    """The structure (a ``NumbaSpikeQueue`` or ``PendingRecords``) or None.

    Parameters
    ----------
    template_name : str
        The code object's template.
    owner : brian2.groups.group.Group
        The code object's owner (a monitor, a pathway, a Synapses object).
    variables : dict
        The code object's variables.
    """
    make = STRUCTURES.get(template_name)
    return None if make is None else make(owner, variables)
