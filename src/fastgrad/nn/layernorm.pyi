# Type stub of fastgrad.nn.layernorm (the runtime module has the same names).
from typing import Any

from fastgrad._typing import DTypeLike, ShapeLike, TensorLike

import fastgrad.nn.module
from fastgrad.tensor import Tensor
from fastgrad.nn.module import Module
from fastgrad.nn.parameter import Parameter

from ..tensor import get_default_dtype as get_default_dtype
from . import init as init
from .functional_seq import layer_norm as layer_norm
from .module import Module as Module
from .parameter import Parameter as Parameter



class LayerNorm(fastgrad.nn.module.Module):
    normalized_shape: Any
    eps: Any
    elementwise_affine: Any
    weight: Parameter
    bias: Any
    def __init__(self, normalized_shape: ShapeLike, eps: float = ..., elementwise_affine: bool = ..., bias: bool = ..., *, dtype: DTypeLike | None = ...) -> None: ...
    def reset_parameters(self) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...

