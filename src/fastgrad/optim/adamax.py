"""Adamax (torch.optim.Adamax): Adam with an infinity-norm second moment."""
import numpy as _np

from .._core import fused_reference as _checks
from .optimizer import Optimizer

__all__ = ["Adamax"]


class Adamax(Optimizer):
    r"""Adamax: steps scaled by a decaying running maximum of |g|.

        m = b1*m + (1 - b1)*g,   u = max(b2*u, |g| + eps)
        p -= lr / (1 - b1^t) * m / u

    `weight_decay` adds wd*p to g (L2).  Unlike SGD/Adam the update is a
    NumPy loop per parameter on both cores (not a fused kernel); every
    gradient and state entry is still checked before anything changes.
    """

    _STATE_KEYS = ("step", "exp_avg", "exp_inf")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *,
                 maximize=False, error_if_nonfinite=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults, error_if_nonfinite)

    def _check(self, group):
        self._nonnegative(group, "lr", "learning rate")
        self._nonnegative(group, "eps", "epsilon value")
        _check_betas(type(self).__name__, group["betas"])
        self._nonnegative(group, "weight_decay", "weight_decay value")

    def _update(self):
        name = type(self).__name__
        hypers = []
        for gi, group in enumerate(self.param_groups):
            lr, eps, wd = _checks._hyper(name, gi, group, "lr", "eps", "weight_decay")
            beta1, beta2 = _checks._betas(name, gi, group)
            hypers.append((lr, eps, wd, beta1, beta2, bool(group["maximize"])))
        plan = _checks._gather(name, self.param_groups, self.state, self.error_if_nonfinite,
                               lambda group: ("exp_avg", "exp_inf"), True)
        # Phase 2: everything is checked.
        for items, (lr, eps, wd, beta1, beta2, maximize) in zip(plan, hypers):
            for p, v, grad, arrays, step in items:
                g = -grad if maximize else grad
                m = _checks._zeros(self.state, p, "exp_avg", arrays, v)
                u = _checks._zeros(self.state, p, "exp_inf", arrays, v)
                t = _checks._count(self.state, p, step)
                if wd != 0:
                    g = g + wd * v
                m += (1 - beta1) * (g - m)
                u *= beta2
                _np.maximum(u, _np.abs(g) + eps, out=u)
                v -= (lr / (1 - beta1 ** t)) * (m / u)
                p._bump_version()


def _check_betas(name, betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError("%s: Invalid betas: %r (expected a pair (beta1, beta2))" % (name, betas))
    for i, beta in enumerate(betas):
        if isinstance(beta, (str, bytes)) or not 0.0 <= beta < 1.0:
            raise ValueError("%s: Invalid beta parameter at index %d: %s (expected 0 <= beta < 1)"
                             % (name, i, beta))
