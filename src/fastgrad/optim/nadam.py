"""NAdam (torch.optim.NAdam): Adam with Nesterov momentum and a momentum schedule."""
import numpy as np

from .._core import fused_reference as _checks
from .adamax import _check_betas
from .optimizer import Optimizer

__all__ = ["NAdam"]


class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016), with torch's momentum schedule.

        mu_t = b1 * (1 - 0.5 * 0.96^(t * momentum_decay)),   P_t = mu_1 * ... * mu_t
        m = b1*m + (1 - b1)*g,   v = b2*v + (1 - b2)*g^2,   D = sqrt(v / (1 - b2^t)) + eps
        p -= lr * (1 - mu_t) / (1 - P_t) * g / D + lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / D

    `weight_decay` adds wd*p to g, or with `decoupled_weight_decay=True`
    multiplies p by 1 - lr*wd first (NAdamW).  The state keeps the running
    product P_t as 'mu_product' (a 0-d float64 array, like 'step').  The
    update is a NumPy loop per parameter on both cores; every gradient and
    state entry is checked before anything changes.
    """

    _STATE_KEYS = ("step", "mu_product", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, maximize=False,
                 error_if_nonfinite=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        super().__init__(params, defaults, error_if_nonfinite)

    def _check(self, group):
        self._nonnegative(group, "lr", "learning rate")
        self._nonnegative(group, "eps", "epsilon value")
        _check_betas(type(self).__name__, group["betas"])
        self._nonnegative(group, "weight_decay", "weight_decay value")
        self._nonnegative(group, "momentum_decay", "momentum_decay value")

    def _state_value(self, name, index, p, key, value):
        if key != "mu_product":
            return super()._state_value(name, index, p, key, value)
        if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
            value = value.numpy()
        arr = np.asarray(value)
        if arr.size != 1 or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
            raise ValueError("%s: 'mu_product' of parameter %d must be a finite number, got %r"
                             % (name, index, value))
        return np.array(float(arr.reshape(())), dtype=np.float64)

    def _update(self):
        name = type(self).__name__
        hypers = []
        for gi, group in enumerate(self.param_groups):
            lr, eps, wd, decay = _checks._hyper(name, gi, group, "lr", "eps", "weight_decay",
                                                "momentum_decay")
            beta1, beta2 = _checks._betas(name, gi, group)
            hypers.append((lr, eps, wd, decay, beta1, beta2,
                           bool(group["decoupled_weight_decay"]), bool(group["maximize"])))
        plan = _checks._gather(name, self.param_groups, self.state, self.error_if_nonfinite,
                               lambda group: ("exp_avg", "exp_avg_sq"), True)
        products = [[_mu_product(name, gi, pi, self.state.get(p))
                     for pi, (p, _, _, _, _) in enumerate(items)]
                    for gi, items in enumerate(plan)]
        # Phase 2: everything is checked.
        for items, prods, (lr, eps, wd, decay, beta1, beta2, decoupled, maximize) in \
                zip(plan, products, hypers):
            for (p, v, grad, arrays, step), prod in zip(items, prods):
                g = -grad if maximize else grad
                m = _checks._zeros(self.state, p, "exp_avg", arrays, v)
                sq = _checks._zeros(self.state, p, "exp_avg_sq", arrays, v)
                if prod is None:
                    prod = np.ones((), dtype=np.float64)
                    _checks._keep(self.state, p, "mu_product", prod)
                t = _checks._count(self.state, p, step)
                if wd != 0:
                    if decoupled:
                        v *= 1 - lr * wd
                    else:
                        g = g + wd * v
                mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * decay))
                mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * decay))
                prod *= mu
                product = float(prod)
                m += (1 - beta1) * (g - m)
                sq *= beta2
                sq += (1 - beta2) * g * g
                denom = np.sqrt(sq / (1 - beta2 ** t)) + eps
                v -= (lr * (1 - mu) / (1 - product)) * (g / denom)
                v -= (lr * mu_next / (1 - product * mu_next)) * (m / denom)
                p._bump_version()


def _mu_product(name, gi, pi, st):
    """The parameter's running product of momentum factors, checked; None if not made yet."""
    s = st.get("mu_product") if isinstance(st, dict) else None
    if s is None:
        return None
    if not isinstance(s, np.ndarray) or s.dtype != np.float64 or s.shape != ():
        raise TypeError("%s: state 'mu_product' of parameter %d in group %d must be a 0-d "
                        "float64 array, got %r" % (name, pi, gi, s))
    if not s.flags.writeable:
        raise ValueError("%s: state 'mu_product' of parameter %d in group %d is read-only"
                         % (name, pi, gi))
    return s
