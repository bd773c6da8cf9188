"""Grad mode, functional gradients and user-defined differentiable ops."""
import functools
import threading

import numpy as np

from ._core import core
from .tensor import Tensor


class _GradMode:
    """Context manager (and decorator) that sets whether this thread records graphs.

    Grad mode belongs to a thread, as in PyTorch: a block changes it for the
    thread that runs it only, and a new thread starts with grad enabled.  The
    modes to restore are kept per thread as well, so one instance
    (`ng = fg.no_grad()`) may be entered by several threads at once.
    """

    def __init__(self, mode):
        self._mode = mode
        self._previous = {}         # thread id -> modes to restore, innermost last

    def __enter__(self):
        stack = self._previous.setdefault(threading.get_ident(), [])
        stack.append(core.set_grad_enabled(self._mode))
        return self

    def __exit__(self, *exc):
        key = threading.get_ident()
        stack = self._previous[key]
        mode = stack.pop()
        if not stack:
            del self._previous[key]     # thread ids are reused: leave nothing behind
        core.set_grad_enabled(mode)
        return False

    def __call__(self, fn):
        # a fresh instance per call: the wrapped function may run in many
        # threads, and recursively
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _GradMode(self._mode):
                return fn(*args, **kwargs)
        return wrapper


class _SetGradEnabled(_GradMode):
    """What fg.set_grad_enabled returns: the mode is set by the call itself (as
    PyTorch does, so a plain `fg.set_grad_enabled(False)` works); as a context
    manager it puts the mode of before the call back on exit."""

    def __init__(self, mode):
        super().__init__(mode)
        self._before = core.set_grad_enabled(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        core.set_grad_enabled(self._before)
        return False

    def __call__(self, fn):
        # Used as a decorator, the call that built this object must not leave
        # the mode changed; the mode applies while fn runs.
        core.set_grad_enabled(self._before)
        return super().__call__(fn)


def _grad_mode(mode, func, name):
    if func is None:
        return _GradMode(mode)
    if not callable(func):
        raise TypeError("%s: expected no argument or a function to decorate, got %s"
                        % (name, type(func).__name__))
    return _GradMode(mode)(func)


def no_grad(func=None):
    """`with fg.no_grad():` records no graph inside the block (in this thread).

    Also a decorator, `@fg.no_grad()` or `@fg.no_grad`.
    """
    return _grad_mode(False, func, "no_grad")


def enable_grad(func=None):
    """`with fg.enable_grad():` records graphs again, even inside no_grad (in this thread)."""
    return _grad_mode(True, func, "enable_grad")


def set_grad_enabled(mode):
    """Switch recording on or off in this thread: at once, as a plain call; as
    `with fg.set_grad_enabled(mode):` for a block; or as a decorator."""
    return _SetGradEnabled(bool(mode))


def is_grad_enabled():
    """Whether this thread records graphs."""
    return core.is_grad_enabled()


def inference_mode(mode=True):
    """PyTorch's inference mode: `with fg.inference_mode():` (or as a decorator,
    with or without parentheses) records no graph in this thread.

    fastgrad has no separate inference tensors, so this is no_grad under
    PyTorch's name; `inference_mode(False)` records graphs, as in PyTorch.
    """
    if callable(mode):
        return _GradMode(False)(mode)
    return _GradMode(not mode)


def grad(outputs, inputs, grad_outputs=None, retain_graph=False):
    """Gradients of `outputs` with respect to `inputs`, as a tuple of tensors.

    Nothing is accumulated into `.grad`.  An input that the outputs do not
    depend on gets None.
    """
    single = isinstance(outputs, core.TensorBase)
    outputs = [outputs] if single else list(outputs)
    inputs = [inputs] if isinstance(inputs, core.TensorBase) else list(inputs)
    if grad_outputs is not None:
        grad_outputs = [grad_outputs] if isinstance(grad_outputs, core.TensorBase) or single \
            else list(grad_outputs)
        if len(grad_outputs) != len(outputs):
            raise ValueError("grad: got %d grad_outputs for %d outputs"
                             % (len(grad_outputs), len(outputs)))
    found = core.grad(outputs, inputs, grad_outputs, retain_graph)
    return tuple(None if g is None else core.from_array(g) for g in found)


class FunctionCtx:
    """What forward hands to backward in a custom Function."""

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays


class Function:
    """A differentiable op defined by its forward and backward (PyTorch style).

        class Cube(fg.Function):
            @staticmethod
            def forward(ctx, x):              # tensors in (no grad), a tensor out
                ctx.save_for_backward(x)
                return x ** 3
            @staticmethod
            def backward(ctx, grad_out):      # one gradient (or None) per input
                (x,) = ctx.saved_tensors
                return grad_out * 3 * x ** 2

        y = Cube.apply(x)

    As in PyTorch, forward and backward receive tensors (sharing memory with
    the values; nothing inside them is recorded) and return tensors; `.numpy()`
    gives the arrays, and returning an ndarray is accepted too.
    """

    @staticmethod
    def forward(ctx, *inputs):
        raise NotImplementedError("a Function subclass must define forward(ctx, *inputs)")

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError("a Function subclass must define backward(ctx, grad_output)")

    @classmethod
    def apply(cls, *inputs):
        return core.function(_TensorRule(cls), FunctionCtx(), inputs)


class _TensorRule:
    """A Function as the cores call it (arrays in and out), its own forward and
    backward seeing tensors: the one place where the two conventions meet."""

    def __init__(self, cls):
        self.cls = cls
        self.__name__ = cls.__name__      # what grad_fn, explain and errors show

    def forward(self, ctx, *values):
        with no_grad():
            return self.cls.forward(ctx, *[_as_tensor(v) for v in values])

    def backward(self, ctx, grad_output):
        with no_grad():
            return self.cls.backward(ctx, _as_tensor(grad_output))


def _as_tensor(value):
    return core.from_array(value) if isinstance(value, np.ndarray) else value


class _ArrayFunction(Function):
    """fastgrad's own Function-style ops (in nn/...): their rules are NumPy code
    on arrays, so they skip the tensor wrapping of user Functions."""

    @classmethod
    def apply(cls, *inputs):
        return core.function(cls, FunctionCtx(), inputs)


__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "inference_mode",
           "grad", "Function", "FunctionCtx", "Tensor"]


class CompiledStep:
    """What `fg.compile(fn)` returns; see there."""

    def __init__(self, fn):
        self._fn = fn
        self.tape = None
        self._lock = threading.RLock()

    def __call__(self):
        # One call is one unit under this step's own lock: two threads sharing
        # the step can neither record twice nor interleave a replay with a
        # sweep.  Its own, not the core's sweep lock: fn is user code, which
        # may wait for another thread's step (re-entrant: fn may call backward).
        with self._lock:
            if self.tape is None:
                # record: fn runs once, eagerly, keeping every intermediate's values
                keep = getattr(core, "_set_keep_values", None)
                previous = keep(True) if keep is not None else None
                try:
                    root = self._fn()
                finally:
                    if keep is not None:
                        keep(previous)
                self.tape = core.Tape(root)
            else:
                self.tape.forward()                 # replay with the leaves' current values
            self.tape.backward()
            return self.tape.root.item()


def compile(fn):
    """Record the graph that `fn()` builds once, then replay it on every call.

    `fn` takes no arguments and returns a scalar loss computed from tensors
    that require grad (parameters; data tensors are leaves too).  The first
    call runs `fn` and records its graph; every call (the first included)
    then runs the backward sweep, accumulating into the leaves' `.grad` as
    `loss.backward()` does, and returns the loss as a float.  Later calls do
    not run `fn` again: they recompute the recorded graph from the current
    values of its leaves, in C on the compiled core, so update parameters and
    data in place (`p.data -= lr * p.grad.data`, `x.data[...] = batch`).
    What `fn` computes from data alone (the batch scaled or reshaped before
    it meets a weight) is recomputed too.  Like tracing in other frameworks,
    Python control flow inside `fn` is frozen at the first call, and what is
    not a float tensor op is a constant of the recording: Python numbers,
    arrays built in `fn`, comparisons and other integer or bool results
    (a mask `x > 0`, indices `argmax`), and integer index tensors.
    """
    if not callable(fn):
        raise TypeError("compile: expected a function, got %s" % type(fn).__name__)
    return CompiledStep(fn)
