"""Scale-out: hyper-parameter sweeps and the data-parallel benchmark.

Whole training functions run on a Dask cluster's worker processes train
exactly as they do in this process, on both cores: one LocalCluster per core
(2 worker processes, 1 thread each), started once and reused; the workers
get FASTGRAD_BACKEND of the core under test and report the core they ran.
Training in joblib's loky workers is checked in tests/test_pickle.py (models
and optimizers sent, trained, sent back); here the two sweep examples run.

The `ddp` workload of bench/ runs under mpiexec -n 2: its check equals the
one-process run's, and distributed.ReductionTimer counted what was sent.
"""
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import dask.distributed as dask_distributed
except ImportError:
    dask_distributed = None

needs_dask = pytest.mark.skipif(
    dask_distributed is None,
    reason="dask.distributed is not installed (python -m pip install 'dask[distributed]')")

# (learning rate, width): four trainings, two per worker
RUNS = [(0.05, 16), (0.2, 16), (0.05, 48), (0.2, 48)]
STEPS = 12


def make_data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((96, 64))
    y = rng.integers(0, 10, 96)
    return x, y


def train_run(fg, lr, width, steps):
    """A whole training in float64: init from a seed, shuffled mini-batches, SGD with momentum.

    Returns the loss of every step and the final parameters.
    """
    nn = fg.nn
    x, y = make_data()
    fg.manual_seed(11)
    model = nn.Sequential(nn.Linear(64, width, dtype=np.float64), nn.Tanh(),
                          nn.Linear(width, 10, dtype=np.float64))
    opt = fg.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    loader = fg.data.DataLoader(fg.data.TensorDataset(x, y), batch_size=16, shuffle=True,
                                seed=3)
    losses = []
    while len(losses) < steps:
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return np.array(losses), [p.numpy().copy() for p in model.parameters()]


def train_in_worker(lr, width, steps):
    """The task sent to a worker: import fastgrad there, train, return the core and numbers."""
    import fastgrad
    return fastgrad.backend(), os.getpid(), train_run(fastgrad, lr, width, steps)


class Clusters:
    """At most one LocalCluster alive at a time, for the core asked last."""

    def __init__(self):
        self.core = self.cluster = self.client = None

    def client_for(self, fg):
        if self.core != fg.backend():
            self.close()
            home = os.path.dirname(os.path.dirname(os.path.abspath(fg.__file__)))
            env = {"FASTGRAD_BACKEND": fg.backend(),
                   # the workers import the copy of fastgrad under test (source tree or wheel)
                   "PYTHONPATH": os.pathsep.join(
                       p for p in (home, os.environ.get("PYTHONPATH")) if p)}
            self.cluster = dask_distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                env=env)
            self.client = dask_distributed.Client(self.cluster)
            self.core = fg.backend()
        return self.client

    def close(self):
        if self.client is not None:
            self.client.close()
            self.cluster.close()
        self.core = self.cluster = self.client = None


@pytest.fixture(scope="module")
def clusters():
    import cloudpickle
    # The tasks are this module's functions: send them by value, so the
    # workers need not import the test module.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    found = Clusters()
    try:
        yield found
    finally:
        found.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@needs_dask
def test_trainings_on_a_dask_cluster_equal_in_process(fg, clusters):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    client = clusters.client_for(fg)
    futures = [client.submit(train_in_worker, lr, width, STEPS, pure=False)
               for lr, width in RUNS]
    results = client.gather(futures, errors="raise")
    # Dask's workers run BLAS on one thread (OPENBLAS_NUM_THREADS=1 and the
    # like in their environment); the trainings here do too, so every matrix
    # product sums in the same order and the results agree bit for bit.
    with threadpoolctl.threadpool_limits(1):
        expected = [train_run(fg, lr, width, STEPS) for lr, width in RUNS]
    pids = set()
    for (core, pid, (losses, params)), (want_losses, want_params) in zip(results, expected):
        assert core == fg.backend()
        pids.add(pid)
        assert losses.dtype == np.float64 and len(losses) == STEPS
        np.testing.assert_array_equal(losses, want_losses)
        assert len(params) == len(want_params) == 4
        for got, want in zip(params, want_params):
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, want)
    assert os.getpid() not in pids
    # the runs differ from each other: the comparison above could have failed
    assert len({float(r[2][0][-1]) for r in results}) == len(RUNS)


def run_sweep_example(name, tmp_path, *args):
    """Run examples/NAME --quick --plot; returns (core, table rows as lists of words)."""
    pytest.importorskip("sklearn")               # the digits data
    pure = os.environ.get("FASTGRAD_TEST_PURE_ONLY") == "1"
    core = "python" if pure else "compiled"
    png = tmp_path / "sweep.png"
    env = dict(os.environ, FASTGRAD_BACKEND=core)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name),
                          "--quick", "--plot", str(png), *args],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()
            if line.split() and line.split()[-2:-1] == [core]]
    assert sorted((float(r[0]), int(r[1])) for r in rows) == [
        (0.03, 32), (0.03, 64), (0.1, 32), (0.1, 64)]
    accuracies = [float(r[4]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)       # best first
    assert max(accuracies) > 0.8                               # they did learn
    assert "4 trainings" in out.stdout
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "wrote" not in out.stdout
    else:
        assert png.stat().st_size > 10_000
    return core, rows


@needs_dask
def test_sweep_dask_example_quick(tmp_path):
    run_sweep_example("sweep_dask.py", tmp_path)


def test_sweep_joblib_example_quick_equals_in_process(tmp_path, monkeypatch):
    pytest.importorskip("joblib")
    core, rows = run_sweep_example("sweep_joblib.py", tmp_path, "--jobs", "2")
    # the same trainings here, on the same core, BLAS on one thread as in the workers
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from conftest import load_fastgrad, resolving_to
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples"))
    import sweep_dask
    with resolving_to(load_fastgrad(core)), threadpoolctl.threadpool_limits(1):
        for row in rows:
            here = sweep_dask.train_digits(float(row[0]), int(row[1]), int(row[2]))
            assert here["core"] == core
            assert row[3:5] == ["%.4f" % here["train_loss"], "%.4f" % here["val_accuracy"]]


# ---------------------------------------------------------------------------
# bench/'s ddp workload under mpiexec
# ---------------------------------------------------------------------------

def _mpiexec():
    import importlib.util
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed: pip install 'fastgrad[mpi]'")
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpi4py is installed but no mpiexec was found next to %s or on PATH"
                    % sys.executable)
    return found


def _bench_child(fg, impl, prefix=()):
    """One bench child, one short timing block; returns its final record."""
    home = os.path.dirname(os.path.dirname(os.path.abspath(fg.__file__)))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")}
    env.update(FASTGRAD_BACKEND=fg.backend(), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (home, env.get("PYTHONPATH")) if p))
    command = list(prefix) + [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--child",
                              "ddp", impl, "--size", '"digits"', "--repeats", "1",
                              "--warmup", "0", "--min-time", "0.001"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)       # mpiexec and its ranks
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(records) == 1, out                 # rank 1 never answers
    assert records[0]["status"] == "ok", records[0].get("error")
    return records[0]


@pytest.fixture(scope="module")
def bench_workloads():
    bench = os.path.join(ROOT, "bench")
    sys.path.insert(0, bench)
    try:
        import harness
        __import__("workloads")
        yield harness.WORKLOADS
    finally:
        sys.path.remove(bench)


def test_ddp_workload_two_ranks_equal_one(fg, same_copy, bench_workloads):
    pytest.importorskip("sklearn")
    mpiexec = _mpiexec()
    core = fg.backend()
    two = _bench_child(fg, core + "-2ranks", prefix=[mpiexec, "-n", "2"])
    assert two["info"]["backend"] == core and two["info"]["ranks"] == 2
    with same_copy():            # one process: this copy, no MPI
        step, result, notes = bench_workloads["ddp"].runners[core]("digits")
        step()
        want, one_notes = np.asarray(result()), notes()
    got = np.array(two["check"])
    assert got.shape == want.shape == (4 + 64 * 128 + 128 + 128 * 10 + 10,)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    notes = two["info"]["notes"]
    assert notes["ranks"] == 2 and notes["steps per epoch"] == 57
    # one float32 buffer of the four parameters' gradients and four counts per step
    assert notes["kB/allreduce"] == pytest.approx((64 * 128 + 128 + 128 * 10 + 10 + 4) * 4 / 1e3)
    assert 0 < notes["allreduce ms/step"] <= notes["reduction ms/step"]
    assert one_notes == {"ranks": 1, "steps per epoch": 57}      # one process sends nothing


def test_reduction_timer_nests_and_counts_nothing_in_one_process(fg):
    dist = fg.distributed
    nn = fg.nn
    model = dist.DistributedDataParallel(nn.Linear(3, 2, dtype=np.float64))
    outer = dist.ReductionTimer()
    with outer:
        assert dist._state.timer is outer
        with dist.ReductionTimer() as inner:
            assert dist._state.timer is inner
            model(fg.ones(4, 3, dtype=np.float64)).sum().backward()
        assert dist._state.timer is outer
    assert dist._state.timer is None
    # a world of 1 averages nothing, so nothing was timed
    assert (inner.reductions, inner.seconds, inner.allreduce_seconds, inner.nbytes) == (0, 0, 0, 0)
    assert model.module.weight.grad is not None
    assert "reductions=0" in repr(outer)
