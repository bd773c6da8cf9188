"""Learning-rate schedules (torch.optim.lr_scheduler semantics).

A scheduler changes `group['lr']` of its optimizer's parameter groups each
time `scheduler.step()` is called, usually once per epoch after the
optimizer's steps.  Constructing one already applies epoch 0's rate, and
stores each group's starting rate as `group['initial_lr']`.
"""
import math
import numbers

from .optimizer import Optimizer

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "LambdaLR", "ReduceLROnPlateau"]


class LRScheduler:
    """Base class: subclasses implement `get_lr()` for the current `last_epoch`."""

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError("%s: expected an optimizer, got %s"
                            % (type(self).__name__, type(optimizer).__name__))
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError("%s: param 'initial_lr' is not specified in param_groups[%d] "
                                   "when resuming an optimizer" % (type(self).__name__, i))
        self.optimizer = optimizer
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def get_lr(self):
        raise NotImplementedError

    def get_last_lr(self):
        """The learning rates the last step() set, one per parameter group."""
        return list(self._last_lr)

    def step(self):
        """Move to the next epoch and set every group's learning rate for it."""
        self._step_count += 1
        self.last_epoch += 1
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    # -- saving and restoring --------------------------------------------------
    _NOT_SAVED = ("optimizer",)
    # Entries that are whole numbers (with their least value), and lists with
    # one number per parameter group.
    _INTEGERS = {"last_epoch": -1, "_step_count": 0, "step_size": 1, "patience": 0,
                 "cooldown": 0, "cooldown_counter": 0, "num_bad_epochs": 0}
    _PER_GROUP = ("base_lrs", "_last_lr", "min_lrs")
    _NUMBER_OR_NONE = ("default_min_lr",)

    def state_dict(self):
        """Everything but the optimizer (numbers and lists: fg.save stores it)."""
        return {k: (list(v) if isinstance(v, list) else v)
                for k, v in self.__dict__.items() if k not in self._NOT_SAVED}

    def load_state_dict(self, state_dict):
        """Restore what `state_dict()` returned.

        Every entry is checked first (known key, and a value of the kind
        state_dict() gives: an integer, a number, a list of one number per
        parameter group...); on any error nothing has changed.
        """
        name = type(self).__name__ + ".load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError("%s: expected a dict, got %s" % (name, type(state_dict).__name__))
        mine = self.state_dict()
        unknown = sorted(str(k) for k in state_dict if k not in mine)
        if unknown:
            raise ValueError("%s: unexpected key(s) %s (expected some of %s)"
                             % (name, ", ".join(unknown), ", ".join(sorted(mine))))
        for key, value in state_dict.items():
            self._check_entry(name, key, mine[key], value)
        self.__dict__.update({k: (list(v) if isinstance(v, (list, tuple)) else v)
                              for k, v in state_dict.items()})

    def _check_entry(self, name, key, current, value):
        if key in self._INTEGERS:
            least = self._INTEGERS[key]
            if not _is_integer(value) or value < least:
                raise ValueError("%s: %r must be an integer >= %d, got %r"
                                 % (name, key, least, value))
        elif isinstance(current, list):
            n = len(self.optimizer.param_groups)
            if not isinstance(value, (list, tuple)) or not all(map(_is_number, value)) \
                    or (key in self._PER_GROUP and len(value) != n):
                raise ValueError("%s: %r must be a list of %snumbers, got %r"
                                 % (name, key, "%d " % n if key in self._PER_GROUP else "",
                                    value))
        elif isinstance(current, str):
            if not isinstance(value, str):
                raise ValueError("%s: %r must be a string, got %r" % (name, key, value))
        elif key in self._NUMBER_OR_NONE:
            if not (value is None or _is_number(value)):
                raise ValueError("%s: %r must be a number or None, got %r" % (name, key, value))
        elif _is_number(current):
            if not _is_number(value):
                raise ValueError("%s: %r must be a number, got %r" % (name, key, value))


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class StepLR(LRScheduler):
    """Multiply the learning rate by `gamma` every `step_size` epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) \
                or step_size <= 0:
            raise ValueError("StepLR: step_size must be a positive integer, got %r" % (step_size,))
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by `gamma` every epoch."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class LambdaLR(LRScheduler):
    """lr = initial_lr * lr_lambda(epoch); one function, or one per parameter group.

    The functions themselves are not part of `state_dict()` (they are code);
    re-create the scheduler with them, then load the state.
    """

    _NOT_SAVED = ("optimizer", "lr_lambdas")

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        groups = optimizer.param_groups if isinstance(optimizer, Optimizer) else []
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != len(groups):
                raise ValueError("LambdaLR: expected %d lr_lambdas (one per parameter group), "
                                 "but got %d" % (len(groups), len(lr_lambda)))
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * len(groups)
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError("LambdaLR: lr_lambda must be callable, got %s" % type(fn).__name__)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * fn(self.last_epoch)
                for fn, base_lr in zip(self.lr_lambdas, self.base_lrs)]


class ReduceLROnPlateau(LRScheduler):
    """Multiply the learning rate by `factor` once the monitored value stops improving.

    `step(value)` once per epoch.  An epoch improves when value < best*(1 -
    threshold) ('min', 'rel'), value < best - threshold ('abs'), or the mirror
    images in 'max' mode.  After more than `patience` epochs without
    improvement the rate is reduced (never below `min_lr`, and not at all when
    the change would be smaller than `eps`), then `cooldown` epochs pass
    before bad epochs are counted again.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8):
        if not isinstance(optimizer, Optimizer):
            raise TypeError("ReduceLROnPlateau: expected an optimizer, got %s"
                            % type(optimizer).__name__)
        if not factor < 1.0:
            raise ValueError("ReduceLROnPlateau: factor should be < 1.0, got %s" % (factor,))
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError("ReduceLROnPlateau: expected %d min_lrs (one per parameter "
                                 "group), got %d" % (n, len(min_lr)))
            self.default_min_lr = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * n
        self._check_mode(mode, threshold_mode)
        self.optimizer = optimizer
        self.factor = factor
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.last_epoch = 0
        self.cooldown_counter = 0
        self.best = self._worst()
        self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    @staticmethod
    def _check_mode(mode, threshold_mode):
        if mode not in ("min", "max"):
            raise ValueError("ReduceLROnPlateau: mode %r is unknown (expected 'min' or 'max')"
                             % (mode,))
        if threshold_mode not in ("rel", "abs"):
            raise ValueError("ReduceLROnPlateau: threshold mode %r is unknown (expected 'rel' "
                             "or 'abs')" % (threshold_mode,))

    def _worst(self):
        return math.inf if self.mode == "min" else -math.inf

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics):
        """Record this epoch's monitored value (e.g. the validation loss)."""
        current = float(metrics)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0      # bad epochs during cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    "ReduceLROnPlateau: the optimizer now has %d parameter groups but min_lr "
                    "lists %d; set scheduler.min_lrs to one value per group"
                    % (len(groups), len(self.min_lrs)))
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def load_state_dict(self, state_dict):
        if isinstance(state_dict, dict):
            self._check_mode(state_dict.get("mode", self.mode),
                             state_dict.get("threshold_mode", self.threshold_mode))
            factor = state_dict.get("factor", self.factor)
            if _is_number(factor) and not factor < 1.0:
                raise ValueError("ReduceLROnPlateau: factor should be < 1.0, got %s" % (factor,))
        super().load_state_dict(state_dict)
