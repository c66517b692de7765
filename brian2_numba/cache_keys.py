"""Brian's memoisation keys, computed faster: the same keys, for less of each ``run()``.

Brian memoises its parsing and code analysis with
``brian2.utils.caching.cached``, whose key is ``_hashable`` of every
argument: a dictionary becomes a frozenset, a ``Variable`` its
``_state_tuple``, and so on down. At every ``run()``, each code object's
``analyse_identifiers`` is called with its group's whole ``variables``
dictionary, so computing the keys takes thousands of recursive calls per
``run()``, each with two or three ``hasattr`` and ``issubclass`` tests: in a
profile of the ``short_runs`` benchmark model (ten neurons, 50 calls of
``run(1*ms)``), computing the keys was more than a third of a call. Looking
the key up then finds the result it memoised at the first run.

:func:`make_hashable` builds a function that returns what Brian's
``_hashable`` returns, equal and with the same hash, for every input. It
takes the common types first (the exact built-in types, lists, tuples and
dictionaries, none of which can have a ``_state_tuple``), reads a
``_state_tuple`` once where Brian reads it twice (``hasattr``, then the
value), and hands everything else to Brian's own function. Only the speed
differs.

:func:`brian2_numba.compat.install_cache_keys` puts it in place of Brian's,
once, at import, if Brian's function is the one this module reproduces (the
digest of its source, the same in Brian 2.10 and 2.11); otherwise Brian
keeps its own. ``BRIAN2_NUMBA_FAST_CACHE_KEYS=0`` in the environment before
the import keeps Brian's too. ``tests/test_cache_keys.py`` compares the two
on every key that models of every kind compute.
"""

import os

from . import compat

__all__ = ["make_hashable", "install", "ENVIRONMENT_VARIABLE"]

#: the environment variable that keeps Brian's own function ("0")
ENVIRONMENT_VARIABLE = "BRIAN2_NUMBA_FAST_CACHE_KEYS"

#: exact types that are their own key: no ``_state_tuple`` or ``dim``, hashable
_ATOMS = frozenset({str, int, float, bool, type(None), complex, bytes})
_MISSING = object()


def make_hashable(brians):
    """The key function, with Brian's own for what it does not take itself.

    Parameters
    ----------
    brians : callable
        ``brian2.utils.caching._hashable``. It gets every object that is not
        an exact built-in type, list, tuple or dictionary and has no
        ``_state_tuple`` (its recursion then calls whatever
        ``brian2.utils.caching._hashable`` is: once installed, this function).

    Returns
    -------
    hashable : callable
        A drop-in replacement for ``brian2.utils.caching._hashable``.
    """

    def hashable(obj):
        obj_type = type(obj)
        if obj_type in _ATOMS:
            return obj
        if obj_type is tuple or obj_type is list:
            return tuple([hashable(element) for element in obj])
        if obj_type is dict:
            return frozenset([(hashable(key), hashable(value)) for key, value in obj.items()])
        state = getattr(obj, "_state_tuple", _MISSING)  # Brian: hasattr, then again
        if state is not _MISSING:
            return hashable(state)
        return brians(obj)  # Brian's steps, from its own (failing) hasattr on

    return hashable


def install():
    """Brian's memoisation keys from :func:`make_hashable`, unless the environment says no.

    Returns True if Brian's function was replaced (see the module docstring).
    """
    if os.environ.get(ENVIRONMENT_VARIABLE, "1").strip() == "0":
        return False
    return compat.install_cache_keys(make_hashable)
