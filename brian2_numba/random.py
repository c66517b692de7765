"""Random numbers: numpy's global RandomState stays the single source of truth.

numba's own ``np.random`` inside kernels has a separate per-thread state that
``np.random.seed`` (and so Brian's ``seed()``) does not touch. Instead, the
kernels draw from buffers of 20000 numbers that are refilled *from numpy's
global generator* whenever they run empty, exactly like Brian's Cython target:

* Brian 2.11 owns such buffers (``RuntimeDevice.rand_buffer`` etc.) and
  includes their content in ``get_random_state``; we use the very same
  arrays, so ``seed()``, ``store``/``restore(restore_random_state=True)``
  (even in a new process) work unchanged, and numba and Cython draw the same
  numbers.
* Brian 2.10's device only keeps a pointer for Cython there, so we allocate
  our own buffers and extend the runtime device's ``seed``,
  ``get_random_state`` and ``set_random_state`` to cover them.

The refill happens in ``numba.objmode``, once per 20000 draws.
"""

import numpy as np
from brian2.core.functions import DEFAULT_FUNCTIONS
from brian2.devices.device import RuntimeDevice, all_devices
from brian2.utils.stringtools import deindent

__all__ = ["register_random_functions", "random_buffers", "BUFFER_SIZE"]

BUFFER_SIZE = 20000


def _buffered_code(name, numpy_function, description):
    """Source of ``_<name>``: next number from a buffer, refilled from numpy."""
    return f'''
@_numba.njit
def _{name}(_vectorisation_idx, _{name}_buffer, _{name}_buffer_index):
    """{description}, from numpy's generator via a buffer."""
    if _{name}_buffer_index[0] == 0:
        with _numba.objmode():
            _{name}_buffer[:] = _numpy.random.{numpy_function}(len(_{name}_buffer))
    value = _{name}_buffer[_{name}_buffer_index[0]]
    _{name}_buffer_index[0] += 1
    if _{name}_buffer_index[0] == len(_{name}_buffer):
        _{name}_buffer_index[0] = 0
    return value
'''


RAND_CODE = _buffered_code("rand", "rand", "Uniform random number in [0, 1)")
RANDN_CODE = _buffered_code("randn", "randn", "Standard normal random number")

# The same algorithms as Brian's Cython target (numpy's PTRS for lam >= 10,
# multiplication of uniforms otherwise).
POISSON_CODE = '''
@_numba.njit
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


@_numba.njit
def _poisson(lam, _vectorisation_idx, _rand_buffer, _rand_buffer_index):
    """Poisson-distributed integer with mean lam."""
    if lam == 0:
        return _numpy.int32(0)
    if lam < 10:
        enlam = _numpy.exp(-lam)
        X = 0
        prod = 1.0
        while True:
            prod *= _rand(_vectorisation_idx, _rand_buffer, _rand_buffer_index)
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
        U = _rand(_vectorisation_idx, _rand_buffer, _rand_buffer_index) - 0.5
        V = _rand(_vectorisation_idx, _rand_buffer, _rand_buffer_index)
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


def _device_has_buffers(device):
    """Brian >= 2.11 keeps float64 buffers (with content) in the device."""
    buffer = getattr(device, "rand_buffer", None)
    return buffer is not None and buffer.dtype == np.float64 and buffer.size > 1


def random_buffers():
    """The four arrays behind rand()/randn(): buffers and their int32[1] indices."""
    device = all_devices["runtime"]
    if _device_has_buffers(device):
        return {
            "_rand_buffer": device.rand_buffer,
            "_rand_buffer_index": device.rand_buffer_index,
            "_randn_buffer": device.randn_buffer,
            "_randn_buffer_index": device.randn_buffer_index,
        }
    return _own_buffers


def _extend_runtime_device():
    """Brian 2.10: make the device's random-state methods cover our buffers."""
    global _own_buffers
    _own_buffers = {
        "_rand_buffer": np.zeros(BUFFER_SIZE, dtype=np.float64),
        "_rand_buffer_index": np.zeros(1, dtype=np.int32),
        "_randn_buffer": np.zeros(BUFFER_SIZE, dtype=np.float64),
        "_randn_buffer_index": np.zeros(1, dtype=np.int32),
    }
    original_seed = RuntimeDevice.seed
    original_get = RuntimeDevice.get_random_state
    original_set = RuntimeDevice.set_random_state

    def seed(self, seed=None):
        original_seed(self, seed)
        _own_buffers["_rand_buffer_index"][:] = 0
        _own_buffers["_randn_buffer_index"][:] = 0

    def get_random_state(self):
        state = original_get(self)
        state["numba_buffers"] = {k: np.array(v) for k, v in _own_buffers.items()}
        return state

    def set_random_state(self, state):
        original_set(self, state)
        stored = state.get("numba_buffers")
        if stored is None:  # stored without brian2_numba: refill from numpy
            _own_buffers["_rand_buffer_index"][:] = 0
            _own_buffers["_randn_buffer_index"][:] = 0
        else:
            for key, value in stored.items():
                _own_buffers[key][:] = value  # in place: kernels hold the arrays

    RuntimeDevice.seed = seed
    RuntimeDevice.get_random_state = get_random_state
    RuntimeDevice.set_random_state = set_random_state


def register_random_functions():
    """Register numba versions of rand, randn and poisson."""
    if not _device_has_buffers(all_devices["runtime"]) and _own_buffers is None:
        _extend_runtime_device()
    buffers = random_buffers()
    DEFAULT_FUNCTIONS["rand"].implementations.add_implementation(
        "numba",
        code=deindent(RAND_CODE),
        name="_rand",
        namespace={k: v for k, v in buffers.items() if k.startswith("_rand_")},
    )
    DEFAULT_FUNCTIONS["randn"].implementations.add_implementation(
        "numba",
        code=deindent(RANDN_CODE),
        name="_randn",
        namespace={k: v for k, v in buffers.items() if k.startswith("_randn_")},
    )
    DEFAULT_FUNCTIONS["poisson"].implementations.add_implementation(
        "numba",
        code=deindent(POISSON_CODE),
        name="_poisson",
        dependencies={"_rand": DEFAULT_FUNCTIONS["rand"]},
    )
