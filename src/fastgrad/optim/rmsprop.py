"""RMSprop (torch.optim.RMSprop)."""
from .._core import fused as _fused
from .optimizer import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""Divide the gradient by a running root mean square of recent gradients.

        v = alpha*v + (1 - alpha)*g^2
        avg = sqrt(v - gavg^2) + eps  (centered, gavg a running mean of g)  or  sqrt(v) + eps
        p -= lr * g / avg   (or, with momentum mu: buf = mu*buf + g/avg; p -= lr*buf)
    """

    _STATE_KEYS = ("step", "square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _check(self, group):
        self._nonnegative(group, "lr", "learning rate")
        self._nonnegative(group, "eps", "epsilon value")
        self._nonnegative(group, "momentum", "momentum value")
        self._nonnegative(group, "weight_decay", "weight_decay value")
        self._nonnegative(group, "alpha", "alpha value")

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, values, grads = self._with_grads(group)
            if not params:
                continue
            momentum, centered = group["momentum"], group["centered"]
            keys = ["square_avg"]
            if momentum > 0:
                keys.append("momentum_buffer")
            if centered:
                keys.append("grad_avg")
            steps, lists = self._steps_and_zeros(params, values, keys)
            state = dict(zip(keys, lists))
            _fused.rmsprop_step(values, grads, state["square_avg"], state.get("grad_avg"),
                                state.get("momentum_buffer"), steps, group["lr"], group["alpha"],
                                group["eps"], group["weight_decay"], momentum, centered,
                                group["maximize"])
            self._changed(params)
        return loss
