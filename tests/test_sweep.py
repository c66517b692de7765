"""Parameter sweeps on dask.distributed (brian2_numba.sweep), on a 2-worker LocalCluster.

The cluster's workers are separate processes started by dask (spawned); they
get ``simulate`` by pickle and the cache directory as an argument of each task.
"""

import inspect
import json
import os
import subprocess
import sys
import threading

import cloudpickle
import distributed  # the 'sweep' extra (scripts/_common.sh installs it)
import numpy as np
import pytest
from brian2 import ms, second, seed
from conftest import run_script, script_env

from brian2_numba import sweep as sweep_module
from brian2_numba.sweep import parameter_sets, sweep, task_seed

# the workers get these functions by value: they need not import this file
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def simulate(tau, drive, n=20):
    """A noisy LIF group: every parameter enters as a value, so one code for all."""
    from brian2 import NeuronGroup, SpikeMonitor, ms, run

    G = NeuronGroup(n, "dv/dt = (drive - v)/tau + 0.2*xi/sqrt(tau) : 1", threshold="v > 1",
                    reset="v = 0", method="euler",
                    namespace={"tau": tau * ms, "drive": drive})
    G.v = "rand()"
    M = SpikeMonitor(G)
    run(30 * ms)
    return {"spikes": int(M.num_spikes), "v": G.v[:].copy()}


def serially(params, sweep_seed, function=None):
    """What the sweep must give: simulate in this process, with each task's seed."""
    results = []
    for p in parameter_sets(params):
        seed(task_seed(sweep_seed, p))
        results.append((function or simulate)(**p))
    return results


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": ":0"}) as cluster:
        with distributed.Client(cluster) as c:
            yield c


GRID = {"tau": [5.0, 10.0], "drive": [1.2, 1.5, 2.0, 3.0]}


def _assert_rows_match(table, expected):
    assert table["error"].tolist() == [None] * len(table)
    assert table["spikes"].tolist() == [r["spikes"] for r in expected]
    for got, want in zip(table["v"], expected, strict=False):
        np.testing.assert_array_equal(got, want["v"])


# -- parameter sets, seeds, bad input (no cluster) ----------------------------


def test_grid_is_every_combination_last_name_fastest():
    assert parameter_sets({"a": [1, 2], "b": ("x", "y")}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert parameter_sets({"a": np.array([0.5, 1.5])}) == [{"a": 0.5}, {"a": 1.5}]
    sets = [{"a": 1}, {"a": 2, "b": 3}]
    assert parameter_sets(sets) == sets and parameter_sets(sets) is not sets


@pytest.mark.parametrize("params, error, words", [
    ({"tau": 5 * ms}, TypeError, "gives 'tau' the value"),
    ({"tau": "5, 10"}, TypeError, "not a list of values"),
    ({"tau": []}, ValueError, "gives 'tau' no values"),
    ({}, ValueError, "names no parameters"),
    ([], ValueError, "is empty"),
    ([{"tau": 1}, 5], TypeError, "Parameter set 1 is 5"),
    ({1: [1]}, TypeError, "parameter name 1"),
    ({"error": [1]}, ValueError, "parameter called 'error'"),
    ("tau", TypeError, "not str"),
])
def test_bad_params_are_named(params, error, words):
    with pytest.raises(error, match=words):
        parameter_sets(params)


def test_parameter_sets_must_fit_simulate():
    with pytest.raises(TypeError, match=r"Parameter set 0 .* names 'taus', which "
                                        r"simulate\(tau, drive, n=20\) does not take"):
        sweep(simulate, {"taus": [1.0], "drive": [1.0]}, progress=False)
    with pytest.raises(TypeError, match="Parameter set 1 .*missing a required argument: 'drive'"):
        sweep(simulate, [{"tau": 1.0, "drive": 1.0}, {"tau": 1.0}], progress=False)


def test_unpicklable_simulate_is_refused_before_any_task():
    lock = threading.Lock()

    def holds_a_lock(x):
        with lock:
            return {"x": x}

    with pytest.raises(TypeError, match="Simulate cannot be sent to the workers"):
        sweep(holds_a_lock, {"x": [1]}, progress=False)
    with pytest.raises(TypeError, match="simulate must be a function"):
        sweep("simulate", {"x": [1]}, progress=False)
    with pytest.raises(TypeError, match="n_workers sets the size of the sweep's own"):
        sweep(simulate, GRID, client=object(), n_workers=2, progress=False)


def test_task_seed_depends_on_seed_and_values_only():
    p = {"tau": 5 * ms, "drive": 1.5, "n": 20}
    s = task_seed(7, p)
    assert s == task_seed(7, {"n": 20, "drive": 1.5, "tau": 0.005 * second})
    assert 0 <= s < 2**32
    assert len({s, task_seed(8, p), task_seed(7, dict(p, drive=1.6)),
                task_seed(7, dict(p, n=20.0))}) == 4
    # the same number in every process (not Python's salted hash)
    out = run_script("import sys, brian2_numba.sweep as s; from brian2 import ms\n"
                     "print(s.task_seed(7, {'tau': 5*ms, 'drive': 1.5, 'n': 20}))", "-")
    assert int(out.stdout.split()[-1]) == s
    with pytest.raises(TypeError, match="memory address"):
        task_seed(0, {"x": object()})
    with pytest.raises(TypeError, match="non-negative integer"):
        task_seed(-1, p)


def test_threaded_workers_are_warned_about():
    assert sweep_module._thread_warning({"tcp://a": {"nthreads": 1}}) is None
    text = sweep_module._thread_warning({"tcp://a": {"nthreads": 1}, "tcp://b": {"nthreads": 4}})
    assert "1 of the dask workers run several threads (tcp://b)" in text


def test_missing_extra_names_it():
    code = ("import sys; sys.modules['distributed'] = None\n"
            "try:\n    import brian2_numba.sweep\nexcept ImportError as e:\n    print(e)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=script_env(), timeout=300)
    assert "pip install 'brian2-numba[sweep]'" in result.stdout, result.stderr[-2000:]
    assert "'distributed' is missing" in result.stdout


# -- on the cluster -----------------------------------------------------------


@pytest.mark.long
def test_sweep_gives_the_serial_results(client, numba_target):
    table = sweep(simulate, GRID, client=client, seed=3, cache_dir=numba_target,
                  progress=False)
    assert len(table) == 8
    assert list(table.columns[:4]) == ["tau", "drive", "spikes", "v"]
    assert table[["tau", "drive"]].to_dict("records") == parameter_sets(GRID)
    assert table["task_seed"].tolist() == [task_seed(3, p) for p in parameter_sets(GRID)]
    expected = serially(GRID, 3)
    assert len({r["spikes"] for r in expected}) > 4  # the parameters matter
    _assert_rows_match(table, expected)
    assert (table["wall_time"] > 0).all()
    assert table["worker"].str.startswith("tcp://").all()
    # a passed client is used as it is and left open
    assert client.status == "running"
    assert client.submit(sum, [1, 2]).result() == 3
    assert len(client.scheduler_info()["workers"]) == 2


def test_results_do_not_depend_on_order_or_workers(client, numba_target):
    sets = parameter_sets(GRID)[::-1]
    table = sweep(simulate, sets, client=client, seed=3, cache_dir=numba_target,
                  progress=False, warmup=False)
    _assert_rows_match(table, serially(GRID, 3)[::-1])
    assert table.attrs["warmup"] is None


@pytest.mark.long
def test_progress_bar_and_another_seed(client, numba_target, capsys):
    sets = parameter_sets(GRID)[:2]
    table = sweep(simulate, sets, client=client, seed=4, cache_dir=numba_target)
    err = capsys.readouterr().err
    assert "sweep (compiling)" in err and "sweep: 100%" in err and "2/2" in err
    assert table["task_seed"].tolist() == [task_seed(4, p) for p in sets]
    _assert_rows_match(table, serially(sets, 4))


def failing(x):
    if x == 2:
        raise ValueError("x = 2 is not allowed")
    if x == 3:
        return [x]
    if x == 4:
        return {"x": x}
    return simulate(tau=10.0, drive=1.5 + x)


def test_a_failing_set_gives_an_error_row(client, numba_target):
    with pytest.warns(RuntimeWarning, match="3 of 5 parameter sets failed"):
        table = sweep(failing, {"x": [0, 1, 2, 3, 4]}, client=client,
                      cache_dir=numba_target, progress=False)
    errors = table["error"].tolist()
    assert errors[:2] == [None, None]
    assert errors[2] == "ValueError: x = 2 is not allowed"
    assert errors[3] == "TypeError: simulate returned list, not a dict of results."
    assert errors[4].startswith("ValueError: simulate returned a result called 'x'")
    assert "raise ValueError" in table.attrs["tracebacks"][2]
    assert sorted(table.attrs["tracebacks"]) == [2, 3, 4]
    expected = serially({"x": [0, 1]}, 0, failing)
    assert table["spikes"][:2].tolist() == [r["spikes"] for r in expected]
    assert table["spikes"][2:].isna().all()


def dies_once(tau, drive, marker):
    """Kills its worker process the first time it runs with drive == 2."""
    if drive == 2.0 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return simulate(tau, drive)


@pytest.mark.long
def test_a_killed_worker_is_replaced_and_the_sweep_completes(client, numba_target, tmp_path):
    marker = str(tmp_path / "died")
    params = [dict(p, marker=marker) for p in parameter_sets(GRID)]
    table = sweep(dies_once, params, client=client, seed=3, cache_dir=numba_target,
                  progress=False)
    assert os.path.exists(marker)  # a worker did die
    _assert_rows_match(table, serially(params, 3, dies_once))
    client.wait_for_workers(2, timeout=120)  # the nanny restarted it


@pytest.mark.long
def test_compiles_once_on_a_default_cluster(tmp_path, monkeypatch):
    """Misses over all workers equal one parameter set's kernel count; the
    sweep's own LocalCluster (client=None) is closed afterwards."""
    reference = run_script(
        "import sys, json, brian2_numba, brian2\n"
        "brian2.prefs.codegen.target = 'numba'\n"
        "brian2.prefs.codegen.runtime.numba.cache_dir = sys.argv[1]\n"
        f"exec({inspect.getsource(simulate)!r})\n"
        "simulate(5.0, 1.5)\n"
        "print(json.dumps(brian2_numba.cache_stats()))", tmp_path / "reference")
    kernels = json.loads(reference.stdout.strip().splitlines()[-1])["misses"]
    assert kernels > 3
    clusters = []

    class Recorded(distributed.LocalCluster):
        def __init__(self, *args, **kwds):
            super().__init__(*args, **kwds)
            clusters.append(self)

    monkeypatch.setattr(sweep_module.distributed, "LocalCluster", Recorded)
    table = sweep(simulate, GRID, cache_dir=tmp_path / "cache", progress=False, n_workers=2)
    assert table["error"].isna().all()
    assert table.attrs["warmup"]["cache_misses"] == kernels
    assert table.attrs["warmup"]["error"] is None
    assert table["cache_misses"].sum() == 0
    assert table.attrs["warmup"]["cache_misses"] + table["cache_misses"].sum() == kernels
    _assert_rows_match(table, serially(GRID, 0))
    assert len(clusters) == 1 and len(clusters[0].workers) == 0  # closed
    assert len(set(table["worker"]) | {table.attrs["warmup"]["worker"]}) <= 2


def test_a_cache_directory_the_workers_cannot_use_is_reported(client, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(RuntimeWarning, match="could not use the kernel cache directory"):
        table = sweep(simulate, {"tau": [5.0], "drive": [1.5]}, client=client,
                      cache_dir=blocker / "cache", progress=False)
    assert table["error"].isna().all()

