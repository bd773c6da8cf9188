"""Both cores agree (float64, to 1e-12) on every op at sizes that cross each of
the compiled core's size thresholds.

The compiled core picks its code path by size: C loops on small arrays and
NumPy's ufunc loops from UFUNC_MIN elements, writing over an unnamed temporary
from TAKE_MIN elements, C loops for small matrix products and BLAS from
BLAS_MIN multiply-adds, the block cache below and above CACHE_MIN bytes, the
optimizers' updates without the GIL from NOGIL_MIN elements.  Each path is
code of its own, so each op is run just below, at and just above every
threshold (and at 0 and 1 elements), forward and backward, on both cores.

The thresholds are read from the compiled module where it exposes them (a
``thresholds()`` dict, a module attribute of the same name, or for BLAS_MIN
the ``_set_blas_min`` setter, which returns the current value); the others
fall back to the values the core is built with (FALLBACK below).
"""
import importlib

import numpy as np
import pytest

FALLBACK = {"UFUNC_MIN": 256, "TAKE_MIN": 1024, "BLAS_MIN": 8192, "CACHE_MIN": 16,
            "NOGIL_MIN": 32768}
RTOL = 1e-12


def thresholds(compiled):
    """name -> value for the compiled core, and the names it did not expose."""
    core = compiled._core_module
    fused = importlib.import_module(compiled.__name__ + "._core").fused
    found, hidden = {}, []
    exposed = {}
    for module in (core, fused):
        table = getattr(module, "thresholds", None)
        if callable(table):
            exposed.update(table())
    for name, default in FALLBACK.items():
        value = exposed.get(name)
        for module in (core, fused):
            if value is None and isinstance(getattr(module, name, None), int):
                value = getattr(module, name)
        if value is None and name == "BLAS_MIN" and hasattr(core, "_set_blas_min"):
            value = core._set_blas_min(default)      # returns the current value ...
            core._set_blas_min(value)                # ... which goes straight back
        if value is None:
            hidden.append(name)
            value = default
        found[name] = int(value)
    return found, hidden


def around(*limits):
    """0, 1, 2 and each limit - 1, limit, limit + 1 (sorted, no negatives)."""
    sizes = {0, 1, 2}
    for t in limits:
        sizes.update((t - 1, t, t + 1))
    return sorted(s for s in sizes if s >= 0)


def draw(rng, shape, domain):
    if domain == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "away":                           # divisors, kinks of abs / relu / clip
        return rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    return rng.normal(size=shape)


def run(fg, fn, arrays, grad_of):
    """(forward values, gradients) of fn on this core, or ('raises', type name)."""
    tensors = [fg.tensor(a, dtype=np.float64, requires_grad=i in grad_of)
               if a.dtype.kind == "f" else fg.tensor(a) for i, a in enumerate(arrays)]
    try:
        out = fn(fg, *tensors)
        value = np.array(out.numpy(), dtype=np.float64, copy=True)
        if out.requires_grad:
            # a weighted sum, so that each element's gradient differs
            weights = np.linspace(0.5, 1.5, value.size).reshape(value.shape)
            (out * fg.tensor(weights, dtype=np.float64)).sum().backward()
    except Exception as exc:                      # the same error on both cores is agreement
        return "raises", type(exc).__name__
    grads = [None if tensors[i].grad is None else tensors[i].grad.numpy().copy()
             for i in sorted(grad_of)]
    return value, grads


def assert_agree(both, fn, arrays, grad_of, what):
    (py_out, py_grads), (c_out, c_grads) = [run(m, fn, arrays, grad_of) for m in both]
    if isinstance(py_out, str) or isinstance(c_out, str):
        assert (py_out, py_grads) == (c_out, c_grads), what
        return
    assert py_out.shape == c_out.shape, what

    def close(a, b, name):
        scale = np.max(np.abs(a)) if a.size else 0.0
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=RTOL * scale, equal_nan=True,
                                   err_msg=f"{what}: {name} (python core, then compiled)")

    close(py_out, c_out, "forward")
    for i, (gp, gc) in enumerate(zip(py_grads, c_grads)):
        assert (gp is None) == (gc is None), f"{what}: gradient {i} present on one core only"
        if gp is not None:
            close(gp, gc, f"gradient of input {i}")


@pytest.fixture
def limits(both):
    return thresholds(both[1])[0]


def elementwise_sizes(limits):
    return around(limits["UFUNC_MIN"], limits["TAKE_MIN"]) + [3, limits["CACHE_MIN"] // 8 + 1]


# -- elementwise binary ops in every operand form -------------------------------
BINARY = {
    "add": lambda fg, a, b: a + b,
    "sub": lambda fg, a, b: a - b,
    "mul": lambda fg, a, b: a * b,
    "div": lambda fg, a, b: a / b,
    "pow": lambda fg, a, b: a ** b,
    "maximum": lambda fg, a, b: fg.maximum(a, b),
    "minimum": lambda fg, a, b: fg.minimum(a, b),
}
NUMBER = 0.75      # the Python-number operand: below 1 keeps pow's powers small


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_ops_agree_across_thresholds(both, limits, name):
    f = BINARY[name]
    rng = np.random.default_rng(7)
    base = "pos" if name == "pow" else "any"           # pow's base stays positive
    other = "away" if name == "div" else "any"          # divisors stay away from 0
    for n in sorted(set(elementwise_sizes(limits))):
        a, b = draw(rng, (n,), base), draw(rng, (n,), other)
        one_a, one_b = draw(rng, (1,), base), draw(rng, (1,), other)
        forms = {
            "tensor, tensor": (f, [a, b]),
            "tensor, number": (lambda fg, x: f(fg, x, NUMBER), [a]),
            "number, tensor": (lambda fg, x: f(fg, NUMBER + 1.0, x), [b]),
            "tensor, size-1 tensor": (f, [a, one_b]),
            "size-1 tensor, tensor": (f, [one_a, b]),
        }
        for form, (fn, arrays) in forms.items():
            assert_agree(both, fn, arrays, set(range(len(arrays))), f"{name} n={n} {form}")
        if n:    # broadcasting a row and a column over a 2-D operand
            rows = max(1, min(n, 64))
            cols = max(1, n // rows)
            m2 = draw(rng, (rows, cols), base)
            row = draw(rng, (cols,), other)
            col = draw(rng, (rows, 1), other)
            assert_agree(both, f, [m2, row], {0, 1}, f"{name} {rows}x{cols} row broadcast")
            assert_agree(both, f, [m2, col], {0, 1}, f"{name} {rows}x{cols} column broadcast")


# -- elementwise unary ops ------------------------------------------------------------
UNARY = {
    "neg": (lambda fg, x: -x, "any"),
    "exp": (lambda fg, x: x.exp(), "any"),
    "log": (lambda fg, x: x.log(), "pos"),
    "sqrt": (lambda fg, x: x.sqrt(), "pos"),
    "abs": (lambda fg, x: x.abs(), "away"),
    "sin": (lambda fg, x: x.sin(), "any"),
    "cos": (lambda fg, x: x.cos(), "any"),
    "tanh": (lambda fg, x: x.tanh(), "any"),
    "sigmoid": (lambda fg, x: x.sigmoid(), "any"),
    "relu": (lambda fg, x: x.relu(), "away"),
    "leaky_relu": (lambda fg, x: fg.nn.functional.leaky_relu(x, 0.2), "away"),
    "clip": (lambda fg, x: x.clip(-0.5, 0.7), "away"),
    "gelu": (lambda fg, x: fg.nn.functional.gelu(x), "any"),
    "silu": (lambda fg, x: fg.nn.functional.silu(x), "any"),
    "cast": (lambda fg, x: x.float().double(), "any"),
    "clone": (lambda fg, x: x.clone(), "any"),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops_agree_across_thresholds(both, limits, name):
    f, domain = UNARY[name]
    rng = np.random.default_rng(11)
    for n in sorted(set(elementwise_sizes(limits))):
        x = draw(rng, (n,), domain)
        if name == "clip":
            x = x[np.abs(np.abs(x) - 0.6) > 0.05] if n else x   # away from the bounds
        assert_agree(both, f, [x], {0}, f"{name} n={n}")
        # after a temporary: the consumer may write over its input's block
        assert_agree(both, lambda fg, t, f=f: f(fg, t * 1.0 + 0.0) if domain == "any"
                     else f(fg, t * 1.0), [x], {0}, f"{name} n={n} of a temporary")


def test_temporary_chains_agree_across_take_min(both, limits):
    """A chain of unnamed temporaries (elided from TAKE_MIN elements on) and the
    same chain with every step named give the same values and gradients."""
    rng = np.random.default_rng(3)
    for n in around(limits["TAKE_MIN"], limits["UFUNC_MIN"]):
        x, y = draw(rng, (n,), "any"), draw(rng, (n,), "pos")

        def chain(fg, a, b):
            return (((a * 0.9 + 0.1) - b).tanh() * b + a).sigmoid() - (-(a * b)).exp()

        def named(fg, a, b):
            s1 = a * 0.9
            s2 = s1 + 0.1
            s3 = s2 - b
            s4 = s3.tanh()
            s5 = s4 * b
            s6 = s5 + a
            return s6.sigmoid() - (-(a * b)).exp()

        assert_agree(both, chain, [x, y], {0, 1}, f"chain n={n}")
        assert_agree(both, named, [x, y], {0, 1}, f"named chain n={n}")


# -- reductions, softmax and friends --------------------------------------------------
REDUCE = {
    "sum": lambda fg, x: x.sum(),
    "sum axis 1": lambda fg, x: x.sum(1),
    "sum axis 0 keepdim": lambda fg, x: x.sum(0, keepdim=True),
    "mean axis 1": lambda fg, x: x.mean(1),
    "max": lambda fg, x: x.max(),
    "max axis 1": lambda fg, x: x.max(1).values,
    "min axis 0": lambda fg, x: x.min(0).values,
    "logsumexp axis 1": lambda fg, x: x.logsumexp(1),
    "var axis 0": lambda fg, x: x.var(0),
    "var": lambda fg, x: x.var(),
    "var axis 1 correction 0": lambda fg, x: x.var(1, correction=0),
    "var both axes keepdim": lambda fg, x: x.var((0, 1), keepdim=True),
    "std axis 0": lambda fg, x: x.std(0),
    "std axis 1 keepdim": lambda fg, x: x.std(1, keepdim=True, correction=0),
    "std": lambda fg, x: x.std(),
    "norm": lambda fg, x: x.norm(),
    "norm axis 1 keepdim": lambda fg, x: x.norm(dim=1, keepdim=True),
    "layer_norm": lambda fg, x: fg.nn.functional.layer_norm(x, x.shape[-1:]),
    "layer_norm 2 axes": lambda fg, x: fg.nn.functional.layer_norm(x, x.shape) * 1.5,
    "softmax": lambda fg, x: x.softmax(-1),
    "log_softmax": lambda fg, x: fg.nn.functional.log_softmax(x, -1),
    "softmax axis 0": lambda fg, x: fg.softmax(x, dim=0),
    "log_softmax axis 0": lambda fg, x: x.log_softmax(0),
}


# var over one row divides by n - 1 = 0, and empty rows have no mean: NaN on both
# cores, with NumPy's notes about it
@pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning",
                            "ignore:Mean of empty slice:RuntimeWarning",
                            "ignore:divide by zero encountered:RuntimeWarning")
@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reductions_agree_across_thresholds(both, limits, name):
    rng = np.random.default_rng(5)
    for n in around(limits["UFUNC_MIN"], limits["TAKE_MIN"]):
        for shape in ((1, n), (n, 1), (2, (n + 1) // 2)):
            x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 + \
                rng.uniform(0, 1e-3, shape)                   # no ties for max / min
            assert_agree(both, REDUCE[name], [x], {0}, f"{name} {shape}")


# The softmax kernels work a row in chunks of 512 (their scratch on the stack):
# rows around that length, along the last axis and down the columns of a block.
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_agrees_across_its_chunk(both, limits, name):
    rng = np.random.default_rng(7)
    for m in (511, 512, 513, 1025):
        for shape, axis in (((2, m), -1), ((m, 3), 0), ((2, 3, m), 2), ((2, m, 3), 1),
                            ((3, 2, m), 0)):
            x = rng.normal(size=shape) * 3
            assert_agree(both, lambda fg, p: getattr(p, name)(axis), [x], {0},
                         f"{name} {shape} axis {axis}")


# -- views, indexing, joining ---------------------------------------------------------
SHAPING = {
    "reshape": (lambda fg, x: x.reshape(-1), []),
    "permute": (lambda fg, x: x.permute(1, 0) * 1.5, []),
    "expand": (lambda fg, x: x[:1].expand(3, x.shape[1]), []),
    "index slice": (lambda fg, x: x[1:, ::2], []),
    "index array": (lambda fg, x, i: x[i], ["rows"]),
    "index mask": (lambda fg, x, m: x[m], ["mask"]),
    "index columns": (lambda fg, x, i: x[:, i] * 2.0, ["columns"]),
    "index rows mask": (lambda fg, x, m: x[m[:, 0]], ["mask"]),
    "cat": (lambda fg, x: fg.cat([x, x * 2.0], 1), []),
    "cat axis 0": (lambda fg, x: fg.cat([x * 2.0, x, x[:1]], 0), []),
    "stack": (lambda fg, x: fg.stack([x, -x]), []),
    "stack axis 2": (lambda fg, x: fg.stack([x, -x], 2), []),
    "where": (lambda fg, x, m: fg.where(m, x, x * 3.0), ["mask"]),
    "where number": (lambda fg, x, m: fg.where(m, 0.5, x), ["mask"]),
    "where one element": (lambda fg, x, m: fg.where(m, x, x[:1, :1]), ["mask"]),
}


@pytest.mark.parametrize("name", sorted(SHAPING))
def test_shaping_ops_agree_across_thresholds(both, limits, name):
    f, extras = SHAPING[name]
    rng = np.random.default_rng(9)
    for n in around(limits["UFUNC_MIN"], limits["TAKE_MIN"]):
        cols = max(1, n // 2)
        x = draw(rng, (2, cols), "any")
        arrays = [x]
        for kind in extras:
            arrays.append(np.array([1, 0, 1]) if kind == "rows" else
                          np.array([0, -1, 0, cols - 1]) if kind == "columns" else x > 0)
        assert_agree(both, f, arrays, {0}, f"{name} (2, {cols})")


# -- matrix products across BLAS_MIN ------------------------------------------------
def product_shapes(blas_min):
    """(n, k, m) with n * k * m just below, at and just above blas_min, plus
    degenerate and vector-like shapes."""
    shapes = [(1, 1, 1), (1, 3, 1), (3, 1, 2), (2, 3, 4)]
    k = 16
    for target in (blas_min - 1, blas_min, blas_min + 1):
        n = max(1, int(round((target / k) ** 0.5)))
        m = max(1, target // (n * k))
        for mm in (m - 1, m, m + 1):
            if mm >= 1:
                shapes.append((n, k, mm))
    shapes += [(blas_min, 1, 1), (1, blas_min, 1), (1, 1, blas_min)]
    return shapes


def test_matmul_agrees_across_blas_min(both, limits):
    rng = np.random.default_rng(13)
    for n, k, m in product_shapes(limits["BLAS_MIN"]):
        a, b = draw(rng, (n, k), "any"), draw(rng, (k, m), "any")
        assert_agree(both, lambda fg, x, y: x @ y, [a, b], {0, 1}, f"matmul {n}x{k} @ {k}x{m}")
        assert_agree(both, lambda fg, x, y: x @ y.T, [a, b.T.copy()], {0, 1},
                     f"matmul {n}x{k} @ ({m}x{k}).T")
    for k in (1, 2, limits["BLAS_MIN"] - 1, limits["BLAS_MIN"]):
        v, w = draw(rng, (k,), "any"), draw(rng, (k, 3), "any")
        assert_agree(both, lambda fg, x, y: x @ y, [v, w], {0, 1}, f"vector {k} @ {k}x3")
        assert_agree(both, lambda fg, x, y: y.T @ x, [v, w], {0, 1}, f"3x{k} @ vector {k}")


def test_batched_matmul_agrees(both, limits):
    rng = np.random.default_rng(17)
    for b, n, k, m in ((1, 1, 1, 1), (2, 3, 4, 5), (4, 8, 16, limits["BLAS_MIN"] // 512)):
        x, y = draw(rng, (b, n, k), "any"), draw(rng, (b, k, m), "any")
        assert_agree(both, lambda fg, p, q: p @ q, [x, y], {0, 1}, f"batched {b}x{n}x{k}x{m}")


def test_linear_agrees_across_blas_min(both, limits):
    rng = np.random.default_rng(19)
    for n, k, m in product_shapes(limits["BLAS_MIN"]):
        x, w, bias = draw(rng, (n, k), "any"), draw(rng, (m, k), "any"), draw(rng, (m,), "any")
        F = lambda fg: fg.nn.functional          # noqa: E731
        assert_agree(both, lambda fg, p, q, r: F(fg).linear(p, q, r), [x, w, bias], {0, 1, 2},
                     f"linear {n}x{k}, weight {m}x{k}")
        assert_agree(both, lambda fg, p, q: F(fg).linear(p, q), [x, w], {0, 1},
                     f"linear {n}x{k}, weight {m}x{k}, no bias")


def test_cross_entropy_agrees_across_sizes(both, limits):
    rng = np.random.default_rng(23)
    for rows in (1, 3):
        for classes in around(limits["UFUNC_MIN"]) + [limits["TAKE_MIN"] + 1]:
            if classes == 0:
                continue
            x = draw(rng, (rows, classes), "any")
            t = rng.integers(0, classes, rows)
            for reduction in ("mean", "sum", "none"):
                assert_agree(both, lambda fg, p, q, r=reduction:
                             fg.nn.functional.cross_entropy(p, q, reduction=r),
                             [x, t], {0}, f"cross_entropy {rows}x{classes} {reduction}")


def test_function_agrees(both, limits):
    """A custom fg.Function (the FUNCTION op) around the elementwise thresholds."""
    rng = np.random.default_rng(29)

    def cube(fg, x):
        class Cube(fg.Function):
            @staticmethod
            def forward(ctx, t):
                ctx.save_for_backward(t)
                return t * t * t

            @staticmethod
            def backward(ctx, g):
                (t,) = ctx.saved_tensors
                return g * 3.0 * t * t
        return Cube.apply(x)

    for n in around(limits["UFUNC_MIN"]):
        assert_agree(both, cube, [draw(rng, (n,), "any")], {0}, f"function n={n}")


# -- the optimizers' one-call updates across NOGIL_MIN --------------------------------
OPTIMIZERS = {
    "SGD momentum": lambda optim, p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    "Adam": lambda optim, p: optim.Adam(p, lr=0.01),
    "RMSprop": lambda optim, p: optim.RMSprop(p, lr=0.01, centered=True),
    "Adagrad": lambda optim, p: optim.Adagrad(p, lr=0.1),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fused_updates_agree_across_nogil_min(both, limits, name):
    rng = np.random.default_rng(31)
    for n in (1, limits["NOGIL_MIN"] - 1, limits["NOGIL_MIN"], limits["NOGIL_MIN"] + 1):
        start, grads = draw(rng, (n,), "any"), [draw(rng, (n,), "any") for _ in range(3)]
        ends = []
        for fg in both:
            p = fg.nn.Parameter(fg.tensor(start, dtype=np.float64))
            opt = OPTIMIZERS[name](fg.optim, [p])
            for g in grads:
                p.grad = fg.tensor(g, dtype=np.float64)
                opt.step()
            ends.append(p.numpy().copy())
        np.testing.assert_allclose(ends[1], ends[0], rtol=RTOL, atol=RTOL,
                                   err_msg=f"{name} n={n}")


# -- gather and max / min over one dim (a gather node of the picked positions) -----------
def test_gather_and_extreme_dim_agree_across_sizes(both, limits):
    rng = np.random.default_rng(5)
    for n in around(limits["UFUNC_MIN"]):
        if n == 0:
            continue
        for shape, dim in (((n,), 0), ((3, n), 1), ((n, 3), 0), ((2, n, 3), 1)):
            x = draw(rng, shape, "any")
            x[(0,) * len(shape)] = x[(-1,) * len(shape)]          # a tie
            idx_shape = list(shape)
            idx_shape[dim] = 2 * n + 1
            idx = rng.integers(0, shape[dim], idx_shape)
            assert_agree(both, lambda fg, t, dim=dim, idx=idx: fg.gather(t, dim, fg.tensor(idx)),
                         [x], {0}, f"gather {shape} dim={dim}")
            for name in ("max", "min"):
                assert_agree(both, lambda fg, t, dim=dim, name=name: getattr(t, name)(dim).values,
                             [x], {0}, f"{name}({dim}) {shape}")
                assert_agree(both, lambda fg, t, dim=dim, name=name:
                             getattr(t, name)(dim, keepdim=True).indices.double(),
                             [x], set(), f"{name}({dim}) indices {shape}")


# -- every op of the compiled core is swept ---------------------------------------------
COVERED = {
    "add", "sub", "mul", "div", "pow", "maximum", "minimum",            # BINARY
    "neg", "exp", "log", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid",
    "relu", "leaky_relu", "clip", "cast", "clone", "gelu", "silu",      # UNARY
    "sum", "max", "min", "logsumexp", "var", "std", "layer_norm",       # REDUCE
    "softmax", "log_softmax", "norm",
    "reshape", "permute", "expand", "index", "cat", "where",            # SHAPING
    "matmul", "linear", "cross_entropy", "function", "gather",
}


def test_every_op_of_the_compiled_core_is_swept(both):
    codes = both[1]._core_module.op_codes()
    missing = sorted(set(codes) - COVERED - {"leaf"})
    assert not missing, ("ops of the compiled core without a threshold sweep: %s; add them to "
                         "a table of tests/test_thresholds.py" % missing)


def test_thresholds_are_read_from_the_compiled_core(both):
    """The sweep's sizes follow the core: whatever it exposes is what is used."""
    found, hidden = thresholds(both[1])
    assert set(found) == set(FALLBACK)
    assert all(v > 1 for v in found.values())
    assert "BLAS_MIN" not in hidden                # _set_blas_min tells it
    core = both[1]._core_module
    old = core._set_blas_min(found["BLAS_MIN"] + 5)
    try:
        assert thresholds(both[1])[0]["BLAS_MIN"] == found["BLAS_MIN"] + 5
    finally:
        core._set_blas_min(old)
