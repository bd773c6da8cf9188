"""Adadelta (torch.optim.Adadelta)."""
import numpy as np

from .._core import fused_reference as _checks
from .optimizer import Optimizer

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012): steps in the units of the parameters themselves.

        s = rho*s + (1 - rho)*g^2
        delta = sqrt(a + eps) / sqrt(s + eps) * g
        a = rho*a + (1 - rho)*delta^2
        p -= lr * delta

    `weight_decay` adds wd*p to g.  The update is a NumPy loop per parameter
    on both cores; every gradient and state entry is checked before anything
    changes.
    """

    _STATE_KEYS = ("step", "square_avg", "acc_delta")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False,
                 error_if_nonfinite=False):
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults, error_if_nonfinite)

    def _check(self, group):
        name = type(self).__name__
        self._nonnegative(group, "lr", "learning rate")
        rho = group["rho"]
        if isinstance(rho, (str, bytes)) or not 0.0 <= rho <= 1.0:
            raise ValueError("%s: Invalid rho value: %s (expected 0 <= rho <= 1)" % (name, rho))
        self._nonnegative(group, "eps", "epsilon value")
        self._nonnegative(group, "weight_decay", "weight_decay value")

    def _update(self):
        name = type(self).__name__
        hypers = [(_checks._hyper(name, gi, group, "lr", "rho", "eps", "weight_decay"),
                   bool(group["maximize"])) for gi, group in enumerate(self.param_groups)]
        plan = _checks._gather(name, self.param_groups, self.state, self.error_if_nonfinite,
                               lambda group: ("square_avg", "acc_delta"), True)
        # Phase 2: everything is checked.
        for items, ((lr, rho, eps, wd), maximize) in zip(plan, hypers):
            for p, v, grad, arrays, step in items:
                g = -grad if maximize else grad
                s = _checks._zeros(self.state, p, "square_avg", arrays, v)
                a = _checks._zeros(self.state, p, "acc_delta", arrays, v)
                _checks._count(self.state, p, step)
                if wd != 0:
                    g = g + wd * v
                s *= rho
                s += (1 - rho) * g * g
                delta = np.sqrt(a + eps) / np.sqrt(s + eps) * g
                a *= rho
                a += (1 - rho) * delta * delta
                v -= lr * delta
                p._bump_version()
