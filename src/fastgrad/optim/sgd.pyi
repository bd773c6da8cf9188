# Type stub of fastgrad.optim.sgd (the runtime module has the same names).
from typing import Any, Iterable

import fastgrad.optim.optimizer
from fastgrad.optim.optimizer import Optimizer

from .optimizer import Optimizer as Optimizer

__all__ = ['SGD']


class SGD(fastgrad.optim.optimizer.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = ..., momentum: float = ..., dampening: float = ..., weight_decay: float = ..., nesterov: bool = ..., *, maximize: bool = ..., error_if_nonfinite: bool = ...) -> None: ...

