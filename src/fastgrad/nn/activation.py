"""More activations: GELU, SiLU, ELU, Softplus, Hardtanh, PReLU (modules and functions).

GELU('none') (x Phi(x)) and SiLU (x sigmoid(x)) are ops of both cores; PReLU
and GELU's tanh form are compositions of tensor ops.  The rest are small
fg.Functions (NumPy forward and exact derivative in one place, both cores)
because their torch definitions need something the op set lacks:
- ELU, Softplus and Hardtanh switch formula on the input's value, and a where()
  on the values would be frozen by fg.compile's replay, while a Function
  recomputes its forward from the current inputs.  Their gradients at the
  switch points follow torch (ELU: alpha at 0; Hardtanh: 0 at the bounds).
"""
import math

import numpy as np

from .._core import core
from ..autograd import _ArrayFunction as Function
from ..tensor import get_default_dtype
from .conv import as_tensor, _shape
from .module import Module
from .parameter import Parameter

def gelu(input, approximate="none"):
    """x * Phi(x); approximate='tanh': 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    input = as_tensor("gelu", input)
    if approximate == "none":
        return core.gelu(input)
    if approximate == "tanh":
        inner = (input + input * input * input * 0.044715) * math.sqrt(2.0 / math.pi)
        return input * 0.5 * (inner.tanh() + 1.0)
    raise ValueError("gelu: approximate must be 'none' or 'tanh', got %r" % (approximate,))


def silu(input):
    """x * sigmoid(x)."""
    return core.silu(as_tensor("silu", input))


class _ELU(Function):
    @staticmethod
    def forward(ctx, x, alpha):
        neg = alpha * np.expm1(np.minimum(x, 0.0))
        ctx.save_for_backward(x, alpha)
        return np.where(x > 0, x, neg).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        x, alpha = ctx.saved_tensors
        return (g * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))).astype(
            x.dtype, copy=False), None


def _number(name, what, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError("%s: %s must be a number, got %r" % (name, what, value))
    return float(value)


def elu(input, alpha=1.0):
    """x for x > 0, alpha (e^x - 1) otherwise."""
    input = as_tensor("elu", input)
    return _ELU.apply(input, _number("elu", "alpha", alpha))


class _Softplus(Function):
    @staticmethod
    def forward(ctx, x, beta, threshold):
        z = x * beta
        smooth = (np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))) / beta
        ctx.save_for_backward(z, threshold)
        return np.where(z > threshold, x, smooth).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        z, threshold = ctx.saved_tensors
        e = np.exp(-np.abs(z))
        sig = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return (g * np.where(z > threshold, 1.0, sig)).astype(z.dtype, copy=False), None, None


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + e^(beta x)) / beta, and x itself where beta x > threshold (as torch)."""
    input = as_tensor("softplus", input)
    beta = _number("softplus", "beta", beta)
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero, got 0")
    return _Softplus.apply(input, beta, _number("softplus", "threshold", threshold))


class _Hardtanh(Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x, lo, hi)
        return np.clip(x, lo, hi).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        x, lo, hi = ctx.saved_tensors
        return (g * ((x > lo) & (x < hi))).astype(x.dtype, copy=False), None, None


def hardtanh(input, min_val=-1.0, max_val=1.0):
    """clip(x, min_val, max_val), with zero gradient at and beyond the bounds (as torch)."""
    input = as_tensor("hardtanh", input)
    lo, hi = _number("hardtanh", "min_val", min_val), _number("hardtanh", "max_val", max_val)
    if lo > hi:
        raise ValueError("hardtanh: min_val (%r) must be at most max_val (%r)" % (lo, hi))
    return _Hardtanh.apply(input, lo, hi)


def prelu(input, weight):
    """max(0, x) + weight * min(0, x), weight per channel (axis 1) or a single one."""
    input = as_tensor("prelu", input)
    if not isinstance(weight, core.TensorBase):
        raise TypeError("prelu: weight must be a tensor, got %s" % type(weight).__name__)
    shape, wshape = _shape(input), _shape(weight)
    n = int(np.prod(wshape))
    if len(wshape) > 1 or (n != 1 and (len(shape) < 2 or shape[1] != n)):
        raise ValueError("prelu: weight of shape %s needs 1 element or one per channel (axis 1) "
                         "of the input, got input of shape %s" % (wshape, shape))
    w = weight
    if n != 1 and len(shape) > 2:
        w = weight.reshape((n,) + (1,) * (len(shape) - 2))
    elif n == 1:
        w = weight.reshape(())
    # clip(max=0) passes the gradient at 0, so d/dx at 0 is the weight, as torch
    return input.relu() + w * input.clip(max=0.0)


class GELU(Module):
    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError("GELU: approximate must be 'none' or 'tanh', got %r"
                             % (approximate,))
        self.approximate = approximate

    def forward(self, input):
        return gelu(input, self.approximate)

    def extra_repr(self):
        return "approximate=%r" % (self.approximate,)


class SiLU(Module):
    def forward(self, input):
        return silu(input)


class ELU(Module):
    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = _number("ELU", "alpha", alpha)

    def forward(self, input):
        return elu(input, self.alpha)

    def extra_repr(self):
        return "alpha=%r" % (self.alpha,)


class Softplus(Module):
    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = _number("Softplus", "beta", beta)
        if self.beta == 0:
            raise ValueError("Softplus: beta must be non-zero, got 0")
        self.threshold = _number("Softplus", "threshold", threshold)

    def forward(self, input):
        return softplus(input, self.beta, self.threshold)

    def extra_repr(self):
        return "beta=%r, threshold=%r" % (self.beta, self.threshold)


class Hardtanh(Module):
    def __init__(self, min_val=-1.0, max_val=1.0):
        super().__init__()
        self.min_val = _number("Hardtanh", "min_val", min_val)
        self.max_val = _number("Hardtanh", "max_val", max_val)
        if self.min_val > self.max_val:
            raise ValueError("Hardtanh: min_val (%r) must be at most max_val (%r)"
                             % (self.min_val, self.max_val))

    def forward(self, input):
        return hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self):
        return "min_val=%r, max_val=%r" % (self.min_val, self.max_val)


class PReLU(Module):
    """max(0, x) + a * min(0, x) with a learnt slope (one, or one per channel), init 0.25."""

    def __init__(self, num_parameters=1, init=0.25, dtype=None):
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, (int, np.integer)) \
                or num_parameters < 1:
            raise ValueError("PReLU: num_parameters must be a positive integer, got %r"
                             % (num_parameters,))
        dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
        self.num_parameters = int(num_parameters)
        self.init = _number("PReLU", "init", init)
        self.weight = Parameter(np.full(self.num_parameters, self.init, dtype=dtype))

    def forward(self, input):
        return prelu(input, self.weight)

    def extra_repr(self):
        return "num_parameters=%d" % self.num_parameters
