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
    """

    _STATE_KEYS = ("step", "sum")

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, *, maximize=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        maximize=maximize)
        super().__init__(params, defaults)
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
        if "step" not in st:
            st["step"] = np.zeros((), dtype=np.float64)
        if "sum" not in st:
            st["sum"] = np.full(p.shape, group["initial_accumulator_value"], dtype=p.dtype)
        return st

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, values, grads = self._with_grads(group)
            if not params:
                continue
            steps, sums = [], []
            for p in params:
                st = self._init_state(p, group)
                steps.append(st["step"])
                sums.append(st["sum"])
            _fused.adagrad_step(values, grads, sums, steps, group["lr"], group["lr_decay"],
                                group["weight_decay"], group["eps"], group["maximize"])
            self._changed(params)
        return loss
