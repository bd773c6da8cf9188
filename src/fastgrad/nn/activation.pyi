# Type stub of fastgrad.nn.activation (the runtime module has the same names).
from typing import Any

from fastgrad._typing import DTypeLike, TensorLike

import fastgrad.nn.module
import fastgrad.nn.module
import fastgrad.nn.module
import fastgrad.nn.module
import fastgrad.nn.module
import fastgrad.nn.module
from fastgrad.tensor import Tensor
from fastgrad.nn.module import Module
from fastgrad.nn.parameter import Parameter

from ..autograd import _ArrayFunction as Function
from ..tensor import get_default_dtype as get_default_dtype
from .conv import as_tensor as as_tensor
from .module import Module as Module
from .parameter import Parameter as Parameter

def gelu(input: Any, approximate: str = ...) -> Any: ...
def silu(input: Any) -> Any: ...
def elu(input: Any, alpha: float = ...) -> Any: ...
def softplus(input: Any, beta: float = ..., threshold: float = ...) -> Any: ...
def hardtanh(input: Any, min_val: float = ..., max_val: float = ...) -> Any: ...
def prelu(input: Any, weight: TensorLike | None) -> Any: ...


class GELU(fastgrad.nn.module.Module):
    approximate: Any
    def __init__(self, approximate: str = ...) -> None: ...
    def forward(self, input: Any) -> Tensor: ...
    def extra_repr(self) -> str: ...



class SiLU(fastgrad.nn.module.Module):
    def forward(self, input: Any) -> Tensor: ...



class ELU(fastgrad.nn.module.Module):
    alpha: Any
    def __init__(self, alpha: float = ...) -> None: ...
    def forward(self, input: Any) -> Tensor: ...
    def extra_repr(self) -> str: ...



class Softplus(fastgrad.nn.module.Module):
    beta: Any
    threshold: Any
    def __init__(self, beta: float = ..., threshold: float = ...) -> None: ...
    def forward(self, input: Any) -> Tensor: ...
    def extra_repr(self) -> str: ...



class Hardtanh(fastgrad.nn.module.Module):
    min_val: Any
    max_val: Any
    def __init__(self, min_val: float = ..., max_val: float = ...) -> None: ...
    def forward(self, input: Any) -> Tensor: ...
    def extra_repr(self) -> str: ...



class PReLU(fastgrad.nn.module.Module):
    num_parameters: Any
    init: Any
    weight: Parameter
    def __init__(self, num_parameters: int = ..., init: float = ..., dtype: DTypeLike | None = ...) -> None: ...
    def forward(self, input: Any) -> Tensor: ...
    def extra_repr(self) -> str: ...

