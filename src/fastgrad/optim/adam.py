"""Adam and AdamW (torch.optim.Adam / torch.optim.AdamW)."""
from .._core import fused as _fused
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam: per-coordinate steps from bias-corrected running moments of the gradient.

        m = b1*m + (1 - b1)*g,   v = b2*v + (1 - b2)*g^2
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    `weight_decay` adds wd*p to g (L2); AdamW decays the weights directly
    instead.  `amsgrad=True` uses the running maximum of v.
    `error_if_nonfinite=True` refuses a step whose gradients hold NaN or
    inf (see Optimizer).
    """

    _STATE_KEYS = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _DECOUPLED = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, error_if_nonfinite=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize)
        super().__init__(params, defaults, error_if_nonfinite)

    def _check(self, group):
        self._nonnegative(group, "lr", "learning rate")
        self._nonnegative(group, "eps", "epsilon value")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError("Invalid betas: %r (expected a pair (beta1, beta2))" % (betas,))
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError("Invalid beta parameter at index %d: %s (expected 0 <= beta < 1)"
                                 % (i, beta))
        self._nonnegative(group, "weight_decay", "weight_decay value")

    def _update(self):
        _fused.adam_step(type(self).__name__, self.param_groups, self.state,
                         self.error_if_nonfinite, self._DECOUPLED)


class AdamW(Adam):
    r"""Adam with decoupled weight decay: p *= 1 - lr*wd before the Adam step (default wd=0.01).

    `error_if_nonfinite=True` refuses a step whose gradients hold NaN or
    inf (see Optimizer).
    """

    _DECOUPLED = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, error_if_nonfinite=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize,
                         error_if_nonfinite=error_if_nonfinite)
