"""Plan the runs and execute each in a fresh child process.

Protocol, per model, target and repetition, in a fresh cache directory
(numba's and Cython's kernel cache, or the cpp_standalone project):

* **cold**: the first run, at the smallest selected size, with the empty cache;
* **warm**: a run of the same model *and size* that finds the cache filled by
  an earlier run (if no earlier run filled it, an unrecorded priming run
  does; numpy has no cache and needs none).

Cold runs measure what compilation costs once; they are not repeated for
every size, because the compiled code does not depend on it (in runtime
mode) and cold compilations dominate the benchmark's own run time.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

__all__ = ["Job", "plan", "run_job", "new_cache_dir"]

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")


@dataclass(frozen=True)
class Job:
    """One child process: ``cache`` is 'cold', 'warm' or 'prime' (not recorded)."""

    model: str
    n: int
    target: str
    cache: str
    repeat: int
    duration_ms: float
    seed: int
    runs: int = 1             # run(duration) calls per measured phase
    threads: int = 2          # of the *_threads targets


def plan(models, sizes, targets, caches, repeats, durations, seed, runs=None, threads=2):
    """Groups of jobs; the jobs of a group share one fresh cache directory.

    ``sizes`` and ``durations`` map model names to sizes and to ms, ``runs``
    (optional, default 1) to the number of run() calls per measured phase;
    ``threads`` is the thread count of the ``*_threads`` targets.
    """
    runs = runs or {}
    groups = []
    for model in models:
        for repeat in range(repeats):
            for target in targets:  # interleaved: drifting machine load hits all alike
                group, seen = [], set()
                for index, n in enumerate(sorted(sizes[model])):
                    job = dict(model=model, n=n, target=target, repeat=repeat,
                               duration_ms=durations[model], seed=seed,
                               runs=runs.get(model, 1), threads=threads)
                    if "cold" in caches and index == 0:
                        group.append(Job(cache="cold", **job))
                        seen.add(n)
                    if "warm" in caches:
                        if n not in seen and target != "numpy":
                            group.append(Job(cache="prime", **job))
                        group.append(Job(cache="warm", **job))
                        seen.add(n)
                groups.append(group)
    return groups


def _kill(proc):
    """End the child and whatever it started (make, compilers, the binary)."""
    try:
        if sys.platform == "win32":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def run_job(job, cache_dir, timeout):
    """Run ``job`` in a child process; returns its record (never raises for its failures)."""
    result_file = os.path.join(cache_dir, "result.json")
    if os.path.exists(result_file):
        os.unlink(result_file)
    spec = dict(asdict(job), cache_dir=cache_dir, result_file=result_file)
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(cache_dir, "numba"))
    record = asdict(job)
    if hasattr(os, "getloadavg"):  # other work on the machine skews the timings
        record["load_before"] = os.getloadavg()[0]
    start = time.perf_counter()
    # cwd: the cache directory, so that no brian_preferences file of the
    # caller's directory applies, and stray files do not land there
    proc = subprocess.Popen([sys.executable, CHILD, json.dumps(spec)], cwd=cache_dir,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=sys.platform != "win32")
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        message = f"no result after {timeout:g} s (killed)"
        record.update(status="timeout", error=message, error_summary=message)
        return record
    except BaseException:  # Ctrl-C: leave no orphaned compilers behind
        _kill(proc)
        raise
    record["t_process"] = time.perf_counter() - start
    try:
        with open(result_file, encoding="utf-8") as f:
            record.update(json.load(f))
    except (OSError, ValueError):
        summary = f"the child process exited with code {proc.returncode} and no result"
        record.update(status="error", error_summary=summary,
                      error=f"{summary}:\n{stderr.strip()[-2000:]}")
    if record.get("status") == "ok":
        record["t_first_result"] = (record["t_import"] + record["t_construct"]
                                    + record["t_first_run"])
    return record


def new_cache_dir():
    """A fresh, empty cache directory (the caller removes it)."""
    return tempfile.mkdtemp(prefix="brian2_numba_bench_")
