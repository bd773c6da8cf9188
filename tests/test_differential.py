"""Random graphs of the differentiable API, checked against PyTorch in float64.

Each seed builds one random program of 3-8 ops (new leaves are created on
demand when an op needs a second operand).  The generator evaluates every
candidate op in NumPy first and keeps it only away from kinks and
singularities (no ties under max/min/maximum, no values near 0 under abs,
relu or a clip bound, positive inputs to log/sqrt/fractional powers, no
overflow), so the comparison is of the library, not of conventions at a
kink.  The program then runs on fastgrad (the core under test) and on
PyTorch; the forward value and the gradient of every leaf must agree to
1e-9 relative.  Every node that no later op consumes joins a weighted sum
that backward starts from, so every leaf gets a gradient.

Seeds that fail because of a known library bug are listed in KNOWN_BUGS;
the test asserts that they still fail, so a fix forces removing the entry.
"""
import numpy as np
import pytest

from _gen import odd

N_GRAPHS = 3000
CHUNK = 100
N_AGREE = 600          # graphs on which the two cores are compared with each other
RTOL = 1e-9

# How a leaf's values are held: a fresh copy (fg.tensor) or an ndarray in an
# unusual layout shared through fg.from_numpy (the kernels must honour strides).
LEAF_LAYOUTS = ["copy"] * 6 + ["contiguous", "fortran", "strided", "reversed", "transposed",
                               "unaligned", "read_only", "subclass"]

# Graphs that fail because of a library bug: seed -> (cores, what the failure
# says, the bug).  The test expects each to fail on those cores with that
# message; once the bug is fixed it passes and the test asks to drop the entry.
KNOWN_BUGS = {}


# ---------------------------------------------------------------------------
# The generator: a program is a list of steps over numbered nodes
# ---------------------------------------------------------------------------

class Program:
    def __init__(self, rng):
        self.rng = rng
        self.steps = []     # ("leaf", array, layout) or (op, input ids, params)
        self.values = []    # NumPy float64 value of each node
        self.used = set()

    def leaf(self, value):
        layout = str(self.rng.choice(LEAF_LAYOUTS))
        self.steps.append(("leaf", np.array(value, dtype=np.float64), layout))
        self.values.append(np.array(value, dtype=np.float64))
        return len(self.values) - 1

    def add(self, op, inputs, params, value):
        self.steps.append((op, tuple(inputs), params))
        self.values.append(np.asarray(value, dtype=np.float64))
        self.used.update(inputs)
        return len(self.values) - 1

    def describe(self):
        lines = []
        for i, (op, inputs, params) in enumerate(self.steps):
            if op == "leaf":
                lines.append("n%d = leaf%s %s" % (i, inputs.shape, params))
            else:
                lines.append("n%d = %s(%s%s)" % (i, op, ", ".join("n%d" % j for j in inputs),
                                                "" if params is None else ", %r" % (params,)))
        return "\n".join(lines)


def _random_shape(rng, max_ndim=3):
    nd = int(rng.integers(0, max_ndim + 1))
    return tuple(int(n) for n in rng.integers(1, 5, size=nd))


def _values(rng, shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, size=shape)


def _ok(v):
    v = np.asarray(v)
    return v.size > 0 and np.all(np.isfinite(v)) and np.max(np.abs(v)) < 1e4


def _far(v, points, gap=1e-3):
    v = np.asarray(v)
    return all(np.all(np.abs(v - p) > gap) for p in points)


def _unique_along(v, axis):
    """No ties among the entries that a max/min over `axis` compares."""
    if axis is None:
        flat = np.sort(v.reshape(-1))
        return flat.size < 2 or np.min(np.diff(flat)) > 1e-6
    axes = axis if isinstance(axis, tuple) else (axis,)
    axes = tuple(a % v.ndim for a in axes)
    rest = [a for a in range(v.ndim) if a not in axes]
    moved = np.transpose(v, rest + list(axes)).reshape(
        [v.shape[a] for a in rest] + [-1])
    s = np.sort(moved, axis=-1)
    return s.shape[-1] < 2 or np.min(np.diff(s, axis=-1)) > 1e-6


def _broadcast_partner(rng, shape):
    """A shape that broadcasts against `shape` (drop leading dims, set some to 1)."""
    nd = len(shape)
    drop = int(rng.integers(0, nd + 1)) if nd else 0
    out = [1 if rng.random() < 0.3 else n for n in shape[drop:]]
    if rng.random() < 0.15 and len(out) < 4:
        out = [int(rng.integers(1, 3))] + out if not shape else out
    return tuple(out)


def _operand(rng, prog, shape, exclude=None):
    """An existing node of exactly `shape`, or a new leaf of it."""
    same = [i for i, v in enumerate(prog.values) if v.shape == shape and i != exclude]
    if same and rng.random() < 0.5:
        return int(rng.choice(same))
    return prog.leaf(_values(rng, shape))


def _random_axis(rng, nd, allow_tuple=True, allow_none=True):
    if nd == 0:
        return None
    r = rng.random()
    if allow_none and r < 0.2:
        return None
    if allow_tuple and r < 0.4 and nd >= 2:
        k = int(rng.integers(1, nd + 1))
        axes = tuple(int(a) for a in rng.choice(nd, size=k, replace=False))
        return tuple(a - nd if rng.random() < 0.3 else a for a in axes)
    a = int(rng.integers(0, nd))
    return a - nd if rng.random() < 0.3 else a


def _reduce_count(shape, axis):
    if axis is None:
        return int(np.prod(shape))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return int(np.prod([shape[a % len(shape)] for a in axes]))


def _gen_unary(rng, prog, i):
    v = prog.values[i]
    choice = rng.choice(["neg", "exp", "log", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid",
                         "relu", "leaky_relu", "clip", "pow_scalar", "rpow_scalar", "softplus"])
    if choice == "exp" and np.max(v) < 5:
        return prog.add("exp", [i], None, np.exp(v))
    if choice == "log" and np.min(v) > 0.05:
        return prog.add("log", [i], None, np.log(v))
    if choice == "sqrt" and np.min(v) > 0.05:
        return prog.add("sqrt", [i], None, np.sqrt(v))
    if choice in ("abs", "relu") and _far(v, [0.0]):
        return prog.add(choice, [i], None, np.abs(v) if choice == "abs" else np.maximum(v, 0))
    if choice == "leaky_relu" and _far(v, [0.0]):
        slope = float(rng.choice([0.01, 0.2, 1.5]))
        return prog.add("leaky_relu", [i], slope, np.where(v > 0, v, slope * v))
    if choice == "clip":
        lo, hi = sorted(rng.uniform(-1.5, 1.5, size=2))
        which = rng.choice(["both", "min", "max"])
        lo = None if which == "max" else float(lo)
        hi = None if which == "min" else float(hi)
        bounds = [b for b in (lo, hi) if b is not None]
        if _far(v, bounds):
            return prog.add("clip", [i], (lo, hi), np.clip(v, lo, hi))
    if choice == "pow_scalar":
        p = float(rng.choice([2.0, 3.0, -1.0, 0.5, 1.5, -0.5]))
        if p in (2.0, 3.0) or (np.min(v) > 0.1 and np.max(v) < 100):
            if p in (2.0, 3.0) and rng.random() < 0.5:
                p = int(p)
            return prog.add("pow_scalar", [i], p, np.power(v, p))
    if choice == "rpow_scalar" and np.max(v) < 8:
        base = float(rng.choice([2.0, 0.5, 3.0]))
        return prog.add("rpow_scalar", [i], base, np.power(base, v))
    if choice == "softplus" and np.max(np.abs(v)) < 30:
        return prog.add("softplus", [i], None, np.log1p(np.exp(v)))
    if choice in ("neg", "sin", "cos", "tanh", "sigmoid"):
        f = {"neg": np.negative, "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
             "sigmoid": lambda x: 1 / (1 + np.exp(-x))}[choice]
        return prog.add(choice, [i], None, f(v))
    return prog.add("tanh", [i], None, np.tanh(v))


def _gen_binary(rng, prog, i):
    v = prog.values[i]
    op = str(rng.choice(["add", "sub", "mul", "div", "maximum", "minimum", "pow"]))
    scalar = rng.random() < 0.3
    left = rng.random() < 0.5
    if scalar:
        c = float(rng.choice([-1.5, 0.5, 2.0, 3.0])) if op != "pow" else 2.0
        kind = str(rng.choice(["float", "int", "numpy", "array0d"]))
        if kind == "int":
            c = float(int(c)) if c == int(c) else c
        if op == "div" and left and not _far(v, [0.0], 0.1):
            op = "mul"
        if op in ("maximum", "minimum"):
            if not _far(v, [c]):
                op = "add"
            left = False
        if op == "pow":
            # c ** v (left) or v ** c
            if left and np.max(v) < 8:
                return prog.add("rpow_scalar", [i], c, np.power(c, v))
            return prog.add("pow_scalar", [i], 2, v * v)
        f = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
             "maximum": np.maximum, "minimum": np.minimum}[op]
        out = f(c, v) if left else f(v, c)
        return prog.add(op + "_scalar", [i], (c, bool(left), kind), out)
    shape = _broadcast_partner(rng, v.shape)
    if op == "div":
        j = prog.leaf(np.sign(rng.uniform(-1, 1, size=shape)) * rng.uniform(0.5, 2, size=shape))
    elif op == "pow":
        if np.min(v) <= 0.1 or np.max(v) > 20:
            op = "mul"
            j = _operand(rng, prog, shape)
        else:
            j = prog.leaf(_values(rng, shape, -1.5, 1.5))
    elif shape == v.shape and rng.random() < 0.2:
        j = i                   # the same node on both sides: x * x, x - x
    else:
        j = _operand(rng, prog, shape, exclude=i)
    a, b = (j, i) if left and op not in ("div", "pow") else (i, j)
    va, vb = prog.values[a], prog.values[b]
    if op in ("maximum", "minimum") and a == b:
        op = "add"
    if op in ("maximum", "minimum") and not _far(*np.broadcast_arrays(va, vb)[:1],
                                               [np.broadcast_arrays(va, vb)[1]]):
        op = "add"
    f = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
         "maximum": np.maximum, "minimum": np.minimum, "pow": np.power}[op]
    return prog.add(op, [a, b], None, f(va, vb))


def _gen_reduce(rng, prog, i):
    v = prog.values[i]
    op = str(rng.choice(["sum", "mean", "max", "min", "var", "std", "logsumexp", "softmax",
                         "log_softmax", "amax"]))
    nd = v.ndim
    keep = bool(rng.random() < 0.5)
    if op in ("softmax", "log_softmax"):
        if nd == 0:
            op = "sum"
        else:
            axis = int(rng.integers(-nd, nd))
            if np.max(np.abs(v)) > 50:
                return prog.add("tanh", [i], None, np.tanh(v))
            lse = np.log(np.sum(np.exp(v - v.max(axis, keepdims=True)), axis, keepdims=True)) \
                + v.max(axis, keepdims=True)
            out = v - lse
            return prog.add(op, [i], axis, np.exp(out) if op == "softmax" else out)
    axis = _random_axis(rng, nd, allow_tuple=op not in ("max", "min"))
    if op in ("max", "min", "amax"):
        if not _unique_along(v, axis):
            op = "sum"
        else:
            f = np.max if op in ("max", "amax") else np.min
            return prog.add(op, [i], (axis, keep), f(v, axis=axis, keepdims=keep))
    if op in ("var", "std"):
        corr = int(rng.choice([0, 1]))
        n = _reduce_count(v.shape, axis)
        if n - corr <= 0:
            op = "sum"
        else:
            out = np.var(v, axis=axis, keepdims=keep, ddof=corr)
            if op == "std":
                if np.min(out) < 1e-4:
                    return prog.add("sum", [i], (axis, keep), np.sum(v, axis=axis, keepdims=keep))
                out = np.sqrt(out)
            return prog.add(op, [i], (axis, keep, corr), out)
    if op == "logsumexp" and np.max(np.abs(v)) < 50:
        m = np.max(v, axis=axis, keepdims=True)
        out = np.log(np.sum(np.exp(v - m), axis=axis, keepdims=True)) + m
        if not keep:
            out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
        return prog.add("logsumexp", [i], (axis, keep), out)
    if op == "mean":
        return prog.add("mean", [i], (axis, keep), np.mean(v, axis=axis, keepdims=keep))
    return prog.add("sum", [i], (axis, keep), np.sum(v, axis=axis, keepdims=keep))


def _factor_shape(rng, n):
    dims = []
    while n > 1 and len(dims) < 3:
        divs = [d for d in range(2, n + 1) if n % d == 0]
        d = int(rng.choice(divs))
        dims.append(d)
        n //= d
    if n > 1:
        dims.append(n)
    if rng.random() < 0.3:
        dims.insert(int(rng.integers(0, len(dims) + 1)), 1)
    if dims and rng.random() < 0.3:
        k = int(rng.integers(0, len(dims)))
        dims[k] = -1
    return tuple(dims)


def _gen_shape(rng, prog, i):
    v = prog.values[i]
    nd = v.ndim
    op = str(rng.choice(["reshape", "permute", "transpose", "expand", "squeeze", "unsqueeze",
                         "flatten", "T"]))
    if op == "reshape":
        shape = _factor_shape(rng, v.size)
        return prog.add("reshape", [i], shape, v.reshape(shape))
    if op == "permute" and nd >= 2:
        axes = tuple(int(a) for a in rng.permutation(nd))
        return prog.add("permute", [i], axes, np.transpose(v, axes))
    if op == "transpose" and nd >= 2:
        a, b = (int(x) for x in rng.choice(nd, size=2, replace=False))
        return prog.add("transpose", [i], (a, b), np.swapaxes(v, a, b))
    if op == "T" and nd == 2:
        return prog.add("T", [i], None, v.T)
    if op == "expand" and nd <= 3:
        shape = [int(rng.integers(2, 4)) if n == 1 and rng.random() < 0.7 else n for n in v.shape]
        if rng.random() < 0.4:
            shape = [int(rng.integers(1, 4))] + shape
        shape = tuple(shape)
        arg = tuple(-1 if (k >= len(shape) - nd and shape[k] == v.shape[k - len(shape) + nd]
                           and rng.random() < 0.3) else n for k, n in enumerate(shape))
        return prog.add("expand", [i], arg, np.broadcast_to(v, shape))
    if op == "squeeze":
        ones = [k for k, n in enumerate(v.shape) if n == 1]
        if ones and rng.random() < 0.6:
            d = int(rng.choice(ones))
            return prog.add("squeeze", [i], d, np.squeeze(v, d))
        return prog.add("squeeze", [i], None, np.squeeze(v))
    if op == "flatten" and nd >= 1:
        return prog.add("flatten", [i], None, v.reshape(-1))
    if nd < 4:
        d = int(rng.integers(-nd - 1, nd + 1))
        return prog.add("unsqueeze", [i], d, np.expand_dims(v, d))
    return prog.add("reshape", [i], (-1,), v.reshape(-1))


def _gen_index(rng, prog, i):
    v = prog.values[i]
    nd = v.ndim
    if nd == 0:
        return prog.add("index", [i], (None,), v[None])
    if rng.random() < 0.12 and v.size > 1:
        # a boolean mask, of the whole shape or of the first axis
        if rng.random() < 0.5:
            mask = v > np.median(v)
        else:
            mask = rng.random(v.shape[0]) < 0.6
        if not mask.any():
            mask = mask.copy()
            mask.reshape(-1)[0] = True
        return prog.add("index", [i], mask, v[mask])
    if rng.random() < 0.45:
        # integer arrays (repeats and negatives accumulate in backward)
        axis = int(rng.integers(0, nd))
        n = v.shape[axis]
        idx = rng.integers(-n, n, size=int(rng.integers(1, 5)))
        if rng.random() < 0.3:
            idx = idx.reshape(-1, 1) if idx.size > 1 else idx
        key = (slice(None),) * axis + (idx,)
        if rng.random() < 0.2 and nd >= 2 and axis + 1 < nd:
            m = v.shape[axis + 1]
            key = key + (rng.integers(0, m, size=idx.shape),)
        if rng.random() < 0.3:
            key = list(key[0]) if axis == 0 and len(key) == 1 and idx.ndim == 1 else key
        return prog.add("index", [i], key, v[tuple(key) if isinstance(key, tuple) else np.asarray(key)])
    key = []
    for n in v.shape:
        r = rng.random()
        if r < 0.2:
            key.append(int(rng.integers(-n, n)))
        elif r < 0.8:
            start = int(rng.integers(-n, n)) if rng.random() < 0.5 else None
            stop = int(rng.integers(-n, n + 2)) if rng.random() < 0.5 else None
            step = int(rng.choice([1, 1, 2, -1, -2])) if rng.random() < 0.5 else None
            key.append(slice(start, stop, step))
        else:
            key.append(slice(None))
    if rng.random() < 0.2:
        key.insert(int(rng.integers(0, len(key) + 1)), None)
    if rng.random() < 0.2 and len(key) > 1:
        key = [Ellipsis] + key[2:] if rng.random() < 0.5 else key[:-1] + [Ellipsis]
    key = tuple(key)
    out = v[key]
    if out.size == 0:
        key = (slice(None),)
        out = v[key]
    return prog.add("index", [i], key, out)


def _gen_join(rng, prog, i):
    v = prog.values[i]
    op = str(rng.choice(["cat", "stack", "where"]))
    if op == "where":
        shape = _broadcast_partner(rng, v.shape)
        j = _operand(rng, prog, shape)
        c = _operand(rng, prog, _broadcast_partner(rng, v.shape))
        thr = float(np.median(prog.values[c]))
        cond = prog.values[c] > thr
        if not _far(prog.values[c], [thr], 1e-9):
            thr += 1e-3
            cond = prog.values[c] > thr
        a, b = (i, j) if rng.random() < 0.5 else (j, i)
        return prog.add("where", [c, a, b], thr, np.where(cond, prog.values[a], prog.values[b]))
    if op == "stack" or v.ndim == 0:
        k = int(rng.integers(1, 3))
        others = [_operand(rng, prog, v.shape) for _ in range(k)]
        axis = int(rng.integers(-v.ndim - 1, v.ndim + 1))
        items = [i] + others
        rng.shuffle(items)
        return prog.add("stack", items, axis, np.stack([prog.values[t] for t in items], axis))
    axis = int(rng.integers(-v.ndim, v.ndim))
    items = [i]
    for _ in range(int(rng.integers(1, 3))):
        shape = list(v.shape)
        shape[axis] = int(rng.integers(1, 4))
        items.append(_operand(rng, prog, tuple(shape)))
    rng.shuffle(items)
    return prog.add("cat", items, axis, np.concatenate([prog.values[t] for t in items], axis))


def _gen_matmul(rng, prog, i):
    v = prog.values[i]
    nd = v.ndim
    if nd == 0:
        return _gen_unary(rng, prog, i)
    k = v.shape[-1]
    if nd == 1:
        other = (k,) if rng.random() < 0.4 else (k, int(rng.integers(1, 4)))
        if rng.random() < 0.3:
            other = (int(rng.integers(1, 3)),) + (k, int(rng.integers(1, 4)))
    else:
        r = rng.random()
        if r < 0.3:
            other = (k,)
        else:
            batch = v.shape[:-2]
            if batch and rng.random() < 0.4:
                batch = tuple(1 if rng.random() < 0.5 else n for n in batch)
            elif not batch and rng.random() < 0.2:
                batch = (int(rng.integers(1, 3)),)
            other = batch + (k, int(rng.integers(1, 4)))
    j = _operand(rng, prog, other)
    a, b = i, j
    if rng.random() < 0.3 and v.ndim >= 2 and len(other) == 1:
        # vector on the left: (m,) @ (..., m, k)
        j2 = prog.leaf(_values(rng, (v.shape[-2],)))
        a, b = j2, i
    return prog.add("matmul", [a, b], None, np.matmul(prog.values[a], prog.values[b]))


def _gen_tensor_op(rng, prog, i):
    """PyTorch's tensor ops (cumsum, flip, roll, tril, gather, einsum, pad, norm, ...)."""
    v = prog.values[i]
    nd = v.ndim
    if nd == 0:
        return _gen_unary(rng, prog, i)
    op = str(rng.choice(["cumsum", "flip", "roll", "tril", "triu", "gather", "index_select",
                         "repeat", "pad", "einsum", "norm", "masked_fill", "topk", "max_dim"]))
    d = int(rng.integers(-nd, nd))
    if op == "cumsum":
        return prog.add("cumsum", [i], d, np.cumsum(v, axis=d))
    if op == "flip":
        return prog.add("flip", [i], (d,), np.flip(v, d))
    if op == "roll":
        s = int(rng.integers(-3, 4))
        return prog.add("roll", [i], (s, d), np.roll(v, s, d))
    if op in ("tril", "triu") and nd >= 2:
        k = int(rng.integers(-1, 2))
        return prog.add(op, [i], k, (np.tril if op == "tril" else np.triu)(v, k))
    if op == "gather":
        n = v.shape[d]
        shape = list(v.shape)
        shape[d] = int(rng.integers(1, 4))
        idx = rng.integers(0, n, size=shape) if n else np.zeros(shape, np.int64)
        if n:
            return prog.add("gather", [i], (d, idx), np.take_along_axis(v, idx, d))
    if op == "index_select" and v.shape[d]:
        idx = rng.integers(0, v.shape[d], size=int(rng.integers(1, 4)))
        return prog.add("index_select", [i], (d, idx), np.take(v, idx, d))
    if op == "repeat" and v.size <= 24:
        reps = tuple(int(rng.integers(1, 3)) for _ in range(nd + int(rng.integers(0, 2))))
        return prog.add("repeat", [i], reps, np.tile(v, reps))
    if op == "pad":
        left, right = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        return prog.add("pad", [i], (left, right),
                        np.pad(v, [(0, 0)] * (nd - 1) + [(left, right)], constant_values=0.5))
    if op == "einsum" and nd <= 3:
        letters = "abc"[:nd]
        k = int(rng.integers(1, 4))
        j = _operand(rng, prog, (v.shape[-1], k))
        eq = "%s,%sz->%sz" % (letters, letters[-1], letters[:-1])
        return prog.add("einsum", [i, j], eq, np.einsum(eq, v, prog.values[j]))
    if op == "norm" and v.size and np.all(np.sum(v * v, axis=d) > 1e-3):
        return prog.add("norm", [i], d, np.sqrt(np.sum(v * v, axis=d)))
    if op == "masked_fill":
        mask = v > np.median(v)
        return prog.add("masked_fill", [i], mask, np.where(mask, -0.75, v))
    if op == "topk" and v.shape[d] and _unique_along(v, d):
        k = int(rng.integers(1, v.shape[d] + 1))
        return prog.add("topk", [i], (k, d), -np.sort(-v, axis=d).take(np.arange(k), axis=d))
    if op == "max_dim" and v.shape[d] and _unique_along(v, d):
        return prog.add("max_dim", [i], d, np.max(v, axis=d))
    return prog.add("cumsum", [i], d, np.cumsum(v, axis=d))


_GENERATORS = [(_gen_unary, 3), (_gen_binary, 3), (_gen_reduce, 2), (_gen_shape, 2),
               (_gen_index, 2), (_gen_join, 1), (_gen_matmul, 1), (_gen_tensor_op, 1)]


def make_program(seed):
    rng = np.random.default_rng(seed)
    prog = Program(rng)
    for _ in range(int(rng.integers(1, 3))):
        prog.leaf(_values(rng, _random_shape(rng)))
    n_ops = int(rng.integers(3, 9))
    gens = [g for g, _ in _GENERATORS]
    weights = np.array([w for _, w in _GENERATORS], dtype=float)
    made = 0
    attempts = 0
    while made < n_ops and attempts < 100:
        attempts += 1
        # prefer the newest nodes so that ops compose
        recent = len(prog.values) - 1 - int(min(rng.geometric(0.5) - 1, len(prog.values) - 1))
        gen = gens[int(rng.choice(len(gens), p=weights / weights.sum()))]
        mark = (len(prog.steps), set(prog.used))
        try:
            with np.errstate(all="raise"):
                node = gen(rng, prog, recent)
        except FloatingPointError:
            node = None
        if node is None or not _ok(prog.values[node]) or prog.values[node].size > 400:
            del prog.steps[mark[0]:]
            del prog.values[mark[0]:]
            prog.used = mark[1]
            continue
        made += 1
    sinks = [i for i in range(len(prog.values)) if i not in prog.used
             and prog.steps[i][0] != "leaf"]
    lonely = [i for i in range(len(prog.values)) if i not in prog.used
              and prog.steps[i][0] == "leaf"]
    weights = [rng.uniform(-1, 1, size=prog.values[i].shape) for i in sinks + lonely]
    return prog, sinks + lonely, weights


# ---------------------------------------------------------------------------
# Running a program on fastgrad or on torch
# ---------------------------------------------------------------------------

def run_fastgrad(fg, prog, sinks, weights):
    nodes, leaves = [], []
    for op, inputs, params in prog.steps:
        if op == "leaf":
            if params == "copy":
                t = fg.tensor(inputs, dtype=np.float64, requires_grad=True)
            else:
                t = fg.from_numpy(odd(inputs, params)).requires_grad_(True)
            leaves.append(t)
            nodes.append(t)
            continue
        x = [nodes[k] for k in inputs]
        nodes.append(_fg_op(fg, op, x, params))
    loss = None
    for i, w in zip(sinks, weights):
        term = (nodes[i] * fg.tensor(w, dtype=np.float64)).sum()
        loss = term if loss is None else loss + term
    values = [n.numpy().copy() for n in nodes]
    # Three ways to the same gradients, chosen by the program: one backward;
    # two with retain_graph (they accumulate, so halve); fg.grad (no .grad).
    mode = len(prog.steps) % 3
    if mode == 0:
        loss.backward()
        grads = [None if t.grad is None else t.grad.numpy().copy() for t in leaves]
    elif mode == 1:
        loss.backward(retain_graph=True)
        loss.backward()
        grads = [None if t.grad is None else t.grad.numpy() / 2 for t in leaves]
    else:
        # a leaf that only feeds a where() condition has no gradient (None)
        grads = [None if g is None else g.numpy().copy() for g in fg.grad(loss, leaves)]
        assert all(t.grad is None for t in leaves), "fg.grad wrote .grad"
    return values, grads


def _fg_op(fg, op, x, p):
    a = x[0]
    simple = {"neg": lambda: -a, "exp": a.exp, "log": a.log, "sqrt": a.sqrt, "abs": a.abs,
              "sin": a.sin, "cos": a.cos, "tanh": a.tanh, "sigmoid": a.sigmoid, "relu": a.relu,
              "softplus": a.softplus, "T": lambda: a.T, "flatten": a.flatten}
    if op in simple:
        return simple[op]()
    if op == "leaky_relu":
        return fg.leaky_relu(a, p)
    if op == "clip":
        return a.clip(p[0], p[1]) if p[0] is not None and p[1] is not None else \
            fg.clip(a, min=p[0], max=p[1])
    if op == "pow_scalar":
        return a ** p
    if op == "rpow_scalar":
        return p ** a
    if op.endswith("_scalar"):
        c, left, kind = p
        c = {"float": c, "int": int(c) if c == int(c) else c, "numpy": np.float64(c),
             "array0d": np.array(c)}[kind]
        name = op[:-len("_scalar")]
        if name == "maximum":
            return fg.maximum(a, c)
        if name == "minimum":
            return fg.minimum(a, c)
        f = {"add": lambda u, v: u + v, "sub": lambda u, v: u - v, "mul": lambda u, v: u * v,
             "div": lambda u, v: u / v}[name]
        return f(c, a) if left else f(a, c)
    if op in ("add", "sub", "mul", "div", "pow"):
        b = x[1]
        return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
                "div": lambda: a / b, "pow": lambda: a ** b}[op]()
    if op == "maximum":
        return fg.maximum(a, x[1])
    if op == "minimum":
        return a.minimum(x[1])
    if op == "sum":
        return a.sum(p[0], keepdims=p[1])
    if op == "mean":
        return fg.mean(a, dim=p[0], keepdim=p[1])
    if op in ("max", "amax"):
        return a.amax(p[0], keepdims=p[1]) if op == "max" else fg.amax(a, axis=p[0], keepdim=p[1])
    if op == "min":
        return fg.amin(a, dim=p[0], keepdim=p[1])
    if op == "var":
        return a.var(p[0], keepdims=p[1], correction=p[2])
    if op == "std":
        return fg.std(a, dim=p[0], keepdim=p[1], correction=p[2])
    if op == "logsumexp":
        return a.logsumexp(dim=p[0], keepdim=p[1])
    if op == "softmax":
        return fg.softmax(a, dim=p)
    if op == "log_softmax":
        return a.log_softmax(p)
    if op == "reshape":
        return a.reshape(*p) if len(p) != 1 else fg.reshape(a, p)
    if op == "permute":
        return a.permute(*p)
    if op == "transpose":
        return fg.transpose(a, *p)
    if op == "expand":
        return a.expand(*p)
    if op == "squeeze":
        return a.squeeze() if p is None else a.squeeze(p)
    if op == "unsqueeze":
        return fg.unsqueeze(a, p)
    if op == "index":
        return a[p]     # a tuple key, a list of ints or a boolean mask
    if op == "where":
        return fg.where(a > p, x[1], x[2])
    if op == "cat":
        return fg.cat(x, dim=p)
    if op == "stack":
        return fg.stack(x, p)
    if op == "matmul":
        return a @ x[1] if len(x[0].shape) != 1 else fg.matmul(a, x[1])
    return _fg_tensor_op(fg, op, a, x, p)


def _fg_tensor_op(fg, op, a, x, p):
    if op == "cumsum":
        return a.cumsum(p)
    if op == "flip":
        return fg.flip(a, p)
    if op == "roll":
        return a.roll(*p)
    if op in ("tril", "triu"):
        return getattr(a, op)(p)
    if op == "gather":
        return a.gather(p[0], fg.tensor(p[1]))
    if op == "index_select":
        return fg.index_select(a, p[0], fg.tensor(p[1]))
    if op == "repeat":
        return a.repeat(*p)
    if op == "pad":
        return fg.pad(a, p, value=0.5)
    if op == "einsum":
        return fg.einsum(p, a, x[1])
    if op == "norm":
        return a.norm(dim=p)
    if op == "masked_fill":
        return a.masked_fill(fg.tensor(p), -0.75)
    if op == "topk":
        return a.topk(*p).values
    if op == "max_dim":
        return a.max(p).values
    raise AssertionError(op)


def _torch_axis(axis, nd):
    if axis is None:
        return tuple(range(nd))
    return axis


def run_torch(torch, prog, sinks, weights):
    nodes, leaves = [], []
    for op, inputs, params in prog.steps:
        if op == "leaf":
            t = torch.tensor(inputs, dtype=torch.float64, requires_grad=True)
            leaves.append(t)
            nodes.append(t)
            continue
        x = [nodes[k] for k in inputs]
        nodes.append(_torch_op(torch, op, x, params))
    loss = None
    for i, w in zip(sinks, weights):
        term = (nodes[i] * torch.tensor(w, dtype=torch.float64)).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    return ([n.detach().numpy().copy() for n in nodes],
            [None if t.grad is None else t.grad.numpy().copy() for t in leaves])


def _torch_op(torch, op, x, p):
    a = x[0]
    nd = a.dim()
    simple = {"neg": torch.neg, "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt,
              "abs": torch.abs, "sin": torch.sin, "cos": torch.cos, "tanh": torch.tanh,
              "sigmoid": torch.sigmoid, "relu": torch.relu,
              "softplus": torch.nn.functional.softplus, "T": lambda t: t.T,
              "flatten": torch.flatten}
    if op in simple:
        return simple[op](a)
    if op == "leaky_relu":
        return torch.nn.functional.leaky_relu(a, p)
    if op == "clip":
        return torch.clamp(a, p[0], p[1])
    if op == "pow_scalar":
        return a ** p
    if op == "rpow_scalar":
        return p ** a
    if op.endswith("_scalar"):
        c, left, _ = p
        name = op[:-len("_scalar")]
        if name in ("maximum", "minimum"):
            f = torch.maximum if name == "maximum" else torch.minimum
            return f(a, torch.tensor(c, dtype=torch.float64))
        f = {"add": lambda u, v: u + v, "sub": lambda u, v: u - v, "mul": lambda u, v: u * v,
             "div": lambda u, v: u / v}[name]
        return f(c, a) if left else f(a, c)
    if op in ("add", "sub", "mul", "div", "pow", "maximum", "minimum"):
        f = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
             "pow": torch.pow, "maximum": torch.maximum, "minimum": torch.minimum}[op]
        return f(a, x[1])
    if op in ("sum", "mean"):
        f = torch.sum if op == "sum" else torch.mean
        if p[0] is None:
            out = f(a)
            return out.reshape((1,) * nd) if p[1] else out
        return f(a, dim=p[0], keepdim=p[1])
    if op in ("max", "amax", "min"):
        f = torch.amin if op == "min" else torch.amax
        axis = _torch_axis(p[0], nd)
        if nd == 0:
            return a.clone()
        return f(a, dim=axis, keepdim=p[1])
    if op in ("var", "std"):
        f = torch.var if op == "var" else torch.std
        axis = _torch_axis(p[0], nd)
        if nd == 0:
            axis = None
        return f(a, dim=axis, keepdim=p[1], correction=p[2])
    if op == "logsumexp":
        axis = _torch_axis(p[0], nd)
        if nd == 0:
            return a.clone()
        return torch.logsumexp(a, dim=axis, keepdim=p[1])
    if op == "softmax":
        return torch.softmax(a, dim=p)
    if op == "log_softmax":
        return torch.log_softmax(a, dim=p)
    if op == "reshape":
        return a.reshape(p)
    if op == "permute":
        return a.permute(p)
    if op == "transpose":
        return a.transpose(*p)
    if op == "expand":
        return a.expand(p)
    if op == "squeeze":
        return a.squeeze() if p is None else a.squeeze(p)
    if op == "unsqueeze":
        return a.unsqueeze(p)
    if op == "index":
        # Any NumPy key, basic or advanced (torch has no negative steps):
        # the same selection as flat positions, gathered from the flat tensor.
        key = tuple(p) if isinstance(p, tuple) else np.asarray(p)
        positions = np.arange(max(a.numel(), 1)).reshape(tuple(a.shape))[key]
        return a.reshape(-1)[torch.from_numpy(np.array(positions, dtype=np.int64, order="C"))]
    if op == "where":
        return torch.where(a > p, x[1], x[2])
    if op == "cat":
        return torch.cat(x, dim=p)
    if op == "stack":
        return torch.stack(x, dim=p)
    if op == "matmul":
        return torch.matmul(a, x[1])
    if op == "flip":
        return torch.flip(a, p)
    if op in ("gather", "index_select"):
        return getattr(torch, op)(a, p[0], torch.from_numpy(np.asarray(p[1], dtype=np.int64)))
    if op == "pad":
        return torch.nn.functional.pad(a, p, value=0.5)
    if op == "einsum":
        return torch.einsum(p, a, x[1])
    if op == "masked_fill":
        return a.masked_fill(torch.from_numpy(np.asarray(p)), -0.75)
    if op == "roll":
        return a.roll(*p)
    if op in ("tril", "triu"):
        return getattr(a, op)(p)
    if op == "repeat":
        return a.repeat(*p)
    if op == "cumsum":
        return a.cumsum(p)
    if op == "norm":
        return a.norm(dim=p)
    if op == "topk":
        return a.topk(*p).values
    if op == "max_dim":
        return a.max(p).values
    raise AssertionError(op)


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------

def _close(got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return "shape %s, expected %s" % (got.shape, want.shape)
    # 1e-9 relative, measured against the array's scale (sums of terms of
    # mixed sign lose digits in any summation order)
    scale = 1.0 + (np.max(np.abs(want)) if want.size else 0.0)
    bad = np.abs(got - want) > RTOL * np.maximum(np.abs(want), scale * 1e-3) + 1e-12 * scale
    if np.any(bad):
        k = int(np.argmax(bad.reshape(-1)))
        return "max abs error %.3g (first bad entry %r vs %r)" % (
            np.max(np.abs(got - want)), got.reshape(-1)[k], want.reshape(-1)[k])
    return None


def check_seed(fg, seed, oracle):
    """None when the graph of `seed` matches the oracle, else a description."""
    prog, sinks, weights = make_program(seed)
    try:
        want_nodes, want_grads = oracle(prog, sinks, weights)
    except Exception as exc:          # the generator made a graph torch rejects
        raise AssertionError("seed %d: the oracle failed (%s: %s) on\n%s"
                             % (seed, type(exc).__name__, exc, prog.describe())) from exc
    try:
        nodes, grads = run_fastgrad(fg, prog, sinks, weights)
    except Exception as exc:
        return "raised %s: %s\n%s" % (type(exc).__name__, exc, prog.describe())
    for k, (got, want) in enumerate(zip(nodes, want_nodes)):
        err = _close(got, want)
        if err:
            return "forward value of n%d: %s\n%s" % (k, err, prog.describe())
    for k, (got, want) in enumerate(zip(grads, want_grads)):
        if (got is None) != (want is None):
            return "gradient of leaf %d: %s vs %s\n%s" % (k, got, want, prog.describe())
        if got is not None:
            err = _close(got, want)
            if err:
                return "gradient of leaf %d: %s\n%s" % (k, err, prog.describe())
    return None


def _check_chunk(fg, seeds, oracle):
    failures = {}
    for seed in seeds:
        problem = check_seed(fg, seed, oracle)
        cores, symptom, bug = KNOWN_BUGS.get(seed, ("", None, None))
        known = fg.backend() in cores or cores == "both"
        if problem is None and known:
            failures[seed] = ("listed in KNOWN_BUGS (%s) but now passes on the %s core: remove "
                              "the entry" % (bug, fg.backend()))
        elif problem is not None and not (known and symptom in problem):
            failures[seed] = problem
    assert not failures, "\n\n".join("seed %d on the %s core: %s" % (s, fg.backend(), p)
                                     for s, p in sorted(failures.items()))


@pytest.mark.parametrize("chunk", range(N_GRAPHS // CHUNK))
def test_random_graphs_match_torch(fg, chunk):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle of this test (CI installs "
                                                "it); test_random_graphs_cores_agree still runs")
    oracle = lambda prog, sinks, weights: run_torch(torch, prog, sinks, weights)  # noqa: E731
    _check_chunk(fg, range(chunk * CHUNK, (chunk + 1) * CHUNK), oracle)


@pytest.mark.parametrize("chunk", range(N_AGREE // CHUNK))
def test_random_graphs_cores_agree(both, chunk):
    """The compiled core against the reference core, with or without torch."""
    python_fg, compiled_fg = both
    oracle = lambda prog, sinks, weights: run_fastgrad(python_fg, prog, sinks, weights)  # noqa
    _check_chunk(compiled_fg, range(chunk * CHUNK, (chunk + 1) * CHUNK), oracle)


def test_generator_covers_the_api():
    """The seeds under test exercise every op of the generator at least a few times."""
    counts = {}
    for seed in range(0, N_GRAPHS, 3):
        prog, _, _ = make_program(seed)
        for op, _, _ in prog.steps:
            counts[op] = counts.get(op, 0) + 1
    expected = {"neg", "exp", "log", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu",
                "leaky_relu", "clip", "pow_scalar", "rpow_scalar", "softplus", "add", "sub",
                "mul", "div", "maximum", "minimum", "pow", "add_scalar", "sub_scalar",
                "mul_scalar", "div_scalar", "maximum_scalar", "minimum_scalar", "sum", "mean",
                "max", "min", "amax", "var", "std", "logsumexp", "softmax", "log_softmax",
                "reshape", "permute", "transpose", "expand", "squeeze", "unsqueeze", "flatten",
                "T", "index", "cat", "stack", "where", "matmul", "cumsum", "flip", "roll", "tril",
                "triu", "gather", "index_select", "repeat", "pad", "einsum", "norm",
                "masked_fill", "topk", "max_dim"}
    rare = {op: counts.get(op, 0) for op in expected if counts.get(op, 0) < 5}
    assert not rare, "ops the random graphs almost never use: %s" % rare
