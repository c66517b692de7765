"""The cost advisor (brian2_numba.advisor): features, estimate, messages, fit.

Behaviour only: what the advisor counts, when it speaks and what it says,
and that a fit recovers known coefficients. How close its predictions come to
measured times is the benchmark report's business (its pred÷meas columns).
"""

import json
import logging
import os
import re

import numpy as np
import pytest
from brian2 import (
    Clock,
    Network,
    NeuronGroup,
    PoissonGroup,
    SpikeMonitor,
    StateMonitor,
    Synapses,
    prefs,
    start_scope,
)
from brian2.units import Hz, ms, second
from brian2.utils.logger import catch_logs

import brian2_numba
from brian2_numba import advisor
from brian2_numba.bench.report import measured, render
from brian2_numba.bench.targets import TARGETS
from brian2_numba.introspect import Table


@pytest.fixture(autouse=True)
def _fresh_advisor():
    start_scope()
    advisor._warned.clear()
    advisor._last_message.clear()
    advisor.load_coefficients(reload=True)  # the shipped file (the cache dir is new)
    yield
    start_scope()


def _small_network(drive="2"):
    """10 neurons (one exp() per step), 5 Poisson inputs, 90 synapses, two monitors,
    one of them on a clock of its own (0.2 ms). Another ``drive`` (a number in
    the code) makes kernels that no earlier test compiled in this process."""
    G = NeuronGroup(10, f"dv/dt = ({drive} - v + 0.1*exp(-v)) / (10*ms) : 1", threshold="v > 1",
                    reset="v = 0", method="euler")
    P = PoissonGroup(5, 100 * Hz)
    S = Synapses(G, G, on_pre="v_post += 0.01")
    S.connect("i != j")
    state = StateMonitor(G, "v", record=[0, 1, 2], clock=Clock(0.2 * ms))
    spikes = SpikeMonitor(G)
    return Network(G, P, S, state, spikes)


def _info_lines(logs, suffix):
    return [message for level, name, message in logs
            if name == f"brian2_numba.advisor.{suffix}"]


def test_features_count_a_small_network():
    net = _small_network()
    found = advisor.features(net, 2 * ms)  # 20 steps of 0.1 ms, 10 of 0.2 ms
    assert found["neurons"] == 15 and found["synapses"] == 90
    assert found["monitors"] == 2 and found["recorded"] == 3
    assert found["clocks"] == 2
    assert sorted(found["steps"].values()) == [10, 20]
    # state updater, threshold, reset of G; threshold of P; the pathway (pushing
    # spikes, and their effect); two monitors
    assert found["code_objects"] == 8
    assert found["object_steps"] == 7 * 20 + 10
    assert found["element_steps"] == 20 * (10 + 10 + 10 + 5)
    assert found["call_steps"] == 20 * (10 * 1 + 5 * 1)  # exp() per neuron, rand() per input
    assert found["synapse_steps"] == 20 * 90
    assert found["recorded_steps"] == 10 * 3
    assert found["compartment_steps"] == 0 and found["run_calls"] == 1
    assert found["integration"] == 0  # Euler: no symbolic solution
    # sizes are read when asked: a longer run, more synapses
    S = next(obj for obj in net.objects if isinstance(obj, Synapses))
    S.connect(i=0, j=0)
    found = advisor.features(net, 4 * ms)
    assert found["synapses"] == 91 and found["synapse_steps"] == 40 * 91


def test_exact_integration_and_event_driven_equations_count_as_symbolic_work():
    G = NeuronGroup(3, """dv/dt = (ge - v) / (10*ms) : 1
                          dge/dt = -ge / (5*ms) : 1""", threshold="v > 1",
                    method="exact")
    S = Synapses(G, G, """w : 1
                          dA/dt = -A / (20*ms) : 1 (event-driven)""", on_pre="A += 1")
    found = advisor.features(Network(G, S), 1 * ms)
    assert found["integration"] == 4 * 2 + 1  # a 2-variable linear system, one event-driven


def test_kernel_states_follow_the_cache():
    net = _small_network()
    assert advisor.kernel_states(net) is None  # no code objects yet
    net.run(0.5 * ms)
    states = advisor.kernel_states(net)
    assert states["compile"] == states["disk"] == 0
    assert states["memory"] == advisor.features(net, 1 * ms)["code_objects"]


def test_info_line_before_each_run_and_the_switch_to_turn_it_off():
    net = _small_network(drive="2.25")
    with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
        net.run(0.5 * ms)
        net.run(0.5 * ms)
    lines = _info_lines(logs, "estimate")
    assert len(lines) == 2
    assert lines[0].startswith(f"Network '{net.name}' on numba, 5 steps: predicted ")
    # the state updater is new here (the other kernels may be in memory from
    # earlier tests in this process); nothing on disk (a new cache directory)
    memory, disk, new = map(int, re.search(r"(\d+) in memory, (\d+) on disk, (\d+) to compile",
                                          lines[0]).groups())
    assert disk == 0 and new >= 1 and memory + new == 8
    assert "8 in memory, 0 on disk, 0 to compile" in lines[1]
    # the same estimate again: to the log file (DEBUG), not the console (INFO)
    with catch_logs(logging.DEBUG, only_from=("brian2_numba",)) as logs:
        net.run(0.5 * ms)
    assert [(level, message) for level, name, message in logs
            if name == "brian2_numba.advisor.estimate"] == [("DEBUG", lines[1])]
    prefs.codegen.runtime.numba.fused = False
    with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
        net.run(0.5 * ms)
    assert " on numba per-object, 5 steps" in _info_lines(logs, "estimate")[0]
    prefs.codegen.runtime.numba.advisor = False
    with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
        net.run(0.5 * ms)
    assert not [log for log in logs if log[1].startswith("brian2_numba.advisor")]


def test_no_advice_on_other_targets():
    prefs.codegen.target = "numpy"
    net = _small_network()
    with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
        net.run(0.2 * ms)
    assert not [log for log in logs if log[1].startswith("brian2_numba.advisor")]


def test_warning_when_numpy_is_much_faster_for_a_short_cold_run():
    """A tiny network, nothing compiled yet, a run of 1 ms: compiling costs more
    than numpy's whole run. Once the kernels are in memory: no warning."""
    G = NeuronGroup(2, "dv/dt = (1.5 - v) / (10.125*ms) : 1", threshold="v > 1.0625",
                    reset="v = 0.03125", method="euler")  # (new kernels)
    net = Network(G, SpikeMonitor(G), StateMonitor(G, "v", record=True))
    with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
        net.run(1 * ms)
    warnings = _info_lines(logs, "faster_configuration")
    assert len(warnings) == 1 and [level for level, name, _ in logs
                                   if name.endswith("faster_configuration")] == ["WARNING"]
    assert "set prefs.codegen.target = 'numpy'" in warnings[0]
    assert f"Network '{net.name}': numpy is predicted to take" in warnings[0]
    assert "prefs.codegen.runtime.numba.advisor = False" in warnings[0]
    with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
        net.run(1 * ms)  # compiled now: numba is the fastest
    assert not _info_lines(logs, "faster_configuration")
    assert len(_info_lines(logs, "estimate")) == 1


def test_warning_names_the_line_for_each_configuration(monkeypatch):
    """Made-up coefficients that make one configuration 10x faster than the rest."""
    net = _small_network()
    shipped = advisor.load_coefficients()
    for winner, line in [("numba per-object", "prefs.codegen.runtime.numba.fused = False"),
                         ("cython", "prefs.codegen.target = 'cython'"),
                         ("cpp_standalone", "set_device('cpp_standalone')")]:
        coefficients = json.loads(json.dumps(shipped))
        for target, own in coefficients["targets"].items():
            scale = 0.0 if target == advisor._TARGET[winner] else 1.0
            own["compile"] = {"cold": {"const": 10.0 * scale + 0.1, "kernels": 0.0}}
            own["overhead"] = {"const": 0.01}
        monkeypatch.setattr(advisor, "_coefficients", coefficients)
        advisor._warned.clear()
        with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
            predicted = advisor.advise_run(net, 1 * ms)
        assert min(predicted, key=lambda c: predicted[c]["total"]) == winner
        [warning] = _info_lines(logs, "faster_configuration")
        assert line in warning, (winner, warning)
        # the same advice once per network and configuration
        with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
            advisor.advise_run(net, 1 * ms)
        assert not _info_lines(logs, "faster_configuration")


def test_no_warning_below_three_times(monkeypatch):
    net = _small_network()
    coefficients = json.loads(json.dumps(advisor.load_coefficients()))
    for target, own in coefficients["targets"].items():
        seconds = 1.0 if target == "numba" else 0.4  # only 2.5x faster
        own["compile"] = {"cold": {"const": seconds}}
        own["step"] = {}
        own["overhead"] = {}
    monkeypatch.setattr(advisor, "_coefficients", coefficients)
    with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
        advisor.advise_run(net, 1 * ms)
    assert not _info_lines(logs, "faster_configuration")
    assert len(_info_lines(logs, "estimate")) == 1


def test_threads_row_is_predicted_but_only_advised_with_the_preference(monkeypatch):
    net = _small_network()
    coefficients = json.loads(json.dumps(advisor.load_coefficients()))
    monkeypatch.setattr(advisor, "_coefficients", coefficients)
    found = advisor.features(net, 10 * second)
    predicted = advisor.estimate(found, threads=4)
    threaded, serial = predicted["numba threads"], predicted["numba"]
    efficiency = coefficients["threads"]["parallel_efficiency"]
    per_object = coefficients["targets"]["numba"]["step"]["object_steps"] * found["object_steps"]
    assert threaded["steps_seconds"] == pytest.approx(
        per_object + (serial["steps_seconds"] - per_object) / (4 * efficiency))
    assert threaded["threads"] == 4
    if advisor.THREADS_PREF not in prefs:  # (another branch adds the preference)
        for own in coefficients["targets"].values():  # threads the only fast option
            own["compile"] = {"cold": {"const": 100.0}}
        with catch_logs(logging.INFO, only_from=("brian2_numba",)) as logs:
            advisor.advise_run(net, 100 * second)
        assert not any("threads" in message for message in _info_lines(logs, "faster_configuration"))


def test_advise_returns_a_table_of_every_configuration():
    net = _small_network(drive="2.5")
    with pytest.raises(TypeError, match="needs the duration"):
        brian2_numba.advise(net)
    before = brian2_numba.advise(net, 1 * second)  # nothing generated: all to compile
    assert isinstance(before, Table)
    assert before.columns == ["configuration", "compile s", "µs/step", "run() prep s",
                              "steps s", "total s", "cache"]
    names = before.column("configuration")
    assert names[0] == "numba (current)"
    assert set(names) >= {"numba per-object", "numpy", "cython", "cpp_standalone"}
    if (os.cpu_count() or 1) > 1 or advisor.THREADS_PREF in prefs:
        assert any(name.startswith("numba, ") and name.endswith(" threads") for name in names)
    assert "8 to compile" in before.column("cache")[0]
    for row in before:
        compile_s, per_step, prep, steps, total = row[1:6]
        assert total == pytest.approx(compile_s + prep + steps)
        assert steps == pytest.approx(per_step * 1e-6 * 10000)  # 1 s of 0.1 ms steps
    net.run(0.2 * ms)
    after = brian2_numba.advise(10 * second)  # the network that ran last
    rows = {row[0]: row for row in after}
    assert rows["numba (current)"][1] == 0  # compiled: nothing more to pay
    assert rows["numba (current)"][2] == pytest.approx(before.rows[0][2], rel=0.05)
    assert rows["numba (current)"][4] == pytest.approx(10 * before.rows[0][4], rel=0.05)
    assert rows["cython"][1] > 0  # assumed cold
    assert "numba (current)" in str(after) and after._repr_html_().startswith("<table>")
    prefs.codegen.target = "numpy"
    assert "numpy (current)" in brian2_numba.advise(net, 1 * ms).column("configuration")


# -- coefficients -------------------------------------------------------------------

def test_shipped_coefficients_load_and_cover_every_target():
    shipped = advisor.load_coefficients(advisor.SHIPPED)
    assert advisor.load_coefficients()["file"] == advisor.SHIPPED  # no calibration here
    # every target the advisor models (the threaded ones through an efficiency)
    assert set(shipped["targets"]) == set(advisor._TARGET.values())
    assert set(shipped["targets"]) <= set(TARGETS)
    for target, own in shipped["targets"].items():
        assert set(own["step"]) == set(advisor.STEP_FEATURES), target
        assert set(own["overhead"]) == {"const", "code_objects"}
        assert own["compile"] and all(set(c) == set(advisor.COMPILE_FEATURES)
                                      for c in own["compile"].values())
        assert all(v >= 0 for v in own["step"].values())
    assert 0 < shipped["threads"]["parallel_efficiency"] <= 1
    # fitted to committed benchmark results (FILE or FILE::targets)
    files = [spec.partition("::")[0] for spec in shipped["source"].split()[1:]]
    root = os.path.dirname(os.path.dirname(advisor.SHIPPED))
    assert files and all(os.path.exists(os.path.join(root, f)) for f in files), files


def test_calibrated_coefficients_in_the_cache_directory_override_the_shipped(numba_target):
    mine = json.loads(json.dumps(advisor.load_coefficients(advisor.SHIPPED)))
    mine["source"] = "calibrate: here"
    path = advisor.user_coefficients_file()
    assert os.path.dirname(path) == str(numba_target)
    os.makedirs(numba_target, exist_ok=True)
    with open(path, "w") as f:
        json.dump(mine, f)
    loaded = advisor.load_coefficients(reload=True)
    assert loaded["source"] == "calibrate: here" and loaded["file"] == path


def _synthetic_records(coefficients, rng, count=12):
    """Benchmark records whose times follow ``coefficients`` exactly."""
    records = []
    for index in range(count):
        found = {name: float(rng.integers(1, 10**6)) for name in advisor.STEP_FEATURES}
        found.update(code_objects=int(rng.integers(3, 12)),
                     integration=int(rng.integers(0, 10)), synapses=int(rng.integers(0, 10**6)),
                     steps={"defaultclock": 1000})
        for target, own in coefficients.items():
            for cache in ("cold", "warm"):
                per_run = sum(own["step"][n] * found[n] for n in advisor.STEP_FEATURES)
                overhead = own["overhead"]["const"] + own["overhead"]["code_objects"] * found[
                    "code_objects"]
                c = own["compile"][cache]
                compile_seconds = (c["const"] + c["kernels"] * found["code_objects"]
                                   + c["integration"] * found["integration"]
                                   + c["synapses"] * found["synapses"])
                records.append(dict(
                    model=f"m{index}", n=1, target=target, cache=cache, status="ok", runs=1,
                    steps=1000, t_per_step=per_run / 1000, t_run_overhead=overhead,
                    t_first_run=compile_seconds + overhead + per_run,
                    advisor_features=found))
    return records


def test_fit_reproduces_known_coefficients():
    rng = np.random.default_rng(3)
    known = {}
    for target in ("numba", "numpy"):
        known[target] = {
            "step": {n: float(rng.uniform(1e-9, 1e-6)) for n in advisor.STEP_FEATURES},
            "overhead": {"const": 0.02, "code_objects": 0.003},
            "compile": {cache: {"const": float(rng.uniform(0.1, 2)),
                                "kernels": float(rng.uniform(0.01, 0.3)),
                                "integration": float(rng.uniform(0, 0.1)),
                                "synapses": float(rng.uniform(0, 1e-7))}
                        for cache in ("cold", "warm")}}
    known["numba"]["step"]["compartment_steps"] = 0.0  # a feature that costs nothing
    known["numpy"]["compile"]["cold"] = known["numpy"]["compile"]["warm"]  # no cache
    records = _synthetic_records(known, rng)
    fitted = advisor.fit(records)
    for target, own in known.items():
        got = fitted["targets"][target]
        for group in ("step", "overhead"):
            for name, value in own[group].items():
                assert got[group][name] == pytest.approx(value, rel=1e-6, abs=1e-15), (
                    target, group, name)
        for cache, values in own["compile"].items():
            if target == "numpy" and cache == "cold":
                assert cache not in got["compile"]  # one fit of cold and warm runs
                continue
            for name, value in values.items():
                assert got["compile"][cache][name] == pytest.approx(value, rel=1e-6), (
                    target, cache, name)
    # and the fitted coefficients predict the records they came from
    for *_, step, comp in advisor.ratios(records, fitted):
        assert step == pytest.approx(1, rel=1e-6) and comp == pytest.approx(1, rel=1e-6)


def test_nnls_keeps_coefficients_non_negative():
    A = np.array([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
    b = np.array([3.0, 2.0, 1.0])  # a falling line: the slope would be negative
    x = advisor._nnls(A, b)
    assert x[1] == 0 and x[0] == pytest.approx(2.0)


def test_report_shows_predicted_over_measured():
    found = {n: 1.0 for n in advisor.STEP_FEATURES}
    record = dict(model="tiny", n=10, target="numba", cache="warm", repeat=0, status="ok",
                  spike_hash="a", mean=0.1, mean_of="v", synapses=90, spikes=5, runs=1,
                  steps=100, t_per_step=1e-5, t_run_overhead=0.01, t_first_run=1.011,
                  t_first_result=2.0, advisor_features=found,
                  advisor_predicted={"per_step": 2e-5, "compile": 0.5, "run_overhead": 0.01,
                                     "total": 0.52})
    assert measured(record)["compile"] == pytest.approx(1.0)
    text = render([record], "numba")
    header = next(line for line in text.splitlines() if line.startswith("model  ")
                  and " cache " in line)
    assert "step pred÷meas" in header and "compile pred÷meas" in header
    row = next(line for line in text.splitlines() if line.startswith("tiny ")
               and "warm" in line)
    assert row.split()[-2:] == ["2", "0.5"]
    assert "pred÷meas: the cost advisor's prediction" in text
    del record["advisor_predicted"]
    assert "pred÷meas" not in render([record], "numba")


@pytest.mark.long
def test_calibrate_runs_the_benchmark_tool_and_writes_the_cache_file(numba_target):
    """numpy only, one model: the command's plumbing, not a measurement."""
    path = advisor.calibrate(models=("tiny",), targets=("numpy",))
    assert path == advisor.user_coefficients_file()
    with open(path) as f:
        written = json.load(f)
    shipped = advisor.load_coefficients(advisor.SHIPPED)
    assert written["calibrated_targets"] == ["numpy"]
    assert set(written["targets"]) == set(shipped["targets"])  # the others: shipped
    assert written["targets"]["cython"] == shipped["targets"]["cython"]
    assert written["targets"]["numpy"] != shipped["targets"]["numpy"]
    # the tiny network has no compartments: that coefficient stays the shipped one
    assert (written["targets"]["numpy"]["step"]["compartment_steps"]
            == shipped["targets"]["numpy"]["step"]["compartment_steps"])
    assert written["source"] == "calibrate: brian2-numba-bench -m tiny --no-plots --quick -t numpy"
    assert advisor.load_coefficients()["file"] == path  # in use from now on


@pytest.mark.parametrize("content", [None, "not json\n", '{"model": "cuba"}\n'])
def test_fit_and_check_name_a_bad_results_file(tmp_path, capsys, content):
    """A missing or foreign file is a usage error that names it, not a traceback."""
    path = tmp_path / "results.jsonl"
    if content is not None:
        path.write_text(content)  # not JSON; a record without target and size
    for command in ("fit", "check"):
        with pytest.raises(SystemExit) as exit_info:
            advisor.main([command, str(path)])
        assert exit_info.value.code == 2
        message = capsys.readouterr().err
        assert "results file" in message and (content is not None or str(path) in message)
