"""Gradient clipping, in place on the parameters' .grad, as torch.nn.utils."""
import math

import numpy as np

from ..._core import core
from ...autograd import no_grad
from ...tensor import tensor as _new_tensor


def _tensors(name, parameters):
    if isinstance(parameters, core.TensorBase):
        return [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError("%s: expected a tensor or an iterable of tensors, got %s"
                        % (name, type(parameters).__name__)) from None
    for p in params:
        if not isinstance(p, core.TensorBase):
            raise TypeError("%s: expected tensors, got an element of type %s"
                            % (name, type(p).__name__))
    return params


def _number(name, what, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError("%s: %s must be a number, got %r" % (name, what, value))
    return float(value)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale the gradients so that their joint norm is at most max_norm; returns that norm.

    The norm is over all gradients together, as if concatenated into one
    vector (norm_type may be inf); every gradient is multiplied by
    min(1, max_norm / (norm + 1e-6)).  `foreach` is accepted and ignored.
    """
    name = "clip_grad_norm_"
    params = _tensors(name, parameters)
    max_norm = _number(name, "max_norm", max_norm)
    norm_type = _number(name, "norm_type", norm_type)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return _new_tensor(0.0)
    dtype = grads[0].dtype
    arrays = [g.numpy() for g in grads]
    if norm_type == math.inf:
        norms = [np.max(np.abs(a)) if a.size else 0.0 for a in arrays]
        total = float(np.max(norms))
    else:
        norms = [np.sum(np.abs(a.astype(np.float64)) ** norm_type) for a in arrays]
        total = float(np.sum(norms)) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError("%s: the total norm of order %r of the gradients is non-finite (%r), "
                           "so it cannot be clipped; pass error_if_nonfinite=False to scale the "
                           "gradients by it anyway" % (name, norm_type, total))
    coef = min(max_norm / (total + 1e-6), 1.0) if total == total else math.nan
    with no_grad():
        for g in grads:
            g.mul_(coef)
    return _new_tensor(np.asarray(total, dtype=dtype))


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient to [-clip_value, clip_value] in place."""
    name = "clip_grad_value_"
    params = _tensors(name, parameters)
    clip_value = _number(name, "clip_value", clip_value)
    with no_grad():
        for p in params:
            if p.grad is not None:
                p.grad.copy_(np.clip(p.grad.numpy(), -clip_value, clip_value))
