# Type stub of fastgrad._summary (the runtime module has the same names).
from typing import Any

from fastgrad._typing import DTypeLike, ShapeLike

from fastgrad.nn.module import Module

from .autograd import no_grad as no_grad
from .nn.module import Module as Module
from .tensor import get_default_dtype as get_default_dtype
from .tensor import zeros as zeros

__all__ = ['summary', 'ModelSummary']

class ModelSummary:
    rows: Any
    total_params: int
    trainable_params: int
    def __init__(self, rows: Any, total: Any, trainable: Any) -> None: ...
    def __str__(self) -> str: ...
    def __repr__(self) -> str: ...

def summary(model: Module, input_shape: ShapeLike, dtype: DTypeLike | None = ...) -> ModelSummary: ...
