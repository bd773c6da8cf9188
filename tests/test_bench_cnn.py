"""bench/workloads/cnn.py: fastgrad's cores compute the step PyTorch computes (no timing here)."""
import importlib
import os
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.fixture(scope="module")
def harness():
    pytest.importorskip("sklearn")                 # the digits come from scikit-learn
    pytest.importorskip("torch")                   # the reference implementation
    sys.path.insert(0, BENCH)
    try:
        import harness as h
        importlib.import_module("workloads")
        yield h
    finally:
        sys.path.remove(BENCH)


def test_cnn_workload_agrees_with_torch(harness):
    workload = harness.WORKLOADS["cnn"]
    assert workload.targets and "compiled" in workload.runners and "python" in workload.runners
    size = workload.sizes[0]
    expected = harness.reference_value(workload, size)
    step, result = workload.runners["compiled"](size)
    step()
    got = np.asarray(result(), dtype=np.float64)
    np.testing.assert_allclose(got, expected, rtol=workload.rtol, atol=workload.atol)
