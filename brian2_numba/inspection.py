"""Finding the generated source of code objects, for users who want to read it.

Every block of every numba code object is a plain ``.py`` file in the cache
directory. ``generated_files(obj)`` lists them::

    net.run(0*ms)   # or any run: code objects are created at run time
    for name, blocks in brian2_numba.generated_files(net).items():
        print(name, blocks["run"])

Each file starts with a comment naming its code object and template.
"""

from brian2.core.base import BrianObject
from brian2.core.network import Network

from . import compat
from .codeobject import NumbaCodeObject

__all__ = ["generated_files"]


def _code_objects(obj):
    if isinstance(obj, NumbaCodeObject):
        yield obj
    elif isinstance(obj, Network):
        for member in obj.objects:
            yield from _code_objects(member)
    elif isinstance(obj, BrianObject):
        yield from (c for c in obj.code_objects if isinstance(c, NumbaCodeObject))
        for contained in obj.contained_objects:
            yield from _code_objects(contained)
    else:
        raise TypeError(
            "generated_files() takes a Network, a Brian object or a numba code "
            f"object, not {type(obj).__name__}."
        )


def generated_files(obj):
    """The generated ``.py`` files of an object's code objects.

    Parameters
    ----------
    obj : Network, BrianObject or CodeObject
        A network, a Brian object (its contained objects included, e.g. a
        ``Synapses`` object's pathways) or a code object. Code objects exist
        once the object took part in a ``run()``.

    Returns
    -------
    files : dict
        ``{code object name: {block: path}}``. For a network whose last run
        was fused (``prefs.codegen.runtime.numba.fused``), the network's own
        name maps to ``{'loop': path}``, its compiled simulation loop.

    Examples
    --------
    >>> for name, blocks in brian2_numba.generated_files(net).items():  # doctest: +SKIP
    ...     print(name, blocks)
    neurongroup_stateupdater_codeobject {'run': '/home/me/.cache/brian2-numba/brian2_numba_<hash>.gen.py'}
    """
    files = {codeobj.name: codeobj.source_files for codeobj in _code_objects(obj)}
    if isinstance(obj, Network) and compat.loop_file(obj):
        files[obj.name] = {"loop": compat.loop_file(obj)}
    return files
