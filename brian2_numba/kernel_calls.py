"""How the fused loop calls its kernels: through their machine-code addresses.

A numba function that calls another one the usual way links the callee's
LLVM module into its own, and compiling it optimises and generates machine
code for the whole linked module again: every kernel of the network a second
time, which made compiling the loop take 0.9–1.5 s on the benchmark models.
The loop calls its kernels through :func:`call_at` instead, an intrinsic
that calls the address of a kernel's compiled function with numba's own
calling convention (status codes and exceptions propagate as in an ordinary
call). The loop's module then holds only the loop, so it compiles in a
fraction of the time, and a kernel is compiled (or loaded from the cache)
once, as in Brian's loop.

The addresses are arguments of the loop, taken in this process by
:func:`address_of`; the compiled loop holds none, so numba's disk cache keeps
it. The kernel itself still takes part in typing the loop: :func:`call_at`
asks it for the signature of the call (the overload that
:func:`address_of` compiled for exactly these argument types), so an
argument of the wrong type is a typing error, never a call with the wrong
layout.

The arguments themselves are not arguments of the loop either, where
they can be avoided: numba's wrapper of a function unboxes every argument
from Python (75 arrays and numbers for CUBA, 170 kB of optimised LLVM IR,
most of the loop's compile time). :func:`pack` writes the native form of a
kernel's arguments (numba's flattened calling convention: an array is its
data pointer, shape and strides, a number its bits) into a block of 64-bit
words once per ``run()``, and :func:`call_packed` reads them back and calls
the kernel. The loop gets the address of each block, and the argument types
as a type reference (``numba.typeof(types)``, which costs nothing to
unbox) that keeps them in the loop's signature and cache key. The arrays
must stay alive and in place while the loop runs: the caller keeps the
argument tuple that was packed (Brian's loop relies on the same tuples).
Arguments of other types (none of Brian's templates passes any) make a
kernel fall back to :func:`call_at` with its argument tuple.

:func:`load_byte` reads one byte at an address, for the loop's warming of
the caches at the start of a run (``brian2_numba.warm_up``).

These are numba internals (``call_conv``, the data models, a compile
result's library and mangled name): ``tests/test_kernel_calls.py`` checks
every kind of argument and the propagation of exceptions, and
``tests/test_fused.py`` the loop, on every supported numba.
"""

import hashlib
import struct

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["call_at", "call_packed", "address_of", "pack", "entry_point", "load_byte",
           "CALL_CONVENTION", "KernelAddressError"]


def _own_hash():
    with open(__file__, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()[:16]


#: written into the loop's source, whose hash is its cache stamp: the
#: intrinsics below (load_byte too) are compiled into the loop, and a loop
#: cached with other versions of them must not be loaded
CALL_CONVENTION = f"kernel_calls {_own_hash()}, numba {numba.__version__}"


class KernelAddressError(RuntimeError):
    """numba compiled a kernel but its function cannot be found to be called."""


def _call_address(context, builder, address, return_type, argument_types, values):
    """Call the numba function at ``address``; its error status propagates."""
    function_type = context.call_conv.get_function_type(return_type, argument_types)
    function = builder.inttoptr(address, function_type.as_pointer())
    status, result = context.call_conv.call_function(
        builder, function, return_type, argument_types, values)
    with cgutils.if_unlikely(builder, status.is_error):
        context.call_conv.return_status_propagate(builder, status)
    return result


@intrinsic
def call_at(typingctx, kernel, address, arguments):
    """``kernel(*arguments)``, calling the compiled overload at ``address``.

    ``kernel`` is the kernel's dispatcher (a global of the calling function),
    ``address`` what :func:`address_of` returned for it and these arguments.
    """
    if not (isinstance(kernel, types.Dispatcher) and isinstance(address, types.Integer)
            and isinstance(arguments, types.BaseTuple)):
        return None
    signature = kernel.get_call_type(typingctx, tuple(arguments.types), {})
    if signature is None or tuple(signature.args) != tuple(arguments.types):
        return None  # no overload for exactly these types: a typing error
    return_type = signature.return_type

    def codegen(context, builder, sig, llvm_args):
        _, llvm_address, llvm_tuple = llvm_args
        values = [builder.extract_value(llvm_tuple, i) for i in range(len(arguments.types))]
        return _call_address(context, builder, llvm_address, return_type, signature.args,
                             values)

    return return_type(kernel, address, arguments), codegen


def address_of(kernel, arguments):
    """The address of ``kernel``'s compiled function for ``arguments`` (a tuple).

    Compiles the kernel for exactly their types, or loads it from the cache,
    as a first call would.
    """
    signature = tuple(numba.typeof(argument) for argument in arguments)
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
    """The native form of a kernel's arguments, for :func:`call_packed`.

    Returns ``(block, argument_types)``: a ``uint64`` array, and
    ``numba.typeof`` of the arguments' types (a type reference), or None if an
    argument has a type that is not packed (then call the kernel with
    :func:`call_at`).
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


@intrinsic
def call_packed(typingctx, kernel, address, block, argument_types):
    """The kernel at ``address`` with the arguments :func:`pack` wrote at ``block``.

    ``argument_types`` is the type reference :func:`pack` returned, ``kernel``
    the kernel's dispatcher, as for :func:`call_at`.
    """
    if not (isinstance(kernel, types.Dispatcher) and isinstance(address, types.Integer)
            and isinstance(block, types.Integer) and isinstance(argument_types, types.TypeRef)
            and isinstance(argument_types.instance_type, types.BaseTuple)):
        return None
    parameter_types = tuple(argument_types.instance_type.types)
    counts = [_word_count(numba_type) for numba_type in parameter_types]
    if None in counts:
        return None
    signature = kernel.get_call_type(typingctx, parameter_types, {})
    if signature is None or tuple(signature.args) != parameter_types:
        return None
    return_type = signature.return_type

    def codegen(context, builder, sig, llvm_args):
        _, llvm_address, llvm_block, _ = llvm_args
        packer = context.get_arg_packer(parameter_types)
        llvm_types = list(packer.argument_types)
        if len(llvm_types) != sum(counts):  # a data model this module does not know
            raise TypeError(f"call_packed: {len(llvm_types)} native arguments for "
                            f"{parameter_types}, {sum(counts)} packed words")
        words = builder.inttoptr(llvm_block, ir.IntType(64).as_pointer())
        flat = []
        for k, llvm_type in enumerate(llvm_types):
            word = builder.load(builder.gep(words, [context.get_constant(types.intp, k)]))
            flat.append(_from_word(builder, word, llvm_type))
        values = packer.from_arguments(builder, flat)
        return _call_address(context, builder, llvm_address, return_type, parameter_types,
                             values)

    return return_type(kernel, address, block, argument_types), codegen


@intrinsic
def load_byte(typingctx, address):
    """The byte at ``address`` (an integer), as an ``int64``."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        pointer = builder.inttoptr(args[0], ir.IntType(8).as_pointer())
        return builder.zext(builder.load(pointer), ir.IntType(64))

    return types.int64(address), codegen
