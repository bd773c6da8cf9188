"""bench/: the workloads' implementations agree (in-process, on their check runs), and
run.py lists them.  Timing itself is never asserted here (bench/run.py measures it)."""
import importlib
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


def test_every_workload_has_targets_and_known_impls(harness):
    for name in ("perop", "mlp231", "digits", "moons_scalar", "moons_vec", "bigbatch", "cnn",
                 "charlm", "lstm"):
        workload = harness.WORKLOADS[name]
        assert workload.targets, name
        assert "compiled" in workload.runners and "python" in workload.runners


def test_run_py_lists_the_workloads():
    out = subprocess.run([sys.executable, os.path.join(BENCH, "run.py"), "--list"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in ("perop", "mlp231", "digits", "moons_scalar", "moons_vec", "bigbatch", "cnn",
                 "charlm", "lstm"):
        assert name in out.stdout
