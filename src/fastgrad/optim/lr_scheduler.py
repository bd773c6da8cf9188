"""Learning-rate schedules (torch.optim.lr_scheduler semantics).

A scheduler changes `group['lr']` of its optimizer's parameter groups each
time `scheduler.step()` is called, usually once per epoch after the
optimizer's steps.  Constructing one already applies epoch 0's rate, and
stores each group's starting rate as `group['initial_lr']`.
"""
import bisect
import math
import numbers

from .optimizer import Optimizer

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "LambdaLR", "ReduceLROnPlateau",
           "MultiStepLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "OneCycleLR",
           "LinearLR", "SequentialLR"]


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
                 "cooldown": 0, "cooldown_counter": 0, "num_bad_epochs": 0,
                 "total_iters": 1, "T_0": 1, "T_i": 1, "T_mult": 1, "total_steps": 1}
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
        self._validate(state_dict)
        self._commit(state_dict)

    def _validate(self, state_dict):
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

    def _commit(self, state_dict):
        self.__dict__.update({k: (list(v) if isinstance(v, (list, tuple)) else v)
                              for k, v in state_dict.items()})

    def _step_to(self, epoch):
        """Jump to `epoch` and set its rates from the closed form (what SequentialLR needs)."""
        self.last_epoch = epoch
        closed = getattr(self, "_closed_form_lr", None)
        lrs = closed() if closed is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

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

    def _closed_form_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size)
                for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by `gamma` every epoch."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _closed_form_lr(self):
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


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


def _positive_integer(owner, what, value):
    if not _is_integer(value) or value <= 0:
        raise ValueError("%s: %s must be a positive integer, got %r" % (owner, what, value))
    return int(value)


def _per_group(owner, what, optimizer, value):
    """One value per parameter group (a list of that length, or one value for all)."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError("%s: expected %d values for %s (one per parameter group), got %d"
                             % (owner, n, what, len(value)))
        values = list(value)
    else:
        values = [value] * n
    for v in values:
        if not _is_number(v):
            raise ValueError("%s: %s must be a number, got %r" % (owner, what, v))
    return values


def _check_optimizer(owner, optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError("%s: expected an optimizer, got %s" % (owner, type(optimizer).__name__))


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by `gamma` at each epoch listed in `milestones`.

    A milestone listed twice multiplies by gamma twice, as in torch.
    """

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        try:
            milestones = list(milestones)
        except TypeError:
            raise ValueError("MultiStepLR: milestones must be a list of integers, got %r"
                             % (milestones,)) from None
        for m in milestones:
            if not _is_integer(m):
                raise ValueError("MultiStepLR: milestones must be integers, got %r" % (m,))
        if not _is_number(gamma):
            raise ValueError("MultiStepLR: gamma must be a number, got %r" % (gamma,))
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        hits = self.milestones.count(self.last_epoch)
        return [group["lr"] * self.gamma ** hits for group in self.optimizer.param_groups]

    def _closed_form_lr(self):
        passed = bisect.bisect_right(self.milestones, self.last_epoch)
        return [base_lr * self.gamma ** passed for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine from the initial rate down to `eta_min` over `T_max` epochs (then back up).

        lr_t = eta_min + (initial_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2

    Like torch, each step rescales the current rate (so it composes with
    other changes of `group['lr']`); alone it follows the formula above.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if not _is_number(T_max) or not T_max > 0:
            raise ValueError("CosineAnnealingLR: T_max must be a positive number, got %r"
                             % (T_max,))
        if not _is_number(eta_min):
            raise ValueError("CosineAnnealingLR: eta_min must be a number, got %r" % (eta_min,))
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, T, low = self.last_epoch, self.T_max, self.eta_min
        groups = self.optimizer.param_groups
        if t == 0:
            return [group["lr"] for group in groups]
        if self._step_count == 1 and t > 0:
            return self._closed_form_lr()
        if (t - 1 - T) % (2 * T) == 0:
            # at the bottom of the cosine the ratio below is 0/0: step up by hand
            return [group["lr"] + (base_lr - low) * (1 - math.cos(math.pi / T)) / 2
                    for base_lr, group in zip(self.base_lrs, groups)]
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [ratio * (group["lr"] - low) + low for group in groups]

    def _closed_form_lr(self):
        c = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * c for base_lr in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing restarted every T_i epochs: T_0 first, then T_i *= T_mult.

        lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2

    `step()` advances one epoch; `step(epoch)` (a number, fractions allowed)
    jumps to that point of the schedule.
    """

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0, last_epoch=-1):
        if not _is_integer(T_0) or T_0 <= 0:
            raise ValueError("CosineAnnealingWarmRestarts: expected a positive integer T_0, "
                             "got %r" % (T_0,))
        if not _is_integer(T_mult) or T_mult < 1:
            raise ValueError("CosineAnnealingWarmRestarts: expected an integer T_mult >= 1, "
                             "got %r" % (T_mult,))
        if not _is_number(eta_min):
            raise ValueError("CosineAnnealingWarmRestarts: expected a number eta_min, got %r"
                             % (eta_min,))
        self.T_0 = int(T_0)
        self.T_i = int(T_0)
        self.T_mult = int(T_mult)
        self.eta_min = eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        c = (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * c for base_lr in self.base_lrs]

    def step(self, epoch=None):
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            T_cur, T_i = self.T_cur + 1, self.T_i
            if T_cur >= T_i:
                T_cur, T_i = T_cur - T_i, T_i * self.T_mult
        else:
            if not _is_number(epoch) or not epoch >= 0:
                raise ValueError("CosineAnnealingWarmRestarts: expected a non-negative epoch, "
                                 "got %r" % (epoch,))
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    T_cur, T_i = epoch % self.T_0, self.T_0
                else:
                    # the restart n with T_0 * (T_mult^n - 1) / (T_mult - 1) <= epoch
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
                    T_i = self.T_0 * self.T_mult ** n
            else:
                T_cur, T_i = epoch, self.T_0
        self._step_count += 1
        self.T_cur, self.T_i = T_cur, T_i
        self.last_epoch = math.floor(epoch)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _step_to(self, epoch):
        self.step(epoch)


class LinearLR(LRScheduler):
    """Scale the initial rate by a factor going linearly from start_factor to end_factor.

    The factor reaches end_factor after `total_iters` epochs and stays there.
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        if not _is_number(start_factor) or not 0 < start_factor <= 1:
            raise ValueError("LinearLR: start_factor must be in (0, 1], got %r" % (start_factor,))
        if not _is_number(end_factor) or not 0 <= end_factor <= 1:
            raise ValueError("LinearLR: end_factor must be in [0, 1], got %r" % (end_factor,))
        self.total_iters = _positive_integer("LinearLR", "total_iters", total_iters)
        self.start_factor = start_factor
        self.end_factor = end_factor
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        t, a, b, n = self.last_epoch, self.start_factor, self.end_factor, self.total_iters
        if t == 0:
            return [group["lr"] * a for group in groups]
        if t > n:
            return [group["lr"] for group in groups]
        # the ratio of this epoch's factor to the previous one's
        ratio = 1.0 + (b - a) / (n * a + (t - 1) * (b - a))
        return [group["lr"] * ratio for group in groups]

    def _closed_form_lr(self):
        a, b, n = self.start_factor, self.end_factor, self.total_iters
        factor = a + (b - a) * min(n, self.last_epoch) / n
        return [base_lr * factor for base_lr in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The 1cycle policy: warm up from max_lr/div_factor to max_lr, then anneal far below.

    Call `step()` after every batch; `total_steps` (or epochs * steps_per_epoch)
    steps in all.  With `cycle_momentum` (the default, as in torch) the
    momentum ('momentum', or beta1 of 'betas') moves the opposite way between
    base_momentum and max_momentum; the optimizer must have one of them.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start=0.3, anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85,
                 max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False,
                 last_epoch=-1):
        owner = "OneCycleLR"
        _check_optimizer(owner, optimizer)
        if total_steps is not None:
            total = _positive_integer(owner, "total_steps", total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            total = (_positive_integer(owner, "epochs", epochs)
                     * _positive_integer(owner, "steps_per_epoch", steps_per_epoch))
        else:
            raise ValueError("OneCycleLR: give either total_steps or both epochs and "
                             "steps_per_epoch")
        if not _is_number(pct_start) or not 0 <= pct_start <= 1:
            raise ValueError("OneCycleLR: pct_start must be a number in [0, 1], got %r"
                             % (pct_start,))
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError("OneCycleLR: anneal_strategy must be 'cos' or 'linear', got %r"
                             % (anneal_strategy,))
        for what, v in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
            if not _is_number(v) or not v > 0:
                raise ValueError("OneCycleLR: %s must be a positive number, got %r" % (what, v))
        max_lrs = _per_group(owner, "max_lr", optimizer, max_lr)
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError("OneCycleLR: cycle_momentum=True needs an optimizer with "
                                 "'momentum' or 'betas' (%s has neither); pass "
                                 "cycle_momentum=False" % type(optimizer).__name__)
            max_ms = _per_group(owner, "max_momentum", optimizer, max_momentum)
            base_ms = _per_group(owner, "base_momentum", optimizer, base_momentum)
        if last_epoch != -1:
            for i, group in enumerate(optimizer.param_groups):
                for key in ("initial_lr", "max_lr", "min_lr") + (
                        ("max_momentum", "base_momentum") if cycle_momentum else ()):
                    if key not in group:
                        raise KeyError("OneCycleLR: param %r is not specified in "
                                       "param_groups[%d] when resuming" % (key, i))
        # Everything checked: now the groups change.
        self.total_steps = total
        self.pct_start = pct_start
        self.three_phase = bool(three_phase)
        self.anneal_strategy = anneal_strategy
        self.cycle_momentum = bool(cycle_momentum)
        self.use_beta1 = "betas" in optimizer.defaults
        if last_epoch == -1:
            for group, top in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
            if self.cycle_momentum:
                for group, hi, lo in zip(optimizer.param_groups, max_ms, base_ms):
                    self._set_momentum(group, hi)
                    group["max_momentum"] = hi
                    group["base_momentum"] = lo
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value,) + tuple(group["betas"][1:])
        else:
            group["momentum"] = value

    def _phases(self):
        """(last step of the phase, lr key at its start, at its end, momentum keys likewise)."""
        n, pct = self.total_steps, self.pct_start
        if self.three_phase:
            return [(float(pct * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                    (float(2 * pct * n) - 2, "max_lr", "initial_lr", "base_momentum",
                     "max_momentum"),
                    (n - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        return [(float(pct * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (n - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def step(self):
        # refuse the step past the end before anything moves
        if self.last_epoch + 1 > self.total_steps:
            raise ValueError("OneCycleLR: tried to step %d times, but total_steps is %d"
                             % (self.last_epoch + 1, self.total_steps))
        super().step()

    def get_lr(self):
        t = self.last_epoch
        phases = self._phases()
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
                if t <= end or i == len(phases) - 1:
                    pct = (t - start) / (end - start)
                    lr = self._anneal(group[lr0], group[lr1], pct)
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[m0], group[m1], pct))
                    break
                start = end
            lrs.append(lr)
        return lrs

    def _check_entry(self, name, key, current, value):
        if key == "anneal_strategy" and value not in ("cos", "linear"):
            raise ValueError("%s: 'anneal_strategy' must be 'cos' or 'linear', got %r"
                             % (name, value))
        if key in ("three_phase", "cycle_momentum", "use_beta1") and not isinstance(value, bool):
            raise ValueError("%s: %r must be True or False, got %r" % (name, key, value))
        if key == "pct_start" and not (_is_number(value) and 0 <= value <= 1):
            raise ValueError("%s: 'pct_start' must be a number in [0, 1], got %r" % (name, value))
        super()._check_entry(name, key, current, value)


class SequentialLR(LRScheduler):
    """Run `schedulers` one after another, switching at the epochs in `milestones`.

    At each milestone the next scheduler restarts from its epoch 0.
    `state_dict()` holds every scheduler's state under '_schedulers'.
    """

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        _check_optimizer("SequentialLR", optimizer)
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError("SequentialLR: expects at least one scheduler, got none")
        for i, sched in enumerate(schedulers):
            if isinstance(sched, ReduceLROnPlateau) or not isinstance(sched, LRScheduler):
                raise ValueError("SequentialLR: scheduler %d is a %s, which cannot be chained "
                                 "(expected an epoch-based LRScheduler)"
                                 % (i, type(sched).__name__))
            if sched.optimizer is not optimizer:
                raise ValueError("SequentialLR: scheduler %d belongs to another optimizer "
                                 "than the one given" % i)
        milestones = list(milestones)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError("SequentialLR: expected %d milestones (one fewer than the %d "
                             "schedulers), got %d"
                             % (len(schedulers) - 1, len(schedulers), len(milestones)))
        for m in milestones:
            if not _is_integer(m):
                raise ValueError("SequentialLR: milestones must be integers, got %r" % (m,))
        if milestones != sorted(milestones):
            raise ValueError("SequentialLR: milestones must be increasing, got %r"
                             % (milestones,))
        self._schedulers = schedulers
        self._milestones = [int(m) for m in milestones]
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        # The schedulers already applied their epoch 0 when they were made; start over
        # from the initial rates, and let only the first one take its epoch 0.
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for sched in schedulers:
            sched.last_epoch -= 1
        first = schedulers[0]
        first._step_count = 0
        first.step()
        self._last_lr = first.get_last_lr()

    def step(self):
        self.last_epoch += 1
        idx = bisect.bisect_right(self._milestones, self.last_epoch)
        sched = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            sched._step_to(0)
        else:
            sched.step()
        self._last_lr = sched.get_last_lr()

    _NOT_SAVED = ("optimizer", "_schedulers")

    def state_dict(self):
        out = super().state_dict()
        out["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return out

    def load_state_dict(self, state_dict):
        name = "SequentialLR.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError("%s: expected a dict, got %s" % (name, type(state_dict).__name__))
        own = {k: v for k, v in state_dict.items() if k != "_schedulers"}
        subs = state_dict.get("_schedulers", [s.state_dict() for s in self._schedulers])
        if not isinstance(subs, (list, tuple)) or len(subs) != len(self._schedulers):
            raise ValueError("%s: '_schedulers' must be a list of %d state dicts"
                             % (name, len(self._schedulers)))
        # Check all of them before any is changed.
        mine = super().state_dict()
        unknown = sorted(str(k) for k in own if k not in mine)
        if unknown:
            raise ValueError("%s: unexpected key(s) %s (expected some of %s)"
                             % (name, ", ".join(unknown), ", ".join(sorted(mine) +
                                                                      ["_schedulers"])))
        for key, value in own.items():
            self._check_entry(name, key, mine[key], value)
        for sched, sub in zip(self._schedulers, subs):
            sched._validate(sub)
        for sched, sub in zip(self._schedulers, subs):
            sched._commit(sub)
        self._commit(own)
