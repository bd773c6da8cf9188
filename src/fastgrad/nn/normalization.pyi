# Type stub of fastgrad.nn.normalization (the runtime module has the same names).
from typing import Any

from fastgrad._typing import TensorLike

from fastgrad.nn.module import Module
from fastgrad.nn.parameter import Parameter

from ..autograd import FunctionCtx as FunctionCtx
from ..autograd import _ArrayFunction as Function
from ..autograd import no_grad as no_grad
from ..tensor import get_default_dtype as get_default_dtype
from . import init as init
from .conv import as_tensor as as_tensor
from .module import Module as Module
from .parameter import Parameter as Parameter
import fastgrad.nn.module
from fastgrad.tensor import Tensor
from fastgrad._typing import DTypeLike

def normalize_batch(name: str, input: Any, running_mean: Any, running_var: Any, weight: TensorLike | None, bias: bool, training: bool, momentum: float, eps: float) -> Any: ...
def batch_norm(input: Any, running_mean: Any, running_var: Any, weight: TensorLike | None = ..., bias: bool | None = ..., training: bool = ..., momentum: float = ..., eps: float = ...) -> Any: ...

class _BatchNorm(fastgrad.nn.module.Module):
    num_features: Any
    eps: Any
    momentum: Any
    affine: Any
    track_running_stats: Any
    weight: Parameter
    bias: Any
    def __init__(self, num_features: int, eps: float = ..., momentum: float = ..., affine: bool = ..., track_running_stats: bool = ..., dtype: DTypeLike | None = ...) -> None: ...
    def reset_running_stats(self) -> None: ...
    def reset_parameters(self) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...


class BatchNorm1d(_BatchNorm):
    ...


class BatchNorm2d(_BatchNorm):
    ...

