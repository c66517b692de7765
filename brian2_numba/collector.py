"""Keep the process's long-lived objects out of the garbage collector's path.

Brian calls ``gc.collect()`` at the start of every ``run()`` (so that objects
never added to a network warn as they go). A full collection walks every
object the collector tracks: about 230,000 once numba has compiled its
first kernel, most of them numba's and LLVM's typing and target tables,
which live as long as the process. That walk was three quarters of the cost
of a short ``run()`` on this target (about 110 of 140 ms).

So, once, when the package is imported: numba initialises its compiler
(compiling a trivial function, which it would do at the first kernel
anyway), and ``gc.freeze()`` moves everything alive at that moment into the
permanent generation, which collections skip. The trade-off, also in
docs/design.md: an object that was alive at import and later becomes cyclic
garbage is never freed (modules, numba's tables: they do not die), and
objects created before ``import brian2_numba`` that are never included in a
network do not warn. Set ``BRIAN2_NUMBA_FREEZE_GC=0`` before the import to
keep the collector as it was.

While a ``run()`` generates and compiles its code (Brian's code generation,
numba's typing and LLVM), :func:`full_collections_postponed` keeps Python's
automatic *full* collections from starting: each walks every object created
since the freeze, and a cold first ``run()`` (Brunel–Hakim 2000) went
through two or three of them besides Brian's own, 0.12–0.25 s of its
2.4–3.5 s. The young generations are still collected, so
the compilers' short-lived cycles are freed as before; what has survived
into the oldest generation waits for the next full collection after it.
"""

import contextlib
import gc
import os

import numpy as np
from numba import njit

__all__ = ["freeze_long_lived_objects", "full_collections_postponed"]

#: the environment variable that turns the freeze off ("0")
ENVIRONMENT_VARIABLE = "BRIAN2_NUMBA_FREEZE_GC"


def _initialise_numba():
    """Compile one tiny function: numba builds its typing and target tables."""

    @njit(cache=False)
    def _warm_up(values):
        total = 0.0
        for value in values:
            total += value
        return total

    _warm_up(np.zeros(2))


def freeze_long_lived_objects():
    """Initialise numba and freeze what is alive now (see the module docstring).

    Returns True if it froze, False if the environment turned it off.
    """
    if os.environ.get(ENVIRONMENT_VARIABLE, "1").strip() == "0":
        return False
    _initialise_numba()
    gc.collect()  # what is garbage now is not frozen
    gc.freeze()
    return True


#: the oldest generation's threshold while code is generated and compiled (in
#: collections of the middle one; Python's default is 10)
POSTPONED_THRESHOLD = 1_000_000


@contextlib.contextmanager
def full_collections_postponed():
    """No automatic full collection in this block (explicit ``gc.collect()`` still runs).

    Nested blocks and exceptions restore what was set before; a threshold set
    higher than ours, or the collector disabled, is left as it is.
    """
    thresholds = gc.get_threshold()
    if len(thresholds) < 3 or thresholds[2] >= POSTPONED_THRESHOLD:
        yield
        return
    gc.set_threshold(thresholds[0], thresholds[1], POSTPONED_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
