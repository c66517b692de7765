"""The sweep benchmark of docs/benchmarks.md: 16 parameter sets of a CUBA variant.

Each way of sweeping runs in a fresh process with an empty cache, and its
time is that process's wall time, start to finish (import, compilation,
cluster start, all simulations):

    python benchmarks/sweep/bench.py numba-serial    one process, one set after the other
    python benchmarks/sweep/bench.py numba-sweep     brian2_numba.sweep, LocalCluster, 2 workers
    python benchmarks/sweep/bench.py cython-pool     multiprocessing.Pool(2), Cython, one cache
    python benchmarks/sweep/bench.py cpp-run-args    cpp_standalone, built once, device.run(run_args=)
    python benchmarks/sweep/bench.py all             all four, one after the other

Each run appends one JSON line per way to benchmarks/sweep/results.jsonl;
``--table`` prints them as the table of docs/benchmarks.md, ``--plot`` draws
docs/sweep_rate.png (firing rate against the swept weight) from the longest
numba-sweep record there. Environment variables
SWEEP_BENCH_N, SWEEP_BENCH_DURATION (simulated seconds per set) and
SWEEP_BENCH_POINTS change the size.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
N = int(os.environ.get("SWEEP_BENCH_N", 4000))
DURATION_S = float(os.environ.get("SWEEP_BENCH_DURATION", 1.0))
POINTS = int(os.environ.get("SWEEP_BENCH_POINTS", 16))
WORKERS = 2
#: the swept parameter: the excitatory weight, as a factor of CUBA's 1.62 mV
FACTORS = [round(0.25 + 0.1 * k, 2) for k in range(POINTS)]


def _cuba(we_factor=None):
    """Brian2's CUBA example (``examples/cuba.py``), its constants in the namespace.

    With ``we_factor``, the excitatory weight is a namespace value; without,
    a shared variable ``P.we`` (what cpp_standalone's ``run_args`` can set).
    """
    from brian2 import NeuronGroup, SpikeMonitor, Synapses, ms, mV

    ns = dict(taum=20 * ms, taue=5 * ms, taui=10 * ms, Vt=-50 * mV, Vr=-60 * mV,
              El=-49 * mV, wi=(-20 * 4.5 / 10) * mV)
    eqs = """
    dv/dt  = (ge+gi-(v-El))/taum : volt (unless refractory)
    dge/dt = -ge/taue : volt
    dgi/dt = -gi/taui : volt
    """
    if we_factor is None:
        eqs += "we : volt (shared, constant)\n"
        excitation = "ge += we_pre"
    else:
        ns["we"] = we_factor * (60 * 0.27 / 10) * mV
        excitation = "ge += we"
    P = NeuronGroup(N, eqs, threshold="v>Vt", reset="v = Vr", refractory=5 * ms,
                    method="exact", namespace=ns)
    P.v = "Vr + rand() * (Vt - Vr)"
    Ce = Synapses(P, P, on_pre=excitation, namespace=ns)
    Ci = Synapses(P, P, on_pre="gi += wi", namespace=ns)
    Ce.connect("i<3200", p=0.02)
    Ci.connect("i>=3200", p=0.02)
    return P, SpikeMonitor(P, record=False)


def simulate(we_factor, target="numba"):
    """CUBA with the excitatory weight as a parameter (a value): one sweep task."""
    from brian2 import defaultclock, ms, prefs, run, second

    prefs.codegen.target = target
    defaultclock.dt = 0.1 * ms
    P, spikes = _cuba(we_factor)
    run(DURATION_S * second)
    return {"rate_hz": spikes.num_spikes / N / DURATION_S}


def numba_serial(cache):
    from brian2 import seed

    import brian2_numba
    from brian2_numba.sweep import _fresh_brian_state, parameter_sets, task_seed

    rows = []
    for p in parameter_sets({"we_factor": FACTORS}):
        # what each sweep task does first; without it, the objects of the last set
        # may still be alive (cyclic garbage), the new ones get other names
        # (neurongroup_1, ...) and other code, compiled again
        _fresh_brian_state(cache)
        seed(task_seed(0, p))
        rows.append(dict(p, **simulate(**p)))
    return rows, {"misses": brian2_numba.cache_stats()["misses"]}


def numba_sweep(cache):
    from brian2_numba.sweep import sweep

    table = sweep(simulate, {"we_factor": FACTORS}, cache_dir=cache, n_workers=WORKERS,
                  progress=False)
    assert table["error"].isna().all(), table["error"].tolist()
    warm = table.attrs["warmup"]
    extra = {"misses": int(warm["cache_misses"] + table["cache_misses"].sum()),
             "warmup_s": warm["wall_time"], "task_s_mean": float(table["wall_time"].mean()),
             "workers_used": int(table["worker"].nunique())}
    return table[["we_factor", "rate_hz"]].to_dict("records"), extra


def _cython_task(args):
    we_factor, cache = args
    from brian2 import prefs, seed

    prefs.codegen.runtime.cython.cache_dir = cache
    seed(0)
    return dict(we_factor=we_factor, **simulate(we_factor, target="cython"))


def cython_pool(cache):
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
        rows = pool.map(_cython_task, [(f, cache) for f in FACTORS], chunksize=1)
    return rows, {}


def cpp_run_args(cache):
    from brian2 import defaultclock, device, ms, mV, prefs, run, second, set_device

    set_device("cpp_standalone", build_on_run=False)
    prefs.devices.cpp_standalone.openmp_threads = WORKERS
    defaultclock.dt = 0.1 * ms
    P, spikes = _cuba()
    run(DURATION_S * second)
    start = time.perf_counter()
    device.build(run=False, directory=os.path.join(cache, "cpp"))
    compile_s = time.perf_counter() - start
    rows = []
    for factor in FACTORS:
        device.run(run_args={P.we: factor * (60 * 0.27 / 10) * mV})
        rows.append({"we_factor": factor, "rate_hz": spikes.num_spikes / N / DURATION_S})
    timers = device.timers["compile"]
    return rows, {"build_s": round(compile_s, 2),
                  "make_s": round((timers["clean"] or 0) + (timers["make"] or 0), 2)}


WAYS = {"numba-serial": numba_serial, "numba-sweep": numba_sweep,
        "cython-pool": cython_pool, "cpp-run-args": cpp_run_args}


def _child(way):
    import shutil

    cache = tempfile.mkdtemp(prefix="sweep-bench-")
    try:
        rows, extra = WAYS[way](os.path.join(cache, "cache"))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(json.dumps({"rows": rows, **extra}))



def main(ways):
    import platform

    results = []
    try:
        import resource
    except ImportError:  # Windows: no CPU time of child processes, no load average
        resource = None

    def children_cpu():
        if resource is None:
            return float("nan")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def load():
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    sitting = time.strftime("%Y-%m-%d %H:%M:%S")
    for way in ways:
        load_start = load()
        cpu_start = children_cpu()
        start = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--child", way], capture_output=True,
                              text=True)
        wall = time.perf_counter() - start
        # every process of the way (workers too), as far as they were waited for
        cpu = children_cpu() - cpu_start
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{way} failed")
        output = json.loads(done.stdout.strip().splitlines()[-1])
        record = {"way": way, "wall_s": round(wall, 2), "cpu_s": round(cpu, 1),
                  "points": POINTS, "n": N, "duration_s": DURATION_S,
                  "load_1min": [round(load_start, 2), round(load(), 2)],
                  "date": time.strftime("%Y-%m-%d %H:%M"), "sitting": sitting,
                  "python": platform.python_version(),
                  **{k: v for k, v in output.items() if k != "rows"}, "rows": output["rows"]}
        results.append(record)
        print(f"{way:>14}: {wall:6.1f} s (cpu {cpu:6.1f} s, load {record['load_1min']})  {json.dumps({k: v for k, v in output.items() if k != 'rows'})}",
              flush=True)
    with open(os.path.join(HERE, "results.jsonl"), "a") as f:
        for record in results:
            f.write(json.dumps(record) + "\n")
    return results


def plot(path=os.path.join(HERE, "results.jsonl"),
         out=os.path.join(HERE, "..", "..", "docs", "sweep_rate.png")):
    """Firing rate against the weight factor, from the last numba-sweep record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(path) as f:
        records = [json.loads(line) for line in f]
    record = max((r for r in records if r["way"] == "numba-sweep"),
                 key=lambda r: (r["duration_s"], r["date"]))
    x = [row["we_factor"] * 1.62 for row in record["rows"]]
    y = [row["rate_hz"] for row in record["rows"]]
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    ax.plot(x, y, "o-")
    ax.set_xlabel("excitatory weight we (mV)")
    ax.set_ylabel("mean firing rate (Hz)")
    ax.set_title(f"CUBA, {record['n']} neurons, {record['duration_s']:g} s per point:\n"
                 f"{record['points']} parameter sets on 2 workers", fontsize=9)
    fig.savefig(os.path.abspath(out), dpi=100)


def _load_text(record):
    if "load_1min" in record:
        return " → ".join(f"{load:.1f}" for load in record["load_1min"])
    return f"→ {record['load_before_next']:.1f}"  # the first sitting: after the run only


def table(path=os.path.join(HERE, "results.jsonl")):
    """The markdown table of docs/benchmarks.md: every record, grouped by duration."""
    with open(path) as f:
        records = [json.loads(line) for line in f]
    lines = ["| s per set | way | wall (s) | vs numba-serial | CPU (s) | load (1 min) | notes |",
             "|---|---|---|---|---|---|---|"]
    serial = None  # the numba-serial record of the same sitting (the one before)
    for r in records:
        if r["way"] == "numba-serial":
            serial = r
        same = serial and serial["duration_s"] == r["duration_s"] and \
            serial.get("sitting") == r.get("sitting")
        base = serial["wall_s"] if same else None
        ratio = f"{base / r['wall_s']:.2f}×" if base else ""
        notes = []
        if "misses" in r:
            notes.append(f"{r['misses']} kernels compiled")
        if "warmup_s" in r:
            notes.append(f"warm-up {r['warmup_s']:.1f} s, mean task {r['task_s_mean']:.1f} s")
        if "make_s" in r:
            notes.append(f"make {r['make_s']:.1f} s")
        lines.append(f"| {r['duration_s']:g} | {r['way']} | {r['wall_s']:.1f} | {ratio} | "
                     f"{r.get('cpu_s', '')} | {_load_text(r)} | "
                     f"{', '.join(notes)} |")
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        _child(sys.argv[2])
    elif sys.argv[1] == "--plot":
        plot()
    elif sys.argv[1] == "--table":
        table()
    else:
        main(list(WAYS) if sys.argv[1] == "all" else sys.argv[1:])
