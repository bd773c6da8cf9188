# Type stub of fastgrad.optim.lr_scheduler (the runtime module has the same names).
from typing import Any, Callable, Mapping, Sequence

from fastgrad.optim.optimizer import Optimizer

from .optimizer import Optimizer as Optimizer

__all__ = ['LRScheduler', 'StepLR', 'ExponentialLR', 'LambdaLR', 'ReduceLROnPlateau', 'MultiStepLR', 'CosineAnnealingLR', 'CosineAnnealingWarmRestarts', 'OneCycleLR', 'LinearLR', 'SequentialLR']

class LRScheduler:
    optimizer: Optimizer
    base_lrs: list[float]
    last_epoch: int
    def __init__(self, optimizer: Optimizer, last_epoch: int = ...) -> None: ...
    def get_lr(self) -> list[float]: ...
    def get_last_lr(self) -> list[float]: ...
    def step(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> Any: ...


class StepLR(LRScheduler):
    step_size: Any
    gamma: Any
    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = ..., last_epoch: int = ...) -> None: ...
    def get_lr(self) -> Any: ...


class ExponentialLR(LRScheduler):
    gamma: Any
    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = ...) -> None: ...
    def get_lr(self) -> Any: ...


class LambdaLR(LRScheduler):
    lr_lambdas: Any
    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]], last_epoch: int = ...) -> None: ...
    def get_lr(self) -> Any: ...


class ReduceLROnPlateau(LRScheduler):
    optimizer: Optimizer
    factor: Any
    patience: Any
    cooldown: Any
    eps: Any
    mode: Any
    threshold: Any
    threshold_mode: Any
    last_epoch: int
    cooldown_counter: Any
    best: Any
    num_bad_epochs: Any
    default_min_lr: Any
    min_lrs: Any
    def __init__(self, optimizer: Optimizer, mode: str = ..., factor: float = ..., patience: int = ..., threshold: float = ..., threshold_mode: str = ..., cooldown: int = ..., min_lr: float | Sequence[float] = ..., eps: float = ...) -> None: ...
    @property
    def in_cooldown(self) -> Any: ...
    def is_better(self, a: Any, best: Any) -> Any: ...
    def step(self, metrics: float) -> None: ...  # type: ignore[override]
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None: ...


class MultiStepLR(LRScheduler):
    milestones: Any
    gamma: Any
    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = ..., last_epoch: int = ...) -> None: ...
    def get_lr(self) -> Any: ...


class CosineAnnealingLR(LRScheduler):
    T_max: Any
    eta_min: Any
    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = ..., last_epoch: int = ...) -> None: ...
    def get_lr(self) -> Any: ...


class CosineAnnealingWarmRestarts(LRScheduler):
    T_0: Any
    T_i: Any
    T_mult: Any
    eta_min: Any
    T_cur: Any
    last_epoch: int
    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = ..., eta_min: float = ..., last_epoch: int = ...) -> None: ...
    def get_lr(self) -> Any: ...
    def step(self, epoch: int | None = ...) -> None: ...


class LinearLR(LRScheduler):
    total_iters: Any
    start_factor: Any
    end_factor: Any
    def __init__(self, optimizer: Optimizer, start_factor: float = ..., end_factor: float = ..., total_iters: int = ..., last_epoch: int = ...) -> None: ...
    def get_lr(self) -> Any: ...


class OneCycleLR(LRScheduler):
    total_steps: Any
    pct_start: Any
    three_phase: Any
    anneal_strategy: Any
    cycle_momentum: Any
    use_beta1: Any
    def __init__(self, optimizer: Optimizer, max_lr: float | Sequence[float], total_steps: int | None = ..., epochs: int | None = ..., steps_per_epoch: int | None = ..., pct_start: float = ..., anneal_strategy: str = ..., cycle_momentum: bool = ..., base_momentum: float | Sequence[float] = ..., max_momentum: float | Sequence[float] = ..., div_factor: float = ..., final_div_factor: float = ..., three_phase: bool = ..., last_epoch: int = ...) -> None: ...
    def step(self) -> None: ...
    def get_lr(self) -> Any: ...


class SequentialLR(LRScheduler):
    last_epoch: int
    optimizer: Optimizer
    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler], milestones: Sequence[int], last_epoch: int = ...) -> None: ...
    def step(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None: ...

