"""Growing the arrays that kernels hold, in place, where the fused loop sees it.

``ndarray.resize(..., refcheck=False)`` keeps the array object (so code
objects that bound it as a kernel argument keep working) but moves its data.
A kernel called with the array sees the move; the fused loop's packed
arguments (:func:`brian2_numba.kernel_calls.pack`), which hold the data
pointer, do not. Every such resize therefore goes through :func:`resize`,
which counts them, and the loop packs its arguments again when the count has
changed since it packed them (``tests/test_structures.py`` checks that no
other module resizes in place).
"""

__all__ = ["resize", "resize_count"]

_resizes = 0


def resize(array, shape):
    """``array.resize(shape)`` in place, counted."""
    global _resizes
    array.resize(shape, refcheck=False)
    _resizes += 1


def resize_count():
    """How many in-place resizes happened in this process."""
    return _resizes
