"""What it costs two threads to meet: a parallel region, or a barrier inside one.

``python -m brian2_numba.bench.sync_cost`` times, with 2 threads, steps that
do almost nothing but synchronise, 1 and 4 times per step:

* ``parallel regions``: a ``prange(2)`` region per synchronisation, as
  ``threads > 1`` runs each large kernel (its region starts and joins the
  threads);
* ``barriers in one region``: one region for all the steps, in which the two
  threads meet at spin barriers (an atomic counter). This is how a "one
  parallel region per time step" loop would run a network of small kernels
  (docs/benchmarks.md, Threads).

The difference between the two counts, divided by 3, is the cost of one
synchronisation without the loop's own. The barriers need both parts of the
``prange(2)`` to run at once; if they do not (one thread, or a layer that
runs them one after the other), a barrier gives up after :data:`SPIN_LIMIT`
reads and the measurement raises ``RuntimeError`` instead of hanging. This
is a measurement: brian2_numba itself runs no barrier. Run it on an
otherwise idle machine: a spinning thread competes with other work for the
cores, and the numbers then mean nothing (they can even come out negative).
"""

import argparse
import time

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


def _first_element(context, builder, signature, args):
    """A pointer to ``args[0][0]`` (a 1-d int64 array)."""
    array_type = signature.args[0]
    struct = context.make_array(array_type)(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, array_type, struct,
                                    [context.get_constant(types.intp, 0)])


@intrinsic
def _atomic_increment(typingctx, array):
    """``array[0] += 1`` as one atomic read-modify-write (sequentially consistent)."""
    def codegen(context, builder, signature, args):
        return builder.atomic_rmw("add", _first_element(context, builder, signature, args),
                                  context.get_constant(types.int64, 1), "seq_cst")
    return types.int64(array), codegen


@intrinsic
def _atomic_read(typingctx, array):
    """``array[0]``, read atomically (so that a spinning loop sees other threads' writes)."""
    def codegen(context, builder, signature, args):
        return builder.load_atomic(_first_element(context, builder, signature, args),
                                   "seq_cst", 8)
    return types.int64(array), codegen


#: reads of the counter before a barrier gives up (seconds of spinning)
SPIN_LIMIT = 1 << 30


@njit(inline="always")
def _barrier(arrivals, threads, generation):
    """Wait until every thread has arrived ``generation + 1`` times; -1 if it never does."""
    _atomic_increment(arrivals)
    for _ in range(SPIN_LIMIT):
        if _atomic_read(arrivals) >= (generation + 1) * threads:
            return generation + 1
    return -1


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
    arrivals[8:10] = 0  # the parts that gave up
    for part in prange(2):
        generation = 0
        for _ in range(steps * per_step):
            generation = _barrier(arrivals, 2, generation)
            if generation < 0:
                arrivals[8 + part] = 1  # (the other part then gives up too)
                break
    return arrivals[8] + arrivals[9] == 0


def measure(counts=(1, 4), steps=20000, repeats=5):
    """µs per step for each form and count of synchronisations per step, medians of ``repeats``.

    Returns
    -------
    list of dict
        One row per form: ``"form"``, µs per step for each of ``counts``, and
        ``"each"``, the µs of one synchronisation.
    """
    if numba.config.NUMBA_NUM_THREADS < 2:
        raise RuntimeError("numba has fewer than 2 threads here (NUMBA_NUM_THREADS)")
    numba.set_num_threads(2)
    arrivals, out = np.zeros(16, dtype=np.int64), np.zeros(16, dtype=np.int64)

    def barriers(steps, per_step):
        if not one_region(steps, per_step, arrivals):
            raise RuntimeError(f"the two parts of a prange(2) did not run at once "
                               f"(threading layer {numba.threading_layer()}): no barrier "
                               "can be measured")

    forms = {"parallel regions": lambda s, k: regions(s, k, out),
             "barriers in one region": barriers}
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
    try:
        rows = measure(counts, steps=args.steps, repeats=args.repeats)
    except RuntimeError as exc:  # (fewer than 2 threads: a message, not a traceback)
        parser.error(str(exc))
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
