"""nn.init: fill a tensor's values in place (no graph), PyTorch's rules.

Random fills draw from fastgrad's global generator, so `fg.manual_seed`
makes them reproducible.  Each returns the tensor it filled.
"""
import math

import numpy as np

from .._core import core
from ..tensor import default_generator

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]


def _target(name, tensor):
    if not isinstance(tensor, core.TensorBase):
        raise TypeError("init.%s: expected a tensor, got %s" % (name, type(tensor).__name__))
    if tensor.dtype.kind != "f":
        raise TypeError("init.%s: expected a floating point tensor, got dtype %s"
                        % (name, tensor.dtype))
    return tensor


def _fill(tensor, values):
    tensor.numpy()[...] = values
    tensor._bump_version()
    return tensor


def _fans(name, tensor):
    if tensor.ndim < 2:
        raise ValueError("init.%s: fan in and fan out need a tensor with at least 2 dimensions, "
                         "got shape %s" % (name, tuple(tensor.shape)))
    receptive = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """The recommended scale for a nonlinearity (PyTorch's table)."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError("calculate_gain: negative_slope %r is not a number" % (slope,))
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError("calculate_gain: unsupported nonlinearity %r" % (nonlinearity,))


def uniform_(tensor, a=0.0, b=1.0):
    _target("uniform_", tensor)
    if not a <= b:
        raise ValueError("init.uniform_: need a <= b, got a=%r, b=%r" % (a, b))
    return _fill(tensor, default_generator().uniform(a, b, tensor.shape))


def normal_(tensor, mean=0.0, std=1.0):
    _target("normal_", tensor)
    if std < 0:
        raise ValueError("init.normal_: std must be >= 0, got %r" % (std,))
    return _fill(tensor, default_generator().normal(mean, std, tensor.shape))


def constant_(tensor, val):
    _target("constant_", tensor)
    return _fill(tensor, val)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio, 2010)."""
    _target("xavier_uniform_", tensor)
    fan_in, fan_out = _fans("xavier_uniform_", tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    _target("xavier_normal_", tensor)
    fan_in, fan_out = _fans("xavier_normal_", tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(name, tensor, a, mode, nonlinearity):
    _target(name, tensor)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError("init.%s: mode must be 'fan_in' or 'fan_out', got %r" % (name, mode))
    fan_in, fan_out = _fans(name, tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError("init.%s: cannot initialise a tensor with zero %s (shape %s)"
                         % (name, mode.replace("_", "-"), tuple(tensor.shape)))
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al., 2015)."""
    std = _kaiming_std("kaiming_uniform_", tensor, a, mode, nonlinearity)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, std^2) with std = gain / sqrt(fan)."""
    std = _kaiming_std("kaiming_normal_", tensor, a, mode, nonlinearity)
    return normal_(tensor, 0.0, std)
