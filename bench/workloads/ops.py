"""ops: every op of the API, one at a time, as PyTorch users spell it.

Each row is one op at one size: the inputs (float32, fixed seeds) are made
once, and an iteration is the forward and backward of ``op(...).sum()``
(comparisons, which have no gradient, run forward only).  The result is the
loss followed by every input's gradient.

Rows: both fastgrad cores, PyTorch eager at one intra-op thread and at its
default threads, and NumPy written by hand: forward and backward into arrays
allocated once, the upstream gradient of the final sum an array of ones used
as any upstream gradient would be (no shortcut that knows it is all ones).
That is the floor an autodiff library on NumPy arrays could reach.

Sizes: 4x4, 32x64 and 256x256 for every op; 8x32x64 for the ops with a
batched or 3-D form; cross entropy also at 256 rows of 10 classes and 64 of
1000.  The many small rows share one process per implementation and size
(``child_group``) and time more, shorter blocks than the other workloads
(``settings``), compared on their fastest block (``statistic``); ``run.py --only ops --markdown FILE`` writes the table
README.md shows, sorted by the ratio to PyTorch.
"""
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from harness import GroupTarget, Workload, fastgrad_cores, register

F32 = np.float32
PLANE = ("4x4", "32x64", "256x256")
BATCHED = ("8x32x64",)
SHAPES = {"4x4": (4, 4), "32x64": (32, 64), "256x256": (256, 256), "8x32x64": (8, 32, 64),
          "256x10": (256, 10), "64x1000": (64, 1000)}
SMALL = ("4x4", "32x64")


# --------------------------------------------------------------------------
# inputs: each a function (rng, shape) -> (array, requires_grad)
# --------------------------------------------------------------------------
def X(rng, s):
    return rng.standard_normal(s).astype(F32), True


def POS(rng, s):                      # log, sqrt, x ** 0.5: away from 0
    return rng.uniform(0.5, 2.0, s).astype(F32), True


def AWAY(rng, s):                     # divisors: |x| in [0.5, 2]
    return (rng.uniform(0.5, 2.0, s) * rng.choice([-1.0, 1.0], s)).astype(F32), True


def ROW(rng, s):                      # a bias: one value per column
    return rng.standard_normal(s[-1:]).astype(F32), True


def COL(rng, s):                      # one value per row, kept 2-D (m, 1)
    return rng.uniform(0.5, 2.0, s[:-1] + (1,)).astype(F32), True


def W(rng, s):                        # a square weight (n, n)
    n = s[-1]
    return (rng.standard_normal((n, n)) / np.sqrt(n)).astype(F32), True


def BW(rng, s):                       # one weight per batch (b, n, n)
    n = s[-1]
    return (rng.standard_normal((s[0], n, n)) / np.sqrt(n)).astype(F32), True


def VEC(rng, s):
    return rng.standard_normal(s[-1]).astype(F32), True


def IDX(rng, s):                      # row indices with repeats (the gradient adds up)
    return rng.integers(0, s[0], s[0]).astype(np.int64), False


def MASK(rng, s):
    return rng.random(s) > 0.5, False


def TARGET(rng, s):                   # class targets for rows of logits
    return rng.integers(0, s[-1], s[0]).astype(np.int64), False


@dataclass
class Op:
    name: str                          # as a PyTorch user writes it; the row's label
    fn: Callable                       # fn(lib, *inputs): the same code for fastgrad and torch
    inputs: Sequence[Callable]
    numpy: Callable                    # numpy(*arrays) -> (step, grads): see below
    shapes: Sequence[str] = PLANE
    backward: bool = True              # False: forward only (comparisons)


class Lib:
    """What an op's code sees: the library module (`fg` or `torch`) and its F."""

    def __init__(self, mod, F, shape):
        self.mod, self.F, self.s = mod, F, shape


OPS = {}


def op(name, fn, inputs, numpy, shapes=PLANE, backward=True):
    if name in OPS:
        raise ValueError(f"ops: {name!r} is defined twice")
    OPS[name] = Op(name, fn, inputs, numpy, shapes, backward)


def inputs_for(name, shape_label):
    """The op's input arrays at that size: the same for every implementation."""
    rng = np.random.default_rng(zlib.crc32(f"{name} {shape_label}".encode()))
    s = SHAPES[shape_label]
    return [make(rng, s) for make in OPS[name].inputs]


# --------------------------------------------------------------------------
# NumPy by hand.  A maker takes the input arrays and returns (step, grads):
# step() runs forward and backward and returns the loss; grads are the
# preallocated gradient arrays of the inputs that require grad, in order.
# Forward-only makers return (step, out).  `g` is the upstream gradient of the
# final sum, an array of ones used like any upstream gradient.
# --------------------------------------------------------------------------
E = np.empty_like
add, sub, mul, div, neg = np.add, np.subtract, np.multiply, np.divide, np.negative
total = np.add.reduce


def _lead(a):
    """The leading axes a row bias is broadcast over."""
    return tuple(range(a.ndim - 1))


def unary(forward, backward, extra=0):
    """y = f(x) elementwise; backward(x, y, g, dx, *temps) writes dx = g * f'(x)."""
    def make(x):
        y, dx = E(x), E(x)
        g = np.ones_like(y)
        temps = [E(x) for _ in range(extra)]

        def step():
            forward(x, y)
            loss = total(y, axis=None)
            backward(x, y, g, dx, *temps)
            return loss
        return step, [dx]
    return make


def binary(forward, backward, extra=0):
    """y = f(a, b), same shapes; backward(a, b, y, g, da, db, *temps)."""
    def make(a, b):
        y, da, db = E(a), E(a), E(b)
        g = np.ones_like(y)
        temps = [E(a) for _ in range(extra)]

        def step():
            forward(a, b, y)
            loss = total(y, axis=None)
            backward(a, b, y, g, da, db, *temps)
            return loss
        return step, [da, db]
    return make


def _sigmoid(x, y):
    neg(x, out=y)
    np.exp(y, out=y)
    add(y, 1, out=y)
    np.reciprocal(y, out=y)


def _erf():
    try:
        from scipy.special import erf   # NumPy has no erf; SciPy's ufunc is the honest floor
        return erf
    except ImportError:
        import math
        return np.vectorize(math.erf, otypes=[F32])


def np_gelu(x):
    erf = _erf()
    y, dx, c, t = E(x), E(x), E(x), E(x)
    g = np.ones_like(y)
    r2, k = F32(1 / np.sqrt(2)), F32(1 / np.sqrt(2 * np.pi))

    def step():
        mul(x, r2, out=c)
        erf(c, out=c)
        add(c, 1, out=c)
        mul(c, 0.5, out=c)              # Phi(x)
        mul(x, c, out=y)
        loss = total(y, axis=None)
        mul(x, x, out=t)                # phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
        mul(t, -0.5, out=t)
        np.exp(t, out=t)
        mul(t, k, out=t)
        mul(t, x, out=t)
        add(t, c, out=t)
        mul(g, t, out=dx)
        return loss
    return step, [dx]


def np_silu(x):
    y, dx, sg, t = E(x), E(x), E(x), E(x)
    g = np.ones_like(y)

    def step():
        _sigmoid(x, sg)
        mul(x, sg, out=y)
        loss = total(y, axis=None)
        sub(1, sg, out=t)               # s + x s (1 - s)
        mul(t, y, out=t)
        add(t, sg, out=t)
        mul(g, t, out=dx)
        return loss
    return step, [dx]


def bias_row(forward, backward):
    """y = f(a, row) with row broadcast over the leading axes."""
    def make(a, r):
        y, da, dr, t = E(a), E(a), E(r), E(a)
        g = np.ones_like(y)
        lead = _lead(a)

        def step():
            forward(a, r, y)
            loss = total(y, axis=None)
            backward(a, r, y, g, da, dr, t, lead)
            return loss
        return step, [da, dr]
    return make


def by_col(forward, backward):
    """y = f(a, col), col (..., m, 1) broadcast along the last axis."""
    def make(a, c):
        y, da, dc, t = E(a), E(a), E(c), E(a)
        g = np.ones_like(y)

        def step():
            forward(a, c, y)
            loss = total(y, axis=None)
            backward(a, c, y, g, da, dc, t)
            return loss
        return step, [da, dc]
    return make


def scalar(forward, backward):
    def make(x):
        y, dx = E(x), E(x)
        g = np.ones_like(y)

        def step():
            forward(x, y)
            loss = total(y, axis=None)
            backward(g, dx)
            return loss
        return step, [dx]
    return make


def reduce_to(axis, keepdims=False, mean=False):
    """y = x.sum(axis) or x.mean(axis); dx = g broadcast back (/ count)."""
    def make(x):
        y = total(x, axis=axis, keepdims=keepdims)
        y = np.asarray(y, dtype=x.dtype).copy()
        dx = E(x)
        g = np.ones_like(y)
        count = F32(x.size / max(y.size, 1))
        back = g if keepdims or axis is None else np.expand_dims(g, axis)
        scaled = np.ones_like(back)

        def step():
            if axis is None:
                y[...] = total(x, axis=None)
            else:
                total(x, axis=axis, keepdims=keepdims, out=y)
            if mean:
                div(y, count, out=y)
            loss = total(y, axis=None)
            if mean:
                div(back, count, out=scaled)
                np.copyto(dx, scaled)
            else:
                np.copyto(dx, back)
            return loss
        return step, [dx]
    return make


def extreme(axis, arg):
    """x.max(axis).values / x.min(axis).values of a 2-D x: the gradient goes to
    the arg index (flat indices, so that no step allocates)."""
    def make(x):
        m, n = x.shape
        idx = np.empty(n if axis == 0 else m, dtype=np.intp)
        # flat index of the chosen element: idx * n + column, or row * n + idx
        mult, base = (n, np.arange(n)) if axis == 0 else (1, np.arange(m) * n)
        flat = np.empty_like(idx)
        y = np.empty(idx.shape, dtype=x.dtype)
        g = np.ones_like(y)
        dx = E(x)
        xf, dxf = x.reshape(-1), dx.reshape(-1)

        def step():
            arg(x, axis=axis, out=idx)
            mul(idx, mult, out=flat)
            add(flat, base, out=flat)
            np.take(xf, flat, out=y)
            loss = total(y, axis=None)
            dx.fill(0)
            np.put(dxf, flat, g)
            return loss
        return step, [dx]
    return make


def extreme_all(arg):
    def make(x):
        dx = E(x)
        flat_x, flat_dx = x.reshape(-1), dx.reshape(-1)
        g = np.ones((), dtype=x.dtype)

        def step():
            i = arg(flat_x)
            loss = flat_x[i]
            dx.fill(0)
            flat_dx[i] = g
            return loss
        return step, [dx]
    return make


def np_var(axis, std=False):
    def make(x):
        n = x.shape[axis]
        mu = total(x, axis=axis, keepdims=True) / n
        d, dx, t = E(x), E(x), E(x)
        y = E(np.squeeze(mu, axis))
        g = np.ones_like(y)
        ge = np.expand_dims(g, axis)
        k = F32(1.0 / (n - 1))

        def step():
            total(x, axis=axis, keepdims=True, out=mu)
            div(mu, n, out=mu)
            sub(x, mu, out=d)
            mul(d, d, out=t)
            total(t, axis=axis, out=y)
            mul(y, k, out=y)
            if std:
                np.sqrt(y, out=y)
            loss = total(y, axis=None)
            if std:                       # d std = d / ((n - 1) std)
                mul(d, k, out=t)
                div(t, np.expand_dims(y, axis), out=t)
                mul(t, ge, out=dx)
            else:                         # d var = 2 d / (n - 1)
                mul(d, 2 * k, out=t)
                mul(t, ge, out=dx)
            return loss
        return step, [dx]
    return make


def np_logsumexp(x):
    mx = np.max(x, axis=-1, keepdims=True)
    e, dx = E(x), E(x)
    s = E(mx)
    y = E(mx[..., 0])
    g = np.ones_like(y)

    def step():
        np.max(x, axis=-1, keepdims=True, out=mx)
        sub(x, mx, out=e)
        np.exp(e, out=e)
        total(e, axis=-1, keepdims=True, out=s)
        np.log(s[..., 0], out=y)
        add(y, mx[..., 0], out=y)
        loss = total(y, axis=None)
        div(e, s, out=e)                 # softmax
        mul(e, g[..., None], out=dx)
        return loss
    return step, [dx]


def np_softmax(log):
    def make(x):
        mx = np.max(x, axis=-1, keepdims=True)
        y, dx, e = E(x), E(x), E(x)
        s = E(mx)
        g = np.ones_like(y)

        def step():
            np.max(x, axis=-1, keepdims=True, out=mx)
            sub(x, mx, out=e)
            if log:
                np.exp(e, out=y)
                total(y, axis=-1, keepdims=True, out=s)
                np.log(s, out=s)
                sub(e, s, out=y)
            else:
                np.exp(e, out=e)
                total(e, axis=-1, keepdims=True, out=s)
                div(e, s, out=y)
            loss = total(y, axis=None)
            if log:                      # dx = g - softmax * sum(g)
                np.exp(y, out=e)
                total(g, axis=-1, keepdims=True, out=s)
                mul(e, s, out=e)
                sub(g, e, out=dx)
            else:                        # dx = y * (g - sum(g * y))
                mul(g, y, out=e)
                total(e, axis=-1, keepdims=True, out=s)
                sub(g, s, out=e)
                mul(y, e, out=dx)
            return loss
        return step, [dx]
    return make


def np_norm(x):
    dx = E(x)
    t = E(x)
    g = np.ones((), dtype=x.dtype)

    def step():
        mul(x, x, out=t)
        y = np.sqrt(total(t, axis=None))
        mul(x, g / y, out=dx)
        return y
    return step, [dx]


def np_layer_norm(x):
    n = x.shape[-1]
    mu = np.mean(x, axis=-1, keepdims=True)
    var, rstd, a, b = E(mu), E(mu), E(mu), E(mu)
    d, y, dx, t = E(x), E(x), E(x), E(x)
    g = np.ones_like(y)

    def step():
        total(x, axis=-1, keepdims=True, out=mu)
        div(mu, n, out=mu)
        sub(x, mu, out=d)
        mul(d, d, out=t)
        total(t, axis=-1, keepdims=True, out=var)
        div(var, n, out=var)
        add(var, 1e-5, out=var)
        np.sqrt(var, out=rstd)
        np.reciprocal(rstd, out=rstd)
        mul(d, rstd, out=y)                        # xhat
        loss = total(y, axis=None)
        # dx = rstd (g - mean(g) - xhat mean(g xhat))
        total(g, axis=-1, keepdims=True, out=a)
        div(a, n, out=a)
        mul(g, y, out=t)
        total(t, axis=-1, keepdims=True, out=b)
        div(b, n, out=b)
        mul(y, b, out=t)
        sub(g, t, out=t)
        sub(t, a, out=t)
        mul(t, rstd, out=dx)
        return loss
    return step, [dx]


def view(forward, backward):
    """y = a view of x; backward writes dx from g (a copy in the view's layout)."""
    def make(x):
        y = forward(x)
        g = np.ones(y.shape, dtype=x.dtype)
        dx = E(x)

        def step():
            v = forward(x)
            loss = total(v, axis=None)
            backward(g, dx)
            return loss
        return step, [dx]
    return make


def np_expand(c):
    shape = SHAPE[0]
    g = np.ones(shape, dtype=c.dtype)
    dc = E(c)

    def step():
        v = np.broadcast_to(c, shape)
        loss = total(v, axis=None)
        total(g, axis=-1, keepdims=True, out=dc)
        return loss
    return step, [dc]


SHAPE = [()]    # the row's shape, for the NumPy makers that need more than their inputs


def np_slice(key):
    def make(x):
        y = x[key]
        g = np.ones(y.shape, dtype=x.dtype)
        dx = E(x)

        def step():
            v = x[key]
            loss = total(v, axis=None)
            dx.fill(0)
            dx[key] = g
            return loss
        return step, [dx]
    return make


def np_gather_rows(x, idx):
    y = np.empty((len(idx),) + x.shape[1:], dtype=x.dtype)
    g = np.ones_like(y)
    dx = E(x)

    def step():
        np.take(x, idx, axis=0, out=y)
        loss = total(y, axis=None)
        dx.fill(0)
        np.add.at(dx, idx, g)                     # scatter-add: repeated rows add up
        return loss
    return step, [dx]


def np_mask(x, mask):
    g = np.ones(int(mask.sum()), dtype=x.dtype)
    dx = E(x)

    def step():
        y = x[mask]
        loss = total(y, axis=None)
        dx.fill(0)
        dx[mask] = g
        return loss
    return step, [dx]


def np_masked_fill(x, mask):
    y, dx = E(x), E(x)
    keep = ~mask
    g = np.ones_like(y)

    def step():
        np.copyto(y, x)
        y[mask] = 0
        loss = total(y, axis=None)
        mul(g, keep, out=dx)
        return loss
    return step, [dx]


def np_cat(axis):
    def make(a, b):
        y = np.concatenate([a, b], axis)
        g = np.ones_like(y)
        da, db = E(a), E(b)
        k = a.shape[axis]
        first = (slice(None),) * axis + (slice(0, k),)
        second = (slice(None),) * axis + (slice(k, None),)

        def step():
            np.concatenate([a, b], axis, out=y)
            loss = total(y, axis=None)
            np.copyto(da, g[first])
            np.copyto(db, g[second])
            return loss
        return step, [da, db]
    return make


def np_stack(a, b):
    y = np.stack([a, b])
    g = np.ones_like(y)
    da, db = E(a), E(b)

    def step():
        np.stack([a, b], out=y)
        loss = total(y, axis=None)
        np.copyto(da, g[0])
        np.copyto(db, g[1])
        return loss
    return step, [da, db]


def np_where(mask, a, b):
    y, da, db = E(a), E(a), E(b)
    g = np.ones_like(y)

    def step():
        np.copyto(y, b)
        np.copyto(y, a, where=mask)
        loss = total(y, axis=None)
        mul(g, mask, out=da)
        sub(g, da, out=db)
        return loss
    return step, [da, db]


def compare(ufunc, other=None):
    def make(a, b=None):
        out = np.empty(a.shape, dtype=bool)
        rhs = b if other is None else other

        def step():
            ufunc(a, rhs, out=out)
            return out
        return step, out
    return make


def np_matmul(ta, tb):
    """y = op(a) @ op(b), op a transpose or not, 2-D or batched (same batch)."""
    def make(a, b):
        A = np.swapaxes(a, -1, -2) if ta else a
        B = np.swapaxes(b, -1, -2) if tb else b
        y = np.matmul(A, B)
        g = np.ones_like(y)
        da, db = E(a), E(b)
        dA = np.swapaxes(da, -1, -2) if ta else da
        dB = np.swapaxes(db, -1, -2) if tb else db

        def step():
            np.matmul(A, B, out=y)
            loss = total(y, axis=None)
            np.matmul(g, np.swapaxes(B, -1, -2), out=dA)
            np.matmul(np.swapaxes(A, -1, -2), g, out=dB)
            return loss
        return step, [da, db]
    return make


def np_matmul_3d_2d(a, w):
    """(b, m, n) @ (n, n): the weight's gradient sums over the batch."""
    y = np.matmul(a, w)
    g = np.ones_like(y)
    da, dw = E(a), E(w)
    a2, g2 = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])

    def step():
        np.matmul(a, w, out=y)
        loss = total(y, axis=None)
        np.matmul(g, w.T, out=da)
        np.matmul(a2.T, g2, out=dw)
        return loss
    return step, [da, dw]


def np_matvec(a, v):
    y = a @ v
    g = np.ones_like(y)
    da, dv = E(a), E(v)

    def step():
        np.matmul(a, v, out=y)
        loss = total(y, axis=None)
        np.multiply.outer(g, v, out=da)
        np.matmul(g, a, out=dv)
        return loss
    return step, [da, dv]


def np_linear(x, w, b):
    y = x @ w.T
    g = np.ones_like(y)
    dx, dw, db = E(x), E(w), E(b)

    def step():
        np.matmul(x, w.T, out=y)
        add(y, b, out=y)
        loss = total(y, axis=None)
        np.matmul(g, w, out=dx)
        np.matmul(g.T, x, out=dw)
        total(g, axis=0, out=db)
        return loss
    return step, [dx, dw, db]


def np_cross_entropy(x, t):
    m, c = x.shape
    rows = np.arange(m)
    mx = np.max(x, axis=1, keepdims=True)
    e, dx = E(x), E(x)
    s = E(mx)
    g = np.ones((), dtype=x.dtype)

    def step():
        np.max(x, axis=1, keepdims=True, out=mx)
        sub(x, mx, out=e)
        np.exp(e, out=e)
        total(e, axis=1, keepdims=True, out=s)
        lse = np.log(s[:, 0]) + mx[:, 0]
        loss = (total(lse) - total(x[rows, t])) / m
        div(e, s, out=dx)                       # softmax - one-hot, times g / m
        dx[rows, t] -= 1
        mul(dx, g / m, out=dx)
        return loss
    return step, [dx]


def np_mse(a, b):
    d, da, db = E(a), E(a), E(b)
    n = a.size
    g = np.ones((), dtype=a.dtype)

    def step():
        sub(a, b, out=d)
        mul(d, d, out=da)
        loss = total(da, axis=None) / n
        mul(d, 2 * g / n, out=da)
        neg(da, out=db)
        return loss
    return step, [da, db]


# --------------------------------------------------------------------------
# the ops, in API.md's order
# --------------------------------------------------------------------------
ALL = PLANE + BATCHED

# arithmetic, same shapes
op("a + b", lambda L, a, b: a + b, [X, X],
   binary(lambda a, b, y: add(a, b, out=y),
          lambda a, b, y, g, da, db: (np.copyto(da, g), np.copyto(db, g))))
op("a - b", lambda L, a, b: a - b, [X, X],
   binary(lambda a, b, y: sub(a, b, out=y),
          lambda a, b, y, g, da, db: (np.copyto(da, g), neg(g, out=db))))
op("a * b", lambda L, a, b: a * b, [X, X],
   binary(lambda a, b, y: mul(a, b, out=y),
          lambda a, b, y, g, da, db: (mul(g, b, out=da), mul(g, a, out=db))))
op("a / b", lambda L, a, b: a / b, [X, AWAY],
   binary(lambda a, b, y: div(a, b, out=y),
          lambda a, b, y, g, da, db: (div(g, b, out=da), mul(da, y, out=db), neg(db, out=db))))
# broadcasting: the bias and normalisation cases
op("a + row", lambda L, a, r: a + r, [X, ROW],
   bias_row(lambda a, r, y: add(a, r, out=y),
            lambda a, r, y, g, da, dr, t, lead: (np.copyto(da, g), total(g, axis=lead, out=dr))),
   shapes=ALL)
op("a * row", lambda L, a, r: a * r, [X, ROW],
   bias_row(lambda a, r, y: mul(a, r, out=y),
            lambda a, r, y, g, da, dr, t, lead: (mul(g, r, out=da), mul(g, a, out=t),
                                                 total(t, axis=lead, out=dr))),
   shapes=ALL)
op("a * col", lambda L, a, c: a * c, [X, COL],
   by_col(lambda a, c, y: mul(a, c, out=y),
          lambda a, c, y, g, da, dc, t: (mul(g, c, out=da), mul(g, a, out=t),
                                         total(t, axis=-1, keepdims=True, out=dc))),
   shapes=ALL)
op("a / col", lambda L, a, c: a / c, [X, COL],
   by_col(lambda a, c, y: div(a, c, out=y),
          lambda a, c, y, g, da, dc, t: (div(g, c, out=da), mul(da, y, out=t),
                                         total(t, axis=-1, keepdims=True, out=dc),
                                         neg(dc, out=dc))))
# Python numbers
op("x * 2.0", lambda L, x: x * 2.0, [X],
   scalar(lambda x, y: mul(x, 2.0, out=y), lambda g, dx: mul(g, 2.0, out=dx)))
op("x + 1.0", lambda L, x: x + 1.0, [X],
   scalar(lambda x, y: add(x, 1.0, out=y), lambda g, dx: np.copyto(dx, g)))
op("1.0 - x", lambda L, x: 1.0 - x, [X],
   scalar(lambda x, y: sub(1.0, x, out=y), lambda g, dx: neg(g, out=dx)))
op("-x", lambda L, x: -x, [X],
   scalar(lambda x, y: neg(x, out=y), lambda g, dx: neg(g, out=dx)))
# powers
op("x ** 2", lambda L, x: x ** 2, [X],
   unary(lambda x, y: mul(x, x, out=y),
         lambda x, y, g, dx, t: (mul(x, 2.0, out=t), mul(g, t, out=dx)), extra=1))
op("x ** 3", lambda L, x: x ** 3, [X],
   unary(lambda x, y: (mul(x, x, out=y), mul(y, x, out=y)),
         lambda x, y, g, dx, t: (mul(x, x, out=t), mul(t, 3.0, out=t), mul(g, t, out=dx)),
         extra=1))
op("x ** 0.5", lambda L, x: x ** 0.5, [POS],
   unary(lambda x, y: np.sqrt(x, out=y),
         lambda x, y, g, dx, t: (div(0.5, y, out=t), mul(g, t, out=dx)), extra=1))
op("a ** b", lambda L, a, b: a ** b, [POS, X],
   binary(lambda a, b, y: np.power(a, b, out=y),
          lambda a, b, y, g, da, db, t: (mul(g, b, out=da), mul(da, y, out=da),
                                         div(da, a, out=da), np.log(a, out=t), mul(t, y, out=t),
                                         mul(g, t, out=db)), extra=1))
# elementwise functions
op("x.exp()", lambda L, x: x.exp(), [X],
   unary(lambda x, y: np.exp(x, out=y), lambda x, y, g, dx: mul(g, y, out=dx)))
op("x.log()", lambda L, x: x.log(), [POS],
   unary(lambda x, y: np.log(x, out=y), lambda x, y, g, dx: div(g, x, out=dx)))
op("x.sqrt()", lambda L, x: x.sqrt(), [POS],
   unary(lambda x, y: np.sqrt(x, out=y),
         lambda x, y, g, dx, t: (div(0.5, y, out=t), mul(g, t, out=dx)), extra=1))
op("x.abs()", lambda L, x: x.abs(), [X],
   unary(lambda x, y: np.abs(x, out=y),
         lambda x, y, g, dx, t: (np.sign(x, out=t), mul(g, t, out=dx)), extra=1))
op("x.sin()", lambda L, x: x.sin(), [X],
   unary(lambda x, y: np.sin(x, out=y),
         lambda x, y, g, dx, t: (np.cos(x, out=t), mul(g, t, out=dx)), extra=1))
op("x.cos()", lambda L, x: x.cos(), [X],
   unary(lambda x, y: np.cos(x, out=y),
         lambda x, y, g, dx, t: (np.sin(x, out=t), neg(t, out=t), mul(g, t, out=dx)), extra=1))
op("x.tanh()", lambda L, x: x.tanh(), [X],
   unary(lambda x, y: np.tanh(x, out=y),
         lambda x, y, g, dx, t: (mul(y, y, out=t), sub(1, t, out=t), mul(g, t, out=dx)),
         extra=1))
op("x.sigmoid()", lambda L, x: x.sigmoid(), [X],
   unary(_sigmoid,
         lambda x, y, g, dx, t: (sub(1, y, out=t), mul(t, y, out=t), mul(g, t, out=dx)),
         extra=1), shapes=ALL)
op("x.relu()", lambda L, x: x.relu(), [X],
   unary(lambda x, y: np.maximum(x, 0, out=y),
         lambda x, y, g, dx, t: (np.greater(x, 0, out=t), mul(g, t, out=dx)), extra=1),
   shapes=ALL)
op("F.leaky_relu(x, 0.1)", lambda L, x: L.F.leaky_relu(x, 0.1), [X],
   unary(lambda x, y: (mul(x, 0.1, out=y), np.maximum(x, y, out=y)),
         lambda x, y, g, dx, t: (np.greater(x, 0, out=t), mul(t, 0.9, out=t),
                                 add(t, 0.1, out=t), mul(g, t, out=dx)), extra=1))
op("F.gelu(x)", lambda L, x: L.F.gelu(x), [X], np_gelu, shapes=ALL)
op("F.silu(x)", lambda L, x: L.F.silu(x), [X], np_silu)
op("x.clamp(-0.5, 0.5)", lambda L, x: x.clamp(-0.5, 0.5), [X],
   unary(lambda x, y: np.clip(x, -0.5, 0.5, out=y),
         lambda x, y, g, dx, t: (np.equal(x, y, out=t), mul(g, t, out=dx)), extra=1))
op("fg.maximum(a, b)", lambda L, a, b: L.mod.maximum(a, b), [X, X],
   binary(lambda a, b, y: np.maximum(a, b, out=y),
          lambda a, b, y, g, da, db, t: (np.greater(a, b, out=t), mul(g, t, out=da),
                                         sub(g, da, out=db)), extra=1))
# reductions
op("x.sum()", lambda L, x: x.sum(), [X], reduce_to(None))
op("x.sum(1)", lambda L, x: x.sum(1), [X], reduce_to(1))
op("x.sum(0)", lambda L, x: x.sum(0), [X], reduce_to(0))
op("x.sum(-1)", lambda L, x: x.sum(-1), [X], reduce_to(-1), shapes=BATCHED)
op("x.mean()", lambda L, x: x.mean(), [X], reduce_to(None, mean=True))
op("x.mean(0, keepdim=True)", lambda L, x: x.mean(0, keepdim=True), [X],
   reduce_to(0, keepdims=True, mean=True), shapes=ALL)
op("x.max(1)", lambda L, x: x.max(1).values, [X], extreme(1, np.argmax))
op("x.min(0)", lambda L, x: x.min(0).values, [X], extreme(0, np.argmin))
op("x.max()", lambda L, x: x.max(), [X], extreme_all(np.argmax))
op("x.var(0)", lambda L, x: x.var(0), [X], np_var(0))
op("x.std(1)", lambda L, x: x.std(1), [X], np_var(1, std=True))
op("x.logsumexp(1)", lambda L, x: x.logsumexp(1), [X], np_logsumexp)
op("x.softmax(-1)", lambda L, x: x.softmax(-1), [X], np_softmax(False), shapes=ALL)
op("F.log_softmax(x, -1)", lambda L, x: L.F.log_softmax(x, -1), [X], np_softmax(True),
   shapes=ALL)
op("x.norm()", lambda L, x: x.norm(), [X], np_norm)
op("F.layer_norm(x, (n,))", lambda L, x: L.F.layer_norm(x, (x.shape[-1],)), [X],
   np_layer_norm, shapes=ALL)
# views
op("x.reshape(-1)", lambda L, x: x.reshape(-1), [X],
   view(lambda x: x.reshape(-1), lambda g, dx: np.copyto(dx, g.reshape(dx.shape))), shapes=ALL)
op("x.view(n, -1)", lambda L, x: x.view(x.shape[-1], -1), [X],
   view(lambda x: x.reshape(x.shape[-1], -1), lambda g, dx: np.copyto(dx, g.reshape(dx.shape))))
op("x.T", lambda L, x: x.T, [X], view(lambda x: x.T, lambda g, dx: np.copyto(dx, g.T)))
op("x.permute(1, 0)", lambda L, x: x.permute(1, 0), [X],
   view(lambda x: x.transpose(1, 0), lambda g, dx: np.copyto(dx, g.transpose(1, 0))))
op("x.permute(0, 2, 1)", lambda L, x: x.permute(0, 2, 1), [X],
   view(lambda x: x.transpose(0, 2, 1), lambda g, dx: np.copyto(dx, g.transpose(0, 2, 1))),
   shapes=BATCHED)
op("x.transpose(0, 1)", lambda L, x: x.transpose(0, 1), [X],
   view(lambda x: x.swapaxes(0, 1), lambda g, dx: np.copyto(dx, g.swapaxes(0, 1))),
   shapes=BATCHED)
op("col.expand(m, n)", lambda L, c: c.expand(*L.s), [COL], np_expand)
op("x.unsqueeze(0)", lambda L, x: x.unsqueeze(0), [X],
   view(lambda x: x[None], lambda g, dx: np.copyto(dx, g[0])), shapes=ALL)
op("col.squeeze(-1)", lambda L, c: c.squeeze(-1), [COL],
   view(lambda c: c[..., 0], lambda g, dx: np.copyto(dx, g[..., None])))
op("x[1:3]", lambda L, x: x[1:3], [X], np_slice(np.s_[1:3]), shapes=ALL)
op("x[:, 1:3]", lambda L, x: x[:, 1:3], [X], np_slice(np.s_[:, 1:3]))
# copying indexing
op("x[idx]", lambda L, x, i: x[i], [X, IDX], np_gather_rows, shapes=ALL)
op("x[mask]", lambda L, x, m: x[m], [X, MASK], np_mask)
op("x.masked_fill(mask, 0.0)", lambda L, x, m: x.masked_fill(m, 0.0), [X, MASK], np_masked_fill)
# joining and selecting
op("fg.cat([a, b], 0)", lambda L, a, b: L.mod.cat([a, b], 0), [X, X], np_cat(0), shapes=ALL)
op("fg.cat([a, b], 1)", lambda L, a, b: L.mod.cat([a, b], 1), [X, X], np_cat(1))
op("fg.stack([a, b])", lambda L, a, b: L.mod.stack([a, b]), [X, X], np_stack, shapes=ALL)
op("fg.where(mask, a, b)", lambda L, m, a, b: L.mod.where(m, a, b), [MASK, X, X],
   lambda m, a, b: np_where(m, a, b))
# comparisons (no gradient: forward only)
op("a > b", lambda L, a, b: a > b, [X, X], compare(np.greater), backward=False)
op("x <= 0.5", lambda L, x: x <= 0.5, [X], compare(np.less_equal, 0.5), backward=False)
# matrix products
op("x @ w", lambda L, x, w: x @ w, [X, W], np_matmul(False, False))
op("x @ w.T", lambda L, x, w: x @ w.T, [X, W], np_matmul(False, True))
op("a.T @ b", lambda L, a, b: a.T @ b, [X, X], np_matmul(True, False))
op("x @ v", lambda L, x, v: x @ v, [X, VEC], np_matvec)
op("a @ b (batched)", lambda L, a, b: a @ b, [X, BW], np_matmul(False, False), shapes=BATCHED)
op("x @ w (3-D @ 2-D)", lambda L, x, w: x @ w, [X, W], np_matmul_3d_2d, shapes=BATCHED)
op("F.linear(x, w, b)", lambda L, x, w, b: L.F.linear(x, w, b), [X, W, ROW], np_linear)
# losses
op("F.cross_entropy(x, t)", lambda L, x, t: L.F.cross_entropy(x, t), [X, TARGET],
   np_cross_entropy, shapes=PLANE + ("256x10", "64x1000"))
op("F.mse_loss(a, b)", lambda L, a, b: L.F.mse_loss(a, b), [X, X], np_mse)


# --------------------------------------------------------------------------
# runners
# --------------------------------------------------------------------------
def _library_runner(kind):
    def runner(size):
        name, shape_label = size
        spec = OPS[name]
        arrays = inputs_for(name, shape_label)
        if kind == "torch":
            import torch
            import torch.nn.functional as F
            lib = Lib(torch, F, SHAPES[shape_label])
            tensors = [torch.tensor(a, requires_grad=bool(g)) for a, g in arrays]
        else:
            import fastgrad as fg
            lib = Lib(fg, fg.nn.functional, SHAPES[shape_label])
            tensors = [fg.tensor(a, requires_grad=bool(g)) for a, g in arrays]
        leaves = [t for t, (_, g) in zip(tensors, arrays) if g]
        fn = spec.fn
        last = [None]

        if spec.backward:
            def step():
                for t in leaves:
                    t.grad = None
                loss = fn(lib, *tensors).sum()
                loss.backward()
                last[0] = loss

            def result():
                return np.concatenate([[last[0].item()]] +
                                      [np.asarray(t.grad.numpy(), np.float64).ravel()
                                       for t in leaves])
        else:
            def step():
                last[0] = fn(lib, *tensors)

            def result():
                return np.asarray(last[0].numpy(), dtype=np.float64).ravel()
        return step, result
    return runner


def numpy_runner(size):
    name, shape_label = size
    spec = OPS[name]
    SHAPE[0] = SHAPES[shape_label]
    arrays = [a for a, _ in inputs_for(name, shape_label)]
    step, out = spec.numpy(*arrays)
    last = [None]

    def timed():
        last[0] = step()

    if spec.backward:
        def result():
            return np.concatenate([[float(last[0])]] +
                                  [np.asarray(g, np.float64).ravel() for g in out])
    else:
        def result():
            return np.asarray(out, dtype=np.float64).ravel()
    return timed, result


def sizes():
    """[op name, size] for every op at each of its sizes, grouped by size."""
    order = PLANE + BATCHED + ("256x10", "64x1000")
    return [[name, shape] for shape in order for name, spec in OPS.items() if shape in spec.shapes]


def _own_settings(settings):
    """Many short blocks: hundreds of rows of microseconds each.  Each block
    still lasts at least min_time (its iteration count adapts to the op), and
    the rows compare their fastest block (statistic="min"), which a burst of
    load on a shared machine cannot make look faster."""
    return {"repeats": max(5, settings["repeats"] * 3 // 5),
            "min_time": min(settings["min_time"], 0.002),
            "warmup": min(settings["warmup"], 0.01)}


# the rows whose products go to BLAS at 32x64 and above
_BLAS_OPS = ("x @ w", "x @ w.T", "a.T @ b", "x @ v", "a @ b (batched)", "x @ w (3-D @ 2-D)",
             "F.linear(x, w, b)")


def _at(labels):
    return lambda size: size[1] in labels


register(Workload(
    name="ops",
    description="every op of the API at 4x4, 32x64, 256x256 (and 8x32x64 where it has a "
                "batched form), float32, forward + backward of op(...).sum() (comparisons "
                "forward only); result: the loss and every input's gradient",
    sizes=sizes(),
    runners={**fastgrad_cores(_library_runner("fastgrad")),
             "torch-1thread": _library_runner("torch"), "torch": _library_runner("torch"),
             "numpy": numpy_runner},
    reference="numpy",
    rtol=2e-4,
    atol=2e-4,
    label=lambda size: f"{size[0]} {size[1]}",
    child_group=lambda size: size[1],
    settings=_own_settings,
    # a quiet before each block: 5 ms lets the OpenMP workers of the PyTorch
    # process timed just before stop spinning (rows of microseconds measured
    # 1.5-2x slower without it in a run of all five implementations); the big
    # matrix products wait as long as OpenBLAS's workers spin (a 256x256 a.T @ b
    # measured 6x slower after 5 ms)
    settle=lambda size: 0.2 if size[0] in _BLAS_OPS and size[1] != "4x4" else 0.005,
    table="wide",
    statistic="min",
    group_targets=[
        GroupTarget("compiled", "torch-1thread", 5, "4x4 and 32x64", _at(SMALL)),
        GroupTarget("compiled", "torch-1thread", 10, "4x4 and 32x64", _at(SMALL), "median"),
        GroupTarget("compiled", "torch-1thread", 1, "256x256", _at(("256x256",))),
        GroupTarget("compiled", "numpy", 1, "256x256", _at(("256x256",))),
        GroupTarget("compiled", "python", 10, "4x4", _at(("4x4",))),
    ],
))
