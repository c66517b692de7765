"""Calling kernels through their addresses (brian2_numba.kernel_calls)."""

import numba
import numpy as np
import pytest

from brian2_numba.cache import loop_kernel
from brian2_numba.kernel_calls import (
    CHUNK_DONE,
    ENTRY,
    NEEDED,
    PYTHON_ENTRY,
    READ,
    RESUME,
    STATE_WORDS,
    STRUCTURE_FULL,
    WARM,
    WHY,
    address_of,
    entry_point,
    hand_over,
    pack,
    run_at,
    run_packed,
    warm_caches,
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
    out[8] += 1  # calls
    values[0] = 42.0  # writes reach the caller's array
    return n  # (what a full structure needs: the loop keeps it in state[NEEDED])


def _state():
    state = np.zeros(STATE_WORDS, dtype=np.int64)
    state[WHY] = CHUNK_DONE
    return state


@numba.njit
def _packed_loop(state, addresses, blocks, types, steps):
    """Entry 1 (entry 0 is another kernel), ``steps`` times; how often it was full."""
    full = 0
    for _ in range(steps):
        state[WHY] = 1  # CHUNK_DONE: a step in progress
        run_packed(state, 1, True, True, _kernel, addresses, blocks, types)
        full += state[WHY] == 3  # STRUCTURE_FULL
    return full


@numba.njit
def _tuple_loop(state, addresses, arguments, steps):
    full = 0
    for _ in range(steps):
        state[WHY] = 1
        run_at(state, 1, True, True, _kernel, addresses, arguments)
        full += state[WHY] == 3
    return full


def _arguments():
    matrix = np.arange(24, dtype=np.int32).reshape(4, 6)[::2, 1::2]  # not contiguous
    return (np.zeros(9), np.array([1.5, 2.5, 3.0]), matrix, np.array([True, False, True]),
            0.1, np.float32(2.25), 2 ** 40 + 3, np.int32(-7), True)


def _expected(steps):
    """What ``steps`` direct calls return and leave in the arguments."""
    arguments = _arguments()
    hits = sum(bool(_kernel(*arguments)) for _ in range(steps))
    return hits, arguments


def _tables(arguments):
    """The loop's address and block tables, with the kernel as entry 1."""
    block, types = pack(arguments)
    addresses = np.array([0, address_of(_kernel, arguments)], dtype=np.uintp)
    blocks = np.array([0, block.ctypes.data], dtype=np.uintp)
    return addresses, blocks, block, types


def test_run_packed_passes_every_kind_of_argument():
    """Arrays of several dtypes and layouts, floats, ints, bools: as a direct call."""
    hits, expected = _expected(3)
    arguments = _arguments()
    addresses, blocks, block, types = _tables(arguments)
    state = _state()
    assert _packed_loop(state, addresses, blocks, types, 3) == hits == 3
    np.testing.assert_array_equal(arguments[0], expected[0])
    assert arguments[1][0] == 42.0
    assert state[ENTRY] == 1 and state[WHY] == STRUCTURE_FULL
    assert state[NEEDED] == 2 ** 40 + 3  # the kernel's result, all 64 bits


def test_address_of_with_the_types_pack_found():
    """pack's types are the signature address_of would compute: the same function."""
    arguments = _arguments()
    block, types = pack(arguments)
    assert address_of(_kernel, arguments, types.instance_type.types) == address_of(
        _kernel, arguments)


def test_run_at_passes_the_tuple():
    hits, expected = _expected(2)
    arguments = _arguments()
    addresses = np.array([0, address_of(_kernel, arguments)], dtype=np.uintp)
    state = _state()
    assert _tuple_loop(state, addresses, arguments, 2) == hits == 2
    np.testing.assert_array_equal(arguments[0], expected[0])
    assert state[NEEDED] == 2 ** 40 + 3


@numba.njit
def _one_step(state, due, make_room, addresses, blocks, types):
    """Entry 0 hands over to Python if ``state[3]`` is set, then entry 1."""
    hand_over(state, 0, state[3] == 1)
    run_packed(state, 1, due, make_room, _kernel, addresses, blocks, types)


@pytest.mark.parametrize(
    "case, due, make_room, resume, hand_over_first, calls, why, entry",
    [
        ("runs", True, True, 0, False, 1, STRUCTURE_FULL, 1),
        ("result ignored without make_room", True, False, 0, False, 1, CHUNK_DONE, 1),
        ("clock not due", False, True, 0, False, 0, CHUNK_DONE, -1),
        ("resumes after it", True, True, 2, False, 0, CHUNK_DONE, -1),
        ("resumes at it", True, True, 1, True, 1, STRUCTURE_FULL, 1),
        ("an earlier entry waits for Python", True, True, 0, True, 0, PYTHON_ENTRY, 0),
    ],
)
def test_an_entry_runs_only_when_due(case, due, make_room, resume, hand_over_first, calls,
                                     why, entry):
    arguments = _arguments()
    addresses, blocks, block, types = _tables(arguments)
    state = _state()
    state[ENTRY] = -1
    state[RESUME] = resume
    state[WARM] = int(hand_over_first)  # (used as the hand-over's clock here)
    _one_step(state, due, make_room, addresses, blocks, types)
    assert arguments[0][8] == calls, case
    assert (state[WHY], state[ENTRY]) == (why, entry), case
    assert state[NEEDED] == (2 ** 40 + 3 if why == STRUCTURE_FULL else 0), case


@numba.njit
def _warm(state, regions):
    warm_caches(state, regions, 64)


def test_warm_caches_reads_one_byte_per_line():
    data = np.arange(1000, dtype=np.uint8)
    other = np.full(10, 3, dtype=np.uint8)
    regions = np.array([[data.ctypes.data, data.nbytes], [other.ctypes.data, other.nbytes]],
                       dtype=np.int64)
    state = _state()
    state[WARM] = 1
    _warm(state, regions)
    assert state[WARM] == 0
    assert state[READ] == int(data[::64].astype(np.int64).sum()) + 3
    state[READ] = -5
    _warm(state, regions)  # not a new run: nothing read
    assert state[READ] == -5


@numba.njit
def _raising(values, limit):
    if values[0] > limit:
        raise ValueError("value above the limit")


@numba.njit
def _raising_loop(state, addresses, blocks, types):
    run_packed(state, 0, True, False, _raising, addresses, blocks, types)


def _raising_arguments(value):
    arguments = (np.array([value]), 1.0)
    block, types = pack(arguments)
    return (_state(), np.array([address_of(_raising, arguments)], dtype=np.uintp),
            np.array([block.ctypes.data], dtype=np.uintp), types), block


def test_kernel_exceptions_propagate():
    loop_arguments, block = _raising_arguments(3.0)
    with pytest.raises(ValueError, match="value above the limit"):
        _raising_loop(*loop_arguments)
    assert loop_arguments[0][ENTRY] == 0  # the entry that raised
    loop_arguments, block = _raising_arguments(0.5)
    _raising_loop(*loop_arguments)  # no error


_kernel_without_wrapper = loop_kernel(_kernel)
_raising_without_wrapper = loop_kernel(_raising)


@numba.njit
def _variant_loop(state, addresses, blocks, types, steps):
    full = 0
    for _ in range(steps):
        state[WHY] = 1
        run_packed(state, 1, True, True, _kernel_without_wrapper, addresses, blocks, types)
        full += state[WHY] == 3
    return full


@numba.njit
def _raising_variant_loop(state, addresses, blocks, types):
    run_packed(state, 0, True, False, _raising_without_wrapper, addresses, blocks, types)


def test_kernels_without_python_wrapper_are_called_the_same_way():
    """The fused loop's variants (cache.loop_kernel): no Python entry compiled,
    the same results and the same exceptions through the loop."""
    assert loop_kernel(_kernel) is _kernel_without_wrapper
    hits, expected = _expected(3)
    arguments = _arguments()
    block, types = pack(arguments)
    addresses = np.array([0, address_of(_kernel_without_wrapper, arguments)], dtype=np.uintp)
    blocks = np.array([0, block.ctypes.data], dtype=np.uintp)
    state = _state()
    assert _variant_loop(state, addresses, blocks, types, 3) == hits == 3
    np.testing.assert_array_equal(arguments[0], expected[0])
    assert state[NEEDED] == 2 ** 40 + 3
    (result,) = _kernel_without_wrapper.overloads.values()
    assert result.library.get_pointer_to_function(result.fndesc.llvm_cpython_wrapper_name) == 0
    arguments = (np.array([3.0]), 1.0)
    block, types = pack(arguments)
    state = _state()
    with pytest.raises(ValueError, match="value above the limit"):
        _raising_variant_loop(
            state, np.array([address_of(_raising_without_wrapper, arguments)], dtype=np.uintp),
            np.array([block.ctypes.data], dtype=np.uintp), types)
    assert state[ENTRY] == 0


@pytest.mark.parametrize("other", [(1, 2), None, "text", 1 + 2j])
def test_other_argument_types_are_not_packed(other):
    assert pack((np.zeros(2), other)) is None


def test_entry_point_calls_the_compiled_loop_without_dispatch():
    """The entry point of the overload for the arguments: same result, same errors."""
    hits, expected = _expected(4)
    arguments = _arguments()
    addresses, blocks, block, types = _tables(arguments)
    loop_arguments = (_state(), addresses, blocks, types, 4)
    _packed_loop.compile(tuple(numba.typeof(a) for a in loop_arguments))
    entry = entry_point(_packed_loop, loop_arguments)
    assert entry is not _packed_loop
    assert entry(*loop_arguments) == hits == 4
    np.testing.assert_array_equal(arguments[0], expected[0])
    # exceptions of the kernel propagate through the entry point too
    loop_arguments, block = _raising_arguments(3.0)
    with pytest.raises(ValueError, match="value above the limit"):
        _raising_loop(*loop_arguments)
    with pytest.raises(ValueError, match="value above the limit"):
        entry_point(_raising_loop, loop_arguments)(*loop_arguments)


def test_entry_point_without_an_overload_is_the_dispatcher():
    @numba.njit
    def never_called(x):
        return x

    assert entry_point(never_called, (1.5,)) is never_called
