"""Calling kernels through their addresses (brian2_numba.kernel_calls)."""

import numba
import numpy as np
import pytest

from brian2_numba.kernel_calls import (
    address_of,
    call_at,
    call_packed,
    entry_point,
    pack,
)


@numba.njit
def _kernel(out, values, matrix, flags, x, y, n, small, switch):
    # every argument leaves a trace in `out`
    out[0] = values.sum()
    out[1] = matrix.sum() + matrix.shape[0] * 1000 + matrix.shape[1] * 100
    out[2] = flags.sum()
    out[3] = x
    out[4] = y
    out[5] = n
    out[6] = small
    out[7] = 1.0 if switch else -1.0
    values[0] = 42.0  # writes reach the caller's array
    return n > 0


@numba.njit
def _packed_loop(address, block, types, steps):
    hits = 0
    for _ in range(steps):
        if call_packed(_kernel, address, block, types):
            hits += 1
    return hits


@numba.njit
def _tuple_loop(address, arguments, steps):
    hits = 0
    for _ in range(steps):
        if call_at(_kernel, address, arguments):
            hits += 1
    return hits


def _arguments():
    matrix = np.arange(24, dtype=np.int32).reshape(4, 6)[::2, 1::2]  # not contiguous
    return (np.zeros(8), np.array([1.5, 2.5, 3.0]), matrix, np.array([True, False, True]),
            0.1, np.float32(2.25), 2 ** 40 + 3, np.int32(-7), True)


def _expected(steps):
    """What ``steps`` direct calls return and leave in the arguments."""
    arguments = _arguments()
    hits = sum(bool(_kernel(*arguments)) for _ in range(steps))
    return hits, arguments


def test_call_packed_passes_every_kind_of_argument():
    """Arrays of several dtypes and layouts, floats, ints, bools: as a direct call."""
    hits, expected = _expected(3)
    arguments = _arguments()
    block, types = pack(arguments)
    address = address_of(_kernel, arguments)
    assert _packed_loop(address, block.ctypes.data, types, 3) == hits == 3
    np.testing.assert_array_equal(arguments[0], expected[0])
    assert arguments[1][0] == 42.0


def test_call_at_passes_the_tuple():
    hits, expected = _expected(2)
    arguments = _arguments()
    assert _tuple_loop(address_of(_kernel, arguments), arguments, 2) == hits == 2
    np.testing.assert_array_equal(arguments[0], expected[0])


@numba.njit
def _raising(values, limit):
    if values[0] > limit:
        raise ValueError("value above the limit")


@numba.njit
def _raising_loop(address, block, types):
    call_packed(_raising, address, block, types)


def test_kernel_exceptions_propagate():
    arguments = (np.array([3.0]), 1.0)
    block, types = pack(arguments)
    with pytest.raises(ValueError, match="value above the limit"):
        _raising_loop(address_of(_raising, arguments), block.ctypes.data, types)
    arguments[0][0] = 0.5
    block, types = pack(arguments)
    _raising_loop(address_of(_raising, arguments), block.ctypes.data, types)  # no error


@pytest.mark.parametrize("other", [(1, 2), None, "text", 1 + 2j])
def test_other_argument_types_are_not_packed(other):
    assert pack((np.zeros(2), other)) is None


def test_entry_point_calls_the_compiled_loop_without_dispatch():
    """The entry point of the overload for the arguments: same result, same errors."""
    hits, expected = _expected(4)
    arguments = _arguments()
    block, types = pack(arguments)
    loop_arguments = (address_of(_kernel, arguments), block.ctypes.data, types, 4)
    _packed_loop.compile(tuple(numba.typeof(a) for a in loop_arguments))
    entry = entry_point(_packed_loop, loop_arguments)
    assert entry is not _packed_loop
    assert entry(*loop_arguments) == hits == 4
    np.testing.assert_array_equal(arguments[0], expected[0])
    # exceptions of the kernel propagate through the entry point too
    raising_arguments = (np.array([3.0]), 1.0)
    block, types = pack(raising_arguments)
    loop_arguments = (address_of(_raising, raising_arguments), block.ctypes.data, types)
    with pytest.raises(ValueError, match="value above the limit"):
        _raising_loop(*loop_arguments)
    with pytest.raises(ValueError, match="value above the limit"):
        entry_point(_raising_loop, loop_arguments)(*loop_arguments)


def test_entry_point_without_an_overload_is_the_dispatcher():
    @numba.njit
    def never_called(x):
        return x

    assert entry_point(never_called, (1.5,)) is never_called
