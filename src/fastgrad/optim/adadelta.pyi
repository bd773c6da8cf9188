# Type stub of fastgrad.optim.adadelta (the runtime module has the same names).
from typing import Any, Iterable

import fastgrad.optim.optimizer
from fastgrad.optim.optimizer import Optimizer

from .optimizer import Optimizer as Optimizer

__all__ = ['Adadelta']


class Adadelta(fastgrad.optim.optimizer.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = ..., rho: float = ..., eps: float = ..., weight_decay: float = ..., *, maximize: bool = ..., error_if_nonfinite: bool = ...) -> None: ...

