# Type stub of fastgrad.optim.lbfgs (the runtime module has the same names).
from typing import Any, Callable, Iterable, Mapping

import fastgrad.optim.optimizer
from fastgrad.optim.optimizer import Optimizer

from ..autograd import enable_grad as enable_grad
from .optimizer import Optimizer as Optimizer

__all__ = ['LBFGS']


class LBFGS(fastgrad.optim.optimizer.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = ..., max_iter: int = ..., max_eval: int | None = ..., tolerance_grad: float = ..., tolerance_change: float = ..., history_size: int = ..., line_search_fn: str | None = ..., *, error_if_nonfinite: bool = ...) -> None: ...
    def add_param_group(self, param_group: Any) -> None: ...
    def step(self, closure: Callable[[], Any] | None) -> Any: ...  # type: ignore[override]
    def state_dict(self) -> Any: ...
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None: ...

