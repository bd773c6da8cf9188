"""RMSprop (torch.optim.RMSprop)."""
from .._core import fused as _fused
from .optimizer import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""Divide the gradient by a running root mean square of recent gradients.

        v = alpha*v + (1 - alpha)*g^2
        avg = sqrt(v - gavg^2) + eps  (centered, gavg a running mean of g)  or  sqrt(v) + eps
        p -= lr * g / avg   (or, with momentum mu: buf = mu*buf + g/avg; p -= lr*buf)
    `error_if_nonfinite=True` refuses a step whose gradients hold NaN or
    inf (see Optimizer).
    """

    _STATE_KEYS = ("step", "square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False, error_if_nonfinite=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults, error_if_nonfinite)

    def _check(self, group):
        self._nonnegative(group, "lr", "learning rate")
        self._nonnegative(group, "eps", "epsilon value")
        self._nonnegative(group, "momentum", "momentum value")
        self._nonnegative(group, "weight_decay", "weight_decay value")
        self._nonnegative(group, "alpha", "alpha value")

    def _update(self):
        _fused.rmsprop_step(type(self).__name__, self.param_groups, self.state,
                            self.error_if_nonfinite)
