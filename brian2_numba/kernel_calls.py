"""How the fused loop calls its kernels: through their machine-code addresses.

A numba function that calls another one the usual way links the callee's
LLVM module into its own, and compiling it optimises and generates machine
code for the whole linked module again: every kernel of the network a second
time, which made compiling the loop take 0.9–1.5 s on the benchmark models.
The loop calls its kernels through intrinsics instead, which call the
address of a kernel's compiled function with numba's own calling convention
(status codes and exceptions propagate as in an ordinary call). The loop's
module then holds only the loop, so it compiles in a fraction of the time,
and a kernel is compiled (or loaded from the cache) once, as in Brian's loop.

The addresses are in an array argument of the loop, taken in this process
by :func:`address_of`; the compiled loop holds none, so the disk cache keeps
it. The kernel itself still takes part in typing the loop: the intrinsic
asks it for the signature of the call (the overload that :func:`address_of`
compiled for exactly these argument types), so an argument of the wrong type
is a typing error, never a call with the wrong layout.

The arguments themselves are not arguments of the loop either, where they
can be avoided: numba's wrapper of a function unboxes every argument from
Python (75 arrays and numbers for CUBA, 170 kB of optimised LLVM IR, most of
the loop's compile time). :func:`pack` writes the native form of a kernel's
arguments (numba's flattened calling convention: an array is its data
pointer, shape and strides, a number its bits) into a block of 64-bit words
once per ``run()``, and :func:`run_packed` reads them back and calls the
kernel with them as they are. The loop gets the address of each block, and
the argument types as a type reference (``numba.typeof(types)``, which costs
nothing to unbox) that keeps them in the loop's signature and cache key. The
arrays must stay alive and in place while the loop runs: the caller keeps
the argument tuple that was packed (Brian's loop relies on the same tuples).
Arguments of other types (none of Brian's templates passes any) make a
kernel take its argument tuple instead (:func:`run_at`).

Each entry of the loop is one call of :func:`run_packed`, :func:`run_at` or
:func:`hand_over` (a network operation, which runs in Python): the test
whether the entry is due, the note of which entry runs (for errors), the
call and the check of a full structure are emitted by the intrinsic, as
straight-line code in one basic block, not as Python branches that numba
types, lowers and optimises one by one. That, and the cache warming in
:func:`warm_caches`, halved the loop's compile time (Brunel–Hakim, 7
entries, kernels loaded from the cache: 0.42–0.49 s to 0.20–0.26 s). The
words of the loop's state array are :data:`RESUME`, :data:`WHY`,
:data:`ENTRY`, :data:`WARM`, :data:`READ` and :data:`NEEDED`.

The kernels the loop calls need no Python wrapper, and the loop compiles
them without one (:func:`brian2_numba.cache.loop_kernel`), so a kernel that
finds a structure full is not called again from Python: the loop returns
with the kernel's result in ``state[NEEDED]``, Python makes room, and the
loop runs the same entry again.

These are numba internals (``call_conv`` and its status of a call, the data
models, a compile result's library and mangled name):
``tests/test_kernel_calls.py`` checks every kind of argument, when an entry
runs, and the propagation of exceptions, and ``tests/test_fused.py`` the
loop, on every supported numba.
"""

import contextlib
import hashlib
import struct

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.callconv import excinfo_t
from numba.extending import intrinsic

__all__ = ["run_packed", "run_at", "hand_over", "warm_caches", "address_of", "pack",
           "entry_point", "CALL_CONVENTION", "KernelAddressError", "RESUME", "WHY", "ENTRY",
           "WARM", "READ", "NEEDED", "STATE_WORDS", "FINISHED", "CHUNK_DONE", "PYTHON_ENTRY",
           "STRUCTURE_FULL"]


def _own_hash():
    with open(__file__, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()[:16]


#: written into the loop's source, whose hash is its cache stamp: the
#: intrinsics below are compiled into the loop, and a loop cached with other
#: versions of them must not be loaded
CALL_CONVENTION = f"kernel_calls {_own_hash()}, numba {numba.__version__}"


class KernelAddressError(RuntimeError):
    """numba compiled a kernel but its function cannot be found to be called."""


def _call_address(context, builder, address, return_type, argument_types, values=None,
                  flat=None):
    """Call the numba function at ``address``; its error status propagates.

    The arguments are ``values`` (one per argument type) or ``flat``, already
    in numba's flattened form (an array as its data pointer, shape, strides
    and so on): that form goes straight into the call, instead of being
    assembled into structures that the call takes apart again.
    """
    call_conv = context.call_conv
    function_type = call_conv.get_function_type(return_type, argument_types)
    function = builder.inttoptr(address, function_type.as_pointer())
    if flat is None:
        status, result = call_conv.call_function(builder, function, return_type,
                                                 argument_types, values)
    else:
        result_type = function_type.args[0].pointee
        result_slot = cgutils.alloca_once_value(builder, cgutils.get_null_value(result_type))
        excinfo = cgutils.alloca_once(builder, ir.PointerType(excinfo_t), name="excinfo")
        code = builder.call(function, [result_slot, excinfo, *flat])
        status = call_conv._get_return_status(builder, code, builder.load(excinfo))
        result = context.get_returned_value(builder, return_type, builder.load(result_slot))
    with cgutils.if_unlikely(builder, status.is_error):
        call_conv.return_status_propagate(builder, status)
    return result


def address_of(kernel, arguments, argument_types=None):
    """The address of ``kernel``'s compiled function for ``arguments`` (a tuple).

    Compiles the kernel for exactly their types, or loads it from the cache,
    as a first call would. ``argument_types``: their numba types, if known
    (:func:`pack` has them): typing every argument again is most of the cost
    of a ``run()``'s set-up when the kernel is in memory.
    """
    if argument_types is None:
        argument_types = (numba.typeof(argument) for argument in arguments)
    signature = tuple(argument_types)
    result = kernel.overloads.get(signature)
    if result is None:
        kernel.compile(signature)
        result = kernel.overloads[signature]
    address = result.library.get_pointer_to_function(result.fndesc.mangled_name)
    if not address:
        raise KernelAddressError(f"numba has no function {result.fndesc.mangled_name!r} "
                           f"in the compiled kernel {kernel.py_func.__module__}")
    return address


def entry_point(dispatcher, arguments):
    """The compiled Python entry of ``dispatcher`` for ``arguments``, or the dispatcher.

    Calling a dispatcher types every argument first, and a type reference
    (:func:`pack`) goes through numba's ``typeof`` in Python: about 2 µs
    each, 30 µs per call of the fused loop of a small network, which returns
    to Python several times in every ``run()``. The overload's own entry
    unboxes its arguments for the signature it was compiled for, so the
    caller must pass arguments of exactly the types of ``arguments`` (the
    fused loop passes the same tuple every time). Returns the dispatcher if
    it has no overload for them yet.
    """
    signature = tuple(dispatcher.typeof_pyval(argument) for argument in arguments)
    result = dispatcher.overloads.get(signature)
    return dispatcher if result is None else result.entry_point


# -- packed arguments -------------------------------------------------------------

_WORD = (1 << 64) - 1


def _word_count(numba_type):
    """How many 64-bit words the flattened argument of this type takes, or None."""
    if isinstance(numba_type, types.Array):
        # meminfo, parent, nitems, itemsize, data, shape, strides (numba's ArrayModel)
        return 5 + 2 * numba_type.ndim
    if isinstance(numba_type, (types.Boolean, types.Integer)):
        return 1
    if isinstance(numba_type, types.Float) and numba_type.bitwidth in (32, 64):
        return 1
    return None


def _words(value, numba_type):
    if isinstance(numba_type, types.Array):
        # no meminfo: the kernel borrows the array, which the caller keeps alive
        return [0, id(value), value.size, value.itemsize, value.ctypes.data,
                *value.shape, *value.strides]
    if isinstance(numba_type, types.Float):
        if numba_type.bitwidth == 64:
            return [struct.unpack("<Q", struct.pack("<d", value))[0]]
        return [struct.unpack("<I", struct.pack("<f", value))[0]]
    return [int(value) & _WORD]


def pack(arguments):
    """The native form of a kernel's arguments, for :func:`run_packed`.

    Returns ``(block, argument_types)``: a ``uint64`` array, and
    ``numba.typeof`` of the arguments' types (a type reference), or None if an
    argument has a type that is not packed (then call the kernel with
    :func:`run_at`).
    """
    argument_types = numba.typeof(arguments)
    words = []
    for value, numba_type in zip(arguments, argument_types.types, strict=True):
        if _word_count(numba_type) is None:
            return None
        words += _words(value, numba_type)
    return np.array(words, dtype=np.uint64), numba.typeof(argument_types)


def _from_word(builder, word, llvm_type):
    """An argument of ``llvm_type`` from the 64-bit word it was packed into."""
    if isinstance(llvm_type, ir.PointerType):
        return builder.inttoptr(word, llvm_type)
    if isinstance(llvm_type, ir.IntType):
        return word if llvm_type.width == 64 else builder.trunc(word, llvm_type)
    if isinstance(llvm_type, ir.DoubleType):
        return builder.bitcast(word, llvm_type)
    if isinstance(llvm_type, ir.FloatType):
        return builder.bitcast(builder.trunc(word, ir.IntType(32)), llvm_type)
    raise TypeError(f"cannot unpack an argument of LLVM type {llvm_type}")


# -- the loop's entries -----------------------------------------------------------

#: the words of the loop's ``_state`` array (see the template network_run.py_)
RESUME, WHY, ENTRY, WARM, READ, NEEDED = range(6)
#: the length of the state array
STATE_WORDS = NEEDED + 1
#: why the loop returned (``_state[WHY]``)
FINISHED, CHUNK_DONE, PYTHON_ENTRY, STRUCTURE_FULL = range(4)


def _is_words(numba_type):
    """A contiguous 1-d array of 64-bit integers (addresses, blocks, the state)."""
    return (isinstance(numba_type, types.Array) and numba_type.ndim == 1
            and numba_type.layout == "C" and numba_type.dtype in (types.uint64, types.int64))


def _is_state(numba_type):
    return _is_words(numba_type) and numba_type.dtype == types.int64


def _is_flag(numba_type):
    return isinstance(numba_type, types.Boolean)


def _kernel_signature(typingctx, kernel, parameter_types):
    """The kernel's compiled signature for exactly these types, or None (a typing error)."""
    if not isinstance(kernel, types.Dispatcher):
        return None
    signature = kernel.get_call_type(typingctx, parameter_types, {})
    if signature is None or tuple(signature.args) != tuple(parameter_types):
        return None
    return signature


def _word_at(context, builder, array_type, array, index):
    """A pointer to ``array[index]`` (a contiguous 1-d array of 64-bit words)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


def _state_word(context, builder, state_type, state, word):
    return _word_at(context, builder, state_type, state, context.get_constant(types.intp, word))


@contextlib.contextmanager
def _when_due(context, builder, sig, args):
    """Code in this block runs when entry ``index`` is due: its clock's turn,
    at or after the entry the loop resumes at, and no entry waiting for
    Python. It starts by noting the entry in ``state[ENTRY]`` (what an error
    is about) and gets the index as an int64."""
    state_type = sig.args[0]
    state, index, due = args[:3]
    index = context.cast(builder, index, sig.args[1], types.int64)
    resume = builder.load(_state_word(context, builder, state_type, state, RESUME))
    why = builder.load(_state_word(context, builder, state_type, state, WHY))
    waiting = context.get_constant(types.int64, PYTHON_ENTRY)
    runs = builder.and_(
        builder.and_(builder.icmp_signed("<=", resume, index),
                     builder.icmp_signed("<", why, waiting)),
        context.cast(builder, due, sig.args[2], types.boolean))
    with builder.if_then(runs, likely=True):
        builder.store(index, _state_word(context, builder, state_type, state, ENTRY))
        yield index


def _entry(context, builder, sig, args, return_type, call):
    """Emit one entry: if due, note it in ``_state[ENTRY]`` and ``call(index)``;
    a truthy result of a kernel with ``make_room`` stops the step there, and
    goes to ``_state[NEEDED]``: what Python's ``make_room`` is to make room for."""
    state_type = sig.args[0]
    state, make_room = args[0], args[3]
    with _when_due(context, builder, sig, args) as index:
        result = call(index)
        if return_type != types.none:
            full = builder.and_(context.cast(builder, make_room, sig.args[3], types.boolean),
                                context.is_true(builder, return_type, result))
            with builder.if_then(full, likely=False):
                builder.store(context.get_constant(types.int64, STRUCTURE_FULL),
                              _state_word(context, builder, state_type, state, WHY))
                builder.store(context.cast(builder, result, return_type, types.int64),
                              _state_word(context, builder, state_type, state, NEEDED))
    return context.get_dummy_value()


@intrinsic
def run_packed(typingctx, state, index, due, make_room, kernel, addresses, blocks,
               argument_types):
    """Entry ``index`` of the loop: the kernel at ``addresses[index]``, called
    with the arguments :func:`pack` wrote at ``blocks[index]``.

    ``state`` is the loop's state array, ``due`` whether the entry's clock is
    due, ``make_room`` whether a truthy result means a structure is full
    (then ``state[WHY]`` becomes :data:`STRUCTURE_FULL`, ``state[NEEDED]``
    the result, and the step's later entries do not run). ``argument_types``
    is the type reference :func:`pack` returned; ``kernel`` the kernel's
    dispatcher (or its variant without a Python wrapper), which gives
    the signature of the call (so an argument of another type is a typing
    error, never a call with the wrong layout).
    """
    if not (_is_state(state) and isinstance(index, types.Integer) and _is_flag(due)
            and _is_flag(make_room) and _is_words(addresses) and _is_words(blocks)
            and isinstance(argument_types, types.TypeRef)
            and isinstance(argument_types.instance_type, types.BaseTuple)):
        return None
    parameter_types = tuple(argument_types.instance_type.types)
    counts = [_word_count(numba_type) for numba_type in parameter_types]
    signature = None if None in counts else _kernel_signature(typingctx, kernel,
                                                              parameter_types)
    if signature is None:
        return None

    def codegen(context, builder, sig, llvm_args):
        def call(index):
            address = builder.load(_word_at(context, builder, addresses, llvm_args[5], index))
            block = builder.load(_word_at(context, builder, blocks, llvm_args[6], index))
            packer = context.get_arg_packer(parameter_types)
            llvm_types = list(packer.argument_types)
            if len(llvm_types) != sum(counts):  # a data model this module does not know
                raise TypeError(f"run_packed: {len(llvm_types)} native arguments for "
                                f"{parameter_types}, {sum(counts)} packed words")
            words = builder.inttoptr(block, ir.IntType(64).as_pointer())
            flat = [_from_word(builder,
                               builder.load(builder.gep(
                                   words, [context.get_constant(types.intp, k)])),
                               llvm_type)
                    for k, llvm_type in enumerate(llvm_types)]
            return _call_address(context, builder, address, signature.return_type,
                                 parameter_types, flat=flat)

        return _entry(context, builder, sig, llvm_args, signature.return_type, call)

    return types.none(state, index, due, make_room, kernel, addresses, blocks,
                      argument_types), codegen


@intrinsic
def run_at(typingctx, state, index, due, make_room, kernel, addresses, arguments):
    """Entry ``index``: ``kernel(*arguments)``, at ``addresses[index]``.

    For arguments that :func:`pack` does not pack; otherwise as :func:`run_packed`.
    """
    if not (_is_state(state) and isinstance(index, types.Integer) and _is_flag(due)
            and _is_flag(make_room) and _is_words(addresses)
            and isinstance(arguments, types.BaseTuple)):
        return None
    signature = _kernel_signature(typingctx, kernel, tuple(arguments.types))
    if signature is None:
        return None

    def codegen(context, builder, sig, llvm_args):
        def call(index):
            address = builder.load(_word_at(context, builder, addresses, llvm_args[5], index))
            values = [builder.extract_value(llvm_args[6], k)
                      for k in range(len(arguments.types))]
            return _call_address(context, builder, address, signature.return_type,
                                 signature.args, values)

        return _entry(context, builder, sig, llvm_args, signature.return_type, call)

    return types.none(state, index, due, make_room, kernel, addresses, arguments), codegen


@intrinsic
def hand_over(typingctx, state, index, due):
    """Entry ``index`` runs in Python (a network operation): if it is due, the
    loop stops the step there, with ``state[WHY]`` :data:`PYTHON_ENTRY`."""
    if not (_is_state(state) and isinstance(index, types.Integer) and _is_flag(due)):
        return None

    def codegen(context, builder, sig, args):
        with _when_due(context, builder, sig, args):
            builder.store(context.get_constant(types.int64, PYTHON_ENTRY),
                          _state_word(context, builder, sig.args[0], args[0], WHY))
        return context.get_dummy_value()

    return types.none(state, index, due), codegen


@intrinsic
def warm_caches(typingctx, state, regions, line_bytes):
    """If ``state[WARM]`` is set: clear it, read one byte of every ``line_bytes``
    of each region (rows of address and size in bytes, see
    ``brian2_numba.warm_up``) and store their sum in ``state[READ]``, so that
    the compiler keeps the reads."""
    if not (_is_state(state) and isinstance(regions, types.Array) and regions.ndim == 2
            and regions.layout == "C" and regions.dtype == types.int64
            and isinstance(line_bytes, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        state_type, regions_type, line_type = sig.args
        zero = context.get_constant(types.int64, 0)
        line = context.cast(builder, args[2], line_type, types.int64)
        warm = _state_word(context, builder, state_type, args[0], WARM)
        with builder.if_then(builder.icmp_signed("!=", builder.load(warm), zero),
                             likely=False):
            builder.store(zero, warm)
            array = context.make_array(regions_type)(context, builder, args[1])
            total = cgutils.alloca_once_value(builder, zero)
            with cgutils.for_range(builder, builder.extract_value(array.shape, 0)) as row:
                first = builder.mul(row.index, context.get_constant(types.intp, 2))
                address = builder.load(builder.gep(array.data, [first]))
                size = builder.load(builder.gep(
                    array.data, [builder.add(first, context.get_constant(types.intp, 1))]))
                lines = builder.sdiv(builder.add(size, builder.sub(line, ir.Constant(
                    ir.IntType(64), 1))), line)
                with cgutils.for_range(builder, lines) as k:
                    pointer = builder.inttoptr(builder.add(address, builder.mul(k.index, line)),
                                               ir.IntType(8).as_pointer())
                    byte = builder.zext(builder.load(pointer), ir.IntType(64))
                    builder.store(builder.add(builder.load(total), byte), total)
            builder.store(builder.load(total),
                          _state_word(context, builder, state_type, args[0], READ))
        return context.get_dummy_value()

    return types.none(state, regions, line_bytes), codegen
