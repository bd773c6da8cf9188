"""Run by tests/test_distributed.py under `mpiexec -n 2` (not collected by pytest).

    mpiexec -n 2 python tests/mpi_worker.py train OUTDIR     # DDP vs one process
    python tests/mpi_worker.py resume OUTDIR                 # its checkpoint on 1 rank
    mpiexec -n 2 python tests/mpi_worker.py fit OUTDIR       # fg.fit on a wrapped model
    mpiexec -n 2 python tests/mpi_worker.py fail             # rank 1 raises
    mpiexec -n 2 python tests/mpi_worker.py overlap OUTDIR   # buckets sent during backward

The core comes from FASTGRAD_BACKEND in the environment.

train: on both ranks, DDP with a DistributedSampler (batch 16 per rank) runs
20 steps of SGD and of Adam; rank 0 also trains an unwrapped copy on batch 32
with the same global order and compares.  Then the SGD run's rank 0 writes a
checkpoint after 10 steps; a fresh DDP model, loaded on rank 0 only, resumes
for 10 steps.  Results go to OUTDIR/result.json (rank 0).
"""
import json
import os
import sys

import numpy as np

import fastgrad as fg
import fastgrad.distributed as dist
from fastgrad import nn
from fastgrad.utils.data import DataLoader, Sampler, TensorDataset

N, FEATURES, CLASSES = 320, 5, 3
GLOBAL_BATCH, SEED, STEPS = 32, 11, 20


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, FEATURES))
    y = rng.integers(0, CLASSES, size=N)
    return TensorDataset(x, y)


def make_model(seed):
    fg.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 8, dtype=np.float64), nn.Tanh(),
                         nn.Linear(8, CLASSES, dtype=np.float64))


def make_optimizer(name, params):
    if name == "sgd":
        return fg.optim.SGD(params, lr=0.1, momentum=0.9)
    if name == "plain":
        return fg.optim.SGD(params, lr=0.1)
    return fg.optim.Adam(params, lr=0.01)


class GlobalOrder(Sampler):
    """The order all ranks share in `epoch`: what DistributedSampler shards."""

    def __init__(self, epoch):
        self.order = np.random.default_rng(SEED + epoch).permutation(N)

    def __iter__(self):
        return iter(self.order.tolist())

    def __len__(self):
        return N


def train_ddp(model, opt, dataset, steps, first_step=0):
    sampler = dist.DistributedSampler(dataset, shuffle=True, seed=SEED)
    loader = DataLoader(dataset, batch_size=GLOBAL_BATCH // dist.world_size(), sampler=sampler)
    loss_fn = nn.CrossEntropyLoss()
    per_epoch = len(loader)
    step = first_step
    while step < first_step + steps:
        sampler.set_epoch(step // per_epoch)
        for i, (xb, yb) in enumerate(loader):
            if i < step % per_epoch:
                continue            # resuming mid-epoch: skip the batches already taken
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
            step += 1
            if step == first_step + steps:
                break


def train_single(model, opt, dataset, steps, first_step=0):
    loss_fn = nn.CrossEntropyLoss()
    per_epoch = N // GLOBAL_BATCH
    step = first_step
    while step < first_step + steps:
        loader = DataLoader(dataset, batch_size=GLOBAL_BATCH,
                            sampler=GlobalOrder(step // per_epoch))
        for i, (xb, yb) in enumerate(loader):
            if i < step % per_epoch:
                continue
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
            step += 1
            if step == first_step + steps:
                break


def params_of(model):
    return [p.numpy().tolist() for p in model.parameters()]


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def train(outdir):
    dist.init()
    dataset = data()
    result = {"world_size": dist.world_size(), "backend": fg.backend()}
    for name in ("sgd", "adam"):
        # Different initial weights on each rank: DDP must take rank 0's.
        model = dist.DistributedDataParallel(make_model(100 + dist.rank()))
        opt = make_optimizer(name, model.parameters())
        train_ddp(model, opt, dataset, STEPS)
        gathered = dist._state.comm.gather(params_of(model.module), root=0)
        if dist.rank() == 0:
            reference = make_model(100)
            train_single(reference, make_optimizer(name, reference.parameters()), dataset, STEPS)
            result[name] = {"vs_single": max_diff(gathered[0], params_of(reference)),
                            "between_ranks": max_diff(gathered[0], gathered[1]),
                            "moved": max_diff(params_of(make_model(100)), gathered[0])}
    # Checkpoint on rank 0 after 10 steps; resume on a fresh model loaded on rank 0 only.
    path = os.path.join(outdir, "ckpt.fg")
    model = dist.DistributedDataParallel(make_model(100))
    train_ddp(model, make_optimizer("plain", model.parameters()), dataset, 10)
    if dist.rank() == 0:
        fg.save(model.module.state_dict(), path)
    dist.barrier()
    fresh = make_model(200 + dist.rank())
    if dist.rank() == 0:
        fresh.load_state_dict(fg.load(path))
    resumed = dist.DistributedDataParallel(fresh)
    train_ddp(resumed, make_optimizer("plain", resumed.parameters()), dataset, 10, first_step=10)
    assert list(model.state_dict()) == ["module." + k for k in fresh.state_dict()]
    result_extra = buffers_and_no_sync(dataset)
    metrics = dist.average_metrics({"value": float(dist.rank() + 1)}, weight=dist.rank() + 1)
    if dist.rank() == 0:
        result["resumed"] = params_of(resumed.module)
        result["metrics"] = metrics
        result.update(result_extra)
        with open(os.path.join(outdir, "result.json"), "w") as f:
            json.dump(result, f)


class WithBuffer(nn.Module):
    """A model with one buffer, listed by named_buffers as nn.Module's buffers are."""

    def __init__(self, inner, value):
        super().__init__()
        self.inner = inner
        self.running = fg.tensor(np.full(3, value, dtype=np.float64))

    def named_buffers(self):
        yield "running", self.running

    def forward(self, x):
        return self.inner(x)


def buffers_and_no_sync(dataset):
    """Buffers follow rank 0 at wrap time and before each training forward only;
    gradients accumulated under no_sync are averaged by the next synced backward."""
    comm = dist._state.comm
    model = WithBuffer(make_model(100), float(dist.rank()))
    ddp = dist.DistributedDataParallel(model)
    at_wrap = model.running.numpy().tolist()
    if dist.rank() == 0:
        model.running.data[...] = 7.0
    x, y = dataset.arrays
    xb = fg.tensor(x[:4])
    with fg.no_grad():
        ddp(xb)
    after_eval = model.running.numpy().tolist()
    ddp(xb)
    after_train = model.running.numpy().tolist()
    # no_sync: local accumulation over two halves, then one synced backward
    loss_fn = nn.CrossEntropyLoss()
    mine = np.arange(dist.rank() * 8, dist.rank() * 8 + 8)
    ddp.zero_grad()
    with ddp.no_sync():
        loss_fn(ddp(fg.tensor(x[mine[:4]])), fg.tensor(y[mine[:4]])).backward()
    local = [p.grad.numpy().copy() for p in model.parameters()]
    loss_fn(ddp(fg.tensor(x[mine[4:]])), fg.tensor(y[mine[4:]])).backward()
    synced = [p.grad.numpy() for p in model.parameters()]
    reference = make_model(100)
    for half in (np.arange(0, 4), np.arange(4, 8), np.arange(8, 12), np.arange(12, 16)):
        (loss_fn(reference(fg.tensor(x[half])), fg.tensor(y[half])) * 0.5).backward()
    expected = [p.grad.numpy() for p in reference.parameters()]
    gathered = comm.gather((at_wrap, after_eval, after_train, local, synced), root=0)
    if dist.rank() != 0:
        return {}
    return {
        "buffer_at_wrap": [g[0] for g in gathered],
        "buffer_after_eval": [g[1] for g in gathered],
        "buffer_after_train": [g[2] for g in gathered],
        "no_sync_local_differs": max_diff(gathered[0][3], gathered[1][3]),
        "no_sync_vs_expected": max(max_diff(g[4], expected) for g in gathered),
    }


def resume(outdir):
    """The checkpoint of `train`, resumed on however many ranks this run has."""
    dist.init()
    fresh = make_model(300)
    if dist.rank() == 0:
        fresh.load_state_dict(fg.load(os.path.join(outdir, "ckpt.fg")))
    model = dist.DistributedDataParallel(fresh)
    train_ddp(model, make_optimizer("plain", model.parameters()), data(), 10, first_step=10)
    if dist.rank() == 0:
        with open(os.path.join(outdir, "resumed_%d.json" % dist.world_size()), "w") as f:
            json.dump(params_of(model.module), f)


def fit(outdir):
    """fg.fit on a wrapped model: the history each rank sees, and what it printed."""
    dist.init()
    dataset = data()
    train_sampler = dist.DistributedSampler(dataset, seed=SEED)
    train = DataLoader(dataset, batch_size=GLOBAL_BATCH // dist.world_size(),
                       sampler=train_sampler)
    val_set = TensorDataset(dataset.arrays[0][:90], dataset.arrays[1][:90])
    val = DataLoader(val_set, batch_size=7,
                     sampler=dist.DistributedSampler(val_set, shuffle=False))
    model = dist.DistributedDataParallel(make_model(100 + dist.rank()))
    opt = make_optimizer("sgd", model.parameters())
    stop = fg.EarlyStopping(patience=1, monitor="val_accuracy", mode="max")
    history = fg.fit(model, nn.CrossEntropyLoss(), opt, train, epochs=10, val_loader=val,
                     metrics=[fg.training.accuracy], early_stopping=stop, progress=True)
    print("rank %d stopped after %d epochs" % (dist.rank(), len(history)), file=sys.stderr)
    histories = dist._state.comm.gather(dict(history.history), root=0)
    if dist.rank() == 0:
        with open(os.path.join(outdir, "fit.json"), "w") as f:
            json.dump(histories, f)


def fail():
    dist.init()
    if dist.rank() == 1:
        raise ValueError("rank 1 failed on purpose")
    dist.barrier()          # rank 0 would wait here forever without the abort
    print("rank 0 passed the barrier")


# ---------------------------------------------------------------------------
# overlap=True: buckets reduced while backward runs
# ---------------------------------------------------------------------------

# 104 bytes: with float64 the deep model's (bias, weight) pairs make three
# buckets, of which the first two are sent before the sweep ends (the last one
# carries the failure count and waits for the end).
SMALL_BUCKETS_MB = 104 / 2 ** 20


def make_deep_model(seed):
    fg.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 8, dtype=np.float64), nn.Tanh(),
                         nn.Linear(8, 8, dtype=np.float64), nn.Tanh(),
                         nn.Linear(8, CLASSES, dtype=np.float64))


class FailOnRank(fg.Function):
    """Identity whose backward raises on one rank: a backward that fails midway."""
    rank = None

    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, g):
        if dist.rank() == FailOnRank.rank:
            raise ValueError("backward failed on purpose on rank %d" % dist.rank())
        return g


class Middle(nn.Module):
    """deep model with FailOnRank between its second and third layer (or on the loss)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        h = self.inner[1](self.inner[0](x))
        h = FailOnRank.apply(self.inner[3](self.inner[2](h)))
        return self.inner[4](h)


def grads_of(model):
    return [None if p.grad is None else p.grad.numpy().tolist() for p in model.parameters()]


def overlap(outdir):
    dist.init()
    comm = dist._state.comm
    dataset = data()
    result = {"world_size": dist.world_size(), "backend": fg.backend()}
    # 1. 2 ranks x 16 with overlap == 1 process x 32, SGD and Adam, 20 steps
    for name in ("sgd", "adam"):
        model = dist.DistributedDataParallel(make_deep_model(100 + dist.rank()), overlap=True,
                                             bucket_cap_mb=SMALL_BUCKETS_MB)
        opt = make_optimizer(name, model.parameters())
        with dist.ReductionTimer() as timer:
            train_ddp(model, opt, dataset, STEPS)
        gathered = comm.gather(params_of(model.module), root=0)
        if dist.rank() == 0:
            reference = make_deep_model(100)
            train_single(reference, make_optimizer(name, reference.parameters()), dataset, STEPS)
            result[name] = {"vs_single": max_diff(gathered[0], params_of(reference)),
                            "between_ranks": max_diff(gathered[0], gathered[1]),
                            "moved": max_diff(params_of(make_deep_model(100)), gathered[0]),
                            "buckets": len(model._buckets), "reductions": timer.reductions,
                            "sent": timer.buckets, "early": timer.early_buckets}
    # 2. overlap on and off: the same averaged gradients, bit for bit
    x, y = dataset.arrays
    mine = slice(dist.rank() * 16, dist.rank() * 16 + 16)
    xb, yb = fg.tensor(x[mine]), fg.tensor(y[mine])
    loss_fn = nn.CrossEntropyLoss()
    grads = {}
    for flag in (False, True):
        model = dist.DistributedDataParallel(make_deep_model(7), overlap=flag,
                                             bucket_cap_mb=SMALL_BUCKETS_MB)
        loss_fn(model(xb), yb).backward()
        grads[flag] = grads_of(model)
    result["on_vs_off"] = max_diff(grads[False], grads[True])
    # 3. a backward that raises on rank 1: on both ranks the error, .grad as before
    #    (here: gradients accumulated under no_sync, so restoring means values too),
    #    and the next step still matches (no collective left unmatched)
    for where in ("middle", "top"):
        model = dist.DistributedDataParallel(Middle(make_deep_model(7)), overlap=True,
                                             bucket_cap_mb=SMALL_BUCKETS_MB)
        with model.no_sync():
            loss_fn(model(xb), yb).backward()
        before = grads_of(model)
        FailOnRank.rank = 1
        message = None
        with dist.ReductionTimer() as timer:
            try:
                out = model(xb)
                if where == "top":
                    out = FailOnRank.apply(out)       # fails before any parameter is final
                loss_fn(out, yb).backward()
            except (ValueError, RuntimeError) as exc:
                message = "%s: %s" % (type(exc).__name__, exc)
        FailOnRank.rank = None
        unchanged = max_diff(before, grads_of(model))
        model.zero_grad()
        loss_fn(model(xb), yb).backward()
        gathered = comm.gather((message, unchanged, grads_of(model), timer.early_buckets),
                               root=0)
        if dist.rank() == 0:
            result["fail_" + where] = {
                "messages": [g[0] for g in gathered], "unchanged": [g[1] for g in gathered],
                "next_between_ranks": max_diff(gathered[0][2], gathered[1][2]),
                "early": [g[3] for g in gathered]}
    # 4. no_sync then a synced backward, and a parameter no forward uses
    model = WithBuffer(make_model(100), float(dist.rank()))
    model.unused = nn.Linear(2, 2, dtype=np.float64)
    ddp = dist.DistributedDataParallel(model, overlap=True, bucket_cap_mb=SMALL_BUCKETS_MB)
    ddp.zero_grad()
    mine = np.arange(dist.rank() * 8, dist.rank() * 8 + 8)
    with ddp.no_sync():
        loss_fn(ddp(fg.tensor(x[mine[:4]])), fg.tensor(y[mine[:4]])).backward()
    loss_fn(ddp(fg.tensor(x[mine[4:]])), fg.tensor(y[mine[4:]])).backward()
    synced = grads_of(model.inner)
    reference = make_model(100)
    for half in (np.arange(0, 4), np.arange(4, 8), np.arange(8, 12), np.arange(12, 16)):
        (loss_fn(reference(fg.tensor(x[half])), fg.tensor(y[half])) * 0.5).backward()
    gathered = comm.gather((synced, grads_of(model.unused)), root=0)
    if dist.rank() == 0:
        result["no_sync_vs_expected"] = max(max_diff(g[0], grads_of(reference))
                                            for g in gathered)
        result["unused"] = [g[1] for g in gathered]
        with open(os.path.join(outdir, "overlap.json"), "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2])
    elif sys.argv[1] == "resume":
        resume(sys.argv[2])
    elif sys.argv[1] == "fit":
        fit(sys.argv[2])
    elif sys.argv[1] == "overlap":
        overlap(sys.argv[2])
    else:
        fail()
