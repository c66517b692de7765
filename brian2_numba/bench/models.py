"""The benchmark models: Brian2's, Brian2CUDA's and Brian2GeNN's standard set.

Definitions follow ``brian2/tests/features/speed.py`` and Brian2CUDA's
``brian2cuda/tests/features/speed.py`` so that numbers can be set next to
theirs. Each model is a function ``build(n)`` that creates its objects in the
current Brian scope and returns a :class:`Built`: everything to simulate, plus
the monitor and variable that make the result checksum (so that a fast wrong
answer shows up next to the right one).

*Deterministic* models use no random numbers at all: every target must give
the very same spikes as the numpy target. The others are compared side by
side only (the targets draw random numbers differently).

A model's measured phase is ``runs`` calls of ``run(duration)`` (one for most
models; ``short_runs`` makes many short calls, as plasticity protocols do, and
reports the time per call).

This file is also loaded by file path in the benchmark's child processes
(see ``child.py``), so it imports nothing from ``brian2_numba``.
"""

from dataclasses import dataclass, field

import numpy as np
from brian2 import (
    BrianObject,
    Cylinder,
    Equations,
    Hz,
    NeuronGroup,
    PoissonGroup,
    SpatialNeuron,
    SpikeMonitor,
    StateMonitor,
    Synapses,
    cm,
    collect,
    ms,
    msiemens,
    mV,
    nS,
    ohm,
    siemens,
    uA,
    uF,
    ufarad,
    um,
    umetre,
)

__all__ = ["Built", "Model", "MODELS"]


@dataclass
class Built:
    """A constructed model: its objects and what goes into the checksum."""

    objects: list
    spikes: object            # a SpikeMonitor (record=False is fine)
    record: object            # a StateMonitor or group holding ``var``
    var: str = "v"


@dataclass(frozen=True)
class Model:
    """A benchmark model with its default sizes, quick size and duration."""

    name: str
    build: object = field(repr=False)
    sizes: tuple              # default sizes (the "time vs size" plot)
    quick_size: int           # for --quick and the tests
    duration_ms: float        # simulated time of each run() call
    quick_duration_ms: float
    deterministic: bool
    size_label: str = "neurons"
    doc: str = ""
    #: the measure that matters for this model, plotted against size
    focus: str = "t_per_step"
    #: run() calls in each measured phase (each of ``duration_ms``), and with --quick
    runs: int = 1
    quick_runs: int = 1


def _built(spikes, record, var="v"):
    """A :class:`Built` of everything the calling ``build`` function created."""
    objects = set(collect(level=1)) | {spikes}
    if isinstance(record, BrianObject):
        objects.add(record)
    return Built(list(objects), spikes, record, var)


def _cuba_group(n, deterministic):
    taum, taue, taui = 20 * ms, 5 * ms, 10 * ms
    Vt, Vr, El = -50 * mV, -60 * mV, -49 * mV
    eqs = """
    dv/dt  = (ge+gi-(v-El))/taum : volt (unless refractory)
    dge/dt = -ge/taue : volt (unless refractory)
    dgi/dt = -gi/taui : volt (unless refractory)
    """
    P = NeuronGroup(n, eqs, threshold="v>Vt", reset="v = Vr", refractory=5 * ms,
                    method="exact", namespace=dict(taum=taum, taue=taue, taui=taui,
                                                   Vt=Vt, Vr=Vr, El=El))
    if deterministic:
        P.v = "Vr + (Vt - Vr) * (((i % 1000) * 7919) % 1000) / 1000.0"
    else:
        P.v = "Vr + rand() * (Vt - Vr)"
    P.ge = P.gi = 0 * mV
    return P


def cuba(n):
    """CUBA (Vogels & Abbott 2005) as in speed.py: 80 synapses per neuron."""
    Ne = int(0.8 * n)
    P = _cuba_group(n, deterministic=False)
    Ce = Synapses(P, P, on_pre="ge += we", namespace={"we": 60 * 0.27 / 10 * mV})
    Ci = Synapses(P, P, on_pre="gi += wi", namespace={"wi": -20 * 4.5 / 10 * mV})
    Ce.connect("i<Ne", p=min(1.0, 80.0 / n), namespace={"Ne": Ne})
    Ci.connect("i>=Ne", p=min(1.0, 80.0 / n), namespace={"Ne": Ne})
    return _built(SpikeMonitor(P), _sample_v(P, n))


def cuba_det(n):
    """CUBA without random numbers: arithmetic initial values and connectivity."""
    Ne = int(0.8 * n)
    P = _cuba_group(n, deterministic=True)
    # 80 targets per neuron, spread by a quadratic hash (no rand())
    targets = "(i*97 + k*k*13 + k*31) % N_post for k in range(80)"
    Ce = Synapses(P[:Ne], P, on_pre="ge += we", namespace={"we": 60 * 0.27 / 10 * mV})
    Ci = Synapses(P[Ne:], P, on_pre="gi += wi", namespace={"wi": -20 * 4.5 / 10 * mV})
    Ce.connect(j=targets)
    Ci.connect(j=targets)
    return _built(SpikeMonitor(P), _sample_v(P, n))


def _sample_v(group, n, var="v"):
    """A StateMonitor of ``var`` for 10 neurons spread over the group."""
    return StateMonitor(group, var, record=np.arange(0, n, max(1, n // 10)))


def cobahh(n):
    """COBAHH (Brette et al. 2007) as in speed.py: HH neurons, 80 synapses each."""
    area = 20000 * umetre**2
    ns = dict(Cm=1 * ufarad * cm**-2 * area, gl=5e-5 * siemens * cm**-2 * area,
              El=-60 * mV, EK=-90 * mV, ENa=50 * mV, VT=-63 * mV,
              g_na=100 * msiemens * cm**-2 * area, g_kd=30 * msiemens * cm**-2 * area,
              taue=5 * ms, taui=10 * ms, Ee=0 * mV, Ei=-80 * mV, we=6 * nS, wi=67 * nS)
    eqs = Equations("""
    dv/dt = (gl*(El-v)+ge*(Ee-v)+gi*(Ei-v)-
             g_na*(m*m*m)*h*(v-ENa)-g_kd*(n*n*n*n)*(v-EK))/Cm : volt
    dm/dt = alpha_m*(1-m)-beta_m*m : 1
    dn/dt = alpha_n*(1-n)-beta_n*n : 1
    dh/dt = alpha_h*(1-h)-beta_h*h : 1
    dge/dt = -ge*(1./taue) : siemens
    dgi/dt = -gi*(1./taui) : siemens
    alpha_m = 0.32*(mV**-1)*(13*mV-v+VT)/(exp((13*mV-v+VT)/(4*mV))-1.)/ms : Hz
    beta_m = 0.28*(mV**-1)*(v-VT-40*mV)/(exp((v-VT-40*mV)/(5*mV))-1)/ms : Hz
    alpha_h = 0.128*exp((17*mV-v+VT)/(18*mV))/ms : Hz
    beta_h = 4./(1+exp((40*mV-v+VT)/(5*mV)))/ms : Hz
    alpha_n = 0.032*(mV**-1)*(15*mV-v+VT)/(exp((15*mV-v+VT)/(5*mV))-1.)/ms : Hz
    beta_n = .5*exp((10*mV-v+VT)/(40*mV))/ms : Hz
    """)
    P = NeuronGroup(n, eqs, threshold="v>-20*mV", refractory=3 * ms,
                    method="exponential_euler", namespace=ns)
    P.v = "El + (randn() * 5 - 5)*mV"
    P.ge = "(randn() * 1.5 + 4) * 10.*nS"
    P.gi = "(randn() * 12 + 20) * 10.*nS"
    Ce = Synapses(P[:int(0.8 * n)], P, on_pre="ge+=we", namespace=ns)
    Ci = Synapses(P[int(0.8 * n):], P, on_pre="gi+=wi", namespace=ns)
    Ce.connect(p=min(1.0, 80.0 / n))
    Ci.connect(p=min(1.0, 80.0 / n))
    return _built(SpikeMonitor(P), _sample_v(P, n))


def stdp(n):
    """STDP (Song et al. 2000) as in Brian2CUDA: n Poisson inputs, n/1000 neurons.

    Each neuron gets 1000 inputs (a contiguous block, as Brian2CUDA), so there
    are n synapses; the checksum averages the plastic weights.
    """
    gmax, dApre, taupre = 0.01, 0.01, 20 * ms
    ns = dict(taum=10 * ms, taupre=taupre, taupost=taupre, Ee=0 * mV, vt=-54 * mV,
              vr=-60 * mV, El=-74 * mV, taue=5 * ms, gmax=gmax,
              dApre=dApre * gmax, dApost=-dApre * 1.05 * gmax)
    inputs = PoissonGroup(n, rates=15 * Hz)
    neurons = NeuronGroup(-(-n // 1000), """
        dv/dt = (ge * (Ee-vr) + El - v) / taum : volt
        dge/dt = -ge / taue : 1
        """, threshold="v>vt", reset="v = vr", method="exact", namespace=ns)
    neurons.v = ns["vr"]
    S = Synapses(inputs, neurons, """
        w : 1
        dApre/dt = -Apre / taupre : 1 (event-driven)
        dApost/dt = -Apost / taupost : 1 (event-driven)
        """, on_pre="""ge += w
                       Apre += dApre
                       w = clip(w + Apost, 0, gmax)""",
                 on_post="""Apost += dApost
                            w = clip(w + Apre, 0, gmax)""", namespace=ns)
    S.connect(j="i // 1000")
    S.w = "rand() * gmax"
    return _built(SpikeMonitor(neurons), S, var="w")


def _brunel_hakim(n, muext, sigmaext, delay=None, heterog_delays=None):
    """Brunel & Hakim (1999) as in Brian2CUDA: 1000 inhibitory synapses/neuron."""
    ns = dict(Vr=10 * mV, theta=20 * mV, tau=20 * ms, J=0.1 * mV, muext=muext,
              sigmaext=sigmaext)
    group = NeuronGroup(n, "dV/dt = (-V+muext + sigmaext * sqrt(tau) * xi)/tau : volt",
                        threshold="V>theta", reset="V=Vr", refractory=2 * ms,
                        method="euler", namespace=ns)
    group.V = ns["Vr"]
    conn = Synapses(group, group, on_pre="V += -J", delay=delay, namespace=ns)
    conn.connect(p=min(1.0, 1000.0 / n))
    if heterog_delays is not None:
        conn.delay = heterog_delays
    return _built(SpikeMonitor(group), _sample_v(group, n, "V"), var="V")


def brunel_hakim_homog(n):
    """Brunel-Hakim with homogeneous delays (2 ms), muext=25 mV, sigmaext=1 mV."""
    return _brunel_hakim(n, 25 * mV, 1 * mV, delay=2 * ms)


def brunel_hakim_heterog(n):
    """Brunel-Hakim with delays 4*ms*rand(), muext=27 mV, sigmaext=0.33 mV."""
    return _brunel_hakim(n, 27 * mV, 0.33 * mV, heterog_delays="4*ms*rand()")


def synapses(n):
    """Synapse creation: ``connect`` with a condition, and with a condition and p.

    The time that matters is network construction; the short run only checks
    that the synapses work.
    """
    G = NeuronGroup(n, "dv/dt = rate : 1\nrate : Hz (constant)", threshold="v>1",
                    reset="v = 0", method="euler")
    G.rate = "(10 + 40.0 * i / N) * Hz"
    G.v = "(i % 10) / 10.0"
    local = Synapses(G, G, "w : 1", on_pre="v_post += w")
    local.connect("i != j and abs(i - j) <= 10")
    local.w = 0.001
    sparse = Synapses(G, G, on_pre="v_post += 0.001")
    sparse.connect("i != j", p=0.02)
    return _built(SpikeMonitor(G), G)


def state_update(n):
    """Pure state update: n uncoupled LIF neurons, no synapses, spike counts only."""
    G = NeuronGroup(n, "dv/dt = (I - v) / tau : 1\nI : 1 (constant)",
                    threshold="v > 1", reset="v = 0", method="exact",
                    namespace={"tau": 10 * ms})
    G.I = "0.5 + 1.5 * i / N"
    G.v = "(i % 100) / 100.0"
    return _built(SpikeMonitor(G, record=False), G)


def _tiny_group(n):
    """The tiny network: n LIF neurons, all-to-all synapses with a 1 ms delay.

    Returns both, so that the caller's ``_built`` collects them.
    """
    G = NeuronGroup(n, "dv/dt = (I - v) / tau : 1 (unless refractory)\nI : 1 (constant)",
                    threshold="v > 1", reset="v = 0", refractory=2 * ms,
                    method="exact", namespace={"tau": 10 * ms})
    G.I = "1.1 + 0.1 * i / N"
    S = Synapses(G, G, "w : 1", on_pre="v_post += w", delay=1 * ms)
    S.connect("i != j")
    S.w = "0.02 * (1 + (i + j) % 3)"
    return G, S


def tiny(n):
    """Per-step overhead: n (10) LIF neurons, delayed synapses, spike and state monitors."""
    G, S = _tiny_group(n)  # noqa: F841 (S: a local here, so that _built collects it)
    return _built(SpikeMonitor(G), StateMonitor(G, "v", record=True))


def short_runs(n):
    """Many short run() calls: the tiny network and a spike monitor, 50 x run(1 ms).

    Initial ``v`` spread over [0, 1): spikes, and spikes in flight through the
    1 ms delay, cross the boundaries between the calls from the start (even in
    the 5 ms of ``--quick``).
    """
    G, S = _tiny_group(n)  # noqa: F841 (S: collected by _built)
    G.v = "i * 1.0 / N"
    return _built(SpikeMonitor(G), G)


def spatial(n):
    """SpatialNeuron: HH axon (Brian example) of n compartments, pulses at one end."""
    ns = dict(El=10.613 * mV, ENa=115 * mV, EK=-12 * mV, gl=0.3 * msiemens / cm**2,
              gK=36 * msiemens / cm**2, I0=1 * uA, period=10 * ms)
    eqs = """
    Im = gl * (El-v) + gNa * m**3 * h * (ENa-v) + gK * n**4 * (EK-v) : amp/meter**2
    I = I0 * stimulated * int((t + 0.05*ms) % period < 1*ms) : amp (point current)
    stimulated : 1 (constant)
    dm/dt = alpham * (1-m) - betam * m : 1
    dn/dt = alphan * (1-n) - betan * n : 1
    dh/dt = alphah * (1-h) - betah * h : 1
    alpham = (0.1/mV) * 10*mV/exprel((-v+25*mV)/(10*mV))/ms : Hz
    betam = 4 * exp(-v/(18*mV))/ms : Hz
    alphah = 0.07 * exp(-v/(20*mV))/ms : Hz
    betah = 1/(exp((-v+30*mV) / (10*mV)) + 1)/ms : Hz
    alphan = (0.01/mV) * 10*mV/exprel((-v+10*mV)/(10*mV))/ms : Hz
    betan = 0.125*exp(-v/(80*mV))/ms : Hz
    gNa : siemens/meter**2
    """
    axon = Cylinder(length=10 * cm, diameter=2 * 238 * um, n=n, type="axon")
    neuron = SpatialNeuron(morphology=axon, model=eqs, method="exponential_euler",
                           threshold="m > 0.5", refractory="m > 0.4",
                           Cm=1 * uF / cm**2, Ri=35.4 * ohm * cm, namespace=ns)
    neuron.v = 0 * mV
    neuron.h, neuron.m, neuron.n = 1, 0, 0.5
    neuron.gNa = 120 * msiemens / cm**2
    # "stimulated", not "i == 0" in I: Brian's standalone code would redeclare i;
    # "t + 0.05*ms": t never falls on a pulse edge, where float modulo is ambiguous
    neuron.stimulated[0] = 1
    return _built(SpikeMonitor(neuron), _sample_v(neuron, n))


def _model(build, sizes, quick_size, duration_ms, quick_duration_ms, deterministic,
           size_label="neurons", focus="t_per_step", runs=1, quick_runs=1):
    return Model(build.__name__, build, tuple(sizes), quick_size, duration_ms,
                 quick_duration_ms, deterministic, size_label,
                 (build.__doc__ or "").strip().splitlines()[0], focus, runs, quick_runs)


#: all models by name, in the order of the report
MODELS = {m.name: m for m in [
    _model(cuba, [1000, 4000, 16000], 500, 500, 20, False),
    _model(cuba_det, [1000, 4000, 16000], 500, 500, 20, True),
    _model(cobahh, [1000, 4000], 200, 200, 10, False),
    _model(stdp, [10000, 100000], 2000, 500, 100, False, "inputs (= synapses)"),
    _model(brunel_hakim_homog, [2000, 5000], 1000, 200, 50, False),
    _model(brunel_hakim_heterog, [2000, 5000], 1000, 200, 50, False),
    _model(synapses, [1000, 4000, 16000], 200, 10, 5, False, focus="t_construct"),
    _model(state_update, [250_000, 1_000_000], 1000, 50, 10, True),
    _model(tiny, [10], 10, 1000, 100, True),
    _model(short_runs, [10], 10, 1, 1, True, focus="t_per_run_call", runs=50, quick_runs=5),
    _model(spatial, [100, 1000], 50, 50, 20, True, "compartments"),
]}
