"""nn.MultiheadAttention, with PyTorch's parameters, shapes and mask conventions."""
import numpy as np

from .._core import core
from ..tensor import get_default_dtype
from . import init
from .functional import _check_probability
from .functional_seq import _attention, _float_mask, _linear
from .layers import Linear, _count
from .module import Module
from .parameter import Parameter


def _shape(t):
    return tuple(t.shape)


class MultiheadAttention(Module):
    """Attention over num_heads heads of size embed_dim // num_heads, then an output projection.

    Parameters as PyTorch: in_proj_weight (3 * embed_dim, embed_dim) holding
    the query, key and value projections stacked (or q_proj_weight,
    k_proj_weight, v_proj_weight when kdim or vdim differ from embed_dim),
    in_proj_bias (3 * embed_dim,), out_proj.weight and out_proj.bias.  Masks:
    a boolean attn_mask or key_padding_mask marks with True the positions
    NOT to attend to; a float mask is added to the scores.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False, *, dtype=None):
        super().__init__()
        name = "MultiheadAttention"
        self.embed_dim = _count(name, "embed_dim", embed_dim)
        self.num_heads = _count(name, "num_heads", num_heads)
        if self.embed_dim == 0 or self.num_heads == 0:
            raise ValueError("%s: embed_dim and num_heads must be positive, got embed_dim=%d, "
                             "num_heads=%d" % (name, self.embed_dim, self.num_heads))
        if self.embed_dim % self.num_heads:
            raise ValueError("%s: embed_dim must be divisible by num_heads, got embed_dim=%d and "
                             "num_heads=%d" % (name, self.embed_dim, self.num_heads))
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("%s: add_bias_kv and add_zero_attn are not supported"
                                      % name)
        self.kdim = self.embed_dim if kdim is None else _count(name, "kdim", kdim)
        self.vdim = self.embed_dim if vdim is None else _count(name, "vdim", vdim)
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = _check_probability(name, dropout)
        self.batch_first = bool(batch_first)
        dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
        if dtype.kind != "f":
            raise TypeError("%s: dtype must be float32 or float64, got %s" % (name, dtype))
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.empty((3 * E, E), dtype=dtype))
            self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
        else:
            self.in_proj_weight = None
            self.q_proj_weight = Parameter(np.empty((E, E), dtype=dtype))
            self.k_proj_weight = Parameter(np.empty((E, self.kdim), dtype=dtype))
            self.v_proj_weight = Parameter(np.empty((E, self.vdim), dtype=dtype))
        self.in_proj_bias = Parameter(np.empty((3 * E,), dtype=dtype)) if bias else None
        self.out_proj = Linear(E, E, bias=bias, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        # PyTorch: Xavier-uniform projections, zero biases (out_proj.weight keeps Linear's init)
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    # -- checks -----------------------------------------------------------------
    def _check(self, query, key, value):
        name = "MultiheadAttention"
        for what, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, core.TensorBase):
                raise TypeError("%s: %s must be a tensor, got %s" % (name, what, type(t).__name__))
        if query.ndim not in (2, 3):
            raise ValueError("%s: query must be 2-D (unbatched) or 3-D, got shape %s"
                             % (name, _shape(query)))
        if key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError("%s: query, key and value must have the same number of dimensions, "
                             "got shapes %s, %s, %s"
                             % (name, _shape(query), _shape(key), _shape(value)))
        for what, t, size in (("query", query, self.embed_dim), ("key", key, self.kdim),
                              ("value", value, self.vdim)):
            if t.shape[-1] != size:
                raise ValueError("%s: %s must have %d features in its last dimension (the "
                                 "layer's %s), got shape %s"
                                 % (name, what, size, "embed_dim" if what == "query" else
                                    what[0] + "dim", _shape(t)))
        if _shape(key)[:-1] != _shape(value)[:-1]:
            raise ValueError("%s: key and value must agree in every dimension but the last, got "
                             "shapes %s and %s" % (name, _shape(key), _shape(value)))
        if query.ndim == 3:
            b = 0 if self.batch_first else 1
            if query.shape[b] != key.shape[b]:
                raise ValueError("%s: query and key must have the same batch size, got shapes "
                                 "%s and %s" % (name, _shape(query), _shape(key)))

    def _masks(self, N, L, S, dtype, attn_mask, key_padding_mask, unbatched):
        """One additive mask broadcasting to (N, H, L, S), or None."""
        name = "MultiheadAttention"
        H = self.num_heads
        mask = None
        if attn_mask is not None:
            m = _float_mask(name, "attn_mask", attn_mask, dtype, true_masks=True)
            shape = _shape(m)
            if shape == (L, S):
                mask = m
            elif shape == (N * H, L, S):
                mask = m.reshape((N, H, L, S))
            else:
                raise ValueError("%s: attn_mask must have shape %s or %s, got %s"
                                 % (name, (L, S), (N * H, L, S), shape))
        if key_padding_mask is not None:
            k = _float_mask(name, "key_padding_mask", key_padding_mask, dtype, true_masks=True)
            expected = (S,) if unbatched else (N, S)
            if _shape(k) != expected:
                raise ValueError("%s: key_padding_mask must have shape %s (batch, source length), "
                                 "got %s" % (name, expected, _shape(k)))
            k = k.reshape((N, 1, 1, S))
            mask = k if mask is None else mask + k
        return mask

    # -- forward ------------------------------------------------------------------
    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        self._check(query, key, value)
        if is_causal and attn_mask is None:
            raise ValueError("MultiheadAttention: is_causal=True is a hint that attn_mask is "
                             "the causal mask; pass that mask too")
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        # the projections run in the input's own layout (contiguous: one 2-D product
        # each); heads are split afterwards, batch first: (N, H, length, head_dim)
        bf = self.batch_first and not unbatched
        E = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        H, D = self.num_heads, self.head_dim
        heads = None
        if self._qkv_same_embed_dim and query is key and key is value:
            # self-attention: one product for q, k and v together, split into heads by
            # views alone: (.., 3E) -> (.., 3, H, D) -> (3, N, H, length, D)
            qkv = _linear(query, self.in_proj_weight, b)
            a, c = query.shape[0], query.shape[1]
            if bf:
                heads = qkv.reshape(a, c, 3, H, D).permute(2, 0, 3, 1, 4)
            else:
                heads = qkv.reshape(a, c, 3, H, D).permute(2, 1, 3, 0, 4)
        else:
            if self._qkv_same_embed_dim:
                w = self.in_proj_weight
                wq, wk, wv = w[:E], w[E:2 * E], w[2 * E:]
            else:
                wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
            q, k, v = _linear(query, wq, bq), _linear(key, wk, bk), _linear(value, wv, bv)
        if bf:
            N, L = query.shape[0], query.shape[1]
            S = key.shape[1]
        else:
            L, N = query.shape[0], query.shape[1]
            S = key.shape[0]
        if heads is not None:
            q, k, v = heads[0], heads[1], heads[2]
        elif bf:
            q = q.reshape(N, L, H, D).permute(0, 2, 1, 3)
            k = k.reshape(N, S, H, D).permute(0, 2, 1, 3)
            v = v.reshape(N, S, H, D).permute(0, 2, 1, 3)
        else:
            q = q.reshape(L, N, H, D).permute(1, 2, 0, 3)
            k = k.reshape(S, N, H, D).permute(1, 2, 0, 3)
            v = v.reshape(S, N, H, D).permute(1, 2, 0, 3)
        mask = self._masks(N, L, S, q.dtype, attn_mask, key_padding_mask, unbatched)
        attended, weights = _attention(q, k, v, mask, self.dropout, self.training)
        # heads joined back in the output's layout, so the projection is one 2-D product
        if bf:
            joined = attended.permute(0, 2, 1, 3).reshape(N, L, E)
        else:
            joined = attended.permute(2, 0, 1, 3).reshape(L, N, E)
        out = _linear(joined, self.out_proj.weight, self.out_proj.bias)
        if unbatched:
            out = out.squeeze(1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(1)
        if unbatched:
            weights = weights.squeeze(0)
        return out, weights

    def extra_repr(self):
        return "embed_dim=%d, num_heads=%d, dropout=%r, batch_first=%s" % (
            self.embed_dim, self.num_heads, self.dropout, self.batch_first)
