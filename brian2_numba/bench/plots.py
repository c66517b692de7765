"""Two figures (PNG, Agg backend, no display needed).

* ``time_vs_size.png``: steady-state time per step (warm runs) against
  network size (build time for the synapse-creation model, time per run()
  call for the many-short-runs model), one line per target, one panel per
  model with several sizes;
* ``cold_vs_warm.png``: time to the first result (import + build + first
  run, stacked) with an empty and with a filled cache, per target, one panel
  per model (smallest size).
"""

import math
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .models import MODELS
from .report import summarize

__all__ = ["plot_all"]


def _panels(count):
    columns = min(3, count)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(4.2 * columns, 3.3 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes


#: what a model's size panel shows: (record field, scale, axis label)
FOCUS = {"t_per_step": (1e6, "µs per time step (warm)"),
         "t_construct": (1, "s to build the network (warm)"),
         "t_per_run_call": (1e3, "ms per run() call (warm)")}


def plot_time_vs_size(rows, path):
    """Warm time per step (or build time) against size; False if no model has 2 sizes."""
    warm = [r for r in rows if r["cache"] == "warm"]
    models = [m for m in dict.fromkeys(r["model"] for r in warm)
              if len({r["n"] for r in warm if r["model"] == m}) > 1]
    if not models:
        return False
    fig, axes = _panels(len(models))
    for ax, model in zip(axes, models, strict=False):
        field = MODELS[model].focus if model in MODELS else "t_per_step"
        scale, label = FOCUS[field]
        for target in dict.fromkeys(r["target"] for r in warm if r["model"] == model):
            points = sorted((r["n"], r[field][0] * scale) for r in warm
                            if r["model"] == model and r["target"] == target and r[field])
            if points:
                ax.plot(*zip(*points, strict=False), marker="o", label=target)
        ax.set(xscale="log", yscale="log", title=model, ylabel=label,
               xlabel=MODELS[model].size_label if model in MODELS else "size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return True


#: the parts of the time to the first result, stacked
PARTS = [("t_import", "import", "0.6"), ("t_construct", "build", "tab:blue"),
         ("t_first_run", "1st run", "tab:orange")]


def plot_cold_vs_warm(rows, path):
    """Time to first result, cold and warm (hatched), at each model's smallest cold size."""
    cold = [r for r in rows if r["cache"] == "cold" and r["t_first_result"]]
    models = list(dict.fromkeys(r["model"] for r in cold))
    if not models:
        return False
    fig, axes = _panels(len(models))
    for ax, model in zip(axes, models, strict=False):
        n = min(r["n"] for r in cold if r["model"] == model)
        targets = list(dict.fromkeys(r["target"] for r in cold if r["model"] == model))
        for offset, cache, hatch in [(-0.2, "cold", None), (0.2, "warm", "//")]:
            found = {r["target"]: r for r in rows if r["t_first_result"]
                     and (r["model"], r["n"], r["cache"]) == (model, n, cache)}
            bottom = [0.0] * len(targets)
            for field, label, color in PARTS:
                heights = [found[t][field][0] if t in found else 0.0 for t in targets]
                ax.bar([i + offset for i in range(len(targets))], heights, width=0.38,
                       bottom=bottom, color=color, hatch=hatch, edgecolor="white",
                       label=label if cache == "cold" else None)
                bottom = [b + h for b, h in zip(bottom, heights, strict=False)]
        ax.set_xticks(range(len(targets)), targets, rotation=20, fontsize="small")
        ax.set(title=f"{model} ({n})", ylabel="s to first result")
        ax.legend(fontsize="small")
    fig.suptitle("Time to the first result: cold cache (plain) | warm cache (hatched)")
    fig.savefig(path, dpi=100)
    return True


def plot_all(records, baseline, directory):
    """Write the figures into ``directory``; returns the paths written."""
    rows = summarize(records, baseline)
    written = []
    for name, function in [("time_vs_size.png", plot_time_vs_size),
                           ("cold_vs_warm.png", plot_cold_vs_warm)]:
        path = os.path.join(directory, name)
        if function(rows, path):
            written.append(path)
    return written
