# Type stub of the compiled fused optimizer updates; fused_reference.py has the same functions.
from typing import Optional

import numpy as np

def sgd_step(params: list[np.ndarray], grads: list[np.ndarray],
             momentum_buffers: Optional[list[Optional[np.ndarray]]], lr: float, momentum: float,
             dampening: float, weight_decay: float, nesterov: bool, maximize: bool) -> None: ...
def adam_step(params: list[np.ndarray], grads: list[np.ndarray], exp_avgs: list[np.ndarray],
              exp_avg_sqs: list[np.ndarray], max_exp_avg_sqs: Optional[list[np.ndarray]],
              steps: list[np.ndarray], lr: float, beta1: float, beta2: float, eps: float,
              weight_decay: float, amsgrad: bool, maximize: bool, decoupled: bool) -> None: ...
def rmsprop_step(params: list[np.ndarray], grads: list[np.ndarray], square_avgs: list[np.ndarray],
                 grad_avgs: Optional[list[np.ndarray]],
                 momentum_buffers: Optional[list[np.ndarray]], steps: list[np.ndarray],
                 lr: float, alpha: float, eps: float, weight_decay: float, momentum: float,
                 centered: bool, maximize: bool) -> None: ...
def adagrad_step(params: list[np.ndarray], grads: list[np.ndarray], state_sums: list[np.ndarray],
                 steps: list[np.ndarray], lr: float, lr_decay: float, weight_decay: float,
                 eps: float, maximize: bool) -> None: ...
