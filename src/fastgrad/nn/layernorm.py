"""nn.LayerNorm: normalise over the trailing dimensions, with a learned scale and shift."""
import numpy as np

from ..tensor import get_default_dtype
from . import init
from .functional_seq import layer_norm, _normalized_shape
from .module import Module
from .parameter import Parameter


class LayerNorm(Module):
    """layer_norm over the last len(normalized_shape) dims; weight ones, bias zeros."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, *,
                 dtype=None):
        super().__init__()
        self.normalized_shape = _normalized_shape("LayerNorm", normalized_shape)
        if not self.normalized_shape:
            raise ValueError("LayerNorm: normalized_shape must name at least one dimension")
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or eps < 0:
            raise ValueError("LayerNorm: eps must be a non-negative number, got %r" % (eps,))
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
        if dtype.kind != "f":
            raise TypeError("LayerNorm: dtype must be float32 or float64, got %s" % dtype)
        if self.elementwise_affine:
            self.weight = Parameter(np.empty(self.normalized_shape, dtype=dtype))
            self.bias = Parameter(np.empty(self.normalized_shape, dtype=dtype)) if bias else None
        else:
            self.weight = None
            self.bias = None
        self.reset_parameters()

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return "%s, eps=%r, elementwise_affine=%s" % (self.normalized_shape, self.eps,
                                                       self.elementwise_affine)
