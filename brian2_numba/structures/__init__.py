"""Numba-side data structures behind Brian's spike queue and monitor arrays.

Brian (>= 2.10) keeps both in C++ behind Cython, where compiled kernels cannot
reach them. These plain-numpy counterparts live as long as their Brian
object, are used by the kernels inside a run, and are synchronised with
Brian's objects at run boundaries (and, for monitors, whenever Python reads
the recorded values).

``registry`` says which template uses which structure; ``queue_arguments``
names the spike queue's arrays for the kernels.
"""

from .monitors import PendingRecords, records_for
from .registry import STRUCTURES, structure_for
from .spikequeue import (
    NumbaSpikeQueue,
    match_push_code_object,
    pathway_of,
    spikequeue_for,
)

__all__ = [
    "NumbaSpikeQueue",
    "PendingRecords",
    "match_push_code_object",
    "pathway_of",
    "records_for",
    "spikequeue_for",
    "STRUCTURES",
    "structure_for",
]
