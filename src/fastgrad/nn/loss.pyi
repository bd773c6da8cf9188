# Type stub of fastgrad.nn.loss (the runtime module has the same names).
from typing import Any

from fastgrad._typing import TensorLike

import fastgrad.nn.module
from fastgrad.tensor import Tensor
from fastgrad.nn.module import Module
from fastgrad.nn.parameter import Parameter

from . import functional as F
from .module import Module as Module


class _Loss(fastgrad.nn.module.Module):
    reduction: Any
    def __init__(self, reduction: str = ...) -> None: ...
    def extra_repr(self) -> str: ...


class MSELoss(_Loss):
    def forward(self, input: TensorLike, target: TensorLike) -> Tensor: ...


class L1Loss(_Loss):
    def forward(self, input: TensorLike, target: TensorLike) -> Tensor: ...


class BCELoss(_Loss):
    weight: Parameter
    def __init__(self, weight: TensorLike | None = ..., reduction: str = ...) -> None: ...
    def forward(self, input: TensorLike, target: TensorLike) -> Tensor: ...


class BCEWithLogitsLoss(_Loss):
    weight: Parameter
    pos_weight: Any
    def __init__(self, weight: TensorLike | None = ..., reduction: str = ..., pos_weight: TensorLike | None = ...) -> None: ...
    def forward(self, input: TensorLike, target: TensorLike) -> Tensor: ...


class NLLLoss(_Loss):
    weight: Parameter
    ignore_index: Any
    def __init__(self, weight: TensorLike | None = ..., ignore_index: int = ..., reduction: str = ...) -> None: ...
    def forward(self, input: TensorLike, target: TensorLike) -> Tensor: ...


class CrossEntropyLoss(_Loss):
    weight: Parameter
    ignore_index: Any
    label_smoothing: Any
    def __init__(self, weight: TensorLike | None = ..., ignore_index: int = ..., reduction: str = ..., label_smoothing: float = ...) -> None: ...
    def forward(self, input: TensorLike, target: TensorLike) -> Tensor: ...


class SmoothL1Loss(_Loss):
    beta: Any
    def __init__(self, reduction: str = ..., beta: float = ...) -> None: ...
    def forward(self, input: TensorLike, target: TensorLike) -> Tensor: ...


class HuberLoss(_Loss):
    delta: Any
    def __init__(self, reduction: str = ..., delta: float = ...) -> None: ...
    def forward(self, input: TensorLike, target: TensorLike) -> Tensor: ...



class KLDivLoss(fastgrad.nn.module.Module):
    reduction: Any
    log_target: Any
    def __init__(self, reduction: str = ..., log_target: bool = ...) -> None: ...
    def forward(self, input: TensorLike, target: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...

