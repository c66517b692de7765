"""What synchronising two threads costs here, against the work of one time step.

``python -m brian2_numba.bench.sync_cost`` times a synthetic time step (an
integrate-and-fire update over ``n`` neurons, then a second loop that reads
what the first wrote, as a threshold or a synaptic effect would) in three
forms, with 2 threads:

* ``serial``: one thread;
* ``regions``: each loop a ``prange`` of its own, as ``threads > 1`` makes
  each large kernel (two parallel regions per step);
* ``one region``: one parallel region for all the steps, each thread updating
  its half of the neurons, with spin barriers (an atomic counter) between the
  loops, once with 1 and once with 4 barriers per step. This is the "one
  parallel region per time step" that a network of small kernels would need
  (docs/benchmarks.md, Threads).

From these it derives the cost of a barrier and of a parallel region. The
barrier version assumes both iterations of its ``prange(2)`` run at once,
which holds for numba's ``omp`` and ``workqueue`` layers with 2 threads or
more; it is a measurement, not something brian2_numba runs.
"""

import argparse
import time

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _atomic_increment(typingctx, array):
    """``array[0] += 1`` as one atomic read-modify-write (sequentially consistent)."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        struct = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, struct,
                                           [context.get_constant(types.intp, 0)])
        return builder.atomic_rmw("add", pointer, context.get_constant(types.int64, 1),
                                  "seq_cst")
    return types.int64(array), codegen


@intrinsic
def _atomic_read(typingctx, array):
    """``array[0]``, read atomically (so that a spinning loop sees other threads' writes)."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        struct = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, struct,
                                           [context.get_constant(types.intp, 0)])
        return builder.load_atomic(pointer, "seq_cst", 8)
    return types.int64(array), codegen


@njit(inline="always")
def _barrier(arrivals, threads, generation):
    """Wait until every thread has arrived ``generation + 1`` times."""
    _atomic_increment(arrivals)
    while _atomic_read(arrivals) < (generation + 1) * threads:
        pass
    return generation + 1


@njit(parallel=True)
def regions(steps, per_step, out):
    """``per_step`` parallel regions of 2 near-empty parts each, ``steps`` times."""
    for _ in range(steps):
        for _ in range(per_step):
            for part in prange(2):
                out[8 * part] += 1  # (a cache line apart: no false sharing)


@njit(parallel=True)
def one_region(steps, per_step, arrivals):
    """One parallel region of 2 threads that meet at ``per_step`` barriers, ``steps`` times."""
    arrivals[0] = 0
    for _part in prange(2):
        generation = 0
        for _ in range(steps):
            for _ in range(per_step):
                generation = _barrier(arrivals, 2, generation)
    return arrivals[0]


def measure(counts=(1, 4), steps=20000, repeats=5):
    """µs per step for each form and count of synchronisations per step, medians of ``repeats``."""
    numba.set_num_threads(2)
    arrivals, out = np.zeros(16, dtype=np.int64), np.zeros(16, dtype=np.int64)
    forms = {"parallel regions": lambda s, k: regions(s, k, out),
             "barriers in one region": lambda s, k: one_region(s, k, arrivals)}
    rows = []
    for name, run in forms.items():
        run(10, 1)  # compile
        row = {"form": name}
        for count in counts:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run(steps, count)
                times.append((time.perf_counter() - start) / steps * 1e6)
            row[count] = float(np.median(times))
        # the cost of one more synchronisation, without the loop's own
        row["each"] = (row[counts[-1]] - row[counts[0]]) / (counts[-1] - counts[0])
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("-r", "--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    counts = (1, 4)
    rows = measure(counts, steps=args.steps, repeats=args.repeats)
    print(f"threading layer {numba.threading_layer()}, 2 threads; µs per step with "
          f"{counts[0]} and {counts[1]} synchronisations per step, and per synchronisation; "
          f"medians of {args.repeats}")
    print("| form | " + " | ".join(f"{c} per step" for c in counts) + " | each |")
    print("|---|" + "---|" * (len(counts) + 1))
    for row in rows:
        print(f"| {row['form']} | " + " | ".join(f"{row[c]:.3g}" for c in counts)
              + f" | {row['each']:.3g} |")


if __name__ == "__main__":
    main()
