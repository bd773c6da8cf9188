"""Loss modules: each holds its options and calls its function in nn.functional."""
from . import functional as F
from .module import Module


class _Loss(Module):
    _name = ""

    def __init__(self, reduction="mean"):
        super().__init__()
        F._check_reduction(self._name, reduction)
        self.reduction = reduction

    def extra_repr(self):
        return "reduction=%r" % (self.reduction,) if self.reduction != "mean" else ""


class MSELoss(_Loss):
    _name = "MSELoss"

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    _name = "L1Loss"

    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class BCELoss(_Loss):
    _name = "BCELoss"

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    _name = "BCEWithLogitsLoss"

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction,
                                                  self.pos_weight)


class NLLLoss(_Loss):
    _name = "NLLLoss"

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class CrossEntropyLoss(_Loss):
    _name = "CrossEntropyLoss"

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        F._check_probability("CrossEntropyLoss label_smoothing", label_smoothing)
        self.weight, self.ignore_index = weight, ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)


# -- robust regression and divergence losses ------------------------------------
class SmoothL1Loss(_Loss):
    _name = "SmoothL1Loss"

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
            raise ValueError("SmoothL1Loss: beta must be a non-negative number, got %r" % (beta,))
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, self.reduction, self.beta)


class HuberLoss(_Loss):
    _name = "HuberLoss"

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not delta > 0:
            raise ValueError("HuberLoss: delta must be a positive number, got %r" % (delta,))
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, self.reduction, self.delta)


class KLDivLoss(Module):
    """KL divergence of log-probabilities `input` from `target` (see F.kl_div)."""

    def __init__(self, reduction="mean", log_target=False):
        super().__init__()
        F._check_loss_reduction("KLDivLoss", reduction, ("batchmean",))
        self.reduction, self.log_target = reduction, bool(log_target)

    def forward(self, input, target):
        return F.kl_div(input, target, self.reduction, self.log_target)

    def extra_repr(self):
        return "reduction=%r, log_target=%s" % (self.reduction, self.log_target)
