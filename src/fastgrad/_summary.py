"""fg.summary: a model's layers, the shape each one outputs, and its parameter counts.

    >>> print(fg.summary(model, (32, 64)))      # the input's shape, batch included

One forward pass on zeros of `input_shape` (under no_grad, in eval mode, then
the model's mode is put back) records the output shape of every sub-module;
parameters are counted per module (its own, not its children's), so the
column adds up to the total.
"""
import numpy as np

from ._core import core
from .autograd import no_grad
from .nn.module import Module
from .tensor import get_default_dtype, zeros

__all__ = ["summary", "ModelSummary"]


class ModelSummary:
    """What fg.summary returns: `rows` of (name, type, output shape, parameters),
    `total_params` and `trainable_params`; str() is the table."""

    def __init__(self, rows, total, trainable):
        self.rows = rows
        self.total_params = total
        self.trainable_params = trainable

    def __str__(self):
        head = ("layer", "type", "output shape", "params")
        body = [(name or "(model)", kind, _shape_text(shape), "{:,}".format(n))
                for name, kind, shape, n in self.rows]
        widths = [max(len(r[i]) for r in [head] + body) for i in range(4)]

        def line(cells):
            return "  ".join(c.rjust(w) if i == 3 else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * len(line(head))
        out = [line(head), rule] + [line(r) for r in body] + [rule]
        out.append("total parameters: {:,} ({:,} trainable)".format(self.total_params,
                                                                    self.trainable_params))
        return "\n".join(out)

    __repr__ = __str__


def _shape_text(shape):
    if shape is None:
        return "-"
    if isinstance(shape, list):
        return ", ".join(_shape_text(s) for s in shape)
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _shapes(out):
    if isinstance(out, core.TensorBase):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return [_shapes(o) for o in out]
    return None


def summary(model, input_shape, dtype=None):
    """Layers of `model`, their output shapes for an input of `input_shape`, and
    their parameter counts (a ModelSummary; print it for the table)."""
    if not isinstance(model, Module):
        raise TypeError("summary: expected an nn.Module, got %s" % type(model).__name__)
    try:
        input_shape = tuple(int(n) for n in input_shape)
    except TypeError:
        raise TypeError("summary: input_shape must be a tuple of ints (batch included), got %r"
                        % (input_shape,)) from None
    if dtype is None:
        first = next(iter(model.parameters()), None)
        dtype = first.dtype if first is not None else get_default_dtype()
    modules = list(model.named_modules())
    shapes = {}
    for name, module in modules:
        def recording(*args, _name=name, _forward=module.forward, **kwargs):
            out = _forward(*args, **kwargs)
            shapes[_name] = _shapes(out)
            return out
        object.__setattr__(module, "forward", recording)
    was_training = model.training
    try:
        model.eval()
        with no_grad():
            model(zeros(*input_shape, dtype=np.dtype(dtype)))
    finally:
        for _, module in modules:
            object.__delattr__(module, "forward")
        model.train(was_training)
    rows = []
    for name, module in modules:
        own = [p for _, p in module.named_parameters(recurse=False)]
        rows.append((name, type(module).__name__, shapes.get(name),
                     int(sum(p.numel() for p in own))))
    params = list(model.parameters())
    total = int(sum(p.numel() for p in params))
    trainable = int(sum(p.numel() for p in params if p.requires_grad))
    return ModelSummary(rows, total, trainable)
