"""Batch normalisation (BatchNorm1d, BatchNorm2d) and its functional form.

In training, the batch mean and the biased batch variance over every axis but
the channels normalise the input: one fg.Function (`_BatchNormTrain`) whose
forward computes them and whose backward is the closed form
    dx = invstd / n * (n g' - sum g' - xhat sum(g' xhat)),  g' = g * weight,
one node instead of the ~10 of the composition (measured: the composition
was most of a BatchNorm2d step in bench/workloads/cnn.py).  Both are fused
kernels of the core (fused_reference.batch_norm_forward / _backward; C loops
over each channel on the compiled core).  With running
statistics (eval) it is a composition of tensor ops.  The running statistics
are buffers, updated in place outside the graph with the unbiased variance,
as torch does.
"""
import numpy as np

from .._core import core, fused
from ..autograd import FunctionCtx, _ArrayFunction as Function, no_grad
from ..tensor import get_default_dtype, tensor as _new_tensor
from . import init
from .conv import as_tensor, _shape
from .module import Module
from .parameter import Parameter


def _channel_view(t, ndim):
    # (C,) -> (C, 1, ...) to broadcast against (N, C, ...)
    return t.reshape((t.shape[0],) + (1,) * (ndim - 2)) if ndim > 2 else t


def _check_stat(name, what, t, channels):
    if t is None:
        return None
    if not isinstance(t, core.TensorBase):
        raise TypeError("%s: %s must be a tensor or None, got %s" % (name, what, type(t).__name__))
    if _shape(t) != (channels,):
        raise ValueError("%s: %s should have %d elements (one per channel), got shape %s"
                         % (name, what, channels, _shape(t)))
    return t


class _BatchNormTrain(Function):
    """(x - mean) / sqrt(var + eps) * weight + bias with the batch's own statistics;
    weight and bias (C,), the kernels those of the core's fused module."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        shape = x.shape
        y, xhat, mean, var, invstd = fused.batch_norm_forward(
            x.reshape(shape[0], shape[1], -1), weight, bias, eps)
        ctx.batch_stats = (mean, var)              # for the running statistics
        ctx.save_for_backward(xhat, invstd, weight)
        return y.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        xhat, invstd, weight = ctx.saved_tensors
        gx, gw, gb = fused.batch_norm_backward(g.reshape(xhat.shape), xhat, invstd, weight,
                                               ctx.needs_input_grad[0])
        return None if gx is None else gx.reshape(g.shape), gw, gb, None


def normalize_batch(name, input, running_mean, running_var, weight, bias, training, momentum,
                    eps):
    input = as_tensor(name, input)
    shape = _shape(input)
    if len(shape) < 2:
        raise ValueError("%s: expected an input of at least 2 dimensions (N, C, ...), got shape "
                         "%s" % (name, shape))
    channels = shape[1]
    for what, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _check_stat(name, what, t, channels)
    axes = (0,) + tuple(range(2, len(shape)))
    count = int(np.prod([shape[a] for a in axes]))
    use_batch = training or running_mean is None or running_var is None
    if use_batch:
        if training and count <= 1:
            raise ValueError("%s: expected more than 1 value per channel when training, got "
                             "input of shape %s" % (name, shape))
        w = np.ones(channels, dtype=input.dtype) if weight is None else weight
        b = np.zeros(channels, dtype=input.dtype) if bias is None else bias
        ctx = FunctionCtx()
        out = core.function(_BatchNormTrain, ctx, (input, w, b, float(eps)))
        if training and running_mean is not None and running_var is not None:
            mean, var = ctx.batch_stats
            batch_mean = mean
            unbiased = var * (count / (count - 1))
            with no_grad():
                running_mean.copy_(running_mean.numpy() * (1.0 - momentum)
                                   + batch_mean * momentum)
                running_var.copy_(running_var.numpy() * (1.0 - momentum)
                                  + unbiased * momentum)
        return out
    mean = _channel_view(running_mean.detach(), len(shape))
    var = _channel_view(running_var.detach(), len(shape))
    out = (input - mean) / (var + eps).sqrt()
    if weight is not None:
        out = out * _channel_view(weight, len(shape))
    if bias is not None:
        out = out + _channel_view(bias, len(shape))
    return out


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """torch.nn.functional.batch_norm: normalise per channel (axis 1) of (N, C, ...)."""
    return normalize_batch("batch_norm", input, running_mean, running_var, weight, bias,
                           training, momentum, eps)


class _BatchNorm(Module):
    _ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=None):
        super().__init__()
        name = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 1:
            raise ValueError("%s: num_features must be a positive integer, got %r"
                             % (name, num_features))
        if momentum is not None and (isinstance(momentum, bool)
                                     or not isinstance(momentum, (int, float))):
            raise ValueError("%s: momentum must be a number or None, got %r" % (name, momentum))
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
            raise ValueError("%s: eps must be a non-negative number, got %r" % (name, eps))
        dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
        if dtype.kind != "f":
            raise TypeError("%s: dtype must be float32 or float64, got %s" % (name, dtype))
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        n = self.num_features
        if self.affine:
            self.weight = Parameter(np.ones(n, dtype=dtype))
            self.bias = Parameter(np.zeros(n, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", _new_tensor(np.zeros(n, dtype=dtype)))
            self.register_buffer("running_var", _new_tensor(np.ones(n, dtype=dtype)))
            self.register_buffer("num_batches_tracked", _new_tensor(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1.0)
                self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, input):
        name = type(self).__name__
        input = as_tensor(name, input)
        shape = _shape(input)
        if len(shape) not in self._ndims:
            raise ValueError("%s: expected a %s input, got a %dD input of shape %s"
                             % (name, " or ".join("%dD" % d for d in self._ndims), len(shape),
                                shape))
        if shape[1] != self.num_features:
            raise ValueError("%s: expected input with %d channels (num_features=%d), got input "
                             "of shape %s" % (name, self.num_features, self.num_features, shape))
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            count = int(np.prod(shape)) // shape[1]
            if count > 1:
                with no_grad():
                    self.num_batches_tracked.add_(1)
            if self.momentum is None:
                # cumulative moving average: the n-th batch counts 1/n
                factor = 1.0 / max(int(self.num_batches_tracked.item()), 1)
        use_batch = self.training or not self.track_running_stats
        return normalize_batch(name, input,
                               self.running_mean if self.track_running_stats else None,
                               self.running_var if self.track_running_stats else None,
                               self.weight, self.bias, use_batch, factor, self.eps)

    def extra_repr(self):
        return "%d, eps=%r, momentum=%r, affine=%s, track_running_stats=%s" % (
            self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs, as torch.nn.BatchNorm1d."""
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs, as torch.nn.BatchNorm2d."""
    _ndims = (4,)
