"""Brian2's CUBA example (Vogels & Abbott 2005) on the numba target.

Prints how long the first ``run()`` (code generation, compilation or cache
loading, and the simulation itself) took; run it twice to see the effect of
the kernel cache. Usage: ``python examples/cuba.py [target] [duration_s]``.
"""

import sys
import time

start = time.perf_counter()
from brian2 import (  # noqa: E402  (after the clock starts: the import is timed)
    NeuronGroup,
    SpikeMonitor,
    Synapses,
    defaultclock,
    ms,
    mV,
    prefs,
    run,
    second,
    seed,
)

import brian2_numba  # noqa: E402, F401  (registers the 'numba' target)

target = sys.argv[1] if len(sys.argv) > 1 else "numba"
duration = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
prefs.codegen.target = target
seed(4321)
defaultclock.dt = 0.1 * ms

taum, taue, taui = 20 * ms, 5 * ms, 10 * ms
Vt, Vr, El = -50 * mV, -60 * mV, -49 * mV
eqs = """
dv/dt  = (ge+gi-(v-El))/taum : volt (unless refractory)
dge/dt = -ge/taue : volt
dgi/dt = -gi/taui : volt
"""
P = NeuronGroup(4000, eqs, threshold="v>Vt", reset="v = Vr", refractory=5 * ms,
                method="exact")
P.v = "Vr + rand() * (Vt - Vr)"
P.ge = 0 * mV
P.gi = 0 * mV
we = (60 * 0.27 / 10) * mV  # excitatory synaptic weight (voltage)
wi = (-20 * 4.5 / 10) * mV  # inhibitory synaptic weight
Ce = Synapses(P, P, on_pre="ge += we")
Ci = Synapses(P, P, on_pre="gi += wi")
Ce.connect("i<3200", p=0.02)
Ci.connect("i>=3200", p=0.02)
s_mon = SpikeMonitor(P)
setup = time.perf_counter()
run(duration * second)
end = time.perf_counter()
print(f"target={target}: {s_mon.num_spikes} spikes, {len(Ce) + len(Ci)} synapses")
print(f"import + network construction: {setup - start:.2f} s")
print(f"first run() of {duration:g} s (compile or load + simulate): {end - setup:.2f} s")
print(f"total: {end - start:.2f} s")
if target == "numba":
    print("numba kernel cache:", brian2_numba.cache_stats())
