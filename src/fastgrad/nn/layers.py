"""Layers: Linear, the activations, Dropout, Flatten, Identity."""
import math
import numbers

import numpy as np

from .._core import core
from ..tensor import get_default_dtype
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


def _count(name, what, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError("%s: %s must be a non-negative integer, got %r" % (name, what, value))
    return int(value)


class Linear(Module):
    """y = x @ weight.T + bias, weight of shape (out_features, in_features).

    Initialised as PyTorch does: weight and bias uniform in
    (-1/sqrt(in_features), 1/sqrt(in_features)), weight drawn first, from
    fastgrad's global generator.  The parameters take the default dtype
    (float32 unless fg.set_default_dtype says otherwise) or `dtype`.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        self.in_features = _count("Linear", "in_features", in_features)
        self.out_features = _count("Linear", "out_features", out_features)
        dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
        if dtype.kind != "f":
            raise TypeError("Linear: dtype must be float32 or float64, got %s" % dtype)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=dtype))
        self.bias = Parameter(np.empty((self.out_features,), dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # kaiming_uniform_(a=sqrt(5)) is exactly U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return core.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return "in_features=%d, out_features=%d, bias=%s" % (
            self.in_features, self.out_features, self.bias is not None)


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class ReLU(Module):
    def forward(self, input):
        return core.relu(input)


class Sigmoid(Module):
    def forward(self, input):
        return core.sigmoid(input)


class Tanh(Module):
    def forward(self, input):
        return core.tanh(input)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        if isinstance(negative_slope, (bool, str, bytes)) or \
                not isinstance(negative_slope, numbers.Real):
            raise TypeError("LeakyReLU: negative_slope must be a number, got %r"
                            % (negative_slope,))
        self.negative_slope = float(negative_slope)

    def forward(self, input):
        return core.leaky_relu(input, self.negative_slope)

    def extra_repr(self):
        return "negative_slope=%r" % (self.negative_slope,)


class Softmax(Module):
    """softmax along `dim` (default: the last axis)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.softmax(input, self.dim)

    def extra_repr(self):
        return "dim=%r" % (self.dim,)


class LogSoftmax(Softmax):
    """log_softmax along `dim` (default: the last axis)."""

    def forward(self, input):
        return F.log_softmax(input, self.dim)


class Flatten(Module):
    """Flatten dimensions start_dim..end_dim (by default all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return "start_dim=%d, end_dim=%d" % (self.start_dim, self.end_dim)


class Dropout(Module):
    """In training, zero each element with probability p and scale the rest by 1/(1-p).

    In eval mode it is the identity.  Masks come from fastgrad's global
    generator (`fg.manual_seed`).
    """

    def __init__(self, p=0.5):
        super().__init__()
        self.p = F._check_probability("Dropout", p)

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return "p=%r" % (self.p,)
