"""Parameter sweeps on ``dask.distributed``, compiled once.

A sweep runs ``simulate(**params)`` for every parameter set, one task each,
on any dask deployment (a :class:`~distributed.LocalCluster` by default).
Before it fans out, one worker runs the first parameter set with every
``run()`` cut short (a *warm-up*): that compiles all kernels into the shared,
lock-free cache directory, so every other task of the sweep loads them
instead of compiling them again. Parameters that enter a model as values
(namespace constants, initial values, sizes) change no generated code.

Needs the optional extra ``brian2-numba[sweep]`` (dask[distributed], pandas).
See ``docs/sweep.md``.
"""

import hashlib
import inspect
import itertools
import numbers
import os
import pickle
import socket
import sys
import time
import traceback
import uuid
import warnings

try:
    import cloudpickle
    import distributed
    import pandas
except ImportError as _exc:  # pragma: no cover (tested in a subprocess)
    raise ImportError(
        f"brian2_numba.sweep needs dask.distributed and pandas ('{_exc.name}' is "
        "missing); install them with: pip install 'brian2-numba[sweep]'"
    ) from _exc

import numpy as np
from tqdm.auto import tqdm

__all__ = ["sweep", "parameter_sets", "task_seed", "RESERVED_COLUMNS"]

#: the columns a sweep adds to every row (not allowed as parameter or result names)
RESERVED_COLUMNS = ("task_seed", "wall_time", "worker", "cache_hits", "cache_misses", "error")

# numba preferences as a worker process started (restored before each task)
_initial_numba_prefs = None


# -- parameter sets and seeds (pure, run in the calling process) -------------


def parameter_sets(params):
    """The list of parameter dicts that ``params`` describes.

    Parameters
    ----------
    params : dict of lists, or list of dicts
        A grid: ``{'tau': [5, 10], 'w': [0.1, 0.2]}`` gives every combination,
        in the order of ``itertools.product`` (the last name varies fastest).
        Or the parameter sets themselves: ``[{'tau': 5}, {'tau': 10, 'w': 1}]``.

    Returns
    -------
    list of dict

    Raises
    ------
    TypeError, ValueError
        For a grid value that is not a list (or tuple, range, 1-d array), an
        empty grid or list, an entry that is not a dict, or a name that is not
        a string or is one of :data:`RESERVED_COLUMNS`.
    """
    if isinstance(params, dict):
        names = list(params)
        values = []
        for name in names:
            _check_name(name, "The parameter grid")
            value = params[name]
            if not _is_value_list(value):
                raise TypeError(
                    f"The parameter grid gives '{name}' the value {value!r}, not a list of "
                    f"values; write '{name}': [{value!r}] for a single value, or pass a "
                    "list of parameter dicts."
                )
            value = list(value)
            if not value:
                raise ValueError(f"The parameter grid gives '{name}' no values, so the "
                                 "sweep would be empty.")
            values.append(value)
        if not names:
            raise ValueError("The parameter grid is empty: it names no parameters.")
        return [dict(zip(names, combination, strict=False)) for combination in itertools.product(*values)]
    if isinstance(params, (list, tuple)):
        if not params:
            raise ValueError("The list of parameter sets is empty.")
        sets = []
        for index, entry in enumerate(params):
            if not isinstance(entry, dict):
                raise TypeError(f"Parameter set {index} is {entry!r} ({type(entry).__name__}), "
                                "not a dict of parameter names and values.")
            for name in entry:
                _check_name(name, f"Parameter set {index}")
            sets.append(dict(entry))
        return sets
    raise TypeError(f"params must be a dict of lists (a grid) or a list of dicts, not "
                    f"{type(params).__name__}.")


def _is_value_list(value):
    if isinstance(value, (list, tuple, range)):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 1


def _check_name(name, where):
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"{where} has the parameter name {name!r}; names must be strings "
                        "that are valid Python identifiers (they become keyword arguments).")
    if name in RESERVED_COLUMNS:
        raise ValueError(f"{where} has a parameter called '{name}', which is a column the "
                         f"sweep adds itself ({', '.join(RESERVED_COLUMNS)}); rename it.")


def _canonical(value):
    """A description of ``value`` that is the same in every process and run."""
    from brian2 import Quantity
    from brian2.units.fundamentalunits import get_dimensions

    if isinstance(value, Quantity):
        return ("quantity", _canonical(np.asarray(value).tolist()), str(get_dimensions(value)))
    if isinstance(value, np.ndarray):
        return ("array", value.shape, _canonical(value.tolist()))
    if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
        return value.item() if isinstance(value, np.bool_) else value
    if isinstance(value, numbers.Integral):
        return ("int", int(value))
    if isinstance(value, numbers.Real):
        return ("float", float(value).hex())
    if isinstance(value, numbers.Complex):
        return ("complex", complex(value).real.hex(), complex(value).imag.hex())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((repr(k), _canonical(v)) for k, v in value.items())))
    text = repr(value)
    if " at 0x" in text:  # the default repr: a memory address, new in every process
        raise TypeError(f"Cannot derive a reproducible seed from the parameter value {text}: "
                        "its repr() contains a memory address. Use numbers, strings, "
                        "quantities or arrays as parameter values, or give the type a "
                        "repr() that describes its value.")
    return ("repr", type(value).__qualname__, text)


def task_seed(seed, params):
    """The random seed of the task that runs ``params`` in a sweep with ``seed``.

    A SHA-256 hash of ``seed`` and the parameter values (their names sorted),
    cut to 32 bits: the same for a parameter set whatever its position in the
    sweep, the worker that runs it or the number of workers. The task calls
    ``brian2.seed(task_seed(seed, params))`` before ``simulate``, so
    ``seed(task_seed(seed, p)); simulate(**p)`` in one process reproduces a
    row of the table.

    Parameters
    ----------
    seed : int
        The sweep's seed.
    params : dict
        One parameter set. A value counts with its type: ``1`` and ``1.0`` give
        different seeds, ``5*ms`` and ``0.005*second`` the same.

    Returns
    -------
    int
        A seed in ``[0, 2**32)``.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"The sweep's seed must be a non-negative integer, not {seed!r}.")
    description = repr((int(seed), tuple(sorted((name, _canonical(value))
                                                for name, value in params.items()))))
    digest = hashlib.sha256(description.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")


def _check_simulate(simulate, sets):
    """Errors the workers would give for every task, raised before any is sent."""
    if not callable(simulate):
        raise TypeError(f"simulate must be a function taking the parameters as keyword "
                        f"arguments, not {simulate!r}.")
    try:
        signature = inspect.signature(simulate)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        name = getattr(simulate, "__name__", "simulate")
        accepted = {p.name for p in signature.parameters.values()
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        for index, params in enumerate(sets):
            unknown = sorted(set(params) - accepted)
            if unknown and not takes_any:
                raise TypeError(f"Parameter set {index} ({params!r}) names "
                                f"{', '.join(map(repr, unknown))}, which {name}{signature} "
                                "does not take.")
            try:
                signature.bind(**params)
            except TypeError as exc:
                raise TypeError(f"Parameter set {index} ({params!r}) does not fit "
                                f"{name}{signature}: {exc}.") from None
    for what, value in (("simulate", simulate), ("the parameter values", sets)):
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            raise TypeError(f"{what.capitalize()} cannot be sent to the workers: pickling "
                            f"failed ({type(exc).__name__}: {exc}). Define simulate at the "
                            "top level of a module or script, and build the network inside "
                            "it rather than capturing Brian objects, locks or open files."
                            ) from exc


# -- what runs on a worker ---------------------------------------------------


def _fresh_brian_state(cache_dir):
    """Brian as a new process has it, on target 'numba' with the sweep's cache.

    So a task's result does not depend on the tasks its worker ran before.
    """
    global _initial_numba_prefs
    import brian2
    from brian2 import prefs
    from brian2.devices.device import all_devices

    if _initial_numba_prefs is None:
        _initial_numba_prefs = {name: prefs[name] for name in prefs
                                if name.startswith("codegen.runtime.numba.")}
    if brian2.get_device() is not all_devices["runtime"]:
        brian2.set_device("runtime")
    brian2.restore_initial_state()  # Brian's prefs, defaultclock.dt, scope; gc
    prefs.update(_initial_numba_prefs)
    prefs.codegen.target = "numba"
    prefs.codegen.runtime.numba.cache_dir = cache_dir


def _prepare_worker():
    """Import Brian and numba on an idle worker while the warm-up compiles."""
    import brian2_numba  # noqa: F401


def _worker_name():
    try:
        return distributed.get_worker().address
    except ValueError:  # not in a dask worker (called directly)
        return f"{socket.gethostname()}:{os.getpid()}"


def _checked_result(result, params):
    if not isinstance(result, dict):
        raise TypeError(f"simulate returned {type(result).__name__}, not a dict of results.")
    for key in result:
        if not isinstance(key, str):
            raise TypeError(f"simulate returned a dict with the key {key!r}; result names "
                            "must be strings.")
        if key in params or key in RESERVED_COLUMNS:
            raise ValueError(f"simulate returned a result called '{key}', which is already "
                             "a column (a parameter or one the sweep adds); rename it.")
    pickle.dumps(result)  # fails here, with a message, rather than in dask
    return result


def _run_task(simulate, params, seed, cache_dir, warmup=False):
    """Run one parameter set on a worker; never raises for simulate's errors.

    With ``warmup``, every ``run()`` stops after its first time steps (the
    device's maximum run time is 0) and the result is discarded: the point is
    to compile the kernels.
    """
    import brian2

    from . import cache, compat

    _fresh_brian_state(cache_dir)
    device = brian2.get_device()
    before = cache.cache_stats()
    outcome = {"result": None, "error": None, "traceback": None}
    start = time.perf_counter()
    if warmup:
        compat.set_maximum_run_time(device, 0)
    try:
        brian2.seed(seed)
        result = simulate(**params)
        if not warmup:
            outcome["result"] = _checked_result(result, params)
    except Exception as exc:
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        outcome["traceback"] = traceback.format_exc()
    finally:
        if warmup:
            compat.set_maximum_run_time(device, None)
    outcome["wall_time"] = time.perf_counter() - start
    after = cache.cache_stats()
    outcome["cache_hits"] = after["hits"] - before["hits"]
    outcome["cache_misses"] = after["misses"] - before["misses"]
    outcome["worker"] = _worker_name()
    outcome["cache_problem"] = cache._unusable_reason(cache_dir)
    return outcome


# -- the sweep (calling process) ---------------------------------------------


def _default_workers():
    """One worker per core this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _thread_warning(workers):
    """A warning text if a worker runs several tasks at once, else None.

    ``workers`` is ``client.scheduler_info()['workers']``.
    """
    threaded = sorted(address for address, info in workers.items()
                      if info.get("nthreads", 1) > 1)
    if not threaded:
        return None
    return (f"{len(threaded)} of the dask workers run several threads ({threaded[0]}"
            f"{', ...' if len(threaded) > 1 else ''}): simulations running at once in "
            "one process share Brian's global state (preferences, defaultclock, the "
            "device) and interfere. Start workers with one thread each (nthreads=1; "
            "dask-jobqueue: processes equal to cores).")


def _failed(exc):
    """The outcome of a task dask could not run (e.g. its worker kept dying)."""
    return {"result": None, "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc)), "wall_time": None,
            "worker": None, "cache_hits": None, "cache_misses": None,
            "cache_problem": None}


def _warn(message):
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _execute(client, simulate, sets, seeds, cache_dir, warmup, progress):
    token = uuid.uuid4().hex[:8]
    bar = tqdm(total=len(sets), desc="sweep", unit="set", disable=not progress,
               file=sys.stderr)
    warm = warm_future = None
    futures = []
    try:
        if warmup:
            bar.set_description("sweep (compiling)")
            for address in client.scheduler_info().get("workers", {}):
                futures.append(client.submit(_prepare_worker, pure=False, workers=[address],
                                             key=f"brian2_numba-sweep-{token}-import-{address}"))
            warm_future = client.submit(_run_task, simulate, sets[0], seeds[0], cache_dir,
                                        True, pure=False,
                                        key=f"brian2_numba-sweep-{token}-warmup")
            try:
                warm = warm_future.result()
            except Exception as exc:
                warm = _failed(exc)
            bar.set_description("sweep")
        keys = {}
        first = len(futures)
        for index, (params, seed) in enumerate(zip(sets, seeds, strict=False)):
            key = f"brian2_numba-sweep-{token}-{index}"
            keys[key] = index
            futures.append(client.submit(_run_task, simulate, params, seed, cache_dir,
                                         pure=False, key=key))
        outcomes = [None] * len(sets)
        for future in distributed.as_completed(futures[first:]):
            try:
                outcomes[keys[future.key]] = future.result()
            except Exception as exc:  # the task itself never raises: dask gave up
                outcomes[keys[future.key]] = _failed(exc)
            bar.update()
    finally:
        bar.close()
        client.cancel([f for f in [warm_future, *futures] if f is not None and not f.done()])
    return warm, outcomes


def _table(sets, seeds, outcomes, warm):
    rows = []
    tracebacks = {}
    for index, (params, seed, outcome) in enumerate(zip(sets, seeds, outcomes, strict=False)):
        row = dict(params)
        row.update(outcome["result"] or {})
        row.update(task_seed=seed, wall_time=outcome["wall_time"], worker=outcome["worker"],
                   cache_hits=outcome["cache_hits"], cache_misses=outcome["cache_misses"],
                   error=outcome["error"])
        rows.append(row)
        if outcome["traceback"]:
            tracebacks[index] = outcome["traceback"]
    names = list(dict.fromkeys(name for row in rows for name in row
                               if name not in RESERVED_COLUMNS))
    table = pandas.DataFrame.from_records(rows, columns=names + list(RESERVED_COLUMNS))
    table["error"] = pandas.Series([row["error"] for row in rows], dtype=object)  # None stays
    table.attrs["tracebacks"] = tracebacks
    table.attrs["warmup"] = None if warm is None else {
        key: warm[key] for key in ("worker", "wall_time", "cache_hits", "cache_misses", "error")}
    return table


def sweep(simulate, params, client=None, seed=0, cache_dir=None, *, warmup=True,
          progress=True, n_workers=None):
    """Run ``simulate(**p)`` for every parameter set ``p``, in parallel on dask.

    Parameters
    ----------
    simulate : callable
        ``simulate(**params) -> dict``: builds a network, runs it and returns
        its results (numbers or arrays) by name. It runs on the workers, so it
        must be picklable (a top-level function of a module or script) and
        import what it uses. Each task starts from Brian's initial state
        (``restore_initial_state()``, target ``'numba'``, the sweep's cache
        directory) with ``brian2.seed(task_seed(seed, params))``.
    params : dict of lists, or list of dicts
        A grid or the parameter sets themselves (see :func:`parameter_sets`).
    client : distributed.Client, optional
        Used as it is and left open (any dask deployment: a cluster of your
        own, dask-jobqueue, an existing scheduler). ``None``: a
        ``LocalCluster`` with ``n_workers`` single-threaded worker processes,
        closed at the end.
    seed : int
        The sweep's seed; each task's seed is :func:`task_seed` of it and the
        task's parameters, so the table does not depend on scheduling.
    cache_dir : str, optional
        The kernel cache directory every worker uses; ``None``: this process's
        (``prefs.codegen.runtime.numba.cache_dir``, or its default). On a
        cluster it must be a path every worker sees (see ``docs/sweep.md``).
    warmup : bool
        Run the first parameter set once, every ``run()`` cut short, before
        the sweep fans out, so that its kernels are compiled once (default).
        ``False``: all tasks start at once and each cold worker compiles.
    progress : bool
        Show a progress bar (tqdm, on standard error).
    n_workers : int, optional
        Worker processes of the ``LocalCluster`` (``client=None`` only);
        default: one per core.

    Returns
    -------
    pandas.DataFrame
        One row per parameter set, in the order of :func:`parameter_sets`:
        the parameters, the results, then ``task_seed``, ``wall_time`` (s, of
        ``simulate``), ``worker`` (its address), ``cache_hits`` and
        ``cache_misses`` (kernels loaded from the cache and compiled by that
        task) and ``error`` (``None``, or ``'TypeName: message'``; results are
        then missing). ``table.attrs['tracebacks']`` maps the row numbers of
        failed tasks to their tracebacks, ``table.attrs['warmup']`` describes
        the warm-up task (its worker, time, hits, misses, error).

    Raises
    ------
    TypeError, ValueError
        For ``params`` that :func:`parameter_sets` rejects, parameter sets
        that do not fit ``simulate``'s signature, or a ``simulate`` or
        parameters that cannot be pickled. Errors inside ``simulate`` give an
        error row instead.
    """
    sets = parameter_sets(params)
    _check_simulate(simulate, sets)
    seeds = [task_seed(seed, params) for params in sets]
    if cache_dir is None:
        from .cache import configured_cache_directory

        cache_dir = configured_cache_directory()
    else:
        cache_dir = os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))
    if client is not None and n_workers is not None:
        raise TypeError("n_workers sets the size of the sweep's own LocalCluster; with a "
                        "client of your own, size its cluster instead.")
    cluster = None
    if client is None:
        cluster = distributed.LocalCluster(
            n_workers=n_workers or _default_workers(), threads_per_worker=1,
            processes=True, dashboard_address=None,  # no dashboard; its HTTP server
            scheduler_kwargs={"dashboard_address": ":0"})  # on a free port, not 8787
        client = distributed.Client(cluster)
    try:
        problem = _thread_warning(client.scheduler_info().get("workers", {}))
        if problem:
            _warn(problem)
        warm, outcomes = _execute(client, simulate, sets, seeds, cache_dir,
                                  warmup and len(sets) > 1, progress)
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
    problems = {o["cache_problem"] for o in [warm, *outcomes] if o and o["cache_problem"]}
    for problem in sorted(problems):
        _warn(f"A worker could not use the kernel cache directory '{cache_dir}': {problem}. "
              "Its tasks compiled their kernels again; see docs/sweep.md.")
    failed = sum(outcome["error"] is not None for outcome in outcomes)
    if failed:
        _warn(f"{failed} of {len(sets)} parameter sets failed; see the 'error' column "
              "(and table.attrs['tracebacks']).")
    return _table(sets, seeds, outcomes, warm)
