# Type stub of fastgrad.optim.adam (the runtime module has the same names).
from typing import Any, Iterable

import fastgrad.optim.optimizer
from fastgrad.optim.optimizer import Optimizer

from .optimizer import Optimizer as Optimizer

__all__ = ['Adam', 'AdamW']


class Adam(fastgrad.optim.optimizer.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = ..., betas: tuple[float, float] = ..., eps: float = ..., weight_decay: float = ..., amsgrad: bool = ..., *, maximize: bool = ..., error_if_nonfinite: bool = ...) -> None: ...


class AdamW(Adam):
    def __init__(self, params: Iterable[Any], lr: float = ..., betas: tuple[float, float] = ..., eps: float = ..., weight_decay: float = ..., amsgrad: bool = ..., *, maximize: bool = ..., error_if_nonfinite: bool = ...) -> None: ...

