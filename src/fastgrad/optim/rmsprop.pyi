# Type stub of fastgrad.optim.rmsprop (the runtime module has the same names).
from typing import Any, Iterable

import fastgrad.optim.optimizer
from fastgrad.optim.optimizer import Optimizer

from .optimizer import Optimizer as Optimizer

__all__ = ['RMSprop']


class RMSprop(fastgrad.optim.optimizer.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = ..., alpha: float = ..., eps: float = ..., weight_decay: float = ..., momentum: float = ..., centered: bool = ..., *, maximize: bool = ..., error_if_nonfinite: bool = ...) -> None: ...

