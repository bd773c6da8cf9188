# Type stub of fastgrad.nn.pooling (the runtime module has the same names).
from typing import Any

from fastgrad._typing import TensorLike

from fastgrad.nn.module import Module

from ..autograd import _ArrayFunction as Function
from .conv import as_tensor as as_tensor
from .conv import ntuple as ntuple
from .conv import cached as cached, gather_patches as gather_patches
from .conv import is_int as is_int
from .module import Module as Module
import fastgrad.nn.module
from fastgrad.tensor import Tensor

def max_pool(name: str, nd: Any, input: Any, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = ..., padding: int | tuple[int, ...] | str = ..., dilation: int | tuple[int, ...] = ..., ceil_mode: bool = ..., return_indices: bool = ...) -> Any: ...
def avg_pool(name: str, nd: Any, input: Any, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = ..., padding: int | tuple[int, ...] | str = ..., ceil_mode: bool = ..., count_include_pad: bool = ..., divisor_override: Any = ...) -> Any: ...
def adaptive_avg_pool(name: str, nd: Any, input: Any, output_size: int | tuple[int, ...]) -> Any: ...
def max_pool1d(input: Any, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = ..., padding: int | tuple[int, ...] | str = ..., dilation: int | tuple[int, ...] = ..., ceil_mode: bool = ..., return_indices: bool = ...) -> Any: ...
def max_pool2d(input: Any, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = ..., padding: int | tuple[int, ...] | str = ..., dilation: int | tuple[int, ...] = ..., ceil_mode: bool = ..., return_indices: bool = ...) -> Any: ...
def avg_pool1d(input: Any, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = ..., padding: int | tuple[int, ...] | str = ..., ceil_mode: bool = ..., count_include_pad: bool = ...) -> Any: ...
def avg_pool2d(input: Any, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = ..., padding: int | tuple[int, ...] | str = ..., ceil_mode: bool = ..., count_include_pad: bool = ..., divisor_override: Any = ...) -> Any: ...
def adaptive_avg_pool1d(input: Any, output_size: int | tuple[int, ...]) -> Any: ...
def adaptive_avg_pool2d(input: Any, output_size: int | tuple[int, ...]) -> Any: ...

class _MaxPoolNd(fastgrad.nn.module.Module):
    kernel_size: Any
    stride: Any
    padding: Any
    dilation: Any
    return_indices: Any
    ceil_mode: Any
    def __init__(self, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = ..., padding: int | tuple[int, ...] | str = ..., dilation: int | tuple[int, ...] = ..., return_indices: bool = ..., ceil_mode: bool = ...) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...


class _AvgPoolNd(fastgrad.nn.module.Module):
    kernel_size: Any
    stride: Any
    padding: Any
    ceil_mode: Any
    count_include_pad: Any
    divisor_override: Any
    def __init__(self, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = ..., padding: int | tuple[int, ...] | str = ..., ceil_mode: bool = ..., count_include_pad: bool = ..., divisor_override: Any = ...) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...


class _AdaptiveAvgPoolNd(fastgrad.nn.module.Module):
    output_size: Any
    def __init__(self, output_size: int | tuple[int, ...]) -> None: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...


class MaxPool1d(_MaxPoolNd):
    ...


class MaxPool2d(_MaxPoolNd):
    ...


class AvgPool1d(_AvgPoolNd):
    def __init__(self, kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] | None = ..., padding: int | tuple[int, ...] | str = ..., ceil_mode: bool = ..., count_include_pad: bool = ...) -> None: ...


class AvgPool2d(_AvgPoolNd):
    ...


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    ...


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    ...

