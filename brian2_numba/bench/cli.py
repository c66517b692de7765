"""``brian2-numba-bench`` / ``python -m brian2_numba.bench``: the whole comparison in one command.

Checks which targets can run here (and says why not), runs every model,
size, target and cache state in a fresh child process with a progress bar,
writes each result to a new ``results.jsonl`` as it comes in, then prints the
summary table and writes it (``summary.txt``, ``summary.md``) and the plots
into the output directory. Exit status 1 if a run failed or a deterministic
model gave another answer than the numpy target.
"""

import argparse
import datetime
import json
import os
import shutil
import sys

from .environment import environment
from .models import MODELS
from .report import check_failed, render
from .runner import new_cache_dir, plan, run_job
from .targets import TARGETS, unavailable

__all__ = ["main"]

CACHES = ("cold", "warm")


def _parser():
    p = argparse.ArgumentParser(
        prog="brian2-numba-bench",
        description="Compare Brian2's code generation targets on standard models.",
        epilog="Example: brian2-numba-bench --quick -m cuba_det,tiny -t numpy,numba")
    p.add_argument("-m", "--models", default="all",
                   help="comma-separated models, or 'all' (default); see --list")
    p.add_argument("-t", "--targets", default="all",
                   help=f"comma-separated targets, or 'all' (default): {', '.join(TARGETS)}")
    p.add_argument("-s", "--sizes", action="append", metavar="[MODEL=]N[,N...]",
                   help="sizes for all selected models, or for one model (repeatable)")
    p.add_argument("-d", "--duration", type=float, metavar="MS",
                   help="simulated time per run() in ms, for all models (short_runs: "
                        "of each of its run() calls)")
    p.add_argument("--quick", action="store_true",
                   help="smallest sizes and short durations (a check, not a measurement)")
    p.add_argument("-r", "--repeat", type=int, default=1, help="repetitions (default 1)")
    p.add_argument("--cache", default="cold,warm",
                   help="cache states to measure: cold, warm or cold,warm (default)")
    p.add_argument("--baseline", help="target for the ratio columns "
                   "(default: cython if it runs, else numpy)")
    p.add_argument("-o", "--output", help="directory for results.jsonl, summary.txt, "
                   "summary.md and plots (default: bench-results, or the --report file's)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run (default 1800)")
    p.add_argument("--threads", type=int, default=2,
                   help="threads of numba_threads and cpp_standalone_threads (default 2)")
    p.add_argument("--seed", type=int, default=4321, help="random seed (default 4321)")
    p.add_argument("--no-plots", action="store_true", help="do not write plots")
    p.add_argument("--report", metavar="RESULTS_JSONL",
                   help="run nothing: make the table and plots from an earlier results file")
    p.add_argument("--list", action="store_true", help="list the models and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="print the planned runs and exit (no target checks, no runs)")
    return p


def _choose(parser, value, valid, what):
    """Parse a comma-separated selection; unknown names list the valid ones."""
    if value.strip() == "all":
        return list(valid)
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    for name in chosen:
        if name not in valid:
            parser.error(f"Unknown {what} '{name}'. Valid {what}s are: {', '.join(valid)}.")
    if not chosen:
        parser.error(f"No {what} selected.")
    return list(dict.fromkeys(chosen))


def _size(parser, text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or value != int(value) or value < 1:
        parser.error(f"Invalid size '{text}': sizes are positive integers (e.g. 4000 or 1e6).")
    return int(value)


def _sizes(parser, args, models):
    sizes = {m: [MODELS[m].quick_size] if args.quick else list(MODELS[m].sizes)
             for m in models}
    for spec in args.sizes or []:
        name, _, values = spec.rpartition("=")
        if name and name not in MODELS:
            parser.error(f"Unknown model '{name}' in '--sizes {spec}'. "
                         f"Valid models are: {', '.join(MODELS)}.")
        if name and name not in models:
            parser.error(f"--sizes for model '{name}', which is not selected. "
                         f"Selected models are: {', '.join(models)}.")
        values = sorted({_size(parser, v) for v in values.split(",") if v.strip()})
        if not values:
            parser.error(f"No sizes in '--sizes {spec}'.")
        for model in [name] if name else models:
            sizes[model] = values
    return sizes


def _list_models():
    for m in MODELS.values():
        kind = "deterministic" if m.deterministic else "random"
        sizes = ", ".join(str(n) for n in m.sizes)
        if m.runs == 1 and m.quick_runs == 1:
            timing = f"{m.duration_ms:g} ms per run (quick: {m.quick_duration_ms:g})"
        else:
            timing = (f"{m.runs} x {m.duration_ms:g} ms runs, time per run() call "
                      f"(quick: {m.quick_runs} x {m.quick_duration_ms:g} ms)")
        print(f"{m.name:22} {m.doc}\n{'':22} {m.size_label}: {sizes} (quick: {m.quick_size}); "
              f"{timing}; {kind}")


def _plotter(wanted):
    """``plot_all``, or None (with a message) if plots are off or matplotlib is missing.

    matplotlib is only needed for the figures (extra ``brian2-numba[bench]``),
    so a plain install still gets the results and the tables.
    """
    if not wanted:
        return None
    try:
        from .plots import plot_all
    except ImportError as exc:
        print(f"No plots: matplotlib cannot be imported ({exc}). Install it with "
              "pip install 'brian2-numba[bench]', or pass --no-plots.", file=sys.stderr)
        return None
    return plot_all


def _report(records, baseline, output, plots):
    """Print the table, write summary files and plots; returns the exit status."""
    text = render(records, baseline)
    print(text)
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(output, "summary.md"), "w", encoding="utf-8") as f:
        f.write(render(records, baseline, markdown=True))
    plot_all = _plotter(plots and records)
    written = plot_all(records, baseline, output) if plot_all else []
    print(f"Results, summary and plots in {output}/: results.jsonl, summary.txt, summary.md"
          + "".join(f", {os.path.basename(p)}" for p in written))
    if check_failed(records):
        print("Some runs failed, or a deterministic model did not give the numpy "
              "target's result (see the table).", file=sys.stderr)
        return 1
    return 0


def _from_file(parser, args):
    try:
        with open(args.report, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as exc:
        parser.error(f"Cannot read results file '{args.report}': {exc}")
    targets = {r["target"] for r in records}
    baseline = args.baseline or ("cython" if "cython" in targets else "numpy")
    output = args.output or os.path.dirname(os.path.abspath(args.report))
    return _report(records, baseline, output, not args.no_plots)


def _run_all(groups, args, output, skipped):
    """Run the planned jobs; returns the recorded results (partial on Ctrl-C)."""
    from tqdm import tqdm  # a dependency, imported here so that --list needs nothing

    env = dict(environment(), skipped_targets=skipped)
    records = []
    total = sum(len(group) for group in groups)
    path = os.path.join(output, "results.jsonl")
    with open(path, "w", encoding="utf-8") as out, \
            tqdm(total=total, unit="run", dynamic_ncols=True) as bar:
        try:
            for group in groups:
                cache_dir = new_cache_dir()
                try:
                    for job in group:
                        bar.set_description(f"{job.model} {job.n} {job.target} {job.cache}")
                        record = run_job(job, cache_dir, args.timeout)
                        bar.update()
                        if record.get("status") != "ok":
                            tqdm.write(f"FAILED {job.model} size {job.n} {job.target} "
                                       f"{job.cache}: {record.get('error_summary')}",
                                       file=sys.stderr)
                        if job.cache == "prime":
                            continue
                        record.update(deterministic=MODELS[job.model].deterministic, env=env,
                                      date=datetime.datetime.now().isoformat(timespec="seconds"))
                        records.append(record)
                        out.write(json.dumps(record) + "\n")
                        out.flush()
                finally:
                    shutil.rmtree(cache_dir, ignore_errors=True)
        except KeyboardInterrupt:
            tqdm.write("Interrupted: reporting the runs done so far.", file=sys.stderr)
    return records


def main(argv=None):
    try:
        return _main(argv)
    except BrokenPipeError:  # e.g. piped into head: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        _list_models()
        return 0
    if args.report:
        return _from_file(parser, args)
    models = _choose(parser, args.models, list(MODELS), "model")
    targets = _choose(parser, args.targets, TARGETS, "target")
    caches = _choose(parser, args.cache, CACHES, "cache state")
    if args.baseline and args.baseline not in targets:
        parser.error(f"Baseline '{args.baseline}' is not among the selected targets: "
                     f"{', '.join(targets)}.")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1.")
    if args.duration is not None and args.duration <= 0:
        parser.error(f"--duration must be positive, not {args.duration:g} ms.")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, not {args.threads}.")
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, not {args.timeout:g} s.")
    sizes = _sizes(parser, args, models)
    durations = {m: args.duration or (MODELS[m].quick_duration_ms if args.quick
                                      else MODELS[m].duration_ms) for m in models}
    runs = {m: MODELS[m].quick_runs if args.quick else MODELS[m].runs for m in models}
    if args.dry_run:
        for group in plan(models, sizes, targets, caches, args.repeat, durations, args.seed,
                          runs, args.threads):
            for job in group:
                print(f"{job.model} {job.n} {job.target} {job.cache} "
                      f"repeat={job.repeat} duration={job.duration_ms:g}ms"
                      + (f" runs={job.runs}" if job.runs != 1 else ""))
        return 0
    print(f"Checking targets {', '.join(targets)} ...", file=sys.stderr)
    skipped = unavailable(targets)
    for target, reason in skipped.items():
        print(f"Skipping target {target}: {reason}", file=sys.stderr)
    targets = [t for t in targets if t not in skipped]
    if not targets:
        print("No selected target can run here.", file=sys.stderr)
        return 1
    if args.baseline in skipped:
        parser.error(f"Baseline '{args.baseline}' cannot run here: {skipped[args.baseline]}")
    baseline = args.baseline or next((t for t in ("cython", "numpy") if t in targets),
                                     targets[0])
    output = args.output or "bench-results"
    os.makedirs(output, exist_ok=True)
    groups = plan(models, sizes, targets, caches, args.repeat, durations, args.seed, runs,
                  args.threads)
    records = _run_all(groups, args, output, skipped)
    return _report(records, baseline, output, not args.no_plots)
