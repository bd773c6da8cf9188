# Type stub of fastgrad.optim.adagrad (the runtime module has the same names).
from typing import Any, Iterable

import fastgrad.optim.optimizer
from fastgrad.optim.optimizer import Optimizer

from .optimizer import Optimizer as Optimizer

__all__ = ['Adagrad']


class Adagrad(fastgrad.optim.optimizer.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = ..., lr_decay: float = ..., weight_decay: float = ..., initial_accumulator_value: float = ..., eps: float = ..., *, maximize: bool = ..., error_if_nonfinite: bool = ...) -> None: ...

