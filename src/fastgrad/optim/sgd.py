"""Stochastic gradient descent, with momentum, Nesterov and weight decay (torch.optim.SGD)."""
from .._core import fused as _fused
from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""p <- p - lr * d, where d is the gradient (plus weight_decay * p), or its momentum average.

    With momentum mu: buf = mu * buf + (1 - dampening) * d (buf = d on the
    first step), and d = buf, or d + mu * buf with nesterov=True.
    `weight_decay=wd` is the same as adding (wd / 2) * ||p||^2 to the loss.
    `maximize=True` ascends instead.
    `error_if_nonfinite=True` refuses a step whose gradients hold NaN or
    inf (see Optimizer).
    """

    _STATE_KEYS = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False, error_if_nonfinite=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults, error_if_nonfinite)

    def _check(self, group):
        self._nonnegative(group, "lr", "learning rate")
        self._nonnegative(group, "momentum", "momentum value")
        self._nonnegative(group, "weight_decay", "weight_decay value")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening (SGD got "
                             "momentum=%s, dampening=%s)" % (group["momentum"], group["dampening"]))

    def _update(self):
        _fused.sgd_step(type(self).__name__, self.param_groups, self.state,
                        self.error_if_nonfinite)
