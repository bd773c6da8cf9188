"""L-BFGS (torch.optim.LBFGS), with a fixed step or a strong-Wolfe line search."""
import numpy as np

from .._core import core
from .._core import fused_reference as _checks
from ..autograd import enable_grad
from .lr_scheduler import _is_integer, _is_number
from .optimizer import Optimizer

__all__ = ["LBFGS"]

_COUNTS = ("func_evals", "n_iter")
_VECTORS = ("d", "prev_flat_grad")
_SCALARS = ("t", "H_diag", "prev_loss")
_HISTORY = ("old_dirs", "old_stps")


class LBFGS(Optimizer):
    """Limited-memory BFGS over all parameters flattened into one vector.

    `step(closure)` calls `closure()` (which must clear the gradients, compute
    the loss, call backward and return the loss) up to `max_eval` times,
    doing up to `max_iter` quasi-Newton iterations, and returns the first
    loss.  Each iteration's trial step is `lr` (the first iteration of a run
    scales it by min(1, 1/|g|_1)); it is taken as it is with
    line_search_fn=None, or refined by a line search that finds a step
    meeting the strong Wolfe conditions (c1=1e-4, c2=0.9, at most 25
    evaluations) with line_search_fn='strong_wolfe'.  It stops early when the largest gradient entry is at most
    `tolerance_grad`, or a step or the change of the loss is below
    `tolerance_change`.  Only one parameter group; the state (directions,
    curvature pairs, counters) is kept for the first parameter, as in torch.

    Every gradient is checked (dtype, shape, and finiteness with
    `error_if_nonfinite=True`) before each move of the parameters; a bad
    gradient met during the line search restores the parameters first.
    """

    _STATE_KEYS = _COUNTS + _VECTORS + _SCALARS + _HISTORY + ("ro",)

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None, *,
                 error_if_nonfinite=False):
        if max_eval is None and _is_integer(max_iter):
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                        tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                        history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults, error_if_nonfinite)

    def _check(self, group):
        name = type(self).__name__
        self._nonnegative(group, "lr", "learning rate")
        for key in ("max_iter", "max_eval", "history_size"):
            if not _is_integer(group[key]) or group[key] <= 0:
                raise ValueError("%s: Invalid %s: %r (expected a positive integer)"
                                 % (name, key, group[key]))
        self._nonnegative(group, "tolerance_grad", "tolerance_grad")
        self._nonnegative(group, "tolerance_change", "tolerance_change")
        fn = group["line_search_fn"]
        if fn is not None and fn != "strong_wolfe":
            raise ValueError("LBFGS: line_search_fn must be None or 'strong_wolfe', got %r"
                             % (fn,))

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    # -- the flat vector view of the parameters ----------------------------------------
    def _params(self):
        return self.param_groups[0]["params"]

    def _dtype(self):
        return np.result_type(*[p.dtype for p in self._params()])

    def _flat_grad(self):
        """All gradients in one vector (zeros where there is none), every one checked."""
        name = type(self).__name__
        parts = []
        for pi, p in enumerate(self._params()):
            v, g = _checks._values(name, 0, pi, p)
            if g is None:
                parts.append(np.zeros(p.numpy().size, dtype=self._dtype()))
                continue
            if self.error_if_nonfinite:
                _checks._finite(name, 0, pi, g)
            parts.append(g.reshape(-1))
        return np.concatenate(parts).astype(self._dtype(), copy=True)

    def _move(self, t, d):
        """p += t * d (the slice of d for p), in place, checked first."""
        name = type(self).__name__
        values = []
        for pi, p in enumerate(self._params()):
            v = p.numpy()
            if not v.flags.writeable:
                raise ValueError("%s: parameter %d in group 0 is read-only (its values live in "
                                 "read-only memory), so it cannot be updated in place"
                                 % (name, pi))
            values.append(v)
        offset = 0
        for p, v in zip(self._params(), values):
            n = v.size
            v += (t * d[offset:offset + n]).reshape(v.shape).astype(v.dtype, copy=False)
            offset += n
            p._bump_version()

    def _restore(self, values):
        for p, saved in zip(self._params(), values):
            p.numpy()[...] = saved
            p._bump_version()

    def _evaluate_at(self, closure, start, t, d):
        """(loss, flat gradient) at start + t*d; the parameters are put back at `start`."""
        self._move(t, d)
        try:
            with enable_grad():
                loss = self._loss_value(closure())
            flat_grad = self._flat_grad()
        finally:
            self._restore(start)
        return loss, flat_grad

    @staticmethod
    def _loss_value(loss):
        if isinstance(loss, core.TensorBase):
            return float(np.asarray(loss.numpy()).reshape(-1)[0]) if loss.numpy().size == 1 \
                else _not_scalar(loss)
        return float(loss)

    # -- the step ----------------------------------------------------------------------
    def step(self, closure):
        """Up to max_iter L-BFGS iterations; returns the loss closure() gave first."""
        if closure is None or not callable(closure):
            raise TypeError("LBFGS.step: needs a closure that re-evaluates the model and "
                            "returns the loss, got %r" % (closure,))
        group = self.param_groups[0]
        lr = _checks._number("LBFGS", 0, "lr", group["lr"])
        max_iter, max_eval, history_size = (group["max_iter"], group["max_eval"],
                                            group["history_size"])
        tol_grad, tol_change = _checks._hyper("LBFGS", 0, group, "tolerance_grad",
                                              "tolerance_change")
        state = self.state[self._params()[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        with enable_grad():
            orig_loss = closure()
        loss = self._loss_value(orig_loss)
        flat_grad = self._flat_grad()
        evals = 1
        state["func_evals"] += 1
        if np.abs(flat_grad).max() <= tol_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs = list(state.get("old_dirs", []))
        old_stps = list(state.get("old_stps", []))
        ro = list(state.get("ro", []))
        H_diag = state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro, H_diag = [], [], [], 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:           # keep only pairs with positive curvature
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / float(y @ y)
                # two-loop recursion: d = -H g with H from the stored pairs
                q = -flat_grad
                al = [0.0] * len(old_dirs)
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q = q - al[i] * old_dirs[i]
                r = q * H_diag
                for i in range(len(old_dirs)):
                    be_i = float(old_dirs[i] @ r) * ro[i]
                    r = r + (al[i] - be_i) * old_stps[i]
                d = r
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(np.abs(flat_grad).sum())) * lr
            else:
                t = lr
            gtd = float(flat_grad @ d)
            if gtd > -tol_change:        # not a descent direction any more
                break
            evals_here = 0
            if group["line_search_fn"] == "strong_wolfe":
                start = [p.numpy().copy() for p in self._params()]
                loss, flat_grad, t, evals_here = _strong_wolfe(
                    lambda step: self._evaluate_at(closure, start, step, d),
                    t, d, loss, flat_grad, gtd, tol_change)
                self._move(t, d)
            else:
                self._move(t, d)
                if n_iter != max_iter:
                    with enable_grad():
                        loss = self._loss_value(closure())
                    flat_grad = self._flat_grad()     # checked before the next move
                    evals_here = 1
            opt_cond = np.abs(flat_grad).max() <= tol_grad
            evals += evals_here
            state["func_evals"] += evals_here
            if n_iter == max_iter or evals >= max_eval or opt_cond:
                break
            if np.abs(d * t).max() <= tol_change or abs(loss - prev_loss) < tol_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    # -- saving and restoring ----------------------------------------------------------
    def state_dict(self):
        out = super().state_dict()
        for entry in out["state"].values():
            for key in _HISTORY + ("ro",):
                if key in entry:
                    entry[key] = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a
                                  for a in entry[key]]
        return out

    def load_state_dict(self, state_dict):
        name = "LBFGS.load_state_dict"
        saved = state_dict.get("state") if isinstance(state_dict, dict) else None
        if isinstance(saved, dict):
            for k, entry in saved.items():
                if isinstance(entry, dict):
                    lengths = {key: len(entry[key]) for key in _HISTORY + ("ro",)
                               if isinstance(entry.get(key), (list, tuple))}
                    if len(set(lengths.values())) > 1:
                        raise ValueError("%s: old_dirs, old_stps and ro of state entry %r must "
                                         "have the same length, got %s" % (name, k, lengths))
        super().load_state_dict(state_dict)

    def _state_value(self, name, index, p, key, value):
        if key not in self._STATE_KEYS:
            return super()._state_value(name, index, p, key, value)
        size = sum(q.numpy().size for q in self._params())
        if key in _COUNTS:
            if not _is_integer(value) or value < 0:
                raise ValueError("%s: %r of parameter %d must be an integer >= 0, got %r"
                                 % (name, key, index, value))
            return int(value)
        if key in _SCALARS:
            if value is None or (_is_number(value) and np.isfinite(value)):
                return None if value is None else float(value)
            raise ValueError("%s: %r of parameter %d must be a finite number or None, got %r"
                             % (name, key, index, value))
        if key == "ro":
            if not isinstance(value, (list, tuple)) or not all(map(_is_number, value)):
                raise ValueError("%s: 'ro' of parameter %d must be a list of numbers, got %r"
                                 % (name, index, value))
            return [float(v) for v in value]
        vectors = value if key in _HISTORY else [value]
        if key in _HISTORY and not isinstance(value, (list, tuple)):
            raise ValueError("%s: %r of parameter %d must be a list of vectors, got %r"
                             % (name, key, index, value))
        out = []
        for a in vectors:
            if a is None and key in _VECTORS:
                return None
            if not isinstance(a, np.ndarray) or a.dtype.kind not in "iuf" \
                    or a.shape != (size,):
                raise ValueError("%s: %r of parameter %d must hold float vectors of length %d "
                                 "(all parameters flattened), got %r"
                                 % (name, key, index, size, a))
            out.append(np.array(a, dtype=self._dtype(), copy=True))
        return out if key in _HISTORY else out[0]


def _not_scalar(loss):
    raise ValueError("LBFGS: the closure must return a scalar loss, got shape %s"
                     % (tuple(loss.shape),))


# -- the strong-Wolfe line search --------------------------------------------------------

def _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None):
    """Where the cubic through (x1, f1, slope g1) and (x2, f2, slope g2) is least, clipped
    to `bounds` (default: between x1 and x2); the middle when the cubic has no minimum."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    disc = d1 * d1 - g1 * g2
    if disc < 0:
        return (lo + hi) / 2.0
    d2 = disc ** 0.5
    if x1 <= x2:
        x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        x = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(x, lo), hi)


def _strong_wolfe(evaluate, t, d, f, g, gtd, tolerance_change, c1=1e-4, c2=0.9, max_ls=25):
    """A step t along d with sufficient decrease and a small enough slope.

    `evaluate(t)` gives (loss, flat gradient) at t.  First the step grows
    until it brackets a good point, then the bracket shrinks by cubic
    interpolation.  Returns (loss, gradient, t, number of evaluations).
    """
    d_norm = float(np.abs(d).max())
    f_new, g_new = evaluate(t)
    evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        # (the order matters: a flat enough uphill slope is accepted, not bracketed)
        rising = f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev)
        if not rising and abs(gtd_new) <= -c2 * gtd:
            bracket, bf, bg, bgtd = [t], [f_new], [g_new], [gtd_new]
            done = True
            break
        if rising or gtd_new >= 0:
            bracket, bf, bg, bgtd = [t_prev, t], [f_prev, f_new], [g_prev, g_new], \
                [gtd_prev, gtd_new]
            break
        # still going down steeply: extrapolate
        lo, hi = t + 0.01 * (t - t_prev), t * 10
        t_prev, t = t, _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, (lo, hi))
        f_prev, g_prev, gtd_prev = f_new, g_new, gtd_new
        f_new, g_new = evaluate(t)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bf, bg, bgtd = [0.0, t], [f, f_new], [g, g_new], [gtd, gtd_new]

    # zoom: shrink the bracket [low, high] (low has the smaller loss)
    insufficient = False
    low, high = (0, 1) if bf[0] <= bf[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_minimum(bracket[0], bf[0], bgtd[0], bracket[1], bf[1], bgtd[1])
        top, bottom = max(bracket), min(bracket)
        eps = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < eps:
            # too close to an end: move inside unless the last try was also there
            if insufficient or t >= top or t <= bottom:
                t = top - eps if abs(t - top) < abs(t - bottom) else bottom + eps
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        f_new, g_new = evaluate(t)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= bf[low]:
            bracket[high], bf[high], bg[high], bgtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if bf[0] <= bf[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bf[high], bg[high], bgtd[high] = \
                    bracket[low], bf[low], bg[low], bgtd[low]
            bracket[low], bf[low], bg[low], bgtd[low] = t, f_new, g_new, gtd_new
    return bf[low], bg[low], bracket[low], evals
