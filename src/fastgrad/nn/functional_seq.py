"""Functional forms of the sequence layers: embedding, layer_norm, attention.

Everything here is composed from the core's differentiable ops (indexing,
views, matmul, exp/log-sum-exp, where), so both cores run it with no rule
of its own and fg.compile can replay it.  They are re-exported from
nn.functional.
"""
import math

import numpy as np

from .._core import core
from .functional import dropout, _tensor, _check_probability


def _shape(t):
    return tuple(t.shape)


def _linear(x, weight, bias=None):
    """linear on the rows of x: a contiguous (..., in) input goes in as one 2-D product.

    NumPy multiplies a 3-D array by a matrix one batch entry at a time; the
    same numbers as a single (rows, in) matrix take one BLAS call, forward
    and backward (the reshapes are views).
    """
    if x.ndim > 2 and x.numpy().flags.c_contiguous:
        lead = tuple(x.shape[:-1])
        out = core.linear(x.reshape(-1, x.shape[-1]), weight, bias)
        return out.reshape(*lead, weight.shape[0])
    return core.linear(x, weight, bias)


# ---------------------------------------------------------------------------
# embedding
# ---------------------------------------------------------------------------
def _indices(name, input, num):
    """Integer indices as an int64 array, each checked against `num` rows."""
    idx = input.numpy() if isinstance(input, core.TensorBase) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError("%s: indices must be integers, got dtype %s" % (name, idx.dtype))
    idx = idx.astype(np.int64, copy=False)
    if idx.size and (idx.min() < 0 or idx.max() >= num):
        _out_of_range(name, idx, num)
    return idx


def _out_of_range(name, idx, num):
    bad = (idx < 0) | (idx >= num)
    raise IndexError("%s: index %d is out of range for %d embeddings (valid: 0 to %d)"
                     % (name, idx[bad].flat[0], num, num - 1))


def _padding_idx(name, padding_idx, num):
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
        raise TypeError("%s: padding_idx must be an int or None, got %r" % (name, padding_idx))
    if not -num <= padding_idx < num:
        raise ValueError("%s: padding_idx %d must be within num_embeddings (%d), i.e. %d to %d"
                         % (name, padding_idx, num, -num, num - 1))
    return int(padding_idx) % num


def embedding(input, weight, padding_idx=None):
    """Rows of `weight` (num_embeddings, embedding_dim) picked by the integer `input`.

    The result has shape input.shape + (embedding_dim,).  Rows looked up at
    `padding_idx` send no gradient back to the weight (their values still
    come out as they are).
    """
    weight = _tensor(weight)
    if weight.ndim != 2:
        raise ValueError("embedding: weight must be 2-D (num_embeddings, embedding_dim), got "
                         "shape %s" % (_shape(weight),))
    num = weight.shape[0]
    idx = _indices("embedding", input, num)
    padding_idx = _padding_idx("embedding", padding_idx, num)
    rows = weight[idx]
    if padding_idx is not None:
        hit = idx == padding_idx
        if np.any(hit):
            # the padded positions read a detached copy: same values, no gradient
            rows = core.where(hit[..., None], weight.detach()[idx], rows)
    return rows


# ---------------------------------------------------------------------------
# layer normalisation
# ---------------------------------------------------------------------------
def _normalized_shape(name, normalized_shape):
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    whole = (int, np.integer)
    if not isinstance(normalized_shape, (tuple, list)) or not all(
            isinstance(n, whole) and not isinstance(n, bool) for n in normalized_shape):
        raise TypeError("%s: normalized_shape must be an int or a tuple of ints, got %r"
                        % (name, normalized_shape))
    shape = tuple(int(n) for n in normalized_shape)
    if any(n < 0 for n in shape):
        raise ValueError("%s: normalized_shape must hold non-negative sizes, got %s"
                         % (name, shape))
    return shape


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(x - mean) / sqrt(var + eps) over the trailing `normalized_shape` dims, * weight + bias.

    The variance is the biased one (divide by the count), as PyTorch, and is
    taken of the centred values (not E[x^2] - E[x]^2, which cancels
    catastrophically when the mean is large).  The normalisation is one node
    of the core (layer_norm); weight and bias are a broadcast mul and add.
    """
    if isinstance(input, core.TensorBase) and type(normalized_shape) is tuple \
            and len(normalized_shape) == 1 and type(normalized_shape[0]) is int \
            and input.ndim and input.shape[-1] == normalized_shape[0] \
            and input.dtype.kind == "f":
        # the common call (one trailing axis of a float tensor), checked in short
        out = core.layer_norm(input, 1, eps)
        if weight is not None:
            if getattr(weight, "shape", None) != normalized_shape:
                _layer_norm_slow(input, normalized_shape, weight, bias, eps)   # raises
            out = out * weight
        if bias is not None:
            if getattr(bias, "shape", None) != normalized_shape:
                _layer_norm_slow(input, normalized_shape, weight, bias, eps)   # raises
            out = out + bias
        return out
    return _layer_norm_slow(input, normalized_shape, weight, bias, eps)


def _layer_norm_slow(input, normalized_shape, weight, bias, eps):
    name = "layer_norm"
    input = _tensor(input)
    shape = _normalized_shape(name, normalized_shape)
    k = len(shape)
    if k == 0 or input.ndim < k or _shape(input)[input.ndim - k:] != shape:
        raise ValueError("%s: input of shape %s does not end in normalized_shape %s"
                         % (name, _shape(input), shape))
    for what, p in (("weight", weight), ("bias", bias)):
        if p is not None and _shape(p) != shape:
            raise ValueError("%s: %s must have normalized_shape %s, got %s"
                             % (name, what, shape, _shape(p)))
    if input.dtype.kind != "f":
        input = input.float()
    out = core.layer_norm(input, k, eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


# ---------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------
def _float_mask(name, what, mask, dtype, true_masks):
    """A mask as an additive float array: a boolean mask gives 0 / -inf.

    true_masks: whether True means "masked out" (MultiheadAttention's
    convention) or "may attend" (scaled_dot_product_attention's).
    """
    m = mask.numpy() if isinstance(mask, core.TensorBase) else np.asarray(mask)
    if m.dtype == np.bool_:
        blocked = m if true_masks else ~m
        return np.where(blocked, -np.inf, 0.0).astype(dtype)
    if m.dtype.kind != "f":
        raise TypeError("%s: %s must be bool or floating point, got dtype %s"
                        % (name, what, m.dtype))
    return mask if isinstance(mask, core.TensorBase) else m.astype(dtype, copy=False)


def _causal(L, S, dtype):
    # position i may attend to keys 0..i (the upper triangle is blocked)
    return np.where(np.triu(np.ones((L, S), dtype=bool), 1), -np.inf, 0.0).astype(dtype)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """softmax(q @ k^T * scale + mask) @ v over the last two dims, batched over the rest.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev).
    As PyTorch: a boolean attn_mask says which positions MAY attend (True =
    take part); a float mask is added to the scores; is_causal masks the
    upper triangle (and excludes attn_mask); scale defaults to 1/sqrt(E);
    dropout_p applies whenever it is positive (pass 0 outside training).
    """
    name = "scaled_dot_product_attention"
    q, k, v = _tensor(query), _tensor(key), _tensor(value)
    _check_probability(name, dropout_p)
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError("%s: query, key and value need at least 2 dimensions (..., length, "
                         "features), got shapes %s, %s, %s"
                         % (name, _shape(q), _shape(k), _shape(v)))
    if q.shape[-1] != k.shape[-1]:
        raise ValueError("%s: query and key must have the same feature size, got shapes %s "
                         "and %s" % (name, _shape(q), _shape(k)))
    if k.shape[-2] != v.shape[-2]:
        raise ValueError("%s: key and value must have the same length, got shapes %s and %s"
                         % (name, _shape(k), _shape(v)))
    if is_causal and attn_mask is not None:
        raise ValueError("%s: pass either attn_mask or is_causal=True, not both" % name)
    L, S = q.shape[-2], k.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    scores = core.matmul(q, k.transpose(-2, -1)) * float(scale)
    mask = None
    if is_causal:
        mask = _causal(L, S, scores.dtype)
    elif attn_mask is not None:
        mask = _float_mask(name, "attn_mask", attn_mask, scores.dtype, true_masks=False)
        try:
            np.broadcast_shapes(_shape(mask), _shape(scores))
        except ValueError:
            raise ValueError("%s: attn_mask of shape %s does not broadcast against the "
                             "attention scores of shape %s"
                             % (name, _shape(mask), _shape(scores))) from None
    if mask is not None:
        scores = scores + mask
    weights = scores.softmax(-1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, True)
    return core.matmul(weights, v)


def _attention(q, k, v, mask, dropout_p, training):
    """q (N, H, L, D), k, v (N, H, S, D); mask additive, broadcasting to (N, H, L, S).

    Returns the attended values (N, H, L, D) and the attention weights.
    """
    scores = core.matmul(q * (1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0),
                         k.transpose(-2, -1))
    if mask is not None:
        scores = scores + mask
    weights = scores.softmax(-1)
    # as PyTorch, the weights handed back are the ones used (after dropout)
    if dropout_p > 0.0 and training:
        weights = dropout(weights, dropout_p, True)
    return core.matmul(weights, v), weights


__all__ = ["embedding", "layer_norm", "scaled_dot_product_attention"]
