"""The summary: overview, timing and checksum tables, as text or markdown.

Timing rows are (model, size, cache, target): medians over repetitions, with
the range when there are several. The ``÷base`` columns divide by the
baseline target's median in the same model, size and cache state (below 1:
faster than the baseline); the time per run() call of the models that make
many (``short_runs``) is divided by the numpy target's.

When the records carry the cost advisor's prediction (``advisor_predicted``,
recorded by the child process), two more columns divide it by the
measurement: per step, and compile-or-load (see :func:`measured`).

Checksum rows are (model, size, target), over all runs: for deterministic
models every run must give the numpy target's spikes and mean ("same as
numpy"), otherwise the check says what differs; random models are only set
side by side (targets draw random numbers differently).
"""

import statistics

from .models import MODELS
from .targets import TARGETS

__all__ = ["summarize", "checks", "render", "check_failed", "measured"]

#: (record field, column title, scale)
TIMES = [
    ("t_import", "import s", 1),
    ("t_construct", "build s", 1),
    ("t_first_run", "1st run s", 1),
    ("t_first_result", "to result s", 1),
    ("t_second_run", "2nd run s", 1),
    ("t_run_overhead", "run() prep s", 1),
    ("t_per_run_call", "ms/run()", 1e3),
    ("t_per_step", "µs/step", 1e6),
    ("peak_rss_mb", "peak MB", 1),
]
RATIOS = ("t_first_result", "t_per_step")
#: fields divided by the numpy target's (the per-run() cost every target pays)
NUMPY_RATIOS = ("t_per_run_call",)
#: relative tolerance for the mean of a deterministic model (bitwise equality
#: is too strict: C compilers use -ffast-math, numba's exp is not libm's)
MEAN_RTOL = 1e-9


def measured(record):
    """Measured ``per_step``, ``run_overhead`` and ``compile`` seconds of a record.

    ``compile``: what the first phase cost beyond its steps and run()
    preparations (compiling or loading, and the process's first-run costs);
    None when it is lost in the noise (under 5% of the phase). For
    cpp_standalone the preparation of a run is its recording in Python.
    """
    runs = record.get("runs", 1)
    per_step = record["t_per_step"]
    if record["target"] == "cpp_standalone":
        overhead = record.get("t_run_calls", 0.0) / runs
    else:
        overhead = record["t_run_overhead"]
    compile_seconds = record["t_first_run"] - runs * (overhead + record["steps"] * per_step)
    if compile_seconds < 0.05 * record["t_first_run"]:
        compile_seconds = None
    return {"per_step": per_step, "run_overhead": overhead, "compile": compile_seconds}


def _advisor_ratios(record):
    """(per-step, compile) predicted / measured, from the advisor's prediction in the record."""
    predicted = record.get("advisor_predicted")
    if not predicted or record.get("status") != "ok":
        return None, None
    found = measured(record)
    step = predicted["per_step"] / found["per_step"] if found["per_step"] else None
    comp = predicted["compile"] / found["compile"] if found["compile"] else None
    return step, comp


def _order(record):
    model = list(MODELS).index(record["model"]) if record["model"] in MODELS else len(MODELS)
    target = TARGETS.index(record["target"]) if record["target"] in TARGETS else len(TARGETS)
    return (model, record["model"], record["n"], record["cache"] != "cold", target)


def _group(records, *fields):
    groups = {}
    for record in sorted(records, key=_order):
        groups.setdefault(tuple(record[f] for f in fields), []).append(record)
    return groups


def _ok(records):
    return [r for r in records if r.get("status") == "ok"]


def _stats(values):
    return (statistics.median(values), min(values), max(values)) if values else None


def summarize(records, baseline):
    """One dict per (model, size, cache, target) with timing statistics and ratios."""
    groups = _group(records, "model", "n", "cache", "target")
    rows = []
    for (model, n, cache, target), group in groups.items():
        ok = _ok(group)
        row = dict(model=model, n=n, cache=cache, target=target, runs=len(ok),
                   failed=len(group) - len(ok),
                   errors=[r.get("error", "") for r in group if r.get("status") != "ok"])
        for field, *_ in TIMES:
            row[field] = _stats([r[field] for r in ok if r.get(field) is not None])
        advice = [_advisor_ratios(r) for r in ok]
        row["step_advice"] = _stats([a[0] for a in advice if a[0] is not None])
        row["compile_advice"] = _stats([a[1] for a in advice if a[1] is not None])
        for fields, reference in [(RATIOS, baseline), (NUMPY_RATIOS, "numpy")]:
            base = _ok(groups.get((model, n, cache, reference), []))
            for field in fields:
                mine = row[field]
                theirs = _stats([r[field] for r in base if r.get(field) is not None])
                row[field + "_ratio"] = (mine[0] / theirs[0]
                                         if mine and theirs and theirs[0] > 0 else None)
        rows.append(row)
    return rows


def _compare(model, target, ok, reference):
    """The check of one target's runs against the numpy target's first run."""
    if not ok:
        return "failed"
    if model not in MODELS or not MODELS[model].deterministic:
        return "random"
    if reference is None:
        return "no numpy run"
    problems = set()
    for r in ok:
        if r["spike_hash"] != reference["spike_hash"] or r["synapses"] != reference["synapses"]:
            problems.add("spikes")
        ref, mean = reference["mean"], r["mean"]
        if (ref is None) != (mean is None) or (
                ref is not None and abs(mean - ref) > MEAN_RTOL * max(abs(ref), 1e-300)):
            problems.add("mean")
    if problems:
        return "DIFFERS: " + ", ".join(sorted(problems))
    return "reference" if target == "numpy" else "same as numpy"


def checks(records):
    """One dict per (model, size, target): checksums of the first run and the check."""
    rows = []
    for (model, n, target), group in _group(records, "model", "n", "target").items():
        ok = _ok(group)
        reference = next(iter(_ok(r for r in records if (r["model"], r["n"], r["target"])
                                  == (model, n, "numpy"))), None)
        first = ok[0] if ok else {}
        rows.append(dict(model=model, n=n, target=target, runs=len(ok),
                         **{f: first.get(f) for f in ("synapses", "spikes", "mean",
                                                      "mean_of", "spike_hash")},
                         check=_compare(model, target, ok, reference)))
    return rows


def check_failed(records):
    """Whether a run failed, or a deterministic model gave another answer than numpy."""
    return (any(r.get("status") != "ok" for r in records)
            or any(row["check"].startswith("DIFFERS") for row in checks(records)))


def _num(x):
    """Three significant digits, without exponents."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _ratio(x):
    return f"{x:.2g}" if x < 10 else f"{x:.0f}"


def _fmt_stats(stats, scale):
    if stats is None:
        return "-"
    median, low, high = (x * scale for x in stats)
    text = _num(median)
    if high > low:
        text += f" ({_num(low)}–{_num(high)})"
    return text


def _timing_cells(row, times):
    cells = [row["model"], str(row["n"]), row["cache"], row["target"]]
    cells += [_fmt_stats(row[field], scale) for field, _, scale in times]
    cells += ["-" if row[f + "_ratio"] is None else _ratio(row[f + "_ratio"]) for f in RATIOS]
    return cells


def _check_cells(row):
    mean = "-" if row["mean"] is None else f"{row['mean']:.9g} ({row['mean_of']})"
    return [row["model"], str(row["n"]), row["target"], str(row["synapses"]),
            str(row["spikes"]), mean, str(row["spike_hash"]), row["check"]]


def _table(head, body, markdown, separate=True):
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(c) for c in column) for column in zip(head, *body, strict=False)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=False)).rstrip()]
    for index, cells in enumerate(body):
        if separate and index and cells[0] != body[index - 1][0]:
            lines.append("")  # a blank line between models
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip())
    return "\n".join(lines)


def _overview(rows, baseline, markdown):
    """At a glance: one row per model and size, one column per target."""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    found = {(r["model"], r["n"], r["cache"], r["target"]): r for r in rows}
    pairs = list(dict.fromkeys((r["model"], r["n"]) for r in rows))

    def value(model, n, cache, target, field, scale=1):
        row = found.get((model, n, cache, target))
        return _num(row[field][0] * scale) if row and row[field] else "-"

    start = [[m, str(n)] + [value(m, n, "cold", t, "t_first_result") + " / "
                            + value(m, n, "warm", t, "t_first_result") for t in targets]
             for m, n in pairs if any((m, n, "cold", t) in found for t in targets)]

    def warm_table(field, scale, reference):
        body = []
        for m, n in pairs:
            cells = [m, str(n)]
            for t in targets:
                row = found.get((m, n, "warm", t))
                ratio = row and row[field + "_ratio"]
                cells.append(value(m, n, "warm", t, field, scale)
                             + (f" ({_ratio(ratio)})" if ratio and t != reference else ""))
            if any(c != "-" for c in cells[2:]):
                body.append(cells)
        return body

    step = warm_table("t_per_step", 1e6, baseline)
    calls = warm_table("t_per_run_call", 1e3, "numpy")
    head = ["model", "size"] + targets
    out = []
    if start:
        out += ["Time to the first result (s), cold / warm cache:", "",
                _table(head, start, markdown, separate=False), ""]
    if step:
        out += [f"Simulation time per step (µs), warm (÷{baseline}):", "",
                _table(head, step, markdown), ""]
    if calls:
        ratio = " (÷numpy)" if "numpy" in targets else ""
        out += [f"Time per run() call (ms), many short runs, warm{ratio}:", "",
                _table(head, calls, markdown), ""]
    return out


def render(records, baseline, markdown=False):
    """The full report: environment, skipped targets, both tables, notes and errors."""
    env = next((r["env"] for r in records if "env" in r), {})
    out = []
    if env:
        versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
        m = env["machine"]
        out.append(f"Versions: {versions}")
        out.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
                   f"{m['os']}" + (f", {m['cxx']}" if m.get("cxx") else ""))
    loads = [r["load_before"] for r in records if r.get("load_before") is not None]
    if loads:
        out.append(f"Load average (1 min) before the runs: median {statistics.median(loads):.1f}"
                   f", max {max(loads):.1f} (other work on the machine skews timings)")
    for target, reason in env.get("skipped_targets", {}).items():
        out.append(f"Skipped target {target}: {reason}")
    rows = summarize(records, baseline)
    out += [""] + _overview(rows, baseline, markdown)
    # the time per run() call only where a model makes many calls
    times = [t for t in TIMES if t[0] not in NUMPY_RATIOS or any(r[t[0]] for r in rows)]
    head = (["model", "size", "cache", "target"] + [title for _, title, _ in times]
            + [f"result÷{baseline}", f"step÷{baseline}"])
    body = [_timing_cells(r, times) for r in rows]
    advised = any(r["step_advice"] or r["compile_advice"] for r in rows)
    if advised:  # the cost advisor's predictions (brian2_numba.advisor), ÷ measured
        head += ["step pred÷meas", "compile pred÷meas"]
        body = [cells + [_fmt_stats(r["step_advice"], 1), _fmt_stats(r["compile_advice"], 1)]
                for cells, r in zip(body, rows, strict=False)]
    if any(r["failed"] for r in rows):
        head.append("failed")
        body = [cells + [str(r["failed"] or "")] for cells, r in zip(body, rows, strict=False)]
    out += ["All measurements:", "", _table(head, body, markdown), ""]
    out.append(f"Seconds, medians (range over repetitions). 'to result' = import + build + "
               f"1st run; 'run() prep' = 2nd run minus its loop, per run() call; µs/step = "
               f"the simulation loop's own clock (device._last_run_time) / steps, 2nd run; "
               f"÷{baseline} = ratio to the {baseline} target (below 1: faster).")
    if advised:
        out.append("pred÷meas: the cost advisor's prediction (brian2_numba.advisor, recorded by "
                   "the child) divided by the measurement: µs/step, and the compile-or-load "
                   "time (1st run minus its steps and run() preparations; '-' where that is "
                   "under 5% of the 1st run).")
    many = sorted({(r["model"], r["runs"]) for r in records
                   if r.get("status") == "ok" and r.get("runs", 1) > 1})
    if many:
        which = ", ".join(f"{m}: {k}" for m, k in many)
        out.append(f"Models with many run() calls ({which} calls per phase): '1st run' and "
                   f"'2nd run' are all the calls of a phase; ms/run() = the 2nd phase / "
                   f"calls (÷numpy in the table above).")
    if any(row["target"].startswith("cpp_standalone") for row in rows):
        out.append("cpp_standalone: '1st run' = code generation + compilation + the binary's "
                   "run (one build); µs/step from the binary's own clock (its last run()).")
        if many:
            out.append("cpp_standalone, many run() calls: all calls go into one build and one "
                       "binary; ms/run() = (the calls in Python, which record them and "
                       "generate their code, + the binary's whole run) / calls, compilation "
                       "excluded.")
    head = ["model", "size", "target", "synapses", "spikes", "mean", "spike hash", "check"]
    out += ["", "Checksums after the 1st run (deterministic models must match numpy):", "",
            _table(head, [_check_cells(r) for r in checks(records)], markdown)]
    for row in rows:
        for error in row["errors"]:
            out.append(f"\nFAILED {row['model']} size {row['n']} {row['cache']} "
                       f"{row['target']}:\n{error.rstrip()}")
    return "\n".join(out) + "\n"
