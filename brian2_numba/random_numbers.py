"""Random numbers: numpy's global generator stays the single source of truth.

numba's own ``np.random`` inside kernels has a separate per-thread state that
``np.random.seed`` (and so Brian's ``seed()``) does not touch. Instead, the
kernels draw from buffers of 20000 numbers, like Brian's Cython target, and
refill them *from numpy's global bit generator*:

* Brian 2.11 owns such buffers (``RuntimeDevice.rand_buffer`` etc.) and
  includes their content in ``get_random_state``; we use the very same
  arrays, so ``seed()``, ``store``/``restore(restore_random_state=True)``
  (even in a new process) work unchanged, and numba and Cython draw the same
  numbers.
* Brian 2.10's device only keeps a pointer for Cython there, so we allocate
  our own buffers and extend the runtime device's ``seed``,
  ``get_random_state`` and ``set_random_state`` to cover them.

The refill runs inside the kernel: it calls numpy's C function
``next_double`` on numpy's own generator state, through the addresses that
numpy publishes for this purpose (``bit_generator.ctypes``). ``rand``
buffers hold exactly what ``numpy.random.rand(20000)`` would return and
``randn`` buffers what ``numpy.random.randn(20000)`` would (numpy's legacy
polar method, in pairs), and numpy's state advances as if it had been
called. The addresses are kernel *arguments* (``_numpy_generator``), never
compiled-in constants, so cached kernels stay valid in a new process.

When the generator is numpy's ``MT19937`` (what ``seed()`` and numpy's
legacy functions use), the refill does not call ``next_double`` for each
number (an indirect call, about 7 ns, the largest part of a ``rand()`` in
a Poisson group) but runs the same algorithm, numpy's ``mt19937_gen`` and
``mt19937_next_double``, inlined, on numpy's own state: the same numbers,
and numpy's state advances exactly as if numpy had drawn them.
"""

import ctypes
import textwrap

import numpy as np
from brian2.core.functions import DEFAULT_FUNCTIONS
from brian2.devices.device import all_devices
from brian2.utils.stringtools import deindent
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .compat import device_random_buffers, extend_runtime_random_state
from .njit_lines import HELPER_DECORATOR

__all__ = [
    "register_random_functions",
    "random_buffers",
    "numpy_generator",
    "call_next_double",
    "mt19937_state",
    "local_int32",
    "BUFFER_POSITIONS",
    "BUFFER_SIZE",
    "RAND_ARGUMENTS",
    "RAND_CALL",
    "RANDN_CALL",
]

BUFFER_SIZE = 20000

#: How generated code calls the two generators (arguments in namespace order);
#: a helper that draws numbers takes RAND_ARGUMENTS as its parameters.
RAND_ARGUMENTS = "_vectorisation_idx, _numpy_generator, _rand_buffer, _rand_buffer_index"
RAND_CALL = f"_rand({RAND_ARGUMENTS})"
RANDN_CALL = "_randn(_vectorisation_idx, _numpy_generator, _randn_buffer, _randn_buffer_index)"


@intrinsic
def call_next_double(typingctx, function_address, state_address):
    """``double next_double(void *state)`` of a numpy bit generator, by address.

    numpy documents its bit generators' ``ctypes.next_double`` and
    ``ctypes.state_address`` for use from numba; taking them as plain
    integers (instead of a ctypes object) keeps the kernel's signature
    cacheable and the call free of Python objects.
    """
    signature = types.float64(types.uint64, types.uint64)

    def codegen(context, builder, sig, args):
        void_pointer = ir.IntType(8).as_pointer()
        function_type = ir.FunctionType(ir.DoubleType(), [void_pointer])
        function = builder.inttoptr(args[0], function_type.as_pointer())
        return builder.call(function, [builder.inttoptr(args[1], void_pointer)])

    return signature, codegen


@intrinsic
def mt19937_state(typingctx, state_address):
    """numpy's ``mt19937_state`` at an address, as a uint32 array of 625.

    That struct is ``{uint32_t key[624]; int pos;}``: ``[624]`` is ``pos``
    (0 to 624, the same bits as uint32).
    """
    signature = types.CPointer(types.uint32)(types.uint64)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], ir.IntType(32).as_pointer())

    return signature, codegen


@intrinsic
def local_int32(typingctx):
    """A pointer to an int32 on the calling kernel's stack.

    As a one-element array (``numba.carray(local_int32(), 1)``) it stands in
    for a buffer position array while a kernel runs: LLVM keeps it in a
    register, which it cannot do for an argument array (numba tells it
    nothing about which arrays alias, so every store to another array could
    change the position).
    """
    signature = types.CPointer(types.int32)()

    def codegen(context, builder, sig, args):
        return cgutils.alloca_once(builder, context.get_value_type(types.int32))

    return signature, codegen


#: kernel parameters holding a position in a random number buffer (int32[1])
BUFFER_POSITIONS = ("_rand_buffer_index", "_randn_buffer_index")

#: [address of next_double, address of its state, address of the state if
#: the generator is MT19937, else 0], updated in place
_numpy_generator = np.zeros(3, dtype=np.uint64)
_generator_in_use = None  # keeps the generator behind the addresses alive


def numpy_generator():
    """The address array of numpy's global bit generator, brought up to date.

    Called before each run: ``numpy.random.set_bit_generator`` may have
    replaced the generator (``seed``/``set_state`` change it in place).
    Like Brian's kernels themselves, the refill assumes that no other thread
    draws from numpy's global generator during a run.
    """
    global _generator_in_use
    bit_generator = np.random.get_bit_generator()
    if bit_generator is not _generator_in_use:
        interface = bit_generator.ctypes
        _numpy_generator[0] = ctypes.cast(interface.next_double, ctypes.c_void_p).value
        _numpy_generator[1] = interface.state_address
        # (exactly MT19937: a subclass may draw differently)
        _numpy_generator[2] = interface.state_address if type(bit_generator) is np.random.MT19937 else 0
        _generator_in_use = bit_generator
    return _numpy_generator


def _buffered_code(name, fill_code, description, mt_fill_code=None, inline_mt=True):
    """Source of ``_<name>``: next number from a buffer, refilled in the kernel.

    The generator's addresses are read on every call, before the branch:
    passing the array itself into the (rarely taken) refill branch makes
    numba keep reference counting in the fast path, which costs ~30 ns a draw.

    ``inline_mt=False``: without the MT19937 branch, every number through
    ``next_double`` (the same numbers; for code that runs once).
    """
    if mt_fill_code is None:
        mt_fill_code = fill_code.replace("_DRAW", "_mt19937_next_double(_mt)")
    through_next_double = fill_code.replace("_DRAW", "_call_next_double(_next_double, _state)")
    if inline_mt:
        refill = f"""\
    if _mt_address != 0:  # MT19937: its algorithm, inlined, on numpy's state
        _mt = _numba.carray(_mt19937_state(_mt_address), 625)
{mt_fill_code}
    else:
{through_next_double}"""
    else:
        refill = ("    # through next_double (code that runs once: compiles faster)\n"
                  + textwrap.indent(textwrap.dedent(through_next_double), "    "))
    return f'''
{HELPER_DECORATOR}
def _fill_{name}_buffer(_buffer, _next_double, _state, _mt_address):
    """Fill the buffer as numpy.random.{name}(len(_buffer)) would."""
{refill}


{HELPER_DECORATOR}
def _{name}(_vectorisation_idx, _numpy_generator, _{name}_buffer, _{name}_buffer_index):
    """{description}, from numpy's generator via a buffer."""
    _next_double = _numpy_generator[0]
    _state = _numpy_generator[1]
    _mt_address = _numpy_generator[2]
    _index = _{name}_buffer_index[0]
    if _index == 0:
        _fill_{name}_buffer(_{name}_buffer, _next_double, _state, _mt_address)
    value = _{name}_buffer[_index]
    _index += 1
    if _index == len(_{name}_buffer):
        _index = 0
    _{name}_buffer_index[0] = _index
    return value
'''


# (_DRAW: one number from the generator; indented for the branches of the fill)
_FILL_UNIFORM = """\
        for _k in range(len(_buffer)):
            _buffer[_k] = _DRAW"""

# numpy's legacy_gauss: the polar method, two numbers per accepted pair
_FILL_NORMAL = """\
        _k = 0
        while _k < len(_buffer):
            _x1 = 2.0 * _DRAW - 1.0
            _x2 = 2.0 * _DRAW - 1.0
            _r2 = _x1 * _x1 + _x2 * _x2
            if _r2 >= 1.0 or _r2 == 0.0:
                continue
            _f = math.sqrt(-2.0 * math.log(_r2) / _r2)
            _buffer[_k] = _f * _x2
            if _k + 1 < len(_buffer):
                _buffer[_k + 1] = _f * _x1
            _k += 2"""

# numpy's mt19937_gen and mt19937_next_double (numpy/random/src/mt19937),
# on the state as a uint32[625] (key, then pos); int64 arithmetic, stored
# back as uint32. Inlined into the kernels (numba IR inlining): a call to a
# compiled function in the refill branch, even with plain integer
# arguments, made a Poisson group's threshold 1.4 times as slow, as it keeps
# LLVM from optimising the kernel's loop around it. numba inlines once per
# call site and recursively, copying and re-typing the callee each time, so
# the code is flat: the tempering and the double are written out as text
# (_temper, _double) instead of helpers, and the fill handles the pair of
# words that spans two states itself; about five inlinings per call site of
# rand() instead of 27 (connect(p=...), two call sites, compiled in 5 s
# with the first version, against 0.4 s before MT19937 was inlined).


def _twist(i, following, far):
    """numpy's twist of word ``i`` (the expressions are Python source)."""
    return f"""\
        _y = (_numpy.int64(_mt[{i}]) & 0x80000000) | (_numpy.int64(_mt[{following}]) & 0x7fffffff)
        _mt[{i}] = (_numpy.int64(_mt[{far}]) ^ (_y >> 1) ^ (-(_y & 1) & 0x9908b0df)) & 0xffffffff"""


def _temper(target, word, indent):
    """``target = `` numpy's tempering of ``word`` (a 32-bit state word)."""
    pad = " " * indent
    return (f"{pad}{target} = _numpy.int64({word})\n"
            f"{pad}{target} ^= {target} >> 11\n"
            f"{pad}{target} ^= ({target} << 7) & 0x9d2c5680\n"
            f"{pad}{target} ^= ({target} << 15) & 0xefc60000\n"
            f"{pad}{target} ^= {target} >> 18")


def _double(a, b):
    """numpy's double in [0, 1) from two tempered words: 53 random bits."""
    return f"(({a} >> 5) * 67108864.0 + ({b} >> 6)) / 9007199254740992.0"


_MT19937_CODE = f'''
{HELPER_DECORATOR}
def _mt19937_generate(_mt):
    """The next 624 words of the state (numpy's mt19937_gen)."""
    for _i in range(624 - 397):
{_twist("_i", "_i + 1", "_i + 397")}
    for _i in range(624 - 397, 623):
{_twist("_i", "_i + 1", "_i + 397 - 624")}
    for _i in range(623, 624):
{_twist("_i", "0", "396")}
    _mt[624] = 0


{HELPER_DECORATOR}
def _mt19937_next_double(_mt):
    """A double in [0, 1) (numpy's mt19937_next_double: two next words)."""
    if _mt[624] == 624:
        _mt19937_generate(_mt)
    _pos = _mt[624]
    _mt[624] = _pos + 1
{_temper("_a", "_mt[_pos]", 4)}
    if _mt[624] == 624:
        _mt19937_generate(_mt)
    _pos = _mt[624]
    _mt[624] = _pos + 1
{_temper("_b", "_mt[_pos]", 4)}
    return {_double("_a", "_b")}


{HELPER_DECORATOR}
def _mt19937_fill(_buffer, _mt):
    """_buffer[k] = _mt19937_next_double(_mt) for all k, a state's worth at a time."""
    _k = 0
    while _k < len(_buffer):
        if _mt[624] == 624:
            _mt19937_generate(_mt)
        _pos = _numpy.int64(_mt[624])
        if _pos == 623:  # the two words of the next double span two states
{_temper("_a", "_mt[623]", 12)}
            _mt19937_generate(_mt)
{_temper("_b", "_mt[0]", 12)}
            _mt[624] = 1
            _buffer[_k] = {_double("_a", "_b")}
            _k += 1
            continue
        _pairs = min((624 - _pos) // 2, len(_buffer) - _k)
        for _j in range(_pairs):
{_temper("_a", "_mt[_pos + 2 * _j]", 12)}
{_temper("_b", "_mt[_pos + 2 * _j + 1]", 12)}
            _buffer[_k + _j] = {_double("_a", "_b")}
        _k += _pairs
        _mt[624] = _pos + 2 * _pairs
'''

_IMPORT = ("from brian2_numba.random_numbers import call_next_double as _call_next_double\n"
           "from brian2_numba.random_numbers import mt19937_state as _mt19937_state\n"
           + _MT19937_CODE)
RAND_CODE = _IMPORT + _buffered_code("rand", _FILL_UNIFORM, "Uniform random number in [0, 1)",
                                     "        _mt19937_fill(_buffer, _mt)")
RANDN_CODE = _IMPORT + _buffered_code("randn", _FILL_NORMAL, "Standard normal random number")

def _once_code(name, fill_code, description):
    """``_<name>`` refilled through ``next_double`` only: compiles fast."""
    return ("from brian2_numba.random_numbers import call_next_double as _call_next_double\n"
            + _buffered_code(name, fill_code, description, inline_mt=False))


#: the full versions' source (as the generator sees it) -> the one for code
#: that runs once, whose refills call numpy's next_double for every number:
#: the same numbers and state, without the inlined MT19937 code that made
#: compiling connect(p=...) take seconds; refill speed does not matter there
_ONCE_VARIANTS = {
    deindent(RAND_CODE).strip(): deindent(_once_code(
        "rand", _FILL_UNIFORM, "Uniform random number in [0, 1)")).strip(),
    deindent(RANDN_CODE).strip(): deindent(_once_code(
        "randn", _FILL_NORMAL, "Standard normal random number")).strip(),
}


def code_for_template(code, template_name):
    """The source of a function for a code object of ``template_name``."""
    # (imported here: run_once imports the code object, which imports the
    # generator, which imports this module)
    from .run_once import RUN_ONCE_TEMPLATES

    if template_name in RUN_ONCE_TEMPLATES:
        return _ONCE_VARIANTS.get(code, code)
    return code

# The same algorithms as Brian's Cython target (numpy's PTRS for lam >= 10,
# multiplication of uniforms otherwise).
POISSON_CODE = f'''
{HELPER_DECORATOR}
def _loggam(x):
    """log(gamma(x)), as in numpy's legacy generator."""
    a = (8.333333333333333e-02, -2.777777777777778e-03,
         7.936507936507937e-04, -5.952380952380952e-04,
         8.417508417508418e-04, -1.917526917526918e-03,
         6.410256410256410e-03, -2.955065359477124e-02,
         1.796443723688307e-01, -1.39243221690590e+00)
    x0 = x
    n = 0
    if x == 1.0 or x == 2.0:
        return 0.0
    elif x <= 7.0:
        n = int(7 - x)
        x0 = x + n
    x2 = 1.0 / (x0 * x0)
    gl0 = a[9]
    for k in range(8, -1, -1):
        gl0 *= x2
        gl0 += a[k]
    gl = gl0 / x0 + 0.5 * _numpy.log(2 * _numpy.pi) + (x0 - 0.5) * _numpy.log(x0) - x0
    if x <= 7.0:
        for k in range(1, n + 1):
            gl -= _numpy.log(x0 - 1.0)
            x0 -= 1.0
    return gl


{HELPER_DECORATOR}
def _poisson(lam, _vectorisation_idx, _numpy_generator, _rand_buffer, _rand_buffer_index):
    """Poisson-distributed integer with mean lam."""
    if lam == 0:
        return _numpy.int32(0)
    if lam < 10:
        enlam = _numpy.exp(-lam)
        X = 0
        prod = 1.0
        while True:
            prod *= _rand(_vectorisation_idx, _numpy_generator, _rand_buffer, _rand_buffer_index)
            if prod > enlam:
                X += 1
            else:
                return _numpy.int32(X)
    slam = _numpy.sqrt(lam)
    loglam = _numpy.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    while True:
        U = _rand(_vectorisation_idx, _numpy_generator, _rand_buffer, _rand_buffer_index) - 0.5
        V = _rand(_vectorisation_idx, _numpy_generator, _rand_buffer, _rand_buffer_index)
        us = 0.5 - abs(U)
        k = int(_numpy.floor((2 * a / us + b) * U + lam + 0.43))
        if us >= 0.07 and V <= vr:
            return _numpy.int32(k)
        if k < 0 or (us < 0.013 and V > us):
            continue
        if (_numpy.log(V) + _numpy.log(invalpha) - _numpy.log(a / (us * us) + b)) <= (
            -lam + k * loglam - _loggam(k + 1)
        ):
            return _numpy.int32(k)
'''

_own_buffers = None


def random_buffers():
    """The four arrays behind rand()/randn(): buffers and their int32[1] indices."""
    device_buffers = device_random_buffers(all_devices["runtime"])
    if device_buffers is not None:
        return {f"_{name}": array for name, array in device_buffers.items()}
    return _own_buffers


def _reset_own_buffers():
    """Empty buffers: the next draw refills them from numpy's generator."""
    _own_buffers["_rand_buffer_index"][:] = 0
    _own_buffers["_randn_buffer_index"][:] = 0


def _own_buffers_state():
    return {k: np.array(v) for k, v in _own_buffers.items()}


def _restore_own_buffers(stored):
    if stored is None:  # stored without brian2_numba: refill from numpy
        _reset_own_buffers()
    else:
        for key, value in stored.items():
            _own_buffers[key][:] = value  # in place: kernels hold the arrays


def _extend_runtime_device():
    """Brian 2.10: make the device's random-state methods cover our buffers."""
    global _own_buffers
    _own_buffers = {
        "_rand_buffer": np.zeros(BUFFER_SIZE, dtype=np.float64),
        "_rand_buffer_index": np.zeros(1, dtype=np.int32),
        "_randn_buffer": np.zeros(BUFFER_SIZE, dtype=np.float64),
        "_randn_buffer_index": np.zeros(1, dtype=np.int32),
    }
    extend_runtime_random_state(
        "numba_buffers", _reset_own_buffers, _own_buffers_state, _restore_own_buffers
    )


def register_random_functions():
    """Register numba versions of rand, randn and poisson."""
    if device_random_buffers(all_devices["runtime"]) is None and _own_buffers is None:
        _extend_runtime_device()
    buffers = random_buffers()
    for name, code in (("rand", RAND_CODE), ("randn", RANDN_CODE)):
        namespace = {k: v for k, v in buffers.items() if k.startswith(f"_{name}_")}
        namespace["_numpy_generator"] = numpy_generator()
        DEFAULT_FUNCTIONS[name].implementations.add_implementation(
            "numba", code=deindent(code), name=f"_{name}", namespace=namespace
        )
    DEFAULT_FUNCTIONS["poisson"].implementations.add_implementation(
        "numba",
        code=deindent(POISSON_CODE),
        name="_poisson",
        dependencies={"_rand": DEFAULT_FUNCTIONS["rand"]},
    )
