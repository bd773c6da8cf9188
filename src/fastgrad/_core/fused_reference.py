"""Optimizer updates, one call per step, and the fused kernels of the layers (at the
end: the LSTM time loop, batch normalisation in training, max pooling, the
patches of a convolution): the readable twin of _fused.pyx.

Each function takes the optimizer's name (for messages), its `param_groups`
(dicts with 'params' and the hyper-parameters), its `state` (a dict from
tensor to a dict of NumPy arrays) and `check_finite`, and performs one whole
step: every parameter of every group that has a gradient is updated IN
PLACE, its state arrays too (created on first use), its 'step' count goes up
and its version counter is bumped.  Parameters without a gradient are left
alone and get no state.  The formulas are torch.optim's single-tensor
("for-loop") updates, written in the same order of operations so that both
cores and PyTorch agree to rounding:

    SGD      d = g + wd*p;  buf = mu*buf + (1 - dampening)*d  (buf = d at first)
             d = d + mu*buf (nesterov) or buf;  p -= lr*d
    Adam     m += (1 - b1)*(g - m);  v = b2*v + (1 - b2)*g*g
             p -= lr/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps)
             (AdamW: p *= 1 - lr*wd first, instead of adding wd*p to g)
    RMSprop  v = alpha*v + (1 - alpha)*g*g;  avg = sqrt(v [- gavg^2]) + eps
             p -= lr * (g/avg)   or, with momentum, buf = mu*buf + g/avg; p -= lr*buf
    Adagrad  s += g*g;  p -= lr/(1 + (t - 1)*lr_decay) * g/(sqrt(s) + eps)

Two phases, in both modules:

1. Check everything, for all groups, before anything changes: each
   gradient has its parameter's float dtype and shape, each parameter and
   state array the update writes is writeable and has the right dtype and
   shape, and (check_finite) no gradient holds a NaN or an infinity.  A
   failed check raises, naming the optimizer, the group and the parameter
   index, and leaves values, state and version counters as they were.
2. Update.  Here that is a Python loop of NumPy calls: a KeyboardInterrupt
   (or any signal handler that raises) can arrive between two of them and
   leave the step partly applied (some parameters updated, or a parameter
   updated without its version bump).  The compiled module runs the whole
   phase 2 of all groups inside one C call, which no signal handler can
   interrupt: there a step is all-or-nothing.

Gradients are never written to.  Hyper-parameters are read with float() so
that they act on float32 arrays as Python numbers do (rounded to float32).
"""
import math

import numpy as np

# The chosen core (set before this module is imported): its TensorBase is
# what a parameter must be.
from . import core

_FLOATS = (np.float32, np.float64)


# ---------------------------------------------------------------------------
# Phase 1: the checks (the compiled module calls these to word its errors)
# ---------------------------------------------------------------------------

def _values(name, gi, pi, p):
    """(values, gradient values) of parameter `pi` of group `gi`, checked.

    (None, None) when it has no gradient.
    """
    if not isinstance(p, core.TensorBase):
        raise TypeError("%s: parameter %d in group %d is a %s, not a Tensor"
                        % (name, pi, gi, type(p).__name__))
    grad = p.grad
    if grad is None:
        return None, None
    v = p.numpy()
    if v.dtype.type not in _FLOATS:
        raise TypeError("%s: parameter %d in group %d has dtype %s, expected float32 or float64"
                        % (name, pi, gi, v.dtype.name))
    if not v.flags.writeable:
        raise ValueError("%s: parameter %d in group %d is read-only (its values live in "
                         "read-only memory), so it cannot be updated in place"
                         % (name, pi, gi))
    g = grad.numpy()
    if g.dtype.type is not v.dtype.type:
        raise TypeError("%s: gradient of parameter %d in group %d has dtype %s, expected %s"
                        % (name, pi, gi, g.dtype.name, v.dtype.name))
    if g.shape != v.shape:
        raise ValueError("%s: gradient of parameter %d in group %d has shape %s, expected %s"
                         % (name, pi, gi, g.shape, v.shape))
    return v, g


def _finite(name, gi, pi, g):
    """Raise if the gradient holds a NaN or an infinity (check_finite)."""
    bad = np.flatnonzero(~np.isfinite(g))
    if bad.size:
        raise ValueError("%s: gradient of parameter %d in group %d has a non-finite value (%r at "
                         "flat index %d); the step was refused (error_if_nonfinite=True)"
                         % (name, pi, gi, float(g.reshape(-1)[bad[0]]), bad[0]))


def _state_of(name, gi, pi, state, p):
    """The parameter's state dict, or None if it has none yet."""
    st = state.get(p)
    if st is not None and not isinstance(st, dict):
        raise TypeError("%s: the state of parameter %d in group %d is a %s, expected a dict"
                        % (name, pi, gi, type(st).__name__))
    return st


def _state_array(name, gi, pi, st, key, v):
    """State entry `key` of the parameter with values `v`, checked; None if not made yet."""
    a = st.get(key) if st is not None else None
    if a is None:
        return None
    if not isinstance(a, np.ndarray):
        raise TypeError("%s: state %r of parameter %d in group %d is a %s, expected an array"
                        % (name, key, pi, gi, type(a).__name__))
    if a.dtype.type is not v.dtype.type:
        raise TypeError("%s: state %r of parameter %d in group %d has dtype %s, expected %s"
                        % (name, key, pi, gi, a.dtype.name, v.dtype.name))
    if a.shape != v.shape:
        raise ValueError("%s: state %r of parameter %d in group %d has shape %s, expected %s"
                         % (name, key, pi, gi, a.shape, v.shape))
    if not a.flags.writeable:
        raise ValueError("%s: state %r of parameter %d in group %d is read-only"
                         % (name, key, pi, gi))
    return a


def _state_step(name, gi, pi, st):
    """The parameter's 'step' count (a 0-d float64 array), checked; None if not made yet."""
    s = st.get("step") if st is not None else None
    if s is None:
        return None
    if not isinstance(s, np.ndarray) or s.dtype != np.float64 or s.shape != ():
        raise TypeError("%s: state 'step' of parameter %d in group %d must be a 0-d float64 "
                        "array, got %r" % (name, pi, gi, s))
    if not s.flags.writeable:
        raise ValueError("%s: state 'step' of parameter %d in group %d is read-only"
                         % (name, pi, gi))
    return s


def _gather(name, groups, state, check_finite, keys, counted):
    """Phase 1: per group, [(tensor, values, gradient, {key: state array or None}, step)].

    `keys(group)` names the state arrays the group's update uses; `counted`
    says whether the optimizer keeps a 'step' count.
    """
    if not isinstance(state, dict):
        raise TypeError("%s: the optimizer's state must be a dict, got %s"
                        % (name, type(state).__name__))
    plan = []
    for gi, group in enumerate(groups):
        items = []
        group_keys = keys(group)
        for pi, p in enumerate(group["params"]):
            v, g = _values(name, gi, pi, p)
            if v is None:
                continue
            if check_finite:
                _finite(name, gi, pi, g)
            arrays, step = {}, None
            if group_keys or counted:     # (plain SGD keeps no state)
                st = _state_of(name, gi, pi, state, p)
                arrays = {key: _state_array(name, gi, pi, st, key, v) for key in group_keys}
                step = _state_step(name, gi, pi, st) if counted else None
            items.append((p, v, g, arrays, step))
        plan.append(items)
    return plan


def _number(name, gi, key, value):
    """A hyper-parameter as a float (a string is refused: float() would parse it)."""
    if not isinstance(value, (str, bytes)):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise TypeError("%s: hyper-parameter %r of group %d is %r, expected a number"
                    % (name, key, gi, value))


def _hyper(name, gi, group, *keys):
    return [_number(name, gi, k, group[k]) for k in keys]


def _betas(name, gi, group):
    betas = group["betas"]
    if isinstance(betas, (tuple, list)) and len(betas) == 2 \
            and not any(isinstance(b, (str, bytes)) for b in betas):
        try:
            return [float(b) for b in betas]
        except (TypeError, ValueError):
            pass
    raise TypeError("%s: hyper-parameter 'betas' of group %d is %r, expected a pair of numbers"
                    % (name, gi, betas))


def _native(v):
    """The dtype of new state arrays: the parameter's, in native byte order."""
    return v.dtype.newbyteorder("=")


# ---------------------------------------------------------------------------
# Phase 2 helpers
# ---------------------------------------------------------------------------

def _keep(state, p, key, value):
    """Store a state entry made by this step."""
    st = state.get(p)
    if st is None:
        st = state[p] = {}
    st[key] = value


def _count(state, p, step):
    """The parameter's step count, incremented (made at 0 first); returns the new count."""
    if step is None:
        step = np.zeros((), dtype=np.float64)
        _keep(state, p, "step", step)
    step += 1
    return float(step)


def _zeros(state, p, key, arrays, v):
    a = arrays[key]
    if a is None:
        a = np.zeros(v.shape, dtype=_native(v))
        _keep(state, p, key, a)
    return a


# ---------------------------------------------------------------------------
# The updates
# ---------------------------------------------------------------------------

def sgd_step(name, groups, state, check_finite=False):
    """SGD with optional momentum, dampening, Nesterov and weight decay.

    Hyper-parameters per group: lr, momentum, dampening, weight_decay,
    nesterov, maximize.  The momentum buffer is made on the first step with
    momentum (a copy of the first direction, as PyTorch does).  No 'step'.
    """
    hypers = [(_hyper(name, gi, group, "lr", "momentum", "dampening", "weight_decay"),
               bool(group["nesterov"]), bool(group["maximize"]))
              for gi, group in enumerate(groups)]
    plan = _gather(name, groups, state, check_finite,
                   lambda group: ("momentum_buffer",) if group["momentum"] != 0 else (),
                   False)
    for items, ((lr, momentum, dampening, weight_decay), nesterov, maximize) in zip(plan, hypers):
        for p, v, g, arrays, _ in items:
            d = -g if maximize else g
            if weight_decay != 0:
                d = d + weight_decay * v
            if momentum != 0:
                buf = arrays["momentum_buffer"]
                if buf is None:
                    # PyTorch starts the buffer at the first direction, not at zero.
                    buf = np.array(d, dtype=_native(v), copy=True)
                    _keep(state, p, "momentum_buffer", buf)
                else:
                    buf *= momentum
                    buf += (1 - dampening) * d
                d = d + momentum * buf if nesterov else buf
            v -= lr * d
            p._bump_version()


def adam_step(name, groups, state, check_finite=False, decoupled=False):
    """Adam (decoupled=False) and AdamW (decoupled=True), with optional AMSGrad.

    Hyper-parameters per group: lr, betas, eps, weight_decay, amsgrad, maximize.
    """
    hypers = []
    for gi, group in enumerate(groups):
        lr, eps, weight_decay = _hyper(name, gi, group, "lr", "eps", "weight_decay")
        beta1, beta2 = _betas(name, gi, group)
        hypers.append((lr, beta1, beta2, eps, weight_decay, bool(group["amsgrad"]),
                       bool(group["maximize"])))
    plan = _gather(name, groups, state, check_finite,
                   lambda group: ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"]
                   else ("exp_avg", "exp_avg_sq"), True)
    for items, (lr, beta1, beta2, eps, weight_decay, amsgrad, maximize) in zip(plan, hypers):
        for p, v, grad, arrays, step in items:
            g = -grad if maximize else grad
            m = _zeros(state, p, "exp_avg", arrays, v)
            sq = _zeros(state, p, "exp_avg_sq", arrays, v)
            t = _count(state, p, step)
            if weight_decay != 0:
                if decoupled:
                    v *= 1 - lr * weight_decay
                else:
                    g = g + weight_decay * v
            # torch's exp_avg.lerp_(g, 1 - beta1): m + w*(g - m) for w < 0.5
            m += (1 - beta1) * (g - m)
            sq *= beta2
            sq += (1 - beta2) * g * g
            step_size = lr / (1 - beta1 ** t)
            bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
            if amsgrad:
                vmax = _zeros(state, p, "max_exp_avg_sq", arrays, v)
                np.maximum(vmax, sq, out=vmax)
                sq = vmax
            denom = np.sqrt(sq) / bias_correction2_sqrt + eps
            v -= step_size * (m / denom)
            p._bump_version()


def rmsprop_step(name, groups, state, check_finite=False):
    """RMSprop, optionally centered and with momentum.

    Hyper-parameters per group: lr, alpha, eps, weight_decay, momentum,
    centered, maximize.  'momentum_buffer' is kept only with momentum > 0,
    'grad_avg' only when centered.
    """
    def keys(group):
        out = ["square_avg"]
        if group["momentum"] > 0:
            out.append("momentum_buffer")
        if group["centered"]:
            out.append("grad_avg")
        return tuple(out)

    hypers = [(_hyper(name, gi, group, "lr", "alpha", "eps", "weight_decay", "momentum"),
               bool(group["centered"]), bool(group["maximize"]))
              for gi, group in enumerate(groups)]
    plan = _gather(name, groups, state, check_finite, keys, True)
    for items, ((lr, alpha, eps, weight_decay, momentum), centered, maximize) \
            in zip(plan, hypers):
        for p, v, grad, arrays, step in items:
            g = -grad if maximize else grad
            sq = _zeros(state, p, "square_avg", arrays, v)
            _count(state, p, step)
            if weight_decay != 0:
                g = g + weight_decay * v
            sq *= alpha
            sq += (1 - alpha) * g * g
            if centered:
                gavg = _zeros(state, p, "grad_avg", arrays, v)
                gavg += (1 - alpha) * (g - gavg)
                avg = np.sqrt(sq - gavg * gavg)
            else:
                avg = np.sqrt(sq)
            avg += eps
            if momentum > 0:
                buf = _zeros(state, p, "momentum_buffer", arrays, v)
                buf *= momentum
                buf += g / avg
                v -= lr * buf
            else:
                v -= lr * (g / avg)
            p._bump_version()


def adagrad_step(name, groups, state, check_finite=False):
    """Adagrad with learning-rate decay lr / (1 + (t - 1)*lr_decay).

    Hyper-parameters per group: lr, lr_decay, weight_decay, eps,
    initial_accumulator_value (the sum a missing 'sum' starts at), maximize.
    """
    hypers = [(_hyper(name, gi, group, "lr", "lr_decay", "weight_decay", "eps",
                      "initial_accumulator_value"), bool(group["maximize"]))
              for gi, group in enumerate(groups)]
    plan = _gather(name, groups, state, check_finite, lambda group: ("sum",), True)
    for items, ((lr, lr_decay, weight_decay, eps, initial), maximize) in zip(plan, hypers):
        for p, v, grad, arrays, step in items:
            g = -grad if maximize else grad
            s = arrays["sum"]
            if s is None:
                s = np.full(v.shape, initial, dtype=_native(v))
                _keep(state, p, "sum", s)
            t = _count(state, p, step)
            if weight_decay != 0:
                g = g + weight_decay * v
            clr = lr / (1 + (t - 1) * lr_decay)
            s += g * g
            std = np.sqrt(s) + eps
            v -= clr * (g / std)
            p._bump_version()


# ---------------------------------------------------------------------------
# The LSTM layer's time loop, one call forward and one backward
# ---------------------------------------------------------------------------
# nn.LSTM runs its recurrence as one graph node (an fg.Function in nn/rnn.py)
# whose forward and backward are these two functions; _fused.pyx has the same
# ones with the cell arithmetic in C loops.  A graph of per-step nodes costs
# about fifteen nodes a time step (the matmul, the sigmoid and tanh of the
# gates, their slices, the cell update), and a training step of a small LSTM
# is then dominated by the node bookkeeping, not by its matrix products.
#
#   gates_t = xproj_t + h_{t-1} W_hh^T + b_hh        (N, 4H): i, f, g, o
#   i, f, o = sigmoid(.),  g = tanh(.)
#   c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)
#
# The backward runs the steps in reverse.  With dh, dc the gradients reaching
# h_t and c_t (from the output and from step t + 1):
#
#   dc += dh o (1 - tanh(c_t)^2)
#   d(pre-activation) of o: dh tanh(c_t) o (1 - o);  of i: dc g i (1 - i)
#                      of f: dc c_{t-1} f (1 - f);  of g: dc i (1 - g^2)
#   to step t - 1: dh = dgates_t W_hh,  dc = dc f
#
# and W_hh's gradient is sum_t dgates_t^T h_{t-1}, b_hh's the sum of dgates.
def _lstm_dtype(xproj, h0, c0, w_hh, b_hh):
    arrays = [xproj, h0, c0, w_hh] + ([] if b_hh is None else [b_hh])
    return np.result_type(*arrays)


def lstm_forward(xproj, h0, c0, w_hh, b_hh=None):
    """The LSTM recurrence over xproj (T, N, 4H), the input projections with b_ih.

    Returns (out, acts, tc): out (2, T, N, H) holds h_t in out[0] and c_t in
    out[1]; acts (T, N, 4H) the gate activations and tc (T, N, H) tanh(c_t),
    which the backward reads.
    """
    dtype = _lstm_dtype(xproj, h0, c0, w_hh, b_hh)
    T, N, G = xproj.shape
    H = G // 4
    out = np.empty((2, T, N, H), dtype=dtype)
    acts = np.empty((T, N, G), dtype=dtype)
    tc = np.empty((T, N, H), dtype=dtype)
    h, c = h0, c0
    for t in range(T):
        gates = xproj[t] + h @ w_hh.T
        if b_hh is not None:
            gates = gates + b_hh
        acts[t] = 1.0 / (1.0 + np.exp(-gates))
        acts[t, :, 2 * H:3 * H] = np.tanh(gates[:, 2 * H:3 * H])
        i, f, g, o = (acts[t, :, k * H:(k + 1) * H] for k in range(4))
        c = out[1, t] = f * c + i * g
        tc[t] = np.tanh(c)
        h = out[0, t] = o * tc[t]
    return out, acts, tc


def lstm_backward(grad, out, acts, tc, h0, c0, w_hh, with_bias=True):
    """Gradients of lstm_forward: (d xproj, d h0, d c0, d w_hh, d b_hh or None).

    grad (2, T, N, H) is the gradient of out (h_t's in grad[0], c_t's in grad[1]).
    """
    T, N, H = tc.shape
    dgates = np.empty(acts.shape, dtype=acts.dtype)
    dh = np.zeros((N, H), dtype=acts.dtype)
    dc = np.zeros((N, H), dtype=acts.dtype)
    for t in range(T - 1, -1, -1):
        i, f, g, o = (acts[t, :, k * H:(k + 1) * H] for k in range(4))
        c_prev = out[1, t - 1] if t else c0
        dh = grad[0, t] + dh
        dc = grad[1, t] + dc + dh * o * (1.0 - tc[t] * tc[t])
        dgates[t, :, 0:H] = dc * g * i * (1.0 - i)
        dgates[t, :, H:2 * H] = dc * c_prev * f * (1.0 - f)
        dgates[t, :, 2 * H:3 * H] = dc * i * (1.0 - g * g)
        dgates[t, :, 3 * H:] = dh * tc[t] * o * (1.0 - o)
        dh = dgates[t] @ w_hh
        dc = dc * f
    d_w = dgates[0].T @ h0
    if T > 1:
        d_w = d_w + dgates[1:].reshape(-1, 4 * H).T @ out[0, :-1].reshape(-1, H)
    d_b = dgates.sum(axis=(0, 1)) if with_bias else None
    return dgates, dh, dc, d_w, d_b


# ---------------------------------------------------------------------------
# Batch normalisation in training, one call forward and one backward
# ---------------------------------------------------------------------------
# nn.BatchNorm1d/2d in training mode normalise each channel of x (N, C, L) by
# the batch's mean and biased variance over N and L (n = N L values):
#
#   xhat = (x - mean) invstd,  invstd = 1 / sqrt(var + eps),  y = xhat w + b
#   db = sum g,  dw = sum g xhat,  dx = w invstd / n (n g - db - xhat dw)
#
# (sums over N and L, per channel).  One graph node (nn/normalization.py);
# _fused.pyx has the same functions as C loops over each channel.
def batch_norm_forward(x, weight, bias, eps):
    """(y, xhat, mean, var, invstd) of x (N, C, L); weight, bias and the statistics (C,)."""
    n = x.shape[0] * x.shape[2]
    mean = np.einsum("ncl->c", x) / n
    centred = x - mean[:, None]
    var = np.einsum("ncl,ncl->c", centred, centred) / n
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = centred * invstd[:, None]
    return xhat * weight[:, None] + bias[:, None], xhat, mean, var, invstd


def batch_norm_backward(g, xhat, invstd, weight, input_grad=True):
    """(dx or None, dw, db) of batch_norm_forward for the output's gradient g (N, C, L)."""
    n = g.shape[0] * g.shape[2]
    db = np.einsum("ncl->c", g)
    dw = np.einsum("ncl,ncl->c", g, xhat)
    dx = None
    if input_grad:
        dx = (weight * invstd / n)[:, None] * (n * g - db[:, None] - xhat * dw[:, None])
    return dx, dw, db


# ---------------------------------------------------------------------------
# Max pooling over windows that tile the input
# ---------------------------------------------------------------------------
# x (B, H, W) cut into kh x kw windows (H, W multiples of kh, kw): the output
# is each window's maximum, and its gradient goes whole to one element of the
# window, the first maximum in scan order or the first NaN, as in torch.
def max_pool2d_forward(x, kh, kw):
    """(out (B, H/kh, W/kw), arg): arg the offset of the chosen element in its window."""
    b, h, w = x.shape
    windows = x.reshape(b, h // kh, kh, w // kw, kw).transpose(0, 1, 3, 2, 4)
    windows = windows.reshape(b, h // kh, w // kw, kh * kw)
    arg = windows.argmax(axis=-1)                 # the first maximum, or the first NaN
    return np.take_along_axis(windows, arg[..., None], -1)[..., 0], arg


def max_pool2d_backward(g, arg, kh, kw):
    """The gradient of x (B, H, W) for the output's gradient g (B, H/kh, W/kw)."""
    b, oh, ow = g.shape
    windows = np.zeros((b, oh, ow, kh * kw), dtype=g.dtype)
    np.put_along_axis(windows, arg[..., None], g[..., None], -1)
    windows = windows.reshape(b, oh, ow, kh, kw).transpose(0, 1, 3, 2, 4)
    return windows.reshape(b, oh * kh, ow * kw)


# ---------------------------------------------------------------------------
# The patches of a 2-d convolution with zero padding (im2col) and their gradient
# ---------------------------------------------------------------------------
# x (N, C, H, W); the patch of output position (oh, ow) holds, for every channel
# c and kernel tap (a, e), x[n, c, oh*sh - ph + a*dh, ow*sw - pw + e*dw], or 0
# where that falls outside x.  cols has one row per (n, oh, ow) and one column
# per (c, a, e): the layout of a flattened weight (O, C, kh, kw).  col2im adds
# each entry's gradient back where it was read.  A 1-d convolution is a 2-d one
# of height 1.
def _tap_slices(a, e, dh, dw, sh, sw, oh, ow):
    return (slice(a * dh, a * dh + sh * (oh - 1) + 1, sh),
            slice(e * dw, e * dw + sw * (ow - 1) + 1, sw))


def _padded_shape(shape, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    n, c, h, w = shape
    return (n, c, max(h + ph, ph + sh * (oh - 1) + dh * (kh - 1) + 1),
            max(w + pw, pw + sw * (ow - 1) + dw * (kw - 1) + 1))


def im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """The (N * oh * ow, C * kh * kw) patches of x (N, C, H, W), zero padding ph, pw before."""
    n, c, h, w = x.shape
    padded = np.zeros(_padded_shape(x.shape, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow), x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    cols = np.empty((n, oh, ow, c, kh, kw), dtype=x.dtype)
    for a in range(kh):
        for e in range(kw):
            rows, columns = _tap_slices(a, e, dh, dw, sh, sw, oh, ow)
            cols[:, :, :, :, a, e] = padded[:, :, rows, columns].transpose(0, 2, 3, 1)
    return cols.reshape(n * oh * ow, c * kh * kw)


def col2im(g, shape, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """The gradient of x (shape (N, C, H, W)) for the gradient g of im2col's patches."""
    n, c, h, w = shape
    padded = np.zeros(_padded_shape(shape, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow), g.dtype)
    g = g.reshape(n, oh, ow, c, kh, kw)
    for a in range(kh):
        for e in range(kw):
            rows, columns = _tap_slices(a, e, dh, dw, sh, sw, oh, ow)
            padded[:, :, rows, columns] += g[:, :, :, :, a, e].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(padded[:, :, ph:ph + h, pw:pw + w])
