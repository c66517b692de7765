"""One benchmark run in a fresh process: ``python child.py SPEC_JSON``.

Started by file path rather than with ``-m`` so that nothing is imported
before the clock starts: importing the ``brian2_numba`` package imports
brian2 *and* numba, and the import time of the numpy, cython and
cpp_standalone targets must not include numba's. For the same reason the
models are loaded from ``models.py`` by path.

The spec (JSON) names the model, size, duration, number of run() calls per
phase, target, seed, cache directory and the file to write the result to
(one JSON object; on failure it holds ``status: "error"`` and the
traceback's tail).

Runtime targets: the first phase is ``runs`` calls of ``run(duration)``
(compilation included), then the checksum, then the second phase, the same
calls again (the steady state). cpp_standalone: the ``runs`` calls are
recorded, built once and run in one binary.
"""

import time

_T0 = time.perf_counter()

import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

try:
    import resource  # noqa: E402
except ImportError:  # Windows: no peak memory
    resource = None


def _load_models():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models.py")
    spec = importlib.util.spec_from_file_location("_brian2_numba_bench_models", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def checksum(built, dt):
    """What a wrong simulation would change: spikes (exactly) and a mean value."""
    import numpy as np
    from brian2 import Synapses

    mon = built.spikes
    counts = np.asarray(mon.count[:], dtype=np.int64)
    digest = hashlib.sha256(counts.tobytes())
    if mon.record:
        steps = np.round(np.asarray(mon.t_[:]) / dt).astype(np.int64)
        indices = np.asarray(mon.i[:], dtype=np.int64)
        order = np.lexsort((indices, steps))
        digest.update(steps[order].tobytes())
        digest.update(indices[order].tobytes())
    values = np.asarray(getattr(built.record, built.var + "_")[:], dtype=float)
    return {
        "spikes": int(counts.sum()),
        "spike_hash": digest.hexdigest()[:16],
        "mean": float(values.mean()) if values.size else None,
        "mean_of": built.var,
        "synapses": int(sum(len(obj) for obj in built.objects if isinstance(obj, Synapses))),
    }


def _peak_memory(record):
    if resource is None:
        return
    scale = 1024 if sys.platform != "darwin" else 1  # ru_maxrss: KiB (Linux), bytes (macOS)
    for key, who in [("peak_rss_mb", resource.RUSAGE_SELF),
                     ("peak_rss_children_mb", resource.RUSAGE_CHILDREN)]:
        record[key] = resource.getrusage(who).ru_maxrss * scale / 2**20


#: brian2_numba: the fused loop, Brian's loop, threads; cpp_standalone (bench.targets)
_NUMBA_TARGETS = ("numba", "numba_per_object", "numba_threads")
_STANDALONE_TARGETS = ("cpp_standalone", "cpp_standalone_threads")


def _configure(target, cache_dir, threads):
    """Point the target's cache (or standalone project) at ``cache_dir``."""
    from brian2 import prefs, set_device

    if target in _STANDALONE_TARGETS:
        set_device("cpp_standalone", directory=os.path.join(cache_dir, "standalone"),
                   build_on_run=False)
        if target == "cpp_standalone_threads":
            prefs.devices.cpp_standalone.openmp_threads = threads
        return
    if target in _NUMBA_TARGETS:
        prefs.codegen.target = "numba"
        prefs.codegen.runtime.numba.cache_dir = os.path.join(cache_dir, "numba")
        prefs.codegen.runtime.numba.fused = target != "numba_per_object"
        if target == "numba_threads":
            prefs.codegen.runtime.numba.threads = threads
        return
    prefs.codegen.target = target
    if target == "cython":
        prefs.codegen.runtime.cython.cache_dir = os.path.join(cache_dir, "cython")


def run(spec, record):
    """Build and run the model, filling ``record`` as the timings come in."""
    target = spec["target"]
    import brian2
    if target in _NUMBA_TARGETS:
        import brian2_numba
    record["t_import"] = time.perf_counter() - _T0
    from brian2 import Network, defaultclock, device, ms, seed

    models = _load_models()
    model = models.MODELS[spec["model"]]
    _configure(target, spec["cache_dir"], spec.get("threads", 2))
    seed(spec["seed"])
    duration = spec["duration_ms"] * ms
    runs = spec.get("runs", 1)  # run(duration) calls per phase (short_runs: many)
    start = time.perf_counter()
    built = model.build(spec["n"])
    net = Network(built.objects)
    record["t_construct"] = time.perf_counter() - start
    steps = int(round(float(duration / defaultclock.dt)))
    record["steps"] = steps  # per run() call
    record["runs"] = runs
    start = time.perf_counter()
    for _ in range(runs):
        net.run(duration, namespace={})
    if target in _STANDALONE_TARGETS:
        # the run() calls only record (and generate code); the binary runs them all
        record["t_run_calls"] = time.perf_counter() - start
        project = os.path.join(spec["cache_dir"], "standalone")
        device.build(directory=project, compile=True, run=False, with_output=False)
        record["t_compile"] = time.perf_counter() - start
        start = time.perf_counter()
        device.run(directory=project, with_output=False)
        record["t_binary"] = time.perf_counter() - start
        record["t_first_run"] = record["t_compile"] + record["t_binary"]
        # the binary's clock of its last run() call (the only one for most models)
        record["t_loop"] = float(device._last_run_time)
        record["t_per_step"] = record["t_loop"] / steps
        record["note"] = ("standalone: one build only; per-step time from the "
                          "binary's own clock (device._last_run_time)")
        if runs > 1:
            # what a call costs once compiled: recording it in Python, and its
            # share of the binary's whole run (start-up and result files included)
            record["t_per_run_call"] = (record["t_run_calls"] + record["t_binary"]) / runs
            record["note"] += (f"; {runs} run() calls in one build: t_per_run_call = "
                               "(t_run_calls + t_binary) / runs")
        record.update(checksum(built, float(defaultclock.dt)))
    else:
        record["t_first_run"] = time.perf_counter() - start
        record.update(checksum(built, float(defaultclock.dt)))  # after one phase, as standalone
        loop = 0.0
        start = time.perf_counter()
        for _ in range(runs):
            net.run(duration, namespace={})
            loop += float(device._last_run_time)
        record["t_second_run"] = time.perf_counter() - start
        # the loop's own clock, as in standalone: without run()'s preparation
        record["t_loop"] = loop
        record["t_run_overhead"] = (record["t_second_run"] - loop) / runs  # per call
        record["t_per_step"] = loop / (steps * runs)
        if runs > 1:
            record["t_per_run_call"] = record["t_second_run"] / runs
    if target in _NUMBA_TARGETS:
        record["numba_cache"] = brian2_numba.cache_stats()
    record["brian2_version"] = brian2.__version__
    _advise(record, net, duration, spec)


def _advise(record, net, duration, spec):
    """The cost advisor's features and prediction for this run, after the timings.

    (For the other targets this imports brian2_numba, once nothing is timed.)
    """
    try:
        from brian2_numba import advisor

        found = advisor.features(net, duration)
        predicted = advisor.predict(found, spec["target"], spec["cache"],
                                    threads=spec.get("threads"))
    except Exception as exc:  # no prediction is no reason to lose the measurement
        record["advisor_error"] = f"{type(exc).__name__}: {exc}"[:300]
        return
    record["advisor_features"] = found
    record["advisor_predicted"] = {key: predicted[key] for key in
                                   ("compile", "per_step", "run_overhead", "total")}


def describe(exc):
    """The root cause's last frames, then every message of the chain (Brian wraps errors)."""
    chain = [exc]
    while len(chain) < 10 and (chain[-1].__cause__ or chain[-1].__context__):
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    lines = traceback.format_tb(chain[-1].__traceback__)[-2:]
    for link in reversed(chain):
        lines += traceback.format_exception_only(link)
    return "".join(lines)[-3000:]


def main():
    spec = json.loads(sys.argv[1])
    record = {"status": "ok"}
    try:
        run(spec, record)
    except BaseException as exc:  # report anything, the parent decides
        record["status"] = "error"
        record["error"] = describe(exc)
        root = exc
        while root.__cause__ or root.__context__:
            root = root.__cause__ or root.__context__
        record["error_summary"] = traceback.format_exception_only(root)[-1].strip()[:300]
    _peak_memory(record)
    with open(spec["result_file"], "w", encoding="utf-8") as f:
        json.dump(record, f)
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
