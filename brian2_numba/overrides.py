"""Sources that replace the generated code of code objects (``introspect.override``).

A registry only: ``NumbaCodeObject.compile_block`` asks it for a code
object's block before it compiles the generated source, so an override takes
effect whenever Brian creates the code object, i.e. from the next ``run()``
on. Code object names are matched with shell-style patterns (``fnmatch``),
as Brian's code objects get a numbered name when an older one is alive.
"""

import fnmatch

__all__ = ["set_override", "override_for", "remove_overrides", "overrides"]

#: (pattern, block) -> source, in the order they were set
_overrides = {}


def set_override(pattern, block, source):
    """Use ``source`` for ``block`` of every code object whose name matches."""
    _overrides.pop((pattern, block), None)
    _overrides[(pattern, block)] = source


def override_for(name, block):
    """The source that replaces ``block`` of code object ``name``, or None.

    The override set last wins if several patterns match.
    """
    found = None
    for (pattern, overridden_block), source in _overrides.items():
        if overridden_block == block and fnmatch.fnmatchcase(name, pattern):
            found = source
    return found


def remove_overrides(pattern=None):
    """Remove the overrides whose pattern matches ``pattern`` (all if None)."""
    removed = [key for key in _overrides
               if pattern is None or fnmatch.fnmatchcase(key[0], pattern)]
    for key in removed:
        del _overrides[key]
    return removed


def overrides():
    """``{(pattern, block): source}`` of the overrides in force."""
    return dict(_overrides)
