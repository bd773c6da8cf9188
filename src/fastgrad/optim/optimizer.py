"""The optimizer base class: parameter groups, zero_grad, state_dict.

An optimizer holds `param_groups`, a list of dicts (`'params'`: the tensors,
plus that group's hyper-parameters, e.g. `'lr'`), and `state`, a dict from
parameter to a dict of NumPy arrays (momentum buffers, running averages,
step counts as 0-d float64 arrays).  Keeping state as plain arrays makes
`state_dict()` a copy and lets `fg.save` store it.

`step()` of each subclass is ONE call of `fastgrad._core.fused` with the
optimizer's groups and state: C loops on the compiled core, a readable NumPy
loop (fused_reference.py) on the reference core.  That call first checks
every parameter of every group that has a gradient (the gradient has the
parameter's float dtype and shape, the parameter and its state arrays are
writeable and well formed), then updates.  Parameter values are updated in
place (`p.data` shares memory with the tensor), and each updated tensor's
version counter is bumped, as PyTorch's in-place updates do: a graph recorded
before the step that saved a parameter refuses to backpropagate through the
stale value.
"""
import math
from collections import defaultdict

import numpy as np

from .._core import core
from ..autograd import enable_grad

__all__ = ["Optimizer"]


class Optimizer:
    """Base class: subclasses set `_STATE_KEYS` and implement `_check` and `_update`.

    A step either raises before anything changed (a gradient of the wrong
    dtype or shape, a read-only parameter, a malformed state entry: the error
    names the optimizer, the group and the parameter's index in it) or
    updates every parameter that has a gradient.

    `error_if_nonfinite=True` (a keyword of every optimizer, off by default;
    the name is PyTorch's, from `clip_grad_norm_`) also refuses a step when
    any gradient holds a NaN or an infinity: ValueError, nothing updated.

    Interrupts: on the compiled core the whole update of all groups (values,
    state, step counts, version counters) happens in one C call that no
    signal handler can interrupt, so a KeyboardInterrupt during `step()`
    leaves the step either fully applied or not applied at all.  On the
    reference core the update is a Python loop: a KeyboardInterrupt can leave
    a step partly applied (some parameters updated, others not).
    """

    # Names of the per-parameter state entries this optimizer keeps.  'step'
    # is a 0-d count; every other entry is an array shaped like its parameter.
    _STATE_KEYS = ()
    # Saved optimizers from before the option existed still load.
    error_if_nonfinite = False

    def __init__(self, params, defaults, error_if_nonfinite=False):
        name = type(self).__name__
        self._check(defaults)
        self.error_if_nonfinite = bool(error_if_nonfinite)
        self.defaults = dict(defaults)
        self.state = defaultdict(dict)
        self.param_groups = []
        if isinstance(params, core.TensorBase):
            raise TypeError(
                "%s: params should be an iterable of Tensors or of dicts, but got a single "
                "Tensor; pass [tensor] or model.parameters()" % name)
        if isinstance(params, dict):
            raise TypeError("%s: params should be an iterable of Tensors or of dicts, but got a "
                            "dict; pass [group] for one parameter group" % name)
        groups = list(params)
        if not groups:
            raise ValueError("%s got an empty parameter list" % name)
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- hyper-parameters ---------------------------------------------------------
    def _check(self, group):
        """Raise ValueError if a hyper-parameter of `group` is out of range."""

    def _nonnegative(self, group, key, what):
        value = group[key]
        name = type(self).__name__
        if isinstance(value, (str, bytes)):
            # float("0.1") would take it, and the step would quietly parse it each time
            raise TypeError("%s: Invalid %s: %r (expected a number, %s >= 0)"
                            % (name, what, value, key))
        if not value >= 0.0:
            raise ValueError("%s: Invalid %s: %s (expected %s >= 0)" % (name, what, value, key))

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append("Parameter Group %d" % i)
            for key in sorted(group):
                if key != "params":
                    lines.append("    %s: %s" % (key, group[key]))
        lines.append(")")
        return "\n".join(lines)

    # -- groups -------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group of parameters (a dict with 'params' and optional hyper-parameters)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError("%s.add_param_group: a parameter group must be a dict, got %s"
                            % (name, type(param_group).__name__))
        if "params" not in param_group:
            raise ValueError("%s.add_param_group: the group has no 'params' entry" % name)
        params = param_group["params"]
        if isinstance(params, core.TensorBase):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("%s: parameters must be given in an ordered collection (a list), "
                            "not a set, so that their order is the same between runs" % name)
        else:
            params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, core.TensorBase):
                raise TypeError("%s can only optimize Tensors, but parameter %d is a %s"
                                % (name, i, type(p).__name__))
            if not p.is_leaf:
                raise ValueError("%s can't optimize a non-leaf Tensor (parameter %d, made by '%s')"
                                 % (name, i, p.grad_fn))
            if p.dtype not in (np.float32, np.float64):
                raise TypeError("%s can only optimize float32/float64 tensors, parameter %d has "
                                "dtype %s" % (name, i, p.dtype))
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ValueError("%s: a parameter group contains the same parameter more than once"
                             % name)
        existing = {id(p) for group in self.param_groups for p in group["params"]}
        if existing.intersection(ids):
            raise ValueError("%s: some parameters appear in more than one parameter group" % name)
        group = dict(param_group)
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check(group)
        self.param_groups.append(group)

    # -- gradients ------------------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Forget the gradients: set `.grad` to None (default) or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    g.numpy()[...] = 0
                    g._bump_version()

    @staticmethod
    def _closure_loss(closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() if given."""
        loss = self._closure_loss(closure)
        self._update()
        return loss

    def _update(self):
        """The whole step: one call of the core's fused update."""
        raise NotImplementedError

    # -- saving and restoring ----------------------------------------------------
    def state_dict(self):
        """{'state': {index: {name: array or number}}, 'param_groups': [...]}, as torch.optim.

        Parameters are numbered 0, 1, ... across the groups in order; each
        group lists its parameters' numbers under 'params'.  Arrays are copies.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                entry = self.state.get(p)
                if entry:
                    state[index[id(p)]] = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray)
                                               else v) for k, v in entry.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore what `state_dict()` returned (also after fg.save / fg.load).

        Everything is checked first; on any error nothing has changed.
        """
        name = type(self).__name__ + ".load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("%s: expected a dict with keys 'state' and 'param_groups'" % name)
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
            raise ValueError("%s: 'param_groups' must be a list and 'state' a dict" % name)
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("%s: loaded state dict has a different number of parameter groups "
                             "(%d, this optimizer has %d)"
                             % (name, len(saved_groups), len(self.param_groups)))
        new_groups = []
        by_index = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
                raise ValueError("%s: parameter group %d must be a dict with a 'params' list"
                                 % (name, i))
            if len(saved["params"]) != len(group["params"]):
                raise ValueError("%s: loaded state dict contains a parameter group that doesn't "
                                 "match the size of optimizer's group (group %d: %d parameters, "
                                 "expected %d)" % (name, i, len(saved["params"]),
                                                   len(group["params"])))
            missing = [k for k in self.defaults if k not in saved]
            if missing:
                raise ValueError("%s: parameter group %d lacks the hyper-parameter(s) %s"
                                 % (name, i, ", ".join(map(repr, missing))))
            new_group = {k: v for k, v in saved.items() if k != "params"}
            new_group["params"] = group["params"]
            self._check(new_group)
            for k, p in zip(saved["params"], group["params"]):
                if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k in by_index:
                    raise ValueError("%s: parameter numbers must be distinct integers, got %r in "
                                     "group %d" % (name, k, i))
                by_index[int(k)] = p
            new_groups.append(new_group)
        new_state = {}
        for k, entry in saved_state.items():
            key = int(k) if isinstance(k, str) and k.isdigit() else k
            if key not in by_index:
                raise ValueError("%s: state entry %r does not name a parameter of the groups"
                                 % (name, k))
            if not isinstance(entry, dict):
                raise ValueError("%s: state entry %r must be a dict" % (name, k))
            p = by_index[key]
            new_state[p] = {s: self._state_value(name, key, p, s, v) for s, v in entry.items()}
        # Everything checked: commit.
        for group, new_group in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new_group)
        self.state = defaultdict(dict, new_state)

    def _state_value(self, name, index, p, key, value):
        """A fresh array for state entry `key` of parameter `p` (validated)."""
        if key not in self._STATE_KEYS:
            raise ValueError("%s: unknown state entry %r for parameter %d (%s keeps %s)"
                             % (name, key, index, type(self).__name__,
                                ", ".join(self._STATE_KEYS) or "no state"))
        if isinstance(value, core.TensorBase):
            value = value.numpy()
        if key == "step":
            arr = np.asarray(value)
            if arr.size != 1 or arr.dtype.kind not in "iuf":
                raise ValueError("%s: 'step' of parameter %d must be a number, got %r"
                                 % (name, index, value))
            count = float(arr.reshape(()))
            if not (math.isfinite(count) and count >= 0 and count == int(count)):
                raise ValueError("%s: 'step' of parameter %d must be a whole number >= 0, got %r"
                                 % (name, index, count))
            return np.array(count, dtype=np.float64)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
            raise ValueError("%s: state entry %r of parameter %d must be a numeric array, got %s"
                             % (name, key, index, type(value).__name__))
        if value.shape != tuple(p.shape):
            raise ValueError("%s: state entry %r of parameter %d has shape %s, but the parameter "
                             "has shape %s" % (name, key, index, value.shape, tuple(p.shape)))
        return np.array(value, dtype=p.dtype, copy=True)
