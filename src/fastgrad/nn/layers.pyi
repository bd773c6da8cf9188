# Type stub of fastgrad.nn.layers (the runtime module has the same names).
from typing import Any

from fastgrad._typing import Dim, DTypeLike, TensorLike

import fastgrad.nn.module
from fastgrad.tensor import Tensor
from fastgrad.nn.module import Module
from fastgrad.nn.parameter import Parameter

from ..tensor import get_default_dtype as get_default_dtype
from . import functional as F
from . import init as init
from .module import Module as Module
from .parameter import Parameter as Parameter



class Linear(fastgrad.nn.module.Module):
    in_features: Any
    out_features: Any
    weight: Parameter
    bias: Any
    def __init__(self, in_features: int, out_features: int, bias: bool = ..., dtype: DTypeLike | None = ...) -> None: ...
    def reset_parameters(self) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...



class Identity(fastgrad.nn.module.Module):
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...



class ReLU(fastgrad.nn.module.Module):
    def forward(self, input: TensorLike) -> Tensor: ...



class Sigmoid(fastgrad.nn.module.Module):
    def forward(self, input: TensorLike) -> Tensor: ...



class Tanh(fastgrad.nn.module.Module):
    def forward(self, input: TensorLike) -> Tensor: ...



class LeakyReLU(fastgrad.nn.module.Module):
    negative_slope: Any
    def __init__(self, negative_slope: float = ...) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...



class Softmax(fastgrad.nn.module.Module):
    dim: Any
    def __init__(self, dim: Dim | None = ...) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...


class LogSoftmax(Softmax):
    def forward(self, input: TensorLike) -> Tensor: ...



class Flatten(fastgrad.nn.module.Module):
    start_dim: Any
    end_dim: Any
    def __init__(self, start_dim: int = ..., end_dim: int = ...) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...



class Dropout(fastgrad.nn.module.Module):
    p: Any
    def __init__(self, p: float = ...) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...

