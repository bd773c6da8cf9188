"""bench/: the workloads' implementations agree (in-process, on their check runs), and
run.py lists them.  Timing itself is never asserted here (bench/run.py measures it)."""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")


@pytest.fixture(scope="module")
def harness():
    pytest.importorskip("sklearn")                 # moons and digits come from scikit-learn
    sys.path.insert(0, BENCH)
    try:
        import harness as h
        importlib.import_module("workloads")
        yield h
    finally:
        sys.path.remove(BENCH)


def available(impl):
    if impl == "compiled" and os.environ.get("FASTGRAD_TEST_PURE_ONLY") == "1":
        return False                  # no compiled core on this machine (conftest.py)
    module = {"jax": "jax", "micrograd": "micrograd", "torch": "torch"}.get(impl)
    if module is None:
        return True
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


# (workload, implementations to compare with the reference); the pure-Python
# core's rows are left to the cores' own tests (they are slow on moons_scalar)
CASES = [
    ("perop", ["compiled", "torch"]),
    ("mlp231", ["compiled", "torch"]),
    ("digits", ["compiled", "torch"]),
    ("moons_scalar", ["compiled", "replay"]),
    ("moons_vec", ["compiled", "replay", "torch", "jax"]),
    ("moons_raw", ["compiled", "torch"]),
    ("bigbatch", ["compiled", "gemm", "torch"]),
    # torch is these three's reference (computed once by reference_value), so
    # only the compiled core is compared with it
    ("cnn", ["compiled"]),
    ("charlm", ["compiled"]),
    ("lstm", ["compiled"]),
]


@pytest.mark.parametrize("name,impls", CASES, ids=[c[0] for c in CASES])
def test_implementations_agree(harness, name, impls):
    workload = harness.WORKLOADS[name]
    size = workload.sizes[0]
    if workload.reference == "micrograd" or not available(workload.reference):
        pytest.skip("the reference implementation is not installed")
    expected = harness.reference_value(workload, size)
    for impl in impls:
        if not available(impl):
            continue
        step, result = workload.runners[impl](size)
        step()                                      # one timed-style step runs
        got = np.asarray(result(), dtype=np.float64)
        np.testing.assert_allclose(got, expected, rtol=workload.rtol, atol=workload.atol,
                                   err_msg="%s: %s against %s" % (name, impl, workload.reference))


# ops: every op at 4x4 on both cores and PyTorch, and the ops that have a
# batched form at 8x32x64 on the compiled core (the whole table runs in bench/)
def ops_rows(harness):
    rows = [(size, ["compiled", "python", "torch"]) for size in harness.WORKLOADS["ops"].sizes
            if size[1] == "4x4"]
    rows += [(size, ["compiled"]) for size in harness.WORKLOADS["ops"].sizes
             if size[1] in ("8x32x64", "256x10")]
    return rows


def test_ops_implementations_agree(harness):
    workload = harness.WORKLOADS["ops"]
    checked = 0
    for size, impls in ops_rows(harness):
        expected = harness.reference_value(workload, size)
        for impl in impls:
            if not available(impl):
                continue
            run = workload.runners[impl]
            if impl in ("compiled", "python"):
                run = in_core(impl, run)
            step, result = run(size)
            step()
            step()                                  # a second step: gradients were reset
            got = np.asarray(result(), dtype=np.float64)
            np.testing.assert_allclose(got, expected, rtol=workload.rtol, atol=workload.atol,
                                       err_msg="ops %s: %s against numpy" % (size, impl))
            checked += 1
    cores = sum(available(core) for core in ("compiled", "python"))
    assert checked >= cores * sum(size[1] == "4x4" for size in workload.sizes)


def in_core(backend, runner):
    """Run a fastgrad runner on the given core (the runner imports `fastgrad`)."""
    from conftest import load_fastgrad, resolving_to

    def run(size):
        with resolving_to(load_fastgrad(backend)):
            return runner(size)
    return run


def test_ops_covers_the_api(harness):
    """Each op of API.md's operation list has at least one row."""
    names = " ".join(size[0] for size in harness.WORKLOADS["ops"].sizes)
    for spelling in ("a + b", "a - b", "a * b", "a / b", "a + row", "a * col", "** 2", "** 0.5",
                     "-x", "@ w", "@ w.T", "(batched)", ".exp()", ".log()", ".sqrt()", ".abs()",
                     ".sin()", ".cos()", ".tanh()", ".sigmoid()", ".relu()", "leaky_relu",
                     "clamp", "gelu", "silu", ".sum()", ".sum(1)", ".mean(", ".max(1)",
                     ".min(0)", ".var(0)", ".std(1)", ".logsumexp(1)", ".softmax(-1)",
                     "log_softmax", ".reshape(", ".view(", ".T", ".permute(", ".transpose(",
                     ".expand(", ".unsqueeze(", ".squeeze(", "x[1:3]", "x[idx]", "x[mask]",
                     "fg.cat", "fg.stack", "fg.where", "fg.maximum", "a > b", "<=",
                     "cross_entropy", "mse_loss", "F.linear"):
        assert spelling in names, spelling


def test_ops_child_serves_several_rows(harness):
    """The shared-child protocol: one process times rows one after another."""
    sizes = [["a + b", "4x4"], ["x.exp()", "4x4"]]
    child = subprocess.Popen([sys.executable, os.path.join(BENCH, "run.py"), "--child", "ops",
                              "numpy", "--rows", "--min-time", "0.001", "--warmup", "0"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    commands = "".join("row %s\ntime\ntime\ndone\n" % json.dumps(s) for s in sizes)
    out, _ = child.communicate(commands, timeout=120)
    lines = [json.loads(line) for line in out.splitlines()]
    assert child.returncode == 0
    assert lines[0]["status"] == "idle"
    finals = [line for line in lines if line.get("status") == "ok"]
    assert len(finals) == 2 and all(len(f["times"]) == 2 for f in finals)
    assert [line.get("status") for line in lines].count("ready") == 2


def test_group_targets_report_every_row_and_the_median(harness):
    import report
    target_every = harness.GroupTarget("compiled", "torch", 5, "small", lambda size: True)
    target_median = harness.GroupTarget("compiled", "torch", 3, "small", lambda size: True,
                                        "median")
    rows = [("op%d" % i, ratio) for i, ratio in enumerate((2.0, 4.0, 8.0))]
    by_key = {}
    for label, ratio in rows:
        for impl, median in (("compiled", 1.0), ("torch", ratio)):
            by_key[("w", label, impl)] = {"impl": impl, "status": "ok", "value": median,
                                          "correct": True}
    sizes = [(label, label) for label, _ in rows]
    every = report._group_target(target_every, "w", sizes, by_key)
    median = report._group_target(target_median, "w", sizes, by_key)
    assert every["verdict"] == "FAIL" and "2 of 3 rows below 5x" in every["why"]
    assert every["why"].index("op0") < every["why"].index("op1")      # worst first
    assert median["verdict"] == "PASS" and median["ratio"] == 4.0


def test_every_workload_has_targets_and_known_impls(harness):
    for name in ("perop", "mlp231", "digits", "moons_scalar", "moons_vec", "moons_raw",
                 "bigbatch", "cnn", "charlm", "lstm", "ops"):
        workload = harness.WORKLOADS[name]
        assert workload.targets or workload.group_targets, name
        assert "compiled" in workload.runners and "python" in workload.runners


def test_run_py_lists_the_workloads():
    out = subprocess.run([sys.executable, os.path.join(BENCH, "run.py"), "--list"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in ("perop", "mlp231", "digits", "moons_scalar", "moons_vec", "moons_raw",
                 "bigbatch", "cnn", "charlm", "lstm", "ops"):
        assert name in out.stdout
