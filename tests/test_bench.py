"""The benchmark tool (brian2_numba.bench): CLI end to end, protocol, report.

Only behaviour is tested here; speed and memory are what the benchmark
measures, never asserted.
"""

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest

from brian2_numba.bench.cli import main
from brian2_numba.bench.models import MODELS
from brian2_numba.bench.report import check_failed, checks, render, summarize
from brian2_numba.bench.runner import plan

TIMINGS = ["t_import", "t_construct", "t_first_run", "t_first_result", "t_second_run",
           "t_per_step", "t_process", "peak_rss_mb"]


@pytest.mark.long
def test_cli_end_to_end(tmp_path, capsys):
    """One real run (quick sizes, numpy and numba; cython and cpp_standalone
    requested, but CC/CXX point nowhere, so they are skipped), then its checks.

    A single test, so that pytest-xdist does not run the benchmark twice. The
    models: ``cuba_det`` (one run() per phase) and ``short_runs`` (many run()
    calls; ``tiny`` is left out: it is the same network, four more processes).
    """
    out = tmp_path / "bench"
    env = dict(os.environ, CC="no-such-cc-compiler", CXX="no-such-cxx-compiler")
    proc = subprocess.run(
        [sys.executable, "-m", "brian2_numba.bench", "--quick", "-m", "short_runs,cuba_det",
         "-t", "numpy,numba,cython,cpp_standalone", "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Skipping target cython: Cython's test compilation failed" in proc.stderr
    assert "Skipping target cpp_standalone: 'no-such-cxx-compiler' not found" in proc.stderr
    assert "FAILED" not in proc.stdout + proc.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    _check_results_file(records)
    _check_cold_and_warm_cache(records)
    _check_deterministic_models_agree(records)
    _check_summaries(proc.stdout, out)
    # the report can be made again from the results file alone
    assert main(["--report", str(out / "results.jsonl"), "-o", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "summary.txt").read_text() == (out / "summary.txt").read_text()
    assert (tmp_path / "summary.txt").read_text() in printed
    assert (tmp_path / "cold_vs_warm.png").exists()


def _check_results_file(records):
    runs = {(r["model"], r["target"], r["cache"]) for r in records}
    assert runs == {(m, t, c) for m in ("short_runs", "cuba_det") for t in ("numpy", "numba")
                    for c in ("cold", "warm")}
    assert len(records) == 8
    for r in records:
        model = MODELS[r["model"]]
        assert r["status"] == "ok"
        assert r["n"] == model.quick_size
        assert r["steps"] == round(model.quick_duration_ms * 10)  # dt 0.1 ms, per call
        assert r["runs"] == model.quick_runs == (5 if r["model"] == "short_runs" else 1)
        for field in TIMINGS:
            assert r[field] > 0, field
        # per run() call, whatever the number of calls
        assert r["t_run_overhead"] == pytest.approx((r["t_second_run"] - r["t_loop"])
                                                    / r["runs"])
        assert r["t_per_step"] == pytest.approx(r["t_loop"] / (r["steps"] * r["runs"]))
        if r["runs"] > 1:
            assert r["t_per_run_call"] == pytest.approx(r["t_second_run"] / r["runs"])
        else:
            assert "t_per_run_call" not in r
        assert r["t_first_result"] == pytest.approx(
            r["t_import"] + r["t_construct"] + r["t_first_run"])
        assert r["t_process"] > r["t_first_result"]
        assert r["spikes"] > 0 and r["synapses"] > 0
        # the cost advisor's counts and prediction, for the report's pred÷meas columns
        assert "advisor_error" not in r
        assert r["advisor_features"]["synapses"] == r["synapses"]
        assert set(r["advisor_predicted"]) == {"compile", "per_step", "run_overhead", "total"}
        assert r["env"]["versions"]["brian2"] and r["env"]["versions"]["numba"]
        assert r["env"]["machine"]["cores"] >= 1


def _check_cold_and_warm_cache(records):
    for r in records:
        if r["target"] != "numba":
            assert "numba_cache" not in r
        elif r["cache"] == "cold":
            assert r["numba_cache"]["hits"] == 0 and r["numba_cache"]["misses"] > 0
        else:
            assert r["numba_cache"]["misses"] == 0 and r["numba_cache"]["hits"] > 0


def _check_deterministic_models_agree(records):
    for model in ("short_runs", "cuba_det"):
        hashes = {r["spike_hash"] for r in records if r["model"] == model}
        assert len(hashes) == 1, model
    found = {(c["model"], c["target"]): c["check"] for c in checks(records)}
    assert found[("short_runs", "numpy")] == found[("cuba_det", "numpy")] == "reference"
    assert found[("short_runs", "numba")] == found[("cuba_det", "numba")] == "same as numpy"


def _check_summaries(stdout, out):
    table = (out / "summary.txt").read_text()
    assert table in stdout
    lines = table.splitlines()
    assert "Time to the first result (s), cold / warm cache:" in table
    overview = next(line.split() for line in lines if line.startswith("short_runs "))
    assert overview[:2] == ["short_runs", "10"] and overview[3] == overview[6] == "/"
    # the time per run() call: only the model with many calls, numba ÷ numpy
    start = lines.index("Time per run() call (ms), many short runs, warm (÷numpy):")
    calls = lines[start + 2:lines.index("", start + 2)]
    assert calls[0].split() == ["model", "size", "numpy", "numba"]
    (row,) = [line.split() for line in calls[1:]]
    assert row[:2] == ["short_runs", "10"] and len(row) == 5
    assert float(row[4].strip("()")) == pytest.approx(float(row[3]) / float(row[2]), rel=0.1)
    assert "Models with many run() calls (short_runs: 5 calls per phase)" in table
    header = next(line for line in lines if line.startswith("model ") and " cache " in line)
    for title in ("import s", "build s", "1st run s", "2nd run s", "µs/step", "ms/run()",
                  "peak MB", "result÷numpy", "step÷numpy", "step pred÷meas",
                  "compile pred÷meas"):
        assert title in header
    rows = [line.split() for line in lines
            if len(line.split()) > 4 and line.split()[2] in ("cold", "warm")]
    assert sorted((r[0], r[2], r[3]) for r in rows) == sorted(
        (m, c, t) for m in ("short_runs", "cuba_det") for c in ("cold", "warm")
        for t in ("numpy", "numba"))
    assert "Skipped target cpp_standalone" in table
    markdown = (out / "summary.md").read_text()
    assert markdown.count("| short_runs | 10 | warm | numba |") == 1
    assert (out / "cold_vs_warm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_script_is_declared():
    scripts = metadata.entry_points(group="console_scripts")
    (script,) = [s for s in scripts if s.name == "brian2-numba-bench"]
    assert script.load() is main


@pytest.mark.parametrize("args, message", [
    (["-m", "cuba,nope"], "Unknown model 'nope'. Valid models are: cuba, cuba_det"),
    (["-t", "cuda"], "Unknown target 'cuda'. Valid targets are: numpy, cython, numba, "
                     "numba_per_object, numba_threads, cpp_standalone, cpp_standalone_threads."),
    (["--threads", "0"], "--threads must be at least 1, not 0."),
    (["--cache", "hot"], "Unknown cache state 'hot'. Valid cache states are: cold, warm."),
    (["-s", "tiny=1.5"], "Invalid size '1.5'"),
    (["-m", "tiny", "-s", "cuba=100"], "--sizes for model 'cuba', which is not selected"),
    (["-t", "numpy", "--baseline", "cython"], "Baseline 'cython' is not among"),
])
def test_bad_input_is_explained(args, message, capsys):
    with pytest.raises(SystemExit) as raised:
        main(args)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_dry_run_shows_sizes_and_protocol(capsys):
    assert main(["--dry-run", "-m", "cuba", "-t", "numpy,numba", "-s", "cuba=2e3,1000"]) == 0
    jobs = [line.split()[:4] for line in capsys.readouterr().out.splitlines()]
    assert jobs == [
        ["cuba", "1000", "numpy", "cold"], ["cuba", "1000", "numpy", "warm"],
        ["cuba", "2000", "numpy", "warm"],
        ["cuba", "1000", "numba", "cold"], ["cuba", "1000", "numba", "warm"],
        ["cuba", "2000", "numba", "prime"], ["cuba", "2000", "numba", "warm"],
    ]


def test_short_runs_model_and_its_plan(capsys):
    """The many-short-runs model: 50 x run(1 ms), 5 with --quick; in --list and --dry-run."""
    model = MODELS["short_runs"]
    assert (model.runs, model.duration_ms, model.quick_runs, model.quick_duration_ms) == (
        50, 1, 5, 1)
    assert model.deterministic and model.sizes == (10,)
    assert all(m.runs == m.quick_runs == 1 for m in MODELS.values() if m is not model)
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "50 x 1 ms runs, time per run() call (quick: 5 x 1 ms)" in listed
    assert "1000 ms per run (quick: 100)" in listed  # tiny: as before
    assert main(["--dry-run", "-m", "short_runs,tiny", "-t", "numba", "--cache", "warm"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "short_runs 10 numba prime repeat=0 duration=1ms runs=50",
        "short_runs 10 numba warm repeat=0 duration=1ms runs=50",
        "tiny 10 numba prime repeat=0 duration=1000ms",
        "tiny 10 numba warm repeat=0 duration=1000ms"]
    assert main(["--dry-run", "--quick", "-m", "short_runs", "-t", "numpy", "-d", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "short_runs 10 numpy cold repeat=0 duration=2ms runs=5",
        "short_runs 10 numpy warm repeat=0 duration=2ms runs=5"]
    (group,) = plan(["short_runs"], {"short_runs": [10]}, ["numba"], ["cold"], 1,
                    {"short_runs": 1}, 1, {"short_runs": 7})
    assert [job.runs for job in group] == [7]


def test_plan_without_cold_primes_every_size():
    (group,) = plan(["tiny"], {"tiny": [20, 10]}, ["cython"], ["warm"], 1, {"tiny": 5}, 1)
    assert [(job.n, job.cache) for job in group] == [
        (10, "prime"), (10, "warm"), (20, "prime"), (20, "warm")]


def _record(target, spike_hash="abc", mean=-0.05, first_result=2.0, model="tiny", **extra):
    return dict(model=model, n=10, target=target, cache="warm", repeat=0, status="ok",
                spike_hash=spike_hash, mean=mean, mean_of="v", synapses=90, spikes=5,
                t_first_result=first_result, t_per_step=1e-5, **extra)


def test_report_flags_a_wrong_answer_and_computes_ratios():
    records = [_record("numpy"), _record("cython", first_result=4.0),
               _record("numba", spike_hash="xyz", first_result=1.0),
               _record("cpp_standalone", mean=-0.05 * (1 + 1e-6))]
    found = {c["target"]: c["check"] for c in checks(records)}
    assert found == {"numpy": "reference", "cython": "same as numpy",
                     "numba": "DIFFERS: spikes", "cpp_standalone": "DIFFERS: mean"}
    assert check_failed(records)
    assert not check_failed(records[:2])
    ratios = {r["target"]: r["t_first_result_ratio"] for r in summarize(records, "cython")}
    assert ratios == {"numpy": 0.5, "cython": 1.0, "numba": 0.25, "cpp_standalone": 0.5}


def test_report_time_per_run_call_is_divided_by_numpy():
    """The 'ms per run() call' table: ratios to numpy whatever the baseline; the
    standalone note says what its number means."""
    def record(target, per_call):
        return _record(target, model="short_runs", runs=50, t_per_run_call=per_call)

    records = [record("numpy", 0.08), record("cython", 0.16), record("numba", 0.02),
               record("cpp_standalone", 0.01), _record("numba", model="spatial")]  # 1 call
    rows = {(r["model"], r["target"]): r for r in summarize(records, "cython")}
    assert rows[("short_runs", "numba")]["t_per_run_call_ratio"] == pytest.approx(0.25)
    assert rows[("short_runs", "cython")]["t_per_run_call_ratio"] == pytest.approx(2)
    assert rows[("short_runs", "numba")]["t_per_step_ratio"] == pytest.approx(1)  # ÷cython
    assert rows[("spatial", "numba")]["t_per_run_call"] is None
    text = render(records, "cython")
    lines = text.splitlines()
    start = lines.index("Time per run() call (ms), many short runs, warm (÷numpy):")
    assert lines[start + 2].split() == ["model", "size", "numpy", "cython", "numba",
                                        "cpp_standalone"]
    assert lines[start + 3].split() == ["short_runs", "10", "80", "160", "(2)",
                                        "20", "(0.25)", "10", "(0.12)"]
    assert lines[start + 4] == ""  # spatial has no such row
    assert "Models with many run() calls (short_runs: 50 calls per phase)" in text
    assert "cpp_standalone, many run() calls: all calls go into one build" in text
    assert "ms/run()" in text
    # without such a model: no table, no column, no notes
    text = render([_record("numpy"), _record("numba")], "numpy")
    assert "run() call (ms)" not in text and "many run() calls" not in text
    assert "ms/run()" not in text


def test_report_random_models_and_failures():
    records = [_record("numpy", model="cuba"), _record("numba", model="cuba", spike_hash="q"),
               dict(_record("cython", model="cuba"), status="error", error="boom")]
    found = {c["target"]: c["check"] for c in checks(records)}
    assert found == {"numpy": "random", "numba": "random", "cython": "failed"}
    assert check_failed(records)


_WITHOUT_EXTRAS = """
import sys
sys.modules["tqdm"] = sys.modules["matplotlib"] = None  # as if not installed
from brian2_numba.bench.cli import main
assert main(["--list"]) == 0
assert main(["--report", sys.argv[1], "-o", sys.argv[2]]) == 0
"""


def test_list_and_report_need_neither_tqdm_nor_matplotlib(tmp_path):
    """A plain install's console script works; without matplotlib it says which extra."""
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(_record(t)) + "\n" for t in ("numpy", "numba")))
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS, str(results), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cuba_det" in proc.stdout
    assert (tmp_path / "summary.txt").exists()
    assert "pip install 'brian2-numba[bench]', or pass --no-plots" in proc.stderr


@pytest.mark.parametrize("threads", [2, 1])
def test_sync_cost_measures_regions_and_barriers(threads):
    """``python -m brian2_numba.bench.sync_cost``, in a process of its own (its parallel
    regions start OpenMP, which a forked test process could not use after): both
    forms with 2 threads, and a clear error with fewer."""
    proc = subprocess.run(
        [sys.executable, "-m", "brian2_numba.bench.sync_cost", "--steps", "200", "-r", "1"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "NUMBA_NUM_THREADS": str(threads)})
    if threads < 2:
        assert proc.returncode != 0
        assert "fewer than 2 threads" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1]
            for line in proc.stdout.splitlines() if line.startswith("| ") and "form" not in line}
    assert set(rows) == {"parallel regions", "barriers in one region"}
    for cells in rows.values():  # (how long they take is the tool's output, not asserted)
        assert len(cells) == 3 and all(float(cell) == float(cell) for cell in cells)
