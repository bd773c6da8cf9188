"""Adagrad (torch.optim.Adagrad)."""
import numpy as np

from .._core import fused as _fused
from .optimizer import Optimizer

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Per-coordinate steps shrinking with the sum of squared gradients.

        s += g^2;   p -= lr / (1 + (t - 1)*lr_decay) * g / (sqrt(s) + eps)

    The sums start at `initial_accumulator_value` (state is created for every
    parameter at construction, as PyTorch does).
    `error_if_nonfinite=True` refuses a step whose gradients hold NaN or
    inf (see Optimizer).
    """

    _STATE_KEYS = ("step", "sum")

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, *, maximize=False, error_if_nonfinite=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        maximize=maximize)
        super().__init__(params, defaults, error_if_nonfinite)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _check(self, group):
        self._nonnegative(group, "lr", "learning rate")
        self._nonnegative(group, "lr_decay", "lr_decay value")
        self._nonnegative(group, "weight_decay", "weight_decay value")
        self._nonnegative(group, "initial_accumulator_value", "initial_accumulator_value value")
        self._nonnegative(group, "eps", "epsilon value")

    def _init_state(self, p, group):
        st = self.state[p]
        st["step"] = np.zeros((), dtype=np.float64)
        st["sum"] = np.full(p.shape, group["initial_accumulator_value"], dtype=p.dtype)

    def _update(self):
        _fused.adagrad_step(type(self).__name__, self.param_groups, self.state,
                            self.error_if_nonfinite)
