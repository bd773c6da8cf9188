"""fastgrad.distributed: DistributedSampler shards (no MPI needed), the single-process
mode, and under `mpiexec -n 2` (tests/mpi_worker.py): data-parallel SGD and Adam
equal to one process on the whole batch, checkpoints that resume on any world size,
and a failing rank that ends the job instead of hanging it."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "mpi_worker.py")
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


# ---------------------------------------------------------------------------
# DistributedSampler
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 7, 10, 13])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_are_disjoint_and_cover_every_epoch(fg, n, replicas, drop_last):
    Sampler = fg.distributed.DistributedSampler
    data = list(range(n))
    for epoch in range(3):
        shards = []
        for r in range(replicas):
            sampler = Sampler(data, num_replicas=replicas, rank=r, shuffle=True, seed=4,
                              drop_last=drop_last)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
            assert len(shards[-1]) == len(sampler)
        sizes = {len(s) for s in shards}
        assert len(sizes) == 1                            # every rank the same count
        flat = [i for s in shards for i in s]
        if drop_last:
            assert len(flat) == len(set(flat)) == n - n % replicas   # disjoint, tail dropped
        else:
            assert set(flat) == set(data)                 # covered
            assert len(flat) == (n + (-n % replicas) if n else 0)
            distinct = [i for s in shards for i in s[:len(s) - 1]]  # padding sits at the end
            assert len(distinct) == len(set(distinct))


@pytest.mark.parametrize("n", [5, 10, 11])
@pytest.mark.parametrize("replicas", [2, 3, 4, 7])
@pytest.mark.parametrize("drop_last", [False, True])
def test_unshuffled_shards_match_torch(fg, n, replicas, drop_last):
    torch = pytest.importorskip("torch")
    data = list(range(n))
    for r in range(replicas):
        ours = fg.distributed.DistributedSampler(data, num_replicas=replicas, rank=r,
                                                 shuffle=False, drop_last=drop_last)
        theirs = torch.utils.data.DistributedSampler(data, num_replicas=replicas, rank=r,
                                                     shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs)
        assert len(ours) == len(theirs) and ours.total_size == theirs.total_size


def test_epochs_reshuffle_from_the_shared_seed(fg):
    Sampler = fg.distributed.DistributedSampler
    data = list(range(20))
    a = Sampler(data, num_replicas=2, rank=0, seed=3)
    b = Sampler(data, num_replicas=2, rank=0, seed=3)
    assert list(a) == list(b) and list(a) == list(a)   # same epoch, same order
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    # the documented source: np.random.default_rng(seed + epoch), rank r takes r, r + k, ...
    np.testing.assert_array_equal(list(a), np.random.default_rng(4).permutation(20)[0::2])
    assert list(Sampler(data, num_replicas=2, rank=0, seed=5)) != first


def test_sampler_plugs_into_the_loader(fg):
    x = np.arange(24, dtype=np.float64).reshape(12, 2)
    dataset = fg.utils.data.TensorDataset(x, np.arange(12))
    seen = []
    for r in range(3):
        sampler = fg.distributed.DistributedSampler(dataset, num_replicas=3, rank=r, seed=1)
        loader = fg.utils.data.DataLoader(dataset, batch_size=2, sampler=sampler)
        assert len(loader) == 2
        for xb, yb in loader:
            np.testing.assert_array_equal(xb.numpy(), x[yb.numpy()])
            seen.extend(yb.numpy().tolist())
    assert sorted(seen) == list(range(12))
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        fg.utils.data.DataLoader(dataset, sampler=sampler, shuffle=True)


def test_sampler_errors_and_defaults(fg):
    Sampler = fg.distributed.DistributedSampler
    with pytest.raises(ValueError, match=r"invalid rank 2.*\[0, 1\]"):
        Sampler(list(range(4)), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        Sampler(list(range(4)), num_replicas=0, rank=0)
    default = Sampler(list(range(4)))          # one process: the whole dataset
    assert default.num_replicas == 1 and default.rank == 0 and sorted(default) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------
# One process, no MPI
# ---------------------------------------------------------------------------

def _clean_env(fg, **extra):
    """This environment without launcher variables; children import the copy of
    fastgrad under test (a source tree or an installed wheel) on its core."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    home = os.path.dirname(os.path.dirname(os.path.abspath(fg.__file__)))
    env["PYTHONPATH"] = home + os.pathsep + env.get("PYTHONPATH", "")
    env["FASTGRAD_BACKEND"] = fg.backend()
    env.update(extra)
    return env


def test_single_process_needs_no_mpi4py(fg):
    code = ("import sys; sys.modules['mpi4py'] = None\n"      # as if not installed
            "import fastgrad.distributed as d\n"
            "print(d.init(), d.rank(), d.world_size(), 'mpi4py.MPI' in sys.modules, "
            "d.is_available())\n")
    out = subprocess.run([sys.executable, "-c", code], env=_clean_env(fg),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(0,", "1)", "0", "1", "False", "False"]
    # started by a launcher without mpi4py: a clear error, not N lone processes
    out = subprocess.run([sys.executable, "-c", code], env=_clean_env(
        fg, PMI_SIZE="2", PMI_RANK="0"),
        capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "mpi4py is not installed: pip install 'fastgrad[mpi]'" in out.stderr


def _model(fg, seed=0):
    fg.manual_seed(seed)
    return fg.nn.Sequential(fg.nn.Linear(3, 4, dtype=np.float64), fg.nn.Tanh(),
                            fg.nn.Linear(4, 2, dtype=np.float64))


def test_ddp_on_one_process_is_the_model(fg):
    dist = fg.distributed
    model = _model(fg)
    plain = _model(fg)
    ddp = dist.DistributedDataParallel(model)
    assert ddp.module is model
    assert list(ddp.state_dict()) == ["module." + k for k in model.state_dict()]
    assert [p is q for p, q in zip(ddp.parameters(), model.parameters())] == [True] * 4
    x = fg.tensor(np.random.default_rng(0).normal(size=(5, 3)))
    for net in (ddp, plain):
        net.zero_grad()
        (net(x) ** 2).mean().backward()
    for p, q in zip(model.parameters(), plain.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    with ddp.no_sync():
        assert ddp(x).shape == (5, 2)
    assert dist.average_metrics({"loss": 1.5}, weight=3) == {"loss": 1.5}
    assert dist.is_available() == fg_mpi_available()
    t = fg.tensor([1.0, 2.0])
    assert dist.all_reduce(t) is t and dist.broadcast(t) is t
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
    with pytest.raises(TypeError, match="nn.Module"):
        dist.DistributedDataParallel(lambda x: x)
    with pytest.raises(ValueError, match="device_ids must be None"):
        dist.DistributedDataParallel(_model(fg), device_ids=[0])
    with pytest.raises(ValueError, match="op must be"):
        dist.all_reduce(t, op="mean")


def test_buckets_follow_reverse_registration_order_and_the_cap(fg):
    dist = fg.distributed
    model = _model(fg)            # float64: 0.weight 96 B, 0.bias 32 B, 2.weight 64 B, 2.bias 16 B
    names = {id(p): n for n, p in model.named_parameters()}
    params = list(model.parameters())

    def layout(buckets):
        return [[names[id(p)] for p in b.params] for b in buckets], [b.last for b in buckets]

    # closed once a bucket holds the cap (80 B): the last layer first
    assert layout(dist._make_buckets(params, 80 / 2 ** 20)) == (
        [["2.bias", "2.weight"], ["0.bias", "0.weight"]], [False, True])
    assert layout(dist._make_buckets(params, 16 / 2 ** 20)) == (
        [["2.bias"], ["2.weight"], ["0.bias"], ["0.weight"]], [False, False, False, True])
    assert layout(dist._make_buckets(params, 25)) == (
        [["2.bias", "2.weight", "0.bias", "0.weight"]], [True])
    # one dtype per bucket
    odd = fg.nn.Linear(2, 2)                              # the default float32
    mixed = params + list(odd.parameters())
    names.update({id(odd.weight): "odd.weight", id(odd.bias): "odd.bias"})
    got = dist._make_buckets(mixed, 25)
    assert [b.dtype for b in got] == [np.float32, np.float64]
    assert layout(got)[0] == [["odd.bias", "odd.weight"],
                              ["2.bias", "2.weight", "0.bias", "0.weight"]]
    # on one process overlap changes nothing, and bad caps are refused
    ddp = dist.DistributedDataParallel(model, overlap=True, bucket_cap_mb=80 / 2 ** 20)
    plain = _model(fg)
    x = fg.tensor(np.random.default_rng(0).normal(size=(5, 3)))
    for net in (ddp, plain):
        (net(x) ** 2).mean().backward()
    for p, q in zip(model.parameters(), plain.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    for bad in (0, -1.0, "25", True):
        with pytest.raises(ValueError, match="bucket_cap_mb must be a positive number"):
            dist.DistributedDataParallel(_model(fg), overlap=True, bucket_cap_mb=bad)


def test_post_backward_registry(fg):
    """The callback Tensor.backward runs after the sweep: once, in its own thread,
    not for fg.grad; a single process never installs it."""
    dist = fg.distributed
    assert "backward" not in fg.Tensor.__dict__
    calls = []

    class Recorder:
        def _reduce_gradients(self):
            calls.append(threading.get_ident())

    dist._install_post_backward()
    try:
        x = fg.tensor([1.0, 2.0], requires_grad=True)
        (x * x).sum().backward()
        assert calls == []                               # nothing registered: nothing runs
        dist._post_backward.add(Recorder())
        fg.grad([(x * x).sum()], [x])
        assert calls == []
        other = threading.Thread(target=lambda: (x * 3).sum().backward())
        other.start()
        other.join()
        assert calls == []                               # another thread's backward
        (x * x).sum().backward()
        assert calls == [threading.get_ident()]
        (x * x).sum().backward()
        assert len(calls) == 1                           # one-shot
        np.testing.assert_allclose(x.grad.numpy(), [2 + 3 + 2 + 2, 4 + 3 + 4 + 4])
    finally:
        del fg.Tensor.backward
        dist._post_backward.pending.clear()


# ---------------------------------------------------------------------------
# Under mpiexec -n 2
# ---------------------------------------------------------------------------

def _mpiexec():
    if not fg_mpi_available():
        pytest.skip("mpi4py is not installed: pip install 'fastgrad[mpi]'")
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpi4py is installed but no mpiexec was found next to %s or on PATH "
                    "(pip install 'fastgrad[mpi]' installs mpich's)" % sys.executable)
    return found


def fg_mpi_available():
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


def _run(command, fg, timeout=90):
    """Run `command`; on timeout kill its whole process group (mpiexec and its ranks)."""
    proc = subprocess.Popen(command, env=_clean_env(fg),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("%s did not finish within %d s (a hang)" % (" ".join(command), timeout))
    return proc.returncode, out, err


def test_two_ranks_reproduce_one_process_and_checkpoints_resume(fg, tmp_path):
    mpiexec = _mpiexec()
    code, out, err = _run([mpiexec, "-n", "2", sys.executable, WORKER, "train", str(tmp_path)],
                          fg)
    assert code == 0, err
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2 and result["backend"] == fg.backend()
    for name in ("sgd", "adam"):
        # 2 ranks x batch 16 after 20 steps == 1 process x batch 32, from rank 0's weights
        assert result[name]["vs_single"] < 1e-10, result
        assert result[name]["between_ranks"] == 0.0
        assert result[name]["moved"] > 1e-2               # the comparison is not vacuous
    assert result["metrics"]["value"] == pytest.approx((1 * 1 + 2 * 2) / 3, abs=1e-15)
    # buffers: rank 0's at wrap time; then sent before training forwards, not under no_grad
    assert result["buffer_at_wrap"] == [[0.0] * 3, [0.0] * 3]
    assert result["buffer_after_eval"] == [[7.0] * 3, [0.0] * 3]
    assert result["buffer_after_train"] == [[7.0] * 3, [7.0] * 3]
    # no_sync: local gradients differ between ranks; the next synced backward averages
    assert result["no_sync_local_differs"] > 1e-3
    assert result["no_sync_vs_expected"] < 1e-12
    # rank 0's checkpoint, resumed by one process without MPI, continues the same run
    code, out, err = _run([sys.executable, WORKER, "resume", str(tmp_path)], fg)
    assert code == 0, err
    single = json.loads((tmp_path / "resumed_1.json").read_text())
    for a, b in zip(single, result["resumed"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    # and loads into an unwrapped model of this process (the names carry no "module.")
    fresh = fg.nn.Sequential(fg.nn.Linear(5, 8, dtype=np.float64), fg.nn.Tanh(),
                             fg.nn.Linear(8, 3, dtype=np.float64))
    saved = fg.load(str(tmp_path / "ckpt.fg"))
    fresh.load_state_dict(saved)
    for name, value in fresh.state_dict().items():
        np.testing.assert_array_equal(value, np.asarray(saved[name]))


def test_a_failing_rank_fails_the_job(fg):
    mpiexec = _mpiexec()
    code, out, err = _run([mpiexec, "-n", "2", sys.executable, WORKER, "fail"], fg,
                          timeout=60)
    assert code != 0
    assert "ValueError: rank 1 failed on purpose" in err
    assert "rank 0 passed the barrier" not in out


def test_fit_on_a_wrapped_model(fg, tmp_path):
    """Rank 0 alone shows progress; every rank records the same averaged history and
    stops at the same epoch."""
    mpiexec = _mpiexec()
    code, out, err = _run([mpiexec, "-n", "2", sys.executable, WORKER, "fit", str(tmp_path)],
                          fg, timeout=60)
    assert code == 0, err
    first, second = json.loads((tmp_path / "fit.json").read_text())
    assert first == second                                # identical floats on both ranks
    epochs = len(first["train_loss"])
    assert 1 <= epochs < 10                               # early stopping ended it
    assert "rank 0 stopped after %d epochs" % epochs in err
    assert "rank 1 stopped after %d epochs" % epochs in err
    assert err.count("epoch 1/10") == 1                   # one progress line: rank 0's


def test_overlap_sends_buckets_during_backward(fg, tmp_path):
    """overlap=True: buckets of a small bucket_cap_mb leave while backward still
    runs, and training equals one process on the whole batch; a backward that
    raises on one rank raises on both, leaves .grad as it was, and the job goes on."""
    mpiexec = _mpiexec()
    code, out, err = _run([mpiexec, "-n", "2", sys.executable, WORKER, "overlap",
                           str(tmp_path)], fg, timeout=120)
    assert code == 0, err
    result = json.loads((tmp_path / "overlap.json").read_text())
    assert result["world_size"] == 2 and result["backend"] == fg.backend()
    for name in ("sgd", "adam"):
        r = result[name]
        assert r["vs_single"] < 1e-10, result
        assert r["between_ranks"] == 0.0
        assert r["moved"] > 1e-2
        # three buckets a step, the first two started before the sweep's end
        assert r["buckets"] == 3 and r["reductions"] == 20
        assert r["sent"] == 3 * 20 and r["early"] == 2 * 20
    assert result["on_vs_off"] == 0.0          # same sums, same division: same bits
    for where, early in (("middle", [2, 1]), ("top", [2, 0])):
        r = result["fail_" + where]
        healthy, failing = r["messages"]
        assert failing == "ValueError: backward failed on purpose on rank 1"
        assert healthy.startswith("RuntimeError: DistributedDataParallel: backward raised "
                                  "on 1 other rank(s) of 2; the gradients are left as they "
                                  "were"), r
        assert r["unchanged"] == [0.0, 0.0]    # the no_sync gradients, values restored
        assert r["next_between_ranks"] == 0.0
        # rank 0 sent its early buckets; rank 1 failed after one (middle) or before any
        assert r["early"] == early
    assert result["no_sync_vs_expected"] < 1e-12
    assert result["unused"] == [[None, None], [None, None]]
