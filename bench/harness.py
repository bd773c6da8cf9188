"""The benchmark's moving parts: the registries and the timing loop of a child.

Three registries describe everything `run.py` can measure:

- ``IMPLS``: the implementations a workload may be written for (fastgrad's
  two cores, PyTorch, hand-written NumPy, and optional peers). An
  implementation names the module it needs, the environment its child
  process gets, and a probe that reports versions and settings.
- ``WORKLOADS``: name -> :class:`Workload`. A workload gives, per
  implementation, a *runner*: ``runner(size) -> (step, result)``, where
  ``step()`` runs one iteration and ``result()`` returns the correctness value
  (an array) afterwards. Every implementation's value is compared with the
  reference implementation's. A runner may return a third callable,
  ``notes()``, giving named figures (a dict of numbers or strings) measured
  along the way; they are printed under the table and kept in the row's
  ``info["notes"]``.
- Each workload carries its own :class:`Target` list (speed goals checked
  after the run).

Each (workload, size, implementation) runs in its own process
(``python bench/run.py --child WORKLOAD IMPL --size SIZE``, after the
implementation's launcher prefix if it has one, e.g. ``mpiexec -n 2``), so
that imports, allocator state and thread pools of one library never affect
another, and so that ``FASTGRAD_BACKEND`` picks the core cleanly. The child warms up, sizes a
timing block to last at least ``min_time`` seconds, then times blocks and
reports seconds per iteration for each block as JSON on stdout.
"""
from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

Runner = Callable[[Any], Tuple[Callable[[], Any], Callable[[], Any]]]


# --------------------------------------------------------------------------
# implementations
# --------------------------------------------------------------------------
@dataclass
class Impl:
    name: str
    description: str
    module: str                       # what must be importable
    env: Dict[str, str] = field(default_factory=dict)
    probe: Optional[Callable[[], dict]] = None   # runs in the child; may raise ImportError
    # Runs in the parent: the command that starts this implementation's child
    # goes after this prefix (e.g. ["mpiexec", "-n", "2"]).  The launched
    # processes are one child: only the first one answers (see child_main).
    launcher: Optional[Callable[[], List[str]]] = None


def _probe_fastgrad(expected: str) -> Callable[[], dict]:
    def probe():
        import fastgrad as fg
        if fg.backend() != expected:
            raise RuntimeError(f"FASTGRAD_BACKEND={expected} gave the {fg.backend()!r} core")
        return {"fastgrad": fg.__version__, "backend": fg.backend(),
                "fastgrad_path": os.path.dirname(fg.__file__)}
    return probe


def _probe_torch() -> dict:
    import torch
    # Left at PyTorch's defaults on purpose: this is what a user gets.
    return {"torch": torch.__version__, "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads()}


def _probe_numpy() -> dict:
    import numpy
    return {"numpy": numpy.__version__}


def _probe_version(module: str) -> Callable[[], dict]:
    def probe():
        mod = __import__(module)
        return {module: getattr(mod, "__version__", "?")}
    return probe


# Table order follows this dict's order.
IMPLS: Dict[str, Impl] = {}


def register_impl(impl: Impl) -> Impl:
    if impl.name in IMPLS:
        raise ValueError(f"implementation {impl.name!r} is registered twice")
    IMPLS[impl.name] = impl
    return impl


register_impl(Impl("compiled", "fastgrad, compiled core", "fastgrad",
                   {"FASTGRAD_BACKEND": "compiled"}, _probe_fastgrad("compiled")))
register_impl(Impl("python", "fastgrad, pure-Python reference core", "fastgrad",
                   {"FASTGRAD_BACKEND": "python"}, _probe_fastgrad("python")))
register_impl(Impl("torch", "PyTorch eager (CPU, default threads)", "torch", probe=_probe_torch))


def _probe_torch_1thread() -> dict:
    import torch
    torch.set_num_threads(1)          # the environment says so too; this makes sure
    return _probe_torch()


ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
register_impl(Impl("torch-1thread", "PyTorch eager (CPU, 1 intra-op thread)", "torch",
                   ONE_THREAD, _probe_torch_1thread))
register_impl(Impl("numpy", "hand-written NumPy forward + backward", "numpy", probe=_probe_numpy))
register_impl(Impl("jax", "JAX (jit where the workload says so)", "jax", probe=_probe_version("jax")))
register_impl(Impl("micrograd", "micrograd (scalar Values)", "micrograd",
                   probe=_probe_version("micrograd")))

BASELINE = "compiled"   # ratios in the table are "impl median / compiled median"


def fastgrad_cores(runner: Runner) -> Dict[str, Runner]:
    """The same fastgrad runner for both cores (the child's FASTGRAD_BACKEND picks one)."""
    return {"compiled": runner, "python": runner}


# --------------------------------------------------------------------------
# targets and workloads
# --------------------------------------------------------------------------
@dataclass
class Target:
    """Speed goal: ``median(impl) * factor <= median(than)`` (``<`` when strict).

    ``sizes`` limits it to some sizes of the workload (None: all of them).
    """
    impl: str
    than: str
    factor: float = 1.0
    sizes: Optional[Sequence[Any]] = None
    strict: bool = False

    def applies_to(self, size) -> bool:
        return self.sizes is None or size in self.sizes

    def text(self) -> str:
        op = "<" if self.strict else "<="
        if self.factor == 1:
            return f"{self.impl} {op} {self.than}"
        return f"{self.impl} {op} {self.than} / {self.factor:g}"

    def passes(self, ratio: float) -> bool:
        """``ratio`` is median(than) / median(impl)."""
        return ratio > self.factor if self.strict else ratio >= self.factor


@dataclass
class GroupTarget:
    """Speed goal over many rows of one workload at once (e.g. every op of `ops`).

    Each row the filter ``where(size)`` keeps gives ``ratio = median(than) /
    median(impl)``; ``stat="every"`` passes when every ratio reaches ``factor``,
    ``stat="median"`` when the median of the ratios does.  ``name`` says which
    rows (``"4x4 and 32x64"``); the verdict lists the rows that miss.
    """
    impl: str
    than: str
    factor: float
    name: str
    where: Callable[[Any], bool] = lambda size: True
    stat: str = "every"

    def text(self) -> str:
        what = "every row" if self.stat == "every" else "median"
        return f"{self.name}: {what} {self.impl} <= {self.than} / {self.factor:g}"


@dataclass
class Workload:
    name: str
    description: str
    sizes: Sequence[Any]                 # JSON-serialisable; one table row per size
    runners: Dict[str, Runner]           # impl name -> runner(size) -> (step, result)
    ops: Optional[Callable[[Any], int]] = None   # ops per iteration, for the µs/op column
    op_note: str = ""                    # what counts as an op
    reference: str = "numpy"             # whose result() the others must match
    rtol: float = 1e-9
    atol: float = 0.0
    targets: List[Target] = field(default_factory=list)
    label: Callable[[Any], str] = lambda size: f"n={size}"
    # Seconds of quiet before each timing block.  BLAS and OpenMP worker threads
    # spin for a while after their last call; on a small machine the spinning
    # threads of the implementation timed just before would take the cores
    # from the next one (measured on 2 cores, batch-1024 matmuls: 2-4x slower).
    # A number, or a function of the row's size giving one.
    settle: Any = 0.0
    # Rows whose sizes give the same child_group(size) share one process per
    # implementation, which builds each row's runner in turn (a workload of
    # hundreds of small rows would otherwise spend its time starting Python).
    child_group: Optional[Callable[[Any], Any]] = None
    # settings(run_settings) -> this workload's repeats / min_time / warmup
    # (values the user gave on the command line are kept).
    settings: Optional[Callable[[dict], dict]] = None
    group_targets: List["GroupTarget"] = field(default_factory=list)
    # "long": one table line per implementation; "wide": one line per row, a
    # column per implementation (for workloads of many rows).
    table: str = "long"
    # What ratios and targets compare: "median" of the timing blocks, or "min"
    # (many short blocks of microsecond ops on a shared machine: a block that
    # lost the CPU only adds time, so the fastest block is the cleanest figure).
    statistic: str = "median"

    def __post_init__(self):
        unknown = sorted(set(self.runners) - set(IMPLS))
        if unknown:
            raise ValueError(f"workload {self.name!r}: unknown implementations {unknown}; "
                             f"register them in IMPLS (known: {list(IMPLS)})")
        if self.reference not in self.runners:
            raise ValueError(f"workload {self.name!r}: reference {self.reference!r} has no runner")


WORKLOADS: Dict[str, Workload] = {}


def register(workload: Workload) -> Workload:
    if workload.name in WORKLOADS:
        raise ValueError(f"workload {workload.name!r} is registered twice")
    WORKLOADS[workload.name] = workload
    return workload


# --------------------------------------------------------------------------
# the child: warm-up, block sizing, timing
# --------------------------------------------------------------------------
def time_block(step: Callable[[], Any], iters: int) -> float:
    """Seconds for ``iters`` calls of ``step``."""
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    return time.perf_counter() - t0


def warm_up(step, seconds: float) -> Tuple[int, float]:
    """Run ``step`` for at least ``seconds`` (and at least twice); returns (calls, elapsed)."""
    calls = 0
    t0 = time.perf_counter()
    while True:
        step()
        calls += 1
        elapsed = time.perf_counter() - t0
        if calls >= 2 and elapsed >= seconds:
            return calls, elapsed


def size_block(step, per_iter_guess: float, min_time: float) -> int:
    """Iterations per block so that one block lasts at least ``min_time``."""
    iters = max(1, math.ceil(1.2 * min_time / max(per_iter_guess, 1e-9)))
    for _ in range(10):
        gc.collect()
        took = time_block(step, iters)
        if took >= min_time:
            return iters
        iters = max(iters + 1, math.ceil(1.2 * iters * min_time / max(took, 1e-9)))
    return iters


def _as_check(value) -> dict:
    import numpy as np
    arr = np.asarray(value, dtype=np.float64)
    return {"check": arr.ravel().tolist(), "check_shape": list(arr.shape)}


def _prepare(workload: str, impl: str, size, min_time: float, warmup: float):
    """Build the runner for one row, warm it up and size its timing block."""
    made = WORKLOADS[workload].runners[impl](size)
    step, result = made[0], made[1]
    notes = made[2] if len(made) > 2 else None
    calls, elapsed = warm_up(step, warmup)
    iters = size_block(step, elapsed / calls, min_time)
    return step, result, notes, iters


def _time_row(emit, lines, prepared, info: dict, serve: bool, repeats: int) -> Optional[bool]:
    """Time one prepared row and emit its final record.  Returns True when it
    went well, False on an error, None when the parent went away."""
    step, result, notes, iters = prepared
    times: List[float] = []

    def one_block():
        gc.collect()   # start each block clean; collection during the block is part of the cost
        t = time_block(step, iters) / iters
        times.append(t)
        return t

    try:
        if serve:
            emit({"status": "ready", "iters": iters, "info": info})
            for line in lines:
                cmd = line.strip()
                if cmd == "time":
                    emit({"t": one_block()})
                elif cmd == "done":
                    break
                else:
                    raise ValueError(f"child: unknown command {cmd!r} (expected 'time' or 'done')")
            else:
                return None      # parent went away
        else:
            for _ in range(repeats):
                one_block()
        record = {"status": "ok", "times": times, "iters": iters, "info": info}
        record.update(_as_check(result()))
        if notes is not None:
            info["notes"] = notes()
    except Exception:
        emit({"status": "error", "error": traceback.format_exc(limit=-3)})
        return False
    emit(record)
    return True


def child_main(workload: str, impl: str, size, *, repeats: int, min_time: float,
               warmup: float, serve: bool, rows: bool = False) -> int:
    """Entry point of a child process. Protocol (one JSON object per line on stdout):

    - without ``serve``: time ``repeats`` blocks, print the final record, exit;
    - with ``serve``: print ``{"status": "ready", ...}``, then answer each
      ``time`` line on stdin with ``{"t": seconds_per_iteration}`` for one
      block, and ``done`` with the final record. The parent uses this to
      interleave the blocks of all implementations of one row.
    - with ``rows`` (implies ``serve``, for workloads with a ``child_group``):
      print ``{"status": "idle", "info": ...}``, then for each ``row SIZE``
      line (SIZE in JSON) build that row's runner and serve it as above;
      end of input ends the process.  A row whose runner fails gets an
      ``error`` record and the child waits for the next row.

    The final record has ``status`` ("ok", "missing" or "error"), ``times``
    (seconds per iteration, one per block), ``iters`` (iterations per block),
    ``check`` / ``check_shape`` (the correctness value) and ``info``.
    """
    # Keep stdout for the protocol only: whatever a library prints goes to stderr.
    sys.stdout.flush()
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def emit(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    spec = IMPLS[impl]
    try:
        info = spec.probe() if spec.probe else {}
    except ImportError as exc:
        emit({"status": "missing", "error": f"{type(exc).__name__}: {exc}"})
        return 0
    except Exception as exc:
        emit({"status": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    lines = iter(sys.stdin)
    if rows:
        emit({"status": "idle", "info": info})
        for line in lines:
            cmd = line.strip()
            if not cmd.startswith("row "):
                emit({"status": "error", "error": f"child: unknown command {cmd!r} "
                                                  f"(expected 'row SIZE')"})
                return 1
            try:
                prepared = _prepare(workload, impl, json.loads(cmd[4:]), min_time, warmup)
            except Exception:
                emit({"status": "error", "error": traceback.format_exc(limit=-3)})
                continue
            went = _time_row(emit, lines, prepared, dict(info), True, repeats)
            if went is None:
                return 1
        return 0
    try:
        prepared = _prepare(workload, impl, size, min_time, warmup)
    except Exception:
        emit({"status": "error", "error": traceback.format_exc(limit=-3)})
        return 1
    went = _time_row(emit, lines, prepared, info, serve, repeats)
    return 0 if went else 1


def reference_value(workload: Workload, size):
    """The reference implementation's correctness value, computed in this process
    (used when the reference is not among the implementations being timed)."""
    import numpy as np
    step, result = workload.runners[workload.reference](size)[:2]
    step()
    return np.asarray(result(), dtype=np.float64)
