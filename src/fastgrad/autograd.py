"""Grad mode, functional gradients and user-defined differentiable ops."""
import functools

from ._core import core
from .tensor import Tensor


class _GradMode:
    """Context manager (and decorator) that sets whether graphs are recorded."""

    def __init__(self, mode):
        self._mode = mode
        self._previous = []

    def __enter__(self):
        self._previous.append(core.set_grad_enabled(self._mode))
        return self

    def __exit__(self, *exc):
        core.set_grad_enabled(self._previous.pop())
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _GradMode(self._mode):
                return fn(*args, **kwargs)
        return wrapper


def no_grad():
    """`with fg.no_grad():` records no graph inside the block."""
    return _GradMode(False)


def enable_grad():
    """`with fg.enable_grad():` records graphs again, even inside no_grad."""
    return _GradMode(True)


def set_grad_enabled(mode):
    return _GradMode(bool(mode))


def is_grad_enabled():
    return core.is_grad_enabled()


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
            def forward(ctx, x):              # NumPy arrays in, array out
                ctx.save_for_backward(x)
                return x ** 3
            @staticmethod
            def backward(ctx, grad_out):      # one gradient (or None) per input
                (x,) = ctx.saved_tensors
                return grad_out * 3 * x ** 2

        y = Cube.apply(x)
    """

    @staticmethod
    def forward(ctx, *inputs):
        raise NotImplementedError("a Function subclass must define forward(ctx, *inputs)")

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError("a Function subclass must define backward(ctx, grad_output)")

    @classmethod
    def apply(cls, *inputs):
        return core.function(cls, FunctionCtx(), inputs)


__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "grad",
           "Function", "FunctionCtx", "Tensor"]


class CompiledStep:
    """What `fg.compile(fn)` returns; see there."""

    def __init__(self, fn):
        self._fn = fn
        self.tape = None

    def __call__(self):
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
            self.tape.forward()                     # replay with the leaves' current values
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
    Like tracing in other frameworks, Python control flow inside `fn` is
    frozen at the first call, and values that did not require grad are
    constants of the recording.
    """
    if not callable(fn):
        raise TypeError("compile: expected a function, got %s" % type(fn).__name__)
    return CompiledStep(fn)
