# Type stub of fastgrad.optim.nadam (the runtime module has the same names).
from typing import Any, Iterable

import fastgrad.optim.optimizer
from fastgrad.optim.optimizer import Optimizer

from .optimizer import Optimizer as Optimizer

__all__ = ['NAdam']


class NAdam(fastgrad.optim.optimizer.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = ..., betas: tuple[float, float] = ..., eps: float = ..., weight_decay: float = ..., momentum_decay: float = ..., decoupled_weight_decay: bool = ..., *, maximize: bool = ..., error_if_nonfinite: bool = ...) -> None: ...

