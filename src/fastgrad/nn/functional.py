"""fastgrad.nn.functional: layers and losses as functions (PyTorch's `F`).

Every loss takes `reduction='mean' | 'sum' | 'none'`.  Where the loss is a
short formula it is written here with tensor ops, so it is differentiable on
both cores with no code of its own; the two places where a plain formula
loses accuracy get one fused rule each:

- cross_entropy with class indices goes to the core's fused op: log-softmax
  by the max-shifted log-sum-exp, and the gradient softmax - onehot;
- binary cross entropy (on probabilities and on logits) are fastgrad
  Functions, NumPy forward and backward in one place for both cores, so the
  logs can be clamped at -100 and `log1p` used as PyTorch does.
"""
import math
import warnings

import numpy as np

from .._core import core
from ..autograd import _ArrayFunction as Function
from ..tensor import default_generator, tensor as _new_tensor

_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------
# layers and activations
# ---------------------------------------------------------------------------
def linear(input, weight, bias=None):
    """input @ weight.T + bias, one node (weight has shape (out_features, in_features))."""
    return core.linear(input, weight, bias)


def relu(input):
    return core.relu(input)


def sigmoid(input):
    return core.sigmoid(input)


def tanh(input):
    return core.tanh(input)


def leaky_relu(input, negative_slope=0.01):
    return core.leaky_relu(input, negative_slope)


def softmax(input, dim=None):
    return _tensor(input).softmax(-1 if dim is None else dim)


def log_softmax(input, dim=None):
    return _tensor(input).log_softmax(-1 if dim is None else dim)


def dropout(input, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only).

    Outside training (or with p=0) the input comes back unchanged.  The mask is
    drawn from fastgrad's global generator, so `fg.manual_seed` fixes it.
    """
    p = _check_probability("dropout", p)
    if not training or p == 0.0:
        return input
    input = _tensor(input)
    if p == 1.0:
        return input * np.zeros(input.shape, dtype=input.dtype)
    keep = default_generator().random(input.shape) >= p
    return input * (keep * (1.0 / (1.0 - p))).astype(input.dtype)


def _check_probability(name, p):
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) \
            or not 0.0 <= p <= 1.0:
        raise ValueError("%s: probability has to be between 0 and 1, but got %r" % (name, p))
    return float(p)


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
def _tensor(x):
    return x if isinstance(x, core.TensorBase) else _new_tensor(x)


def _check_reduction(name, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError("%s: reduction must be 'mean', 'sum' or 'none', got %r"
                         % (name, reduction))


def _reduce(losses, reduction):
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def _values(x):
    return x.numpy() if isinstance(x, core.TensorBase) else np.asarray(x)


def _float_target(name, input, target):
    """The target as a tensor; integer or bool targets become the input's float dtype."""
    if isinstance(target, core.TensorBase):
        if target.dtype.kind != "f":
            return _new_tensor(target.numpy(), dtype=input.dtype)
        return target
    target = np.asarray(target)
    if target.dtype.kind not in "fiub":
        raise TypeError("%s: the target must hold numbers, got dtype %s" % (name, target.dtype))
    if target.dtype.kind != "f":
        target = target.astype(input.dtype)
    return _new_tensor(target)


def _check_broadcast(name, input, target):
    if target.shape == input.shape:
        return
    try:
        shape = np.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ValueError("%s: input of shape %s and target of shape %s do not broadcast"
                         % (name, tuple(input.shape), tuple(target.shape))) from None
    warnings.warn("%s: target shape %s differs from input shape %s; they are broadcast to %s, "
                  "which is rarely what is meant (check for a missing or extra dimension)"
                  % (name, tuple(target.shape), tuple(input.shape), shape), UserWarning,
                  stacklevel=3)


def _check_same_shape(name, input, target):
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError("%s: the target must have the input's shape %s, got %s"
                         % (name, tuple(input.shape), tuple(target.shape)))


def mse_loss(input, target, reduction="mean"):
    """Mean (or sum) of squared differences."""
    _check_reduction("mse_loss", reduction)
    input = _tensor(input)
    target = _float_target("mse_loss", input, target)
    _check_broadcast("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input, target, reduction="mean"):
    """Mean (or sum) of absolute differences."""
    _check_reduction("l1_loss", reduction)
    input = _tensor(input)
    target = _float_target("l1_loss", input, target)
    _check_broadcast("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction)


def _weighted(name, losses, weight):
    if weight is None:
        return losses
    weight = _values(weight)
    try:
        np.broadcast_shapes(weight.shape, losses.shape)
    except ValueError:
        raise ValueError("%s: weight of shape %s does not broadcast against the loss of shape %s"
                         % (name, weight.shape, tuple(losses.shape))) from None
    return losses * weight


# -- binary cross entropy on probabilities ---------------------------------------
class _BinaryCrossEntropy(Function):
    """-(y log p + (1 - y) log(1 - p)), each log clamped at -100 (PyTorch's rule).

    The clamp keeps the loss finite at p = 0 or 1; the gradient
    (p - y) / max(p (1 - p), 1e-12) stays finite for the same reason.
    """

    @staticmethod
    def forward(ctx, p, y):
        with np.errstate(divide="ignore"):
            log_p = np.maximum(np.log(p), -100.0)
            log_q = np.maximum(np.log1p(-p), -100.0)
        ctx.save_for_backward(p, y, log_p, log_q)
        return -(y * log_p + (1.0 - y) * log_q)

    @staticmethod
    def backward(ctx, g):
        p, y, log_p, log_q = ctx.saved_tensors
        gp = gy = None
        if ctx.needs_input_grad[0]:
            gp = (g * (p - y) / np.maximum(p * (1.0 - p), 1e-12)).astype(p.dtype, copy=False)
        if ctx.needs_input_grad[1]:
            gy = (g * (log_q - log_p)).astype(y.dtype, copy=False)
        return gp, gy


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross entropy of probabilities `input` against targets in [0, 1]."""
    name = "binary_cross_entropy"
    _check_reduction(name, reduction)
    input = _tensor(input)
    target = _float_target(name, input, target)
    _check_same_shape(name, input, target)
    p = input.numpy()
    if p.size and not (np.all(p >= 0) and np.all(p <= 1)):
        bad = p[~((p >= 0) & (p <= 1))].flat[0]
        raise ValueError("%s: every input must be a probability in [0, 1], got %r (apply "
                         "sigmoid first, or use binary_cross_entropy_with_logits)" % (name, bad))
    losses = _BinaryCrossEntropy.apply(input, target)
    return _reduce(_weighted(name, losses, weight), reduction)


# -- binary cross entropy on logits ------------------------------------------------
class _BinaryCrossEntropyWithLogits(Function):
    """Binary cross entropy of sigmoid(z) against y, from the logits z.

    With w = 1 + (pos_weight - 1) y, the loss (1 - y) z + w softplus(-z) is
    written as (1 - y) z + w max(-z, 0) + w log1p(exp(-|z|)): exp never
    overflows, log1p keeps the digits of tiny losses, and infinite logits give
    PyTorch's values (z = inf with y < 1 is inf; z = -inf with y > 0 is NaN, as
    there the loss is inf - inf).  d/dz = (1 - y) - w sigmoid(-z), which is sigmoid(z) - y
    when w = 1; d/dy = (pos_weight - 1) softplus(-z) - z.
    """

    @staticmethod
    def forward(ctx, z, y, pos_weight=None):
        tail = np.log1p(np.exp(-np.abs(z)))
        loss = (1.0 - y) * z + np.maximum(-z, 0.0) + tail
        if pos_weight is not None:
            extra = (pos_weight - 1.0) * y
            loss += extra * (np.maximum(-z, 0.0) + tail)
        ctx.save_for_backward(z, y, pos_weight, tail)
        return loss

    @staticmethod
    def backward(ctx, g):
        z, y, pos_weight, tail = ctx.saved_tensors
        gz = gy = None
        if ctx.needs_input_grad[0]:
            w = 1.0 if pos_weight is None else 1.0 + (pos_weight - 1.0) * y
            gz = (g * ((1.0 - y) - w * _sigmoid(-z))).astype(z.dtype, copy=False)
        if ctx.needs_input_grad[1]:
            gw = 0.0 if pos_weight is None else (pos_weight - 1.0) * (np.maximum(-z, 0.0) + tail)
            gy = (g * (gw - z)).astype(y.dtype, copy=False)
        grads = (gz, gy)
        return grads if pos_weight is None else grads + (None,)


def _sigmoid(x):
    # 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0: exp never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """Binary cross entropy of sigmoid(input) against targets, computed from the logits."""
    name = "binary_cross_entropy_with_logits"
    _check_reduction(name, reduction)
    input = _tensor(input)
    target = _float_target(name, input, target)
    _check_same_shape(name, input, target)
    if pos_weight is None:
        losses = _BinaryCrossEntropyWithLogits.apply(input, target)
    else:
        pw = _values(pos_weight)
        try:
            np.broadcast_shapes(pw.shape, input.shape)
        except ValueError:
            raise ValueError("%s: pos_weight of shape %s does not broadcast against the input of "
                             "shape %s" % (name, pw.shape, tuple(input.shape))) from None
        losses = _BinaryCrossEntropyWithLogits.apply(input, target,
                                                     np.broadcast_to(pw, input.shape))
    return _reduce(_weighted(name, losses, weight), reduction)


# -- negative log likelihood and cross entropy ------------------------------------
def _class_targets(name, shape, target, ignore_index):
    """Integer class targets checked against logits / log-probabilities of `shape`."""
    target = _values(target)
    if target.dtype.kind not in "iu":
        raise TypeError("%s: class targets must be integers, got dtype %s (for class "
                        "probabilities pass a float target of the input's shape)"
                        % (name, target.dtype))
    if len(shape) == 1:
        if target.ndim != 0:
            raise ValueError("%s: an unbatched input of shape %s needs a single target, got "
                             "shape %s" % (name, tuple(shape), target.shape))
    elif len(shape) != 2:
        raise ValueError("%s: input must be (batch, classes) or (classes,), got shape %s"
                         % (name, tuple(shape)))
    elif target.shape != (shape[0],):
        raise ValueError("%s: input of shape %s needs targets of shape (%d,), got %s"
                         % (name, tuple(shape), shape[0], target.shape))
    classes = shape[-1]
    bad = (target != ignore_index) & ((target < 0) | (target >= classes))
    if np.any(bad):
        raise IndexError("%s: target %d is out of range for %d classes (valid: 0 to %d)"
                         % (name, np.asarray(target)[bad].flat[0], classes, classes - 1))
    return np.asarray(target, dtype=np.int64)


def _class_weight(name, weight, classes, dtype):
    if weight is None:
        return None
    weight = _values(weight)
    if weight.shape != (classes,):
        raise ValueError("%s: weight must have one entry per class, shape (%d,), got %s"
                         % (name, classes, weight.shape))
    return weight.astype(dtype, copy=False)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """-input[i, target[i]] (log-probabilities in, class indices as targets).

    With `weight`, sample i counts weight[target[i]] and 'mean' divides by the
    sum of those weights; targets equal to `ignore_index` count nothing.
    """
    name = "nll_loss"
    _check_reduction(name, reduction)
    input = _tensor(input)
    target = _class_targets(name, input.shape, target, ignore_index)
    weight = _class_weight(name, weight, input.shape[-1], input.dtype)
    return _nll(input, target, weight, ignore_index, reduction)


def _nll(logp, target, weight, ignore_index, reduction, smoothing=0.0):
    unbatched = logp.ndim == 1
    if unbatched:
        logp, target = logp.unsqueeze(0), target.reshape(1)
    n, classes = logp.shape
    kept = target != ignore_index
    safe = np.where(kept, target, 0)
    per_class = np.ones(classes, dtype=logp.dtype) if weight is None else weight
    w = np.where(kept, per_class[safe], 0).astype(logp.dtype)
    losses = -logp[np.arange(n), safe] * w
    if smoothing:
        # the smoothed part: every class counts 1/C of the mass, weighted per class
        spread = -(logp * per_class).sum(axis=1) * (kept / classes).astype(logp.dtype)
        losses = losses * (1.0 - smoothing) + spread * smoothing
    if unbatched:
        losses = losses.reshape(())
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    return total * (1.0 / w.sum() if w.sum() != 0 else math.nan)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross entropy of logits `input` (batch, classes) against class indices or probabilities.

    Integer targets: -log softmax(input)[i, target[i]], through the core's
    fused op when no weight, ignored index or smoothing is involved.  Float
    targets of the input's shape are class probabilities:
    -sum_c target[i, c] log softmax(input)[i, c].
    """
    # the common case, straight to the fused op (which checks shapes, range, reduction)
    # (an empty batch goes the long way: the fused op needs a row to divide by)
    if weight is None and not label_smoothing and ignore_index < 0 \
            and isinstance(input, core.TensorBase) and input.ndim == 2 and input.shape[0]:
        values = target.numpy() if isinstance(target, core.TensorBase) else target
        if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
            try:
                return core.cross_entropy(input, values, reduction)
            except IndexError:
                if not np.any(values == ignore_index):
                    raise                   # a class out of range, not an ignored one
    name = "cross_entropy"
    _check_reduction(name, reduction)
    smoothing = _check_probability(name + " label_smoothing", label_smoothing)
    input = _tensor(input)
    if input.ndim not in (1, 2):
        raise ValueError("%s: input must be (batch, classes) or (classes,), got shape %s"
                         % (name, tuple(input.shape)))
    classes = input.shape[-1]
    weight = _class_weight(name, weight, classes, input.dtype)
    values = _values(target)
    if values.dtype.kind == "f":
        return _soft_cross_entropy(input, target, weight, reduction, smoothing)
    target = _class_targets(name, input.shape, values, ignore_index)
    if (input.ndim == 2 and input.shape[0] and weight is None and not smoothing
            and not np.any(target == ignore_index)):
        return core.cross_entropy(input, target, reduction)
    logp = input.log_softmax(-1)
    return _nll(logp, target, weight, ignore_index, reduction, smoothing)


def _soft_cross_entropy(input, target, weight, reduction, smoothing):
    name = "cross_entropy"
    target = _float_target(name, input, target)
    _check_same_shape(name, input, target)
    classes = input.shape[-1]
    if smoothing:
        target = target * (1.0 - smoothing) + smoothing / classes
    logp = input.log_softmax(-1)
    terms = logp * target if weight is None else logp * target * weight
    losses = -terms.sum(-1)
    if reduction == "mean" and input.ndim == 2:
        # the mean over an empty batch is nan, as in PyTorch
        return losses.sum() * (1.0 / input.shape[0] if input.shape[0] else math.nan)
    return _reduce(losses, reduction)


# ===========================================================================
# convolution, pooling, batch norm, more activations and losses, distances.
# Everything below composes public tensor ops (or, where a formula needs a
# function NumPy has and the op set lacks, is a small fg.Function with its
# exact derivative), so it runs unchanged on both cores.
# ===========================================================================
from .conv import conv1d, conv2d  # noqa: E402
from .pooling import (max_pool1d, max_pool2d, avg_pool1d, avg_pool2d,  # noqa: E402
                      adaptive_avg_pool1d, adaptive_avg_pool2d)
from .normalization import batch_norm  # noqa: E402
from .activation import gelu, silu, elu, softplus, hardtanh, prelu  # noqa: E402
from ..tensor import where as _where  # noqa: E402

def _check_loss_reduction(name, reduction, extra=()):
    if reduction not in _REDUCTIONS + tuple(extra):
        raise ValueError("%s: reduction must be %s, got %r"
                         % (name, ", ".join(repr(r) for r in _REDUCTIONS + tuple(extra)),
                            reduction))


def _huber_terms(diff, delta):
    # with a = |d| and m = min(a, delta): 0.5 m^2 + delta (a - m) is 0.5 d^2 inside and
    # delta (a - delta / 2) outside, with no where() on the values; clip passes the
    # gradient at a == delta, where both pieces have slope delta
    a = diff.abs()
    m = a.clip(max=delta)
    return m * m * 0.5 + (a - m) * delta


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - beta / 2 (beta = 0 is the L1 loss)."""
    name = "smooth_l1_loss"
    _check_reduction(name, reduction)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise ValueError("%s: beta must be a non-negative number, got %r" % (name, beta))
    input = _tensor(input)
    target = _float_target(name, input, target)
    _check_broadcast(name, input, target)
    diff = input - target
    if beta == 0:
        return _reduce(diff.abs(), reduction)
    return _reduce(_huber_terms(diff, float(beta)) * (1.0 / beta), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """0.5 d^2 where |d| <= delta, else delta (|d| - delta / 2)."""
    name = "huber_loss"
    _check_reduction(name, reduction)
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not delta > 0:
        raise ValueError("%s: delta must be a positive number, got %r" % (name, delta))
    input = _tensor(input)
    target = _float_target(name, input, target)
    _check_broadcast(name, input, target)
    return _reduce(_huber_terms(input - target, float(delta)), reduction)


def kl_div(input, target, reduction="mean", log_target=False):
    """KL(target || exp(input)) pointwise: target (log target - input); input holds log-probs.

    reduction='batchmean' divides the sum by the batch size (the KL divergence
    per sample); 'mean' divides by the number of elements, as torch does.
    """
    name = "kl_div"
    _check_loss_reduction(name, reduction, ("batchmean",))
    input = _tensor(input)
    target = _float_target(name, input, target)
    _check_broadcast(name, input, target)
    if log_target:
        terms = target.exp() * (target - input)
    elif not target.requires_grad:
        t = target.numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            # x log x is 0 at x = 0 (its limit), as torch's xlogy
            tlogt = np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), np.where(t == 0, 0, np.nan))
        terms = _new_tensor(tlogt.astype(input.dtype)) - target * input
    else:
        safe = _where(target.numpy() > 0, target, 1.0)
        terms = target * safe.log() - target * input
    if reduction == "mean":
        warnings.warn("kl_div: reduction='mean' divides the total by the number of elements, "
                      "not the batch size; 'batchmean' gives the KL divergence per sample",
                      UserWarning, stacklevel=2)
    if reduction == "batchmean":
        return terms.sum() * (1.0 / input.shape[0]) if input.ndim else terms.sum()
    return _reduce(terms, reduction)


def _clamped_norm(x, dim, eps, p=2.0):
    # the norm clamped below at eps; for p = 2 the clamp acts on the squared norm, so at a
    # zero vector the clamp stops the norm's gradient (which would be 0 * inf = nan) and
    # x / eps is differentiated alone, as torch does
    if p == 2.0:
        return (x * x).sum(axis=dim, keepdims=True).clip(min=eps * eps).sqrt()
    if p == math.inf:
        return x.abs().amax(axis=dim, keepdims=True).clip(min=eps)
    return (x.abs() ** p).sum(axis=dim, keepdims=True).clip(min=eps ** p) ** (1.0 / p)


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """input / max(||input||_p, eps) along dim."""
    input = _tensor(input)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0:
        raise ValueError("normalize: p must be a positive number, got %r" % (p,))
    return input / _clamped_norm(input, dim, eps, float(p))


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps)) along dim (broadcasting x1, x2)."""
    x1, x2 = _tensor(x1), _tensor(x2)
    try:
        shape = np.broadcast_shapes(tuple(x1.shape), tuple(x2.shape))
    except ValueError:
        raise ValueError("cosine_similarity: x1 of shape %s and x2 of shape %s do not broadcast"
                         % (tuple(x1.shape), tuple(x2.shape))) from None
    if not -len(shape) <= dim < max(len(shape), 1):
        raise ValueError("cosine_similarity: dim %d is out of range for shape %s" % (dim, shape))
    # torch broadcasts first: a norm along a broadcast axis counts every repeat
    x1 = x1 if tuple(x1.shape) == shape else x1.expand(*shape)
    x2 = x2 if tuple(x2.shape) == shape else x2.expand(*shape)
    return ((x1 / _clamped_norm(x1, dim, eps)) * (x2 / _clamped_norm(x2, dim, eps))).sum(axis=dim)

_LAYERS_ALL = ["conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
               "adaptive_avg_pool1d", "adaptive_avg_pool2d", "batch_norm", "gelu", "silu", "elu",
               "softplus", "hardtanh", "prelu", "smooth_l1_loss", "huber_loss", "kl_div",
               "cosine_similarity", "normalize"]
# ===========================================================================


__all__ = ["linear", "relu", "sigmoid", "tanh", "leaky_relu", "softmax", "log_softmax",
           "dropout", "mse_loss", "l1_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "nll_loss", "cross_entropy"]
__all__ += _LAYERS_ALL


# -- sequence layers (embedding, layer_norm, attention): see functional_seq.py --
from .functional_seq import embedding, layer_norm, scaled_dot_product_attention  # noqa: E402,F401
__all__ += ["embedding", "layer_norm", "scaled_dot_product_attention"]

# one_hot and pad are tensor functions (fastgrad.tensor), spelled F.one_hot / F.pad as in torch
from ..tensor import one_hot, pad  # noqa: E402,F401
__all__ += ["one_hot", "pad"]
