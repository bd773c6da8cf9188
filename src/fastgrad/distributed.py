"""Data-parallel training over MPI: init, rank, world_size, DistributedDataParallel,
DistributedSampler (PyTorch's names and behaviour).

    mpiexec -n 4 python train.py

    import fastgrad.distributed as dist
    dist.init()
    model = dist.DistributedDataParallel(model)          # weights from rank 0
    sampler = dist.DistributedSampler(dataset, seed=0)   # a disjoint shard per rank
    loader = DataLoader(dataset, batch_size=16, sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)                          # a new shared shuffle
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()             # gradients averaged here
            opt.step()                                    # same update on every rank

Every rank holds the whole model and runs the same steps on its own shard
of each batch; averaging the gradients makes every rank take the step that
one process would take on the union of the shards.

Design:
- Transport: mpi4py (the optional `mpi` extra), imported only when a run
  asks for MPI: `init()` under an MPI launcher (PMI_* / OMPI_* / PMIX_*
  variables), `init('mpi')`, or mpi4py already imported by the script.
  Otherwise this is one process: rank 0 of a world of 1, every collective a
  no-op, and mpi4py need not be installed.
- When to reduce, by default: after the sweep.  In a job of more than one
  rank, the first DDP wrapper makes `Tensor.backward` run the per-thread
  registry after the sweep (a Python frame and one dict test, ~0.7 us per
  backward measured); a DDP forward (grad enabled, outside `no_sync()`)
  registers itself there.  This changes no graph and sees every gradient
  final.  A single process keeps the plain backward and pays nothing.
  `fg.grad` and fg.compile's tape do not reduce: like torch.autograd.grad,
  they return gradients without touching `.grad`.
- What is sent, by default: per dtype, ONE flat buffer of all gradients,
  plus one "has a gradient" count per parameter, in a single Allreduce
  (sum), then divided by the world size as PyTorch does.  A parameter with
  no gradient on a rank contributes zeros; one with no gradient on every
  rank keeps `.grad = None`, so the optimizer skips it everywhere alike.
  The packing is a memory copy per parameter; the messages are one per dtype.
- overlap=True: communication during backward, as PyTorch's DDP.  The
  parameters go into buckets (reverse registration order, the order
  backward finishes them; per dtype; `bucket_cap_mb` MiB each, the first
  1 MiB).  Each parameter has a post-accumulate-grad hook (the cores run it
  right after the sweep ran the parameter's last consumer); it copies the
  gradient into its bucket's flat buffer, and a complete bucket is sent at
  once with a nonblocking Iallreduce while the sweep goes on.  Buckets are
  sent in bucket order whatever order the hooks ran in, so the ranks' calls
  match.  The last bucket is sent at the end of the sweep (a callback the
  core runs before it writes the other leaves' .grad) and carries one more
  number: how many ranks' backward failed.  Then every request is waited
  for and the averages written to `.grad`, before backward() returns.
  Whether the messages really travel during the sweep depends on the MPI
  library: MPICH and Open MPI advance a nonblocking collective only inside
  MPI calls unless an asynchronous progress thread is enabled (the hooks
  call MPI_Testall to help); docs/scaling.md measures it.  Off by default:
  on the machines measured it did not pay.
- A backward that raises on one rank (overlap=True): that rank still sends
  its remaining buckets (zeros) with the failure count, so no rank waits
  forever; every rank then raises (the others a RuntimeError naming the
  count), and the core puts back every `.grad` the hooks had written, so
  `.grad` is on every rank what it was before that backward.  Without
  overlap, a failing rank raises alone, and the abort hook below ends the
  job if the error is not caught.
- Buffers (running statistics) are broadcast from rank 0 before each
  training forward (broadcast_buffers=True), as PyTorch does; a model
  without `named_buffers` or without buffers sends nothing.
- A rank that raises must not leave the others waiting in a collective
  forever: under MPI, `init()` installs an excepthook that prints the
  traceback and then aborts the whole job (MPI_Abort).
"""
import os
import sys
import threading
import time
import weakref

import numpy as np

from ._core import core
from .autograd import no_grad, is_grad_enabled
from .nn.module import Module
from .tensor import Tensor
from .utils.data import Sampler

__all__ = ["init", "is_initialized", "is_available", "rank", "world_size", "barrier",
           "broadcast", "all_reduce", "average_metrics", "DistributedDataParallel",
           "DistributedSampler", "get_rank", "get_world_size", "init_process_group",
           "ReductionTimer"]

_MISSING = ("mpi4py is not installed: pip install 'fastgrad[mpi]' (mpi4py and an MPI "
            "runtime such as mpich)")

# Variables an MPI launcher sets in each process it starts (MPICH/Intel
# hydra, Open MPI, PMIx launchers such as srun).
_LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


class _State:
    comm = None          # mpi4py's COMM_WORLD once MPI is in use
    MPI = None
    rank = 0
    size = 1
    initialized = False
    timer = None         # the running ReductionTimer, if any


_state = _State()


def is_available():
    """True when mpi4py can be imported (the `mpi` extra is installed)."""
    if "mpi4py" in sys.modules:
        return sys.modules["mpi4py"] is not None     # None: imports of it are blocked
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


def _under_launcher():
    return any(name in os.environ for name in _LAUNCHER_VARIABLES)


def init(backend=None):
    """Join the job; returns (rank, world_size).  Safe to call more than once.

    backend=None uses MPI when the process was started by an MPI launcher
    (or mpi4py is already imported), else runs as one process without
    importing mpi4py.  backend='mpi' insists on MPI.
    """
    if backend not in (None, "mpi"):
        raise ValueError("distributed.init: backend must be None or 'mpi' (fastgrad runs on "
                         "MPI through mpi4py), got %r" % (backend,))
    if _state.initialized:
        return _state.rank, _state.size
    if backend == "mpi" or "mpi4py.MPI" in sys.modules or _under_launcher():
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError("distributed.init: this process was started by an MPI launcher "
                              "(or asked for MPI), but " + _MISSING) from exc
        comm = MPI.COMM_WORLD
        _state.MPI, _state.comm = MPI, comm
        _state.rank, _state.size = comm.Get_rank(), comm.Get_size()
        if _state.size > 1:
            _install_abort_hook()
    _state.initialized = True
    return _state.rank, _state.size


def init_process_group(backend=None, **kwargs):
    """PyTorch's spelling of init(); 'mpi' and 'gloo' both mean MPI here."""
    init(None if backend in (None, "gloo") else backend)


def is_initialized():
    return _state.initialized


def rank():
    """This process's rank (0 without MPI)."""
    if not _state.initialized:
        init()
    return _state.rank


def world_size():
    """The number of processes in the job (1 without MPI)."""
    if not _state.initialized:
        init()
    return _state.size


get_rank, get_world_size = rank, world_size


def _install_abort_hook():
    previous = sys.excepthook

    def abort_on_error(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stderr.write("fastgrad.distributed: rank %d of %d raised %s; aborting the job\n"
                         % (_state.rank, _state.size, kind.__name__))
        sys.stderr.flush()
        _state.comm.Abort(1)

    sys.excepthook = abort_on_error


# ---------------------------------------------------------------------------
# Collectives on arrays and tensors
# ---------------------------------------------------------------------------

def barrier():
    if world_size() > 1:
        _state.comm.Barrier()


def _values(x, where):
    if isinstance(x, core.TensorBase):
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError("%s: expected a tensor or an ndarray, got %s" % (where, type(x).__name__))


def broadcast(x, src=0):
    """Overwrite `x` (tensor or ndarray) with its values on rank `src`; returns x."""
    values = _values(x, "distributed.broadcast")
    if world_size() > 1:
        _check_rank(src, "broadcast")
        buffer = np.ascontiguousarray(values)
        _state.comm.Bcast(buffer, root=src)
        if buffer is not values:
            values[...] = buffer
    return x


def all_reduce(x, op="sum"):
    """Replace `x` (tensor or ndarray) by its sum / max / min over all ranks, in place; returns x."""
    values = _values(x, "distributed.all_reduce")
    if op not in ("sum", "max", "min"):
        raise ValueError("distributed.all_reduce: op must be 'sum', 'max' or 'min', got %r"
                         % (op,))
    if world_size() > 1:
        MPI = _state.MPI
        buffer = np.ascontiguousarray(values)
        _state.comm.Allreduce(MPI.IN_PLACE, buffer,
                              op={"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op])
        if buffer is not values:
            values[...] = buffer
    return x


def _check_rank(src, where):
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) \
            or not 0 <= src < _state.size:
        raise ValueError("distributed.%s: src must be a rank in [0, %d), got %r"
                         % (where, _state.size, src))


def average_metrics(record, weight=1.0):
    """The mean of a dict of numbers over all ranks, weighted by `weight` (e.g. sample counts).

    Every rank gets the same floats bit for bit (the values are gathered and
    summed in rank order on each rank), so decisions taken on them, such as
    early stopping, agree everywhere.  One process: a copy of `record`.
    Ranks whose weight is 0 do not count; a key with no weight anywhere is NaN.
    """
    record = {key: float(value) for key, value in record.items()}
    if world_size() == 1:
        return record
    gathered = _state.comm.allgather((float(weight), record))
    keys = list(record)
    for _, other in gathered:
        if list(other) != keys:
            raise RuntimeError("distributed.average_metrics: ranks reported different metrics "
                               "(%s on this rank, %s on another)" % (keys, list(other)))
    total = sum(w for w, _ in gathered if w > 0)
    return {key: (sum(w * other[key] for w, other in gathered if w > 0) / total
                  if total > 0 else float("nan"))
            for key in keys}


# ---------------------------------------------------------------------------
# Post-backward callbacks (run by Tensor.backward)
# ---------------------------------------------------------------------------

class _PostBackward(threading.local):
    """Per thread: the DDP wrappers whose forward ran and whose backward has not."""

    def __init__(self):
        self.pending = {}

    def add(self, ddp):
        self.pending[id(ddp)] = ddp

    def discard(self, ddp):
        self.pending.pop(id(ddp), None)

    def run(self):
        pending, self.pending = self.pending, {}
        for ddp in pending.values():
            ddp._reduce_gradients()

    def fail(self, error):
        """The backward raised: overlapping wrappers still owe the other ranks their
        collectives (and the news), which their round's end sends.  A wrapper
        without overlap stays pending, as before: the job's abort hook ends a
        rank that does not catch the error."""
        for key, ddp in list(self.pending.items()):
            if getattr(ddp, "_overlap", False):
                del self.pending[key]
                ddp._end_round(error)


_post_backward = _PostBackward()


def _install_post_backward():
    """Make Tensor.backward run the registry after the sweep (once, when world_size > 1).

    Installed only by a DDP wrapper in a multi-rank job, so a single process
    keeps the plain backward.  An override already in place (fg.detect_anomaly's)
    is called, not replaced.
    """
    current = Tensor.__dict__.get("backward")
    if getattr(current, "_runs_post_backward", False):
        return
    sweep = current if current is not None else core.TensorBase.backward

    def backward(self, gradient=None, retain_graph=False):
        try:
            sweep(self, gradient, retain_graph)
        except BaseException as error:
            if _post_backward.pending:
                _post_backward.fail(error)
            raise
        if _post_backward.pending:
            _post_backward.run()

    backward.__doc__ = core.TensorBase.backward.__doc__
    backward._runs_post_backward = True
    Tensor.backward = backward


# ---------------------------------------------------------------------------
# DistributedDataParallel
# ---------------------------------------------------------------------------

def _by_dtype(tensors):
    groups = {}
    for t in tensors:
        groups.setdefault(t.dtype, []).append(t)
    return list(groups.items())


def _broadcast_values(tensors):
    """Rank 0's values into `tensors`, one Bcast per dtype."""
    for dtype, group in _by_dtype(tensors):
        flat = np.concatenate([t.numpy().reshape(-1) for t in group])
        _state.comm.Bcast(flat, root=0)
        offset = 0
        with no_grad():
            for t in group:
                size = t.numpy().size
                t.copy_(flat[offset:offset + size].reshape(t.shape))
                offset += size


class DistributedDataParallel(Module):
    """Wrap `module` for data-parallel training (torch.nn.parallel.DistributedDataParallel).

    At wrap time every rank takes rank 0's parameters (and buffers).  Each
    training forward (grad enabled, outside `no_sync()`) first broadcasts rank
    0's buffers (broadcast_buffers=True) and arranges that the next
    `backward()` in this thread averages the gradients of all parameters over
    the ranks: `loss.backward()` then `optimizer.step()` work unchanged.
    Forwards under `fg.no_grad()` communicate nothing, so ranks may evaluate
    different numbers of batches.  Training steps must match across ranks
    (DistributedSampler gives every rank the same number of batches).

    `state_dict()` names carry the `module.` prefix, as PyTorch's; save
    `ddp.module.state_dict()` on rank 0 for a checkpoint that loads into an
    unwrapped model on any number of ranks.  `device_ids` must be None (CPU).
    `find_unused_parameters` is accepted: parameters without a gradient are
    always handled.

    overlap=True sends the gradients in buckets of `bucket_cap_mb` MiB
    (default 25, the first at most 1 MiB, as PyTorch), each as soon as
    backward has finished its gradients, while backward computes the rest
    (see the module docstring); the results are the same bit for bit.  A
    backward that raises on any rank then raises on every rank and leaves
    `.grad` as it was.  Without overlap, `bucket_cap_mb` is not used: one
    message per dtype at the end.
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0,
                 broadcast_buffers=True, process_group=None, bucket_cap_mb=None,
                 find_unused_parameters=False, gradient_as_bucket_view=False, overlap=False):
        if not isinstance(module, Module):
            raise TypeError("DistributedDataParallel: expected an nn.Module, got %s"
                            % type(module).__name__)
        for name, value in (("device_ids", device_ids), ("output_device", output_device),
                            ("process_group", process_group)):
            if value is not None:
                raise ValueError("DistributedDataParallel: %s must be None (fastgrad runs on "
                                 "the CPU, over MPI's world communicator), got %r"
                                 % (name, value))
        if dim != 0:
            raise ValueError("DistributedDataParallel: dim must be 0 (batches are split by "
                             "the sampler along the first axis), got %r" % (dim,))
        if bucket_cap_mb is not None and (isinstance(bucket_cap_mb, bool) or not isinstance(
                bucket_cap_mb, (int, float, np.integer, np.floating)) or not bucket_cap_mb > 0):
            raise ValueError("DistributedDataParallel: bucket_cap_mb must be a positive number "
                             "of MiB (or None for %g), got %r" % (BUCKET_CAP_MB, bucket_cap_mb))
        super().__init__()
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        object.__setattr__(self, "_sync", True)
        init()
        params = [p for p in module.parameters() if p.requires_grad]
        names = [n for n, p in module.named_parameters() if p.requires_grad]
        object.__setattr__(self, "_groups", _by_dtype(params))
        object.__setattr__(self, "_param_names", names)
        object.__setattr__(self, "_overlap", bool(overlap))
        cap = BUCKET_CAP_MB if bucket_cap_mb is None else float(bucket_cap_mb)
        object.__setattr__(self, "bucket_cap_mb", cap)
        object.__setattr__(self, "_buckets", _make_buckets(params, cap) if overlap else [])
        object.__setattr__(self, "_round", None)
        if _state.size > 1:
            _install_post_backward()
            self._check_same_model(names, params)
            _broadcast_values(list(module.parameters()))
            self._broadcast_buffers()
            if overlap:
                self._register_hooks()

    def _check_same_model(self, names, params):
        # A mismatch would otherwise surface as a hang or as silently mixed weights.
        mine = [(n, tuple(p.shape), str(p.dtype)) for n, p in zip(names, params)]
        first = _state.comm.bcast(mine, root=0)
        if first != mine:
            raise RuntimeError("DistributedDataParallel: rank %d's model differs from rank 0's "
                               "(parameters %s vs %s)" % (_state.rank, mine, first))

    def _buffers_of_module(self):
        named = getattr(self.module, "named_buffers", None)
        if named is None:
            return []
        return [b for _, b in named() if b is not None]

    def _broadcast_buffers(self):
        buffers = self._buffers_of_module()
        if buffers:
            _broadcast_values(buffers)

    def forward(self, *inputs, **kwargs):
        if _state.size > 1 and is_grad_enabled():
            if self._sync:
                if self.broadcast_buffers:
                    self._broadcast_buffers()
                _post_backward.add(self)
            else:
                # The latest training forward decides: a forward without a backward
                # before no_sync() must not make the next backward reduce.
                _post_backward.discard(self)
        return self.module(*inputs, **kwargs)

    def no_sync(self):
        """Context manager: backward passes inside accumulate local gradients only.

        The first backward after leaving it (from a forward outside) averages
        the accumulated gradients, as PyTorch's no_sync.
        """
        return _NoSync(self)

    def _reduce_gradients(self):
        if self._overlap:
            # No hook of this wrapper ran in the backward (its parameters were out of
            # the graph): the round is all collectives, sent now.
            self._end_round(None)
            return
        MPI, comm, size = _state.MPI, _state.comm, _state.size
        timer = _state.timer
        if timer is not None:
            started = time.perf_counter()
        for dtype, params in self._groups:
            sizes = [p.numpy().size for p in params]
            total = sum(sizes)
            flat = np.empty(total + len(params), dtype=dtype)
            counts = flat[total:]
            offset = 0
            for i, (p, n) in enumerate(zip(params, sizes)):
                grad = p.grad
                if grad is None:
                    flat[offset:offset + n] = 0
                    counts[i] = 0
                else:
                    flat[offset:offset + n] = grad.numpy().reshape(-1)
                    counts[i] = 1
                offset += n
            if timer is None:
                comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            else:
                sent = time.perf_counter()
                comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
                timer.allreduce_seconds += time.perf_counter() - sent
                timer.nbytes += flat.nbytes
            np.divide(flat[:total], size, out=flat[:total])
            offset = 0
            for i, (p, n) in enumerate(zip(params, sizes)):
                if counts[i] > 0:
                    p.grad = core.from_array(flat[offset:offset + n].reshape(p.shape))
                offset += n
        if timer is not None:
            timer.reductions += 1
            timer.buckets += len(self._groups)
            timer.seconds += time.perf_counter() - started

    # -- overlap: buckets reduced while backward runs ---------------------------------
    def _register_hooks(self):
        me = weakref.ref(self)        # the hooks must not keep the wrapper alive

        def ready(p):
            ddp = me()
            if ddp is not None:
                ddp._grad_ready(p)

        slots = {}
        for bucket in self._buckets:
            for i, p in enumerate(bucket.params):
                slots[id(p)] = (bucket, i)
        handles = [p.register_post_accumulate_grad_hook(ready)
                   for bucket in self._buckets for p in bucket.params]
        object.__setattr__(self, "_slots", slots)
        weakref.finalize(self, _remove_hooks, handles)

    def _grad_ready(self, p):
        """Hook: p's .grad is final in this backward.  Pack it; send its bucket (and
        any ready ones after it, in bucket order) once the bucket is complete."""
        if _post_backward.pending.get(id(self)) is not self:
            return                    # no training forward armed this backward (no_sync, eval)
        timer = _state.timer
        if timer is not None:
            started = time.perf_counter()
        rnd = self._round
        if rnd is None:
            rnd = self._begin_round()
        bucket, i = self._slots[id(p)]
        rnd.pack(bucket, i, p.grad)
        if rnd.missing[bucket.index] == 0:
            rnd.launch_ready(timer, early=True)
        elif rnd.requests and PROGRESS_IN_HOOKS:
            rnd.progress(timer)
        if timer is not None:
            timer.seconds += time.perf_counter() - started

    def _begin_round(self):
        rnd = _Round(self._buckets)
        object.__setattr__(self, "_round", rnd)
        core.queue_callback(self._end_round)
        return rnd

    def _end_round(self, error):
        """The backward is over (error None) or failed (error): send what is left,
        wait for everything, then write the averages, or raise if a rank failed.

        Run by the core before it writes the other leaves' .grad, so raising here
        fails the backward and puts every .grad back as it was."""
        _post_backward.discard(self)
        timer = _state.timer
        if timer is not None:
            started = time.perf_counter()
        rnd = self._round if self._round is not None else _Round(self._buckets)
        object.__setattr__(self, "_round", None)
        rnd.complete(error is not None)
        rnd.launch_ready(timer, early=False)
        failed = rnd.wait(timer)
        if timer is not None:
            timer.reductions += 1
            timer.nbytes += sum(flat.nbytes for flat in rnd.flats)
        try:
            if error is not None:
                return
            if failed:
                raise RuntimeError(
                    "DistributedDataParallel: backward raised on %d other rank(s) of %d; the "
                    "gradients are left as they were before this backward on every rank"
                    % (failed, _state.size))
            rnd.write_averages(_state.size)
        finally:
            if timer is not None:
                timer.seconds += time.perf_counter() - started

    def extra_repr(self):
        text = "world_size=%d, broadcast_buffers=%s" % (_state.size, self.broadcast_buffers)
        if self._overlap:
            text += ", overlap=True, buckets=%d" % len(self._buckets)
        return text


# PyTorch's sizes: 25 MiB buckets, the first (the last layers' gradients, ready
# first) at most 1 MiB so that the first message leaves early.
BUCKET_CAP_MB = 25.0
FIRST_BUCKET_MB = 1.0
# Ask MPI, from the hooks, to move outstanding reductions along (MPI_Testall):
# without an asynchronous progress thread MPICH advances a nonblocking
# collective only inside MPI calls.  docs/scaling.md measures it.
PROGRESS_IN_HOOKS = True


class _Bucket:
    """Parameters whose gradients travel in one message (one dtype)."""

    __slots__ = ("index", "dtype", "params", "sizes", "total", "last")

    def __init__(self, index, dtype, params):
        self.index = index
        self.dtype = dtype
        self.params = params
        self.sizes = [p.numel() for p in params]
        self.total = sum(self.sizes)
        self.last = False


def _make_buckets(params, cap_mb):
    """Buckets over `params` in reverse registration order (the order backward
    finishes them), per dtype, each closed once it holds cap_mb MiB (the first of
    each dtype FIRST_BUCKET_MB); a parameter larger than the cap gets its own."""
    closed, open_ = [], {}
    cap = int(cap_mb * 1024 * 1024)
    first = min(cap, int(FIRST_BUCKET_MB * 1024 * 1024))
    started = set()
    for p in reversed(params):
        group = open_.setdefault(p.dtype, [[], 0])
        group[0].append(p)
        group[1] += p.numel() * np.dtype(p.dtype).itemsize
        if group[1] >= (cap if p.dtype in started else first):
            closed.append((p.dtype, group[0]))
            started.add(p.dtype)
            del open_[p.dtype]
    closed.extend((dtype, group[0]) for dtype, group in open_.items())
    buckets = [_Bucket(i, dtype, group) for i, (dtype, group) in enumerate(closed)]
    if buckets:
        buckets[-1].last = True       # carries the "a rank failed" count; sent at the end
    return buckets


def _remove_hooks(handles):
    for handle in handles:
        handle.remove()


class _Round:
    """One backward's reduction: a flat buffer per bucket (gradients, then one
    "has a gradient" count per parameter, and in the last bucket a count of
    ranks whose backward failed), sent in bucket order, so every rank starts
    the same collectives in the same order whatever order its hooks ran in."""

    __slots__ = ("buckets", "flats", "missing", "packed", "requests", "launched", "early")

    def __init__(self, buckets):
        self.buckets = buckets
        self.flats = [np.empty(b.total + len(b.params) + b.last, dtype=b.dtype) for b in buckets]
        self.missing = [len(b.params) for b in buckets]
        self.packed = [[False] * len(b.params) for b in buckets]
        self.requests = []
        self.launched = 0             # buckets 0 .. launched-1 are on their way
        self.early = 0                # of which sent before the end of the sweep

    def pack(self, bucket, i, grad, ok=True):
        flat = self.flats[bucket.index]
        offset = sum(bucket.sizes[:i])
        n = bucket.sizes[i]
        if grad is None or not ok:
            flat[offset:offset + n] = 0
            flat[bucket.total + i] = 0
        else:
            flat[offset:offset + n] = grad.numpy().reshape(-1)
            flat[bucket.total + i] = 1
        if not self.packed[bucket.index][i]:
            self.packed[bucket.index][i] = True
            self.missing[bucket.index] -= 1

    def complete(self, failed):
        """Pack what no hook packed (parameters outside this backward's graph keep
        the .grad they had); after a failure, zeros and the failure count instead."""
        for bucket in self.buckets[self.launched:]:
            for i, p in enumerate(bucket.params):
                if failed or not self.packed[bucket.index][i]:
                    self.pack(bucket, i, p.grad, ok=not failed)
            if bucket.last:
                self.flats[bucket.index][-1] = 1 if failed else 0

    def launch_ready(self, timer, early):
        """Start the reductions of the complete buckets from `launched` on, in order.
        The last bucket waits for the end (early=False): it carries the failure count."""
        MPI, comm = _state.MPI, _state.comm
        while self.launched < len(self.buckets) and self.missing[self.launched] == 0:
            bucket = self.buckets[self.launched]
            if early and bucket.last:
                break
            if timer is not None:
                sent = time.perf_counter()
            self.requests.append(comm.Iallreduce(MPI.IN_PLACE, self.flats[bucket.index],
                                                 op=MPI.SUM))
            if timer is not None:
                timer.allreduce_seconds += time.perf_counter() - sent
                timer.buckets += 1
                timer.early_buckets += early
            self.launched += 1
            self.early += early

    def progress(self, timer):
        if timer is not None:
            sent = time.perf_counter()
        _state.MPI.Request.Testall(self.requests)
        if timer is not None:
            timer.allreduce_seconds += time.perf_counter() - sent

    def wait(self, timer):
        """Wait for every reduction; returns how many ranks reported a failure."""
        if timer is not None:
            # Which early reductions had finished while the sweep ran (one MPI_Test
            # each): without progress inside MPI calls they may only start here.
            for request in self.requests[:self.early]:
                timer.completed_early += bool(request.Test())
            sent = time.perf_counter()
        _state.MPI.Request.Waitall(self.requests)
        if timer is not None:
            waited = time.perf_counter() - sent
            timer.allreduce_seconds += waited
            timer.wait_seconds += waited
        self.requests = []
        return int(self.flats[-1][-1]) if self.flats else 0

    def write_averages(self, size):
        for bucket, flat in zip(self.buckets, self.flats):
            np.divide(flat[:bucket.total], size, out=flat[:bucket.total])
            offset = 0
            for i, (p, n) in enumerate(zip(bucket.params, bucket.sizes)):
                if flat[bucket.total + i] > 0:
                    p.grad = core.from_array(flat[offset:offset + n].reshape(p.shape))
                offset += n


class ReductionTimer:
    """Wall time spent averaging gradients, in this process, while it runs.

        with dist.ReductionTimer() as timer:
            train_one_epoch()
        print(timer.allreduce_seconds / timer.reductions)

    Counts every reduction of every DDP wrapper: `reductions` (backward
    passes that averaged), `seconds` (the whole reduction: packing the
    gradients, the Allreduce, unpacking), `allreduce_seconds` (the Allreduce
    calls alone, which include waiting for the slowest rank), `nbytes`
    (bytes each rank sent into them) and `buckets` (messages: one per dtype
    without overlap).  With overlap=True, `seconds` is the time spent in the
    wrapper's hooks and end-of-backward work, `allreduce_seconds` the time in
    MPI calls (Iallreduce, Testall, the final Waitall), and also:
    `early_buckets` (buckets sent before the sweep ended), `completed_early`
    (of those, the ones already finished when it ended) and `wait_seconds`
    (the final Waitall: the communication backward did not hide).
    One timer runs at a time; starting another replaces it until that one
    stops.  When none runs, a reduction pays a few `is None` tests and
    nothing else.
    """

    def __init__(self):
        self.reductions = 0
        self.seconds = 0.0
        self.allreduce_seconds = 0.0
        self.nbytes = 0
        self.buckets = 0
        self.early_buckets = 0
        self.completed_early = 0
        self.wait_seconds = 0.0
        self._previous = None

    def start(self):
        self._previous, _state.timer = _state.timer, self
        return self

    def stop(self):
        if _state.timer is self:
            _state.timer = self._previous
        self._previous = None
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def __repr__(self):
        return ("ReductionTimer(reductions=%d, seconds=%.6f, allreduce_seconds=%.6f, "
                "nbytes=%d, buckets=%d, early_buckets=%d, completed_early=%d, "
                "wait_seconds=%.6f)"
                % (self.reductions, self.seconds, self.allreduce_seconds, self.nbytes,
                   self.buckets, self.early_buckets, self.completed_early, self.wait_seconds))


class _NoSync:
    def __init__(self, ddp):
        self.ddp = ddp

    def __enter__(self):
        self.previous = self.ddp._sync
        object.__setattr__(self.ddp, "_sync", False)
        return self.ddp

    def __exit__(self, *exc):
        object.__setattr__(self.ddp, "_sync", self.previous)
        return False


# ---------------------------------------------------------------------------
# DistributedSampler
# ---------------------------------------------------------------------------

class DistributedSampler(Sampler):
    """This rank's shard of the dataset's indices (torch.utils.data.distributed.DistributedSampler).

    Every epoch all ranks draw the same order (shuffle: a permutation from
    np.random.default_rng(seed + epoch), so call set_epoch(epoch) for a new
    one) and rank r takes positions r, r + num_replicas, ...  To give every
    rank the same count, the order is padded by repeating its first indices
    (drop_last=False) or its tail is cut (drop_last=True), as PyTorch does.
    num_replicas and rank default to world_size() and rank().
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        if num_replicas is None:
            num_replicas = get_world_size()
        if rank is None:
            rank = get_rank()          # the argument hides this module's rank()
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, (int, np.integer)) \
                or num_replicas <= 0:
            raise ValueError("DistributedSampler: num_replicas must be a positive integer, "
                             "got %r" % (num_replicas,))
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) \
                or not 0 <= rank < num_replicas:
            raise ValueError("DistributedSampler: invalid rank %r, rank should be in the "
                             "interval [0, %d]" % (rank, num_replicas - 1))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError("DistributedSampler: seed must be an integer, got %r" % (seed,))
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    @property
    def num_samples(self):
        n, k = len(self.dataset), self.num_replicas
        if self.drop_last and n % k:
            return (n - k) // k + (1 if (n - k) % k else 0) if n > k else 0
        return -(-n // k)

    @property
    def total_size(self):
        return self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        """Use the order of `epoch` (same on every rank): call once per epoch, before iterating."""
        self.epoch = int(epoch)

    def _order(self):
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        total = self.total_size
        if total > n:
            order = np.resize(order, total)      # repeats from the start, as PyTorch pads
        else:
            order = order[:total]
        return order[self.rank:total:self.num_replicas]

    def __iter__(self):
        return iter(self._order().tolist())

    def __len__(self):
        return self.num_samples
