"""The cost advisor: how long would this ``run()`` take on each configuration?

Before each ``run()`` on the ``'numba'`` target, the advisor counts a few
features of the network (neurons, synapses, monitored values, code objects,
steps per clock, the kernels' cache state) and predicts, for every
configuration, the compile-or-load time, the time of the steps and Python's
preparation of the run (Brian's code generation, ``before_run``). It logs one
INFO line (logger ``brian2_numba.advisor``) with the estimate for the current
configuration, and a WARNING when another one is predicted to be at least
three times faster for this run, compilation included, with the line to
change. An estimate the same as the network's previous one (many short
runs) is logged at DEBUG level instead (Brian's log file, not the console).
``prefs.codegen.runtime.numba.advisor = False`` switches both off.
:func:`advise` returns the whole table::

    brian2_numba.advise(net, 10*second)

The configurations: ``numba`` (the fused loop, the default), ``numba
per-object`` (``prefs.codegen.runtime.numba.fused = False``), ``numba, N
threads`` (only predicted, with an assumed parallel efficiency), ``numpy``,
``cython`` and ``cpp_standalone``.

**The model.** Every time is a sum of coefficients times features, per
target (``advisor_coefficients.json``, next to this module)::

    steps    = 1 per run() (entering the loop)
             + sum over code objects of (steps of its clock) x
               (1, elements it loops over, elements x operators,
                elements x function calls, synapses (pathways),
                recorded values (StateMonitor), compartments (SpatialNeuron))
    run()    = a + b x code objects          (Brian's preparation of a run)
    compile  = a + b x kernels + c x integration + d x synapses
               (per cache state: 'cold' for kernels to compile, 'warm' for
               kernels in numba's disk cache; nothing when all are in memory)

``integration`` is Brian's symbolic work on the equations in its first run
(4 per equation of a system solved exactly, 1 per equation integrated with
exponential Euler or event-driven); the synapses term is the spike queue's
first preparation.

The coefficients are fitted (least squares of relative errors, non-negative)
to the benchmark tool's results (``brian2-numba-bench``, see
:func:`fit`); ``python -m brian2_numba.advisor calibrate`` measures them again
on this machine and writes them to the cache directory, where they override
the shipped file. The features cost O(objects) (no loop over synapses or
neurons), so the advisor does not slow down many short runs.

What it cannot know, and assumes instead:

* firing rates: the synaptic term is per synapse and step, with the
  benchmark models' typical rates folded into its coefficient;
* the cache state of other targets: Cython's and cpp_standalone's caches
  are assumed cold (a full compilation), numpy has none;
* the fused loop's own cache state: that of its kernels;
* threads: the parallel efficiency is an assumption (in the coefficients
  file), not a measurement; the row appears with the preference
  ``codegen.runtime.numba.threads`` if this version has it.
"""

import argparse
import json
import os
import re
import sys
import tempfile
import weakref

import numpy as np
from brian2.core.preferences import prefs
from brian2.groups.group import CodeRunner, Group
from brian2.groups.neurongroup import Resetter, StateUpdater, Thresholder
from brian2.monitors import EventMonitor, PopulationRateMonitor, StateMonitor
from brian2.spatialneuron.spatialneuron import SpatialStateUpdater
from brian2.synapses.synapses import Synapses, SynapticPathway
from brian2.utils.logger import get_logger
from numba.core.dispatcher import Dispatcher

from .cache import LOOP_VARIANT, configured_cache_directory, kernel_forms
from .inspection import _code_objects
from .kernel_cache import KernelCache

__all__ = ["advise", "features", "kernel_states", "estimate", "predict", "load_coefficients",
           "fit", "calibrate", "CONFIGURATIONS", "STEP_FEATURES"]

logger = get_logger(__name__)

#: the per-step features, summed over code objects (each x its clock's steps)
STEP_FEATURES = ("run_calls", "object_steps", "element_steps", "op_steps", "call_steps",
                 "synapse_steps", "recorded_steps", "compartment_steps")
#: the compile-or-load features
COMPILE_FEATURES = ("const", "kernels", "integration", "synapses")
#: the configurations, in table order: (name, benchmark target)
CONFIGURATIONS = ("numba", "numba per-object", "numba threads", "numpy", "cython",
                  "cpp_standalone")
#: the benchmark tool's target of each configuration
_TARGET = {"numba": "numba", "numba per-object": "numba_per_object",
           "numba threads": "numba", "numpy": "numpy", "cython": "cython",
           "cpp_standalone": "cpp_standalone"}
#: the line that selects each configuration
_SWITCH = {
    "numba": "prefs.codegen.runtime.numba.fused = True",
    "numba per-object": "prefs.codegen.runtime.numba.fused = False",
    "numba threads": "prefs.codegen.runtime.numba.threads = {threads}",
    "numpy": "prefs.codegen.target = 'numpy'",
    "cython": "prefs.codegen.target = 'cython'",
    "cpp_standalone": "set_device('cpp_standalone') (before creating the objects)",
}
#: a WARNING when another configuration is this many times faster
FASTER = 3.0
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "advisor_coefficients.json")
USER_FILE_NAME = "advisor_coefficients.json"
THREADS_PREF = "codegen.runtime.numba.threads"

#: functions that cost next to nothing (not counted as calls)
_CHEAP = frozenset({"int", "float", "bool", "abs", "clip", "sign", "ceil", "floor",
                    "timestep", "not_refractory", "min", "max"})
_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_NOISE = re.compile(r"\bxi(_\w+)?\b")
_OPERATOR = re.compile(r"\*\*|[-+*/%<>]|==|!=")

# -- features --------------------------------------------------------------------

_calls_cache = weakref.WeakKeyDictionary()  # code runner -> function calls per element


def _count_calls(*codes):
    """(function calls, arithmetic operators) in some code."""
    calls = operators = 0
    for code in codes:
        if not code:
            continue
        code = str(code)
        calls += sum(1 for name in _CALL.findall(code) if name not in _CHEAP)
        calls += len(_NOISE.findall(code))  # a randn() per element each
        operators += len(_OPERATOR.findall(code))
    return calls, operators


def _calls_per_element(runner):
    """(function calls (exp, rand, ...), operators, integration) of a code runner's code.

    ``integration`` estimates Brian's symbolic work on the equations, which
    its first run in a process pays (sympy; measured once, warm cache, first
    ``run(0*ms)`` minus the second: CUBA's 3 equations solved exactly 0.8 s,
    STDP's 2 0.6 s, COBAHH's 6 with exponential Euler 0.39 s, SpatialNeuron's
    3 0.21 s, a single equation, solved exactly or with Euler, 0.1 s): 4 per
    equation of an exactly solved system of several (a matrix exponential), 1
    per equation for exponential Euler, 0 otherwise. Counted once per group
    (a SpatialNeuron's two state updaters integrate the same equations).
    """
    try:
        return _calls_cache[runner]
    except (KeyError, TypeError):
        pass
    group = runner.group
    if isinstance(runner, (StateUpdater, SpatialStateUpdater)):
        equations = getattr(group, "equations", None) or ()
        exprs = [eq.expr.code for eq in equations.values() if eq.expr is not None] \
            if equations else []
        calls, operators = _count_calls(*exprs)
        odes = len(equations.diff_eq_names) if equations else 0
        method = str(runner.method_choice)
        if "exponential" in method:
            calls += odes  # an exp per equation
            integration = odes
        elif ("exact" in method or "linear" in method) and odes > 1:
            integration = 4 * odes
        else:
            integration = 0
        if isinstance(runner, SpatialStateUpdater):
            integration = 0  # the group's StateUpdater counts it
        calls = (calls, operators, integration)
    elif isinstance(runner, Thresholder):
        calls = (*_count_calls(group.events.get(runner.event)), 0)
    elif isinstance(runner, Resetter):
        calls = (*_count_calls(group.event_codes.get(runner.event)), 0)
    else:
        calls = (*_count_calls(getattr(runner, "abstract_code", None)), 0)
    try:
        _calls_cache[runner] = calls
    except TypeError:
        pass
    return calls


def _steps(clock, duration):
    duration = float(duration)
    return int(round(duration / float(clock.dt_))) if duration > 0 else 0


def _all_objects(objects):
    """The objects and their contained objects (``sorted_objects`` without the
    sorting, which reads preferences slowly)."""
    for obj in objects:
        yield obj
        yield from _all_objects(obj.contained_objects)


def features(net, duration):
    """The advisor's features of a network for a ``run(duration)``.

    O(objects): sizes are read from the objects' counters, nothing loops over
    neurons or synapses.

    Returns
    -------
    dict
        ``neurons`` (elements of the groups that are not synapses or
        monitors: neurons, Poisson inputs, compartments), ``synapses``,
        ``monitors``, ``recorded`` (values a StateMonitor records per step),
        ``clocks``, ``steps`` (per clock name), ``code_objects`` (those that
        run each step: state updaters, thresholds, resets, monitors, and two
        per synaptic pathway: pushing spikes and their effect),
        ``integration`` (Brian's symbolic work on the equations, see the
        module's docstring), and the per-step features of
        :data:`STEP_FEATURES` for this duration.
    """
    found = dict.fromkeys(STEP_FEATURES, 0)
    found.update(neurons=0, synapses=0, monitors=0, recorded=0, code_objects=0,
                 integration=0, run_calls=1)
    steps_of = {}
    for obj in _all_objects(net.objects):
        if not obj.active:
            continue
        clock = obj.clock
        if clock.name not in steps_of:
            steps_of[clock.name] = _steps(clock, duration)
        steps = steps_of[clock.name]
        if isinstance(obj, (StateMonitor, EventMonitor, PopulationRateMonitor)):
            found["monitors"] += 1
        if isinstance(obj, Synapses):
            found["synapses"] += len(obj)
            event_driven = getattr(obj, "event_driven", None)
            if event_driven:  # integrated exactly, one by one
                found["integration"] += len(event_driven.diff_eq_names)
        elif isinstance(obj, Group) and not isinstance(obj, CodeRunner):
            found["neurons"] += len(obj)
        if not isinstance(obj, CodeRunner):
            continue
        kernels = 2 if isinstance(obj, SynapticPathway) else 1  # pushing spikes, and their effect
        found["code_objects"] += kernels
        found["object_steps"] += kernels * steps
        if isinstance(obj, SynapticPathway):
            found["synapse_steps"] += steps * len(obj.synapses)
        elif isinstance(obj, StateMonitor):
            values = len(obj.record) * len(obj.record_variables)
            found["recorded"] += values
            found["recorded_steps"] += steps * values
        elif isinstance(obj, (EventMonitor, PopulationRateMonitor)):
            pass  # their cost follows the spikes: in object_steps' coefficient
        else:
            elements = len(obj.group)
            calls, operators, integration = _calls_per_element(obj)
            found["element_steps"] += steps * elements
            found["op_steps"] += steps * elements * operators
            found["call_steps"] += steps * elements * calls
            found["integration"] += integration
            if isinstance(obj, SpatialStateUpdater):
                found["compartment_steps"] += steps * elements
    found["clocks"] = len(steps_of)
    found["steps"] = steps_of
    return found


# -- cache state -------------------------------------------------------------------

def kernel_states(net):
    """How many kernels of the network are in memory, on disk, or to compile.

    From the numba code objects the network has now (those of its last
    ``before_run``); ``None`` if it has none yet (never ran on 'numba'). A
    kernel counts as in memory (or on disk) if it or its variant for the
    fused loop (:func:`brian2_numba.cache.loop_kernel`) is: they take about
    the same time to compile, and one configuration of the estimate uses the
    one, another the other.
    """
    states = {"memory": 0, "disk": 0, "compile": 0}
    seen = 0
    for codeobj in _code_objects(net):
        compiled = codeobj.compiled_code.get("run")
        if compiled is None or not isinstance(compiled.main, Dispatcher):
            continue
        seen += 1
        kernel = compiled.main
        cache = getattr(kernel, "_cache", None)
        if any(form.overloads for form in kernel_forms(kernel)):
            states["memory"] += 1
        elif isinstance(cache, KernelCache) and (cache.has_index()
                                                 or cache.has_index(LOOP_VARIANT)):
            states["disk"] += 1
        else:
            states["compile"] += 1
    return states if seen else None


# -- coefficients -------------------------------------------------------------------

_coefficients = None


def user_coefficients_file():
    """Where ``calibrate`` writes this machine's coefficients (the cache directory)."""
    return os.path.join(configured_cache_directory(), USER_FILE_NAME)


def load_coefficients(path=None, reload=False):
    """The coefficients: ``path``, else this machine's (``calibrate``), else the shipped file."""
    global _coefficients
    if path is not None:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if _coefficients is None or reload:
        for candidate in (user_coefficients_file(), SHIPPED):
            try:
                with open(candidate, encoding="utf-8") as f:
                    _coefficients = json.load(f)
                _coefficients["file"] = candidate
                break
            except (OSError, ValueError):
                continue
        else:
            raise FileNotFoundError(f"No advisor coefficients: {SHIPPED} is missing.")
    return _coefficients


# -- the estimate ------------------------------------------------------------------

def _threads():
    """The threads preference if this version has it (else None), and the cores."""
    threads = prefs[THREADS_PREF] if THREADS_PREF in prefs else None
    return threads, os.cpu_count() or 1


def _current_configuration(fused=None):
    """The configuration the preferences select (``fused``: whether the run is fused)."""
    from brian2.devices.device import get_device, runtime_device

    if get_device() is not runtime_device:
        return "cpp_standalone"
    target = prefs["codegen.target"]
    if not isinstance(target, str):
        target = getattr(target, "class_name", str(target))
    if target != "numba":
        return target
    threads, _ = _threads()
    if threads is not None and threads > 1:
        return "numba threads"
    if fused is None:
        fused = prefs["codegen.runtime.numba.fused"]
    return "numba" if fused else "numba per-object"


def _linear(coefficients, values):
    return sum(coefficients.get(name, 0.0) * value for name, value in values.items())


def _compile_seconds(target_coefficients, compile_n, disk_n, found):
    """Compile-or-load seconds from the numbers of kernels to compile and to load."""
    fitted = target_coefficients["compile"]
    cold = fitted.get("cold") or fitted.get("warm")
    warm = fitted.get("warm") or cold
    once = {"const": 1.0, "integration": found["integration"], "synapses": found["synapses"]}
    seconds = 0.0
    if compile_n:
        seconds += _linear(cold, dict(once, kernels=compile_n))
    if disk_n:
        seconds += _linear(warm, {"kernels": disk_n} if compile_n else dict(once, kernels=disk_n))
    return seconds


def estimate(found, states=None, coefficients=None, threads=None):
    """Predicted seconds of one ``run()`` for every configuration.

    Parameters
    ----------
    found : dict
        :func:`features` of the network for the run's duration.
    states : dict, optional
        :func:`kernel_states` of the numba kernels; ``None``: all to compile.
    coefficients : dict, optional
        Default: :func:`load_coefficients`.
    threads : int, optional
        Threads of the 'numba, N threads' row (default: the preference, else
        the number of cores).

    Returns
    -------
    dict
        ``{configuration: {compile, per_step, steps_seconds, run_overhead,
        total, cache}}`` (seconds; ``per_step`` per step of the most frequent
        clock).
    """
    coefficients = coefficients or load_coefficients()
    kernels = found["code_objects"]
    if states is None:
        states = {"memory": 0, "disk": 0, "compile": kernels}
    steps = max(found["steps"].values(), default=0)
    step_values = {name: found[name] for name in STEP_FEATURES}
    pref_threads, cores = _threads()
    threads = threads or (pref_threads if pref_threads and pref_threads > 1 else cores)
    parallel = coefficients.get("threads", {})
    result = {}
    for config in CONFIGURATIONS:
        target = _TARGET[config]
        own = coefficients["targets"].get(target)
        if own is None:
            continue
        steps_seconds = _linear(own["step"], step_values)
        compile_seconds = None
        if target in ("numba", "numba_per_object"):
            cache = (f"{states['memory']} in memory, {states['disk']} on disk, "
                     f"{states['compile']} to compile")
            compile_seconds = _compile_seconds(own, states["compile"], states["disk"],
                                               found)
        elif target == "numpy":
            cache = "none needed"
            # Brian's first run of these equations (code generation, sympy):
            # not again if this network's kernels are all in memory already
            new = states["memory"] < kernels
            compile_seconds = _compile_seconds(own, 0, kernels, found) if new else 0.0
        else:
            cache = "assumed cold"
            compile_seconds = _compile_seconds(own, kernels, 0, found)
        if config == "numba threads":
            if threads <= 1:
                continue
            efficiency = parallel.get("parallel_efficiency", 0.7)
            serial = own["step"].get("object_steps", 0.0) * step_values["object_steps"]
            steps_seconds = serial + (steps_seconds - serial) / (threads * efficiency)
            compile_seconds *= parallel.get("compile_factor", 1.0)
            cache += f"; {threads} threads, assumed efficiency {efficiency:g}"
        overhead = _linear(own["overhead"], {"const": 1.0, "code_objects": kernels})
        result[config] = dict(
            compile=compile_seconds, per_step=steps_seconds / steps if steps else 0.0,
            steps_seconds=steps_seconds, run_overhead=overhead,
            total=compile_seconds + steps_seconds + overhead, cache=cache,
            threads=threads if config == "numba threads" else None)
    return result


def _table(predicted, current):
    from .introspect import Table

    rows = []
    for config, p in predicted.items():
        name = f"numba, {p['threads']} threads" if p["threads"] else config
        rows.append((name + (" (current)" if config == current else ""), p["compile"],
                     p["per_step"] * 1e6, p["run_overhead"], p["steps_seconds"], p["total"],
                     p["cache"]))
    return Table(["configuration", "compile s", "µs/step", "run() prep s", "steps s",
                  "total s", "cache"], rows)


def advise(net=None, duration=None):
    """The predicted cost of ``net.run(duration)`` on every configuration.

    Parameters
    ----------
    net : `Network`, optional
        Default: the network that ran last on the 'numba' target.
    duration : `Quantity`
        The duration of the ``run()`` to predict (``advise(10*second)``
        works too).

    Returns
    -------
    Table
        One row per configuration (the current one marked): predicted
        compile-or-load seconds, µs per step, Python's preparation of the
        run (seconds), the steps (seconds), the total, and the cache state
        assumed. The kernels' cache state is taken from the network's code
        objects (of its last run); before its first run, all kernels are
        assumed to need compiling.
    """
    from brian2.units import Quantity

    if isinstance(net, Quantity) and duration is None:
        net, duration = None, net
    if duration is None:
        raise TypeError("advise() needs the duration of the run to predict, "
                        "e.g. advise(net, 10*second).")
    if net is None:
        from .introspect import _network

        net = _network(None)
    found = features(net, duration)
    return _table(estimate(found, kernel_states(net)), _current_configuration())


_warned = set()  # (network name, configuration): warned once per process
_last_message = {}  # network name -> its last estimate logged at INFO level


def _seconds(x):
    return f"{x:.2g} s" if x < 10 else f"{x:.0f} s"


def advise_run(net, duration, fused=None):
    """The INFO line (and WARNING) before a run on 'numba' (called after ``before_run``).

    ``fused``: whether the run uses the fused loop (default: the preference).
    Returns the estimates (as :func:`estimate`), or None if switched off.
    Never raises: an advisor that fails says so at DEBUG level only.
    """
    try:
        if not prefs["codegen.runtime.numba.advisor"]:
            return None
        found = features(net, duration)
        states = kernel_states(net)
        predicted = estimate(found, states)
    except Exception as exc:  # an estimate must never break a run
        logger.debug(f"No cost estimate ({type(exc).__name__}: {exc}).", name_suffix="failed")
        return None
    current = _current_configuration(fused)
    mine = predicted.get(current)
    if mine is None:
        return predicted
    steps = max(found["steps"].values(), default=0)
    message = (
        f"Network '{net.name}' on {current}, {steps} steps: predicted "
        f"{_seconds(mine['total'])} = compile/load {_seconds(mine['compile'])} "
        f"(kernels: {mine['cache']}) + run() preparation {_seconds(mine['run_overhead'])} "
        f"+ steps {_seconds(mine['steps_seconds'])} ({mine['per_step'] * 1e6:.3g} µs/step).")
    # Brian's console shows INFO: the same estimate again (many short runs)
    # goes to the log file only
    if _last_message.get(net.name) == message:
        logger.debug(message, name_suffix="estimate")
    else:
        _last_message[net.name] = message
        logger.info(message, name_suffix="estimate")
    options = {c: p for c, p in predicted.items() if c != current
               and (c != "numba threads" or THREADS_PREF in prefs)}
    if options:
        best = min(options, key=lambda c: options[c]["total"])
        other = options[best]
        if other["total"] > 0 and mine["total"] >= FASTER * other["total"] \
                and (net.name, best) not in _warned:
            _warned.add((net.name, best))
            switch = _SWITCH[best].format(threads=other["threads"])
            logger.warn(
                f"Network '{net.name}': {best} is predicted to take "
                f"{_seconds(other['total'])} for this run() (compilation included), "
                f"{mine['total'] / other['total']:.0f}x less than {current} "
                f"({_seconds(mine['total'])}, {_seconds(mine['compile'])} of it "
                f"compiling or loading). To use it, set {switch}. "
                "brian2_numba.advise(net, duration) shows every configuration; "
                "prefs.codegen.runtime.numba.advisor = False turns this advice off.",
                name_suffix="faster_configuration")
    return predicted


# -- measured values and fitting -----------------------------------------------------

def predict(found, target, cache, coefficients=None, threads=None):
    """The prediction for a benchmark run: ``target`` (the benchmark's name) with a cache.

    ``cache``: 'cold' (every kernel compiled) or 'warm' (every kernel on disk);
    ``threads``: the thread count of the ``numba_threads`` target.
    Returns the dict of :func:`estimate` for that target.
    """
    coefficients = coefficients or load_coefficients()
    kernels = found["code_objects"]
    if cache == "cold":
        states = {"memory": 0, "disk": 0, "compile": kernels}
    else:
        states = {"memory": 0, "disk": kernels, "compile": 0}
    if target == "numba_threads":
        config = "numba threads"
    else:
        config = {v: k for k, v in _TARGET.items() if k != "numba threads"}.get(target)
    if config is None:
        raise ValueError(f"The advisor has no model of the target '{target}'.")
    p = estimate(found, states, coefficients, threads=threads)[config]
    if target in ("cython", "cpp_standalone") and cache == "warm":
        p["compile"] = _compile_seconds(coefficients["targets"][target], 0, kernels, found)
    return p


def predicted_for(record, coefficients=None):
    """:func:`predict` for a benchmark record (it must have ``advisor_features``)."""
    return predict(record["advisor_features"], record["target"], record["cache"], coefficients)


def _nnls(A, b):
    """Non-negative least squares (Lawson and Hanson), for a few columns."""
    A, b = np.asarray(A, float), np.asarray(b, float)
    n = A.shape[1]
    x, passive = np.zeros(n), np.zeros(n, bool)
    for _ in range(3 * n + 10):
        w = A.T @ (b - A @ x)
        if passive.all() or w[~passive].max(initial=0) <= 1e-12 * max(1.0, np.abs(w).max()):
            break
        passive[np.argmax(np.where(passive, -np.inf, w))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            bad = passive & (z <= 0)
            alpha = np.min(x[bad] / (x[bad] - z[bad]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
    return x


def _relative_fit(rows, targets, names, iterations=5):
    """Non-negative coefficients that make predicted / measured close to 1.

    Least squares of the relative errors, then reweighted a few times by
    ``1/sqrt(predicted x measured)`` (which approaches the squared log of the
    ratio: over- and underestimates by the same factor weigh the same).
    """
    rows = [(r, t) for r, t in zip(rows, targets, strict=True) if t and t > 0]
    if not rows:
        return None
    used = [n for n in names if any(r[n] for r, _ in rows)]
    X = np.array([[r[n] for n in used] for r, _ in rows], dtype=float)
    y = np.array([t for _, t in rows])
    scale = y.copy()
    for _ in range(iterations):
        x = _nnls(X / scale[:, None], y / scale)
        predicted = X @ x
        scale = np.sqrt(np.maximum(predicted, 1e-3 * y) * y)
    return {n: (float(x[used.index(n)]) if n in used else 0.0) for n in names}


def fit(records):
    """Coefficients from benchmark records that carry ``advisor_features``.

    Per target: the per-step coefficients from ``t_per_step``, the run()
    preparation from ``t_run_overhead`` and the compile-or-load coefficients
    per cache state (cold, warm) from :func:`measured`; each a non-negative
    least-squares fit of the relative errors.
    """
    from .bench.report import measured  # (the benchmark's modules: only for fitting)

    ok = [r for r in records if r.get("status") == "ok" and r.get("advisor_features")]
    result = {"version": 1, "features": list(STEP_FEATURES), "targets": {},
              "threads": {"parallel_efficiency": 0.7, "compile_factor": 1.3,
                          "note": "assumed, not measured (no threaded benchmark yet)"}}
    for target in sorted({r["target"] for r in ok}):
        mine = [r for r in ok if r["target"] == target]
        step_rows = [{n: r["advisor_features"][n] for n in STEP_FEATURES} for r in mine]
        step_times = [measured(r)["per_step"] * r["steps"] for r in mine]
        step = _relative_fit(step_rows, step_times, STEP_FEATURES)
        overhead = _relative_fit(
            [{"const": 1.0, "code_objects": r["advisor_features"]["code_objects"]} for r in mine],
            [measured(r)["run_overhead"] for r in mine], ("const", "code_objects"))
        compile_fit = {}
        for cache in ("cold", "warm"):
            # numpy caches nothing: its 'cold' and 'warm' runs are alike
            these = [r for r in mine if r["cache"] == cache or target == "numpy"]
            if target == "numpy" and cache == "cold":
                continue
            fitted = _relative_fit(
                [dict(const=1.0, kernels=r["advisor_features"]["code_objects"],
                      **{n: r["advisor_features"][n] for n in COMPILE_FEATURES[2:]})
                 for r in these],
                [measured(r)["compile"] for r in these], COMPILE_FEATURES)
            if fitted:
                compile_fit[cache] = fitted
        if not compile_fit:
            compile_fit["warm"] = dict.fromkeys(COMPILE_FEATURES, 0.0)
        result["targets"][target] = {"step": step, "overhead": overhead,
                                     "compile": compile_fit, "records": len(mine)}
    env = next((r["env"] for r in ok if "env" in r), None)
    if env:
        result["machine"] = env.get("machine")
        result["versions"] = env.get("versions")
    return result


def _model_features(model, n, duration_ms):
    """Features of a benchmark model, built in this process (for records without them)."""
    from brian2 import Network, ms, start_scope

    from .bench.models import MODELS

    start_scope()
    built = MODELS[model].build(n)
    net = Network(built.objects)
    found = features(net, duration_ms * ms)
    for obj in net.objects:  # not run, but not forgotten either (no warning)
        obj._network = net.id
    start_scope()
    return found


def add_features(records):
    """Give records without ``advisor_features`` those of their model (built here)."""
    cache = {}
    for r in records:
        if r.get("status") != "ok" or r.get("advisor_features"):
            continue
        key = (r["model"], r["n"], r["duration_ms"])
        if key not in cache:
            cache[key] = _model_features(*key)
        r["advisor_features"] = cache[key]
    return records


def _read(spec):
    """Records of ``FILE`` or ``FILE::target,target`` (only those targets)."""
    path, _, only = spec.partition("::")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    for record in records:
        missing = {"model", "n", "target", "cache"} - set(record)
        if missing:
            raise ValueError(f"a record in '{path}' has no {', '.join(sorted(missing))}")
    if only:
        wanted = set(only.split(","))
        records = [r for r in records if r["target"] in wanted]
    return records


def ratios(records, coefficients=None):
    """``[(model, n, target, cache, per-step ratio, compile ratio)]``: predicted / measured."""
    from .bench.report import measured

    rows = []
    for r in records:
        if r.get("status") != "ok" or not r.get("advisor_features"):
            continue
        p, m = predicted_for(r, coefficients), measured(r)
        step = p["per_step"] / m["per_step"] if m["per_step"] else None
        comp = p["compile"] / m["compile"] if m["compile"] else None
        rows.append((r["model"], r["n"], r["target"], r["cache"], step, comp))
    return rows


#: the models ``calibrate`` measures (--quick: a few minutes with every target)
CALIBRATION_MODELS = ("cuba_det", "cobahh", "stdp", "state_update", "tiny", "short_runs",
                      "spatial")


def _merge(measured_coefficients, records, shipped):
    """The measured coefficients, the shipped ones where the measurement says nothing.

    That is: targets not measured here, features that none of a target's
    records has (a coefficient fitted to zeros), cache states not measured.
    """
    merged = json.loads(json.dumps(shipped))
    merged.pop("file", None)
    merged.update({k: v for k, v in measured_coefficients.items() if k != "targets"})
    for target, own in measured_coefficients["targets"].items():
        base = shipped["targets"].get(target)
        if base:
            mine = [r["advisor_features"] for r in records
                    if r["target"] == target and r.get("advisor_features")]
            for name in STEP_FEATURES:
                if not any(found[name] for found in mine):
                    own["step"][name] = base["step"].get(name, 0.0)
            for cache, values in base["compile"].items():
                own["compile"].setdefault(cache, values)
        merged["targets"][target] = own
    merged["calibrated_targets"] = sorted(measured_coefficients["targets"])
    return merged


def calibrate(output=None, models=CALIBRATION_MODELS, targets=None, quick=True,
              extra_args=()):
    """Measure the coefficients on this machine: the benchmark tool on a few models.

    Runs ``brian2-numba-bench`` (``--quick`` by default: small sizes, short
    runs, cold and warm caches) on ``models`` and the targets that work here,
    fits (:func:`fit`), keeps the shipped coefficients where the measurement
    has nothing to say (targets that did not run, features none of the
    models has) and writes the result to ``output`` (default:
    ``advisor_coefficients.json`` in the cache directory, which then
    overrides the shipped file). Returns the path.
    """
    from .bench.cli import main as bench

    output = output or user_coefficients_file()
    options = ["-m", ",".join(models), "--no-plots"] + (["--quick"] if quick else [])
    if targets:
        options += ["-t", ",".join(targets)]
    options += list(extra_args)
    with tempfile.TemporaryDirectory(prefix="brian2_numba_calibrate_") as tmp:
        bench(options + ["-o", tmp])
        records = _read(os.path.join(tmp, "results.jsonl"))
    records = add_features(records)
    coefficients = _merge(fit(records), records, load_coefficients(SHIPPED))
    coefficients["source"] = "calibrate: brian2-numba-bench " + " ".join(options)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        json.dump(coefficients, f, indent=1)
    load_coefficients(reload=True)
    return output


def _format_ratio(x):
    return "-" if x is None else f"{x:.2f}"


def main(argv=None):
    """``python -m brian2_numba.advisor calibrate | fit FILE... | check FILE...``."""
    parser = argparse.ArgumentParser(prog="python -m brian2_numba.advisor",
                                     description="The cost advisor's coefficients.")
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="measure on this machine (runs the benchmark tool)")
    cal.add_argument("-o", "--output", help="default: the cache directory's file")
    cal.add_argument("-m", "--models", default=",".join(CALIBRATION_MODELS))
    cal.add_argument("-t", "--targets", help="default: every target that runs here")
    cal.add_argument("--full", action="store_true", help="default sizes, not --quick")
    for name, text in [("fit", "fit coefficients to benchmark results"),
                       ("check", "predicted / measured for benchmark results")]:
        p = sub.add_parser(name, help=text)
        p.add_argument("results", nargs="+",
                       help="results.jsonl files; FILE::t1,t2 takes only those targets")
        if name == "fit":
            p.add_argument("-o", "--output", help="write here (default: print)")
        else:
            p.add_argument("-c", "--coefficients", help="default: those in use")
            p.add_argument("--leave-one-out", action="store_true",
                           help="predict each model from a fit to the other models' records")
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        path = calibrate(args.output, args.models.split(","),
                         args.targets.split(",") if args.targets else None, not args.full)
        print(f"Coefficients written to {path}")
        return 0
    import brian2_numba  # noqa: F401  (the target, for building the models)

    prefs.codegen.target = "numba"
    try:
        records = add_features([r for spec in args.results for r in _read(spec)])
    except OSError as exc:
        parser.error(f"cannot read the results file: {exc}")
    except (ValueError, KeyError) as exc:
        parser.error(f"not a results file of brian2-numba-bench ({type(exc).__name__}: {exc})")
    if args.command == "fit":
        coefficients = fit(records)
        coefficients["source"] = "fit: " + " ".join(args.results)
        text = json.dumps(coefficients, indent=1)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        else:
            print(text)
        return 0
    coefficients = load_coefficients(args.coefficients) if args.coefficients else None
    if args.leave_one_out:
        rows = []
        for model in dict.fromkeys(r["model"] for r in records):
            others = fit([r for r in records if r["model"] != model])
            rows += ratios([r for r in records if r["model"] == model], others)
    else:
        rows = ratios(records, coefficients)
    print("model                 size     target            cache  step p/m  compile p/m")
    for model, n, target, cache, step, comp in rows:
        print(f"{model:21} {n:<8} {target:17} {cache:6} {_format_ratio(step):9} "
              f"{_format_ratio(comp)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
