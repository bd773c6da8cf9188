"""The compiled core's native kernels against the reference core (and PyTorch).

Each native path (pow with one exponent, the transcendental ops on NumPy's
inner loops, ...) is run at sizes that cross its limits: 0, 1, the 512-element
chunks its scratch space works in (511, 512, 513), and a few thousand
elements; in float32 and float64; with every operand form the dispatch tells
apart.  Forward values and gradients must agree with the reference core to
1e-12 in float64 (1e-5 in float32), NaN for NaN.
"""
import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SIZES = (0, 1, 7, 511, 512, 513, 1100)
TOL = {"float64": 1e-12, "float32": 1e-5}


def _run(fg, fn, arrays, dtype, grad=True):
    """fn's value and the gradients of sum(fn(...) * w) w.r.t. every array input."""
    xs = [fg.tensor(np.asarray(a, dtype=dtype), requires_grad=grad) if isinstance(a, np.ndarray)
          else a for a in arrays]
    y = fn(fg, *xs)
    out = [np.array(y.detach().numpy(), dtype=np.float64)]
    if grad:
        w = np.linspace(0.5, 1.5, max(y.numel(), 1))[:y.numel()].reshape(y.shape)
        (y * fg.tensor(w.astype(dtype))).sum().backward()
        for x in xs:
            if isinstance(x, fg.Tensor):
                out.append(None if x.grad is None else np.array(x.grad.numpy(), np.float64))
    return out


def _agree(both, fn, arrays, dtype, what, grad=True):
    python_fg, compiled_fg = both
    want = _run(python_fg, fn, arrays, dtype, grad)
    got = _run(compiled_fg, fn, arrays, dtype, grad)
    for i, (g, w) in enumerate(zip(got, want)):
        name = "%s %s %s" % (what, dtype, "value" if i == 0 else "grad %d" % (i - 1))
        assert (g is None) == (w is None), name
        if g is None:
            continue
        assert g.shape == w.shape, name
        np.testing.assert_allclose(g, w, rtol=TOL[dtype], atol=TOL[dtype], equal_nan=True,
                                   err_msg=name)
    return got


def _base(n, rng, positive=False):
    x = rng.uniform(0.2, 2.5, n) * (1 if positive else rng.choice([-1.0, 1.0], n))
    if n > 3:
        x[:3] = [0.0, 1.0, 2.0] if positive else [0.0, -0.0, 1.0]
    return x


EXPONENTS = (0, 1, 2, 3, -1, -2, 0.5, -0.5, 1.5, 4, 5, -3, 16, 17, 1.7, -2.5)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("form", ["number", "tensor-0d", "tensor-1"])
def test_pow_one_exponent_cores_agree(both, rng, dtype, form):
    for n in SIZES:
        for e in EXPONENTS:
            integer = float(e).is_integer()
            x = _base(n, rng, positive=not integer)
            if form == "number":
                fn, arrays = (lambda m, a, e=e: a ** e), [x]
            else:
                b = np.array(float(e)) if form == "tensor-0d" else np.array([float(e)])
                fn, arrays = (lambda m, a, b: a ** b), [x, b]
            _agree(both, fn, arrays, dtype, "x ** %r (%s) n=%d" % (e, form, n))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pow_tensor_exponents_cores_agree(both, rng, dtype):
    """Exponent tensors and number ** tensor: NumPy's power loop, strided operands."""
    for n in SIZES:
        x = _base(n, rng, positive=True)
        b = rng.uniform(-2, 3, n)
        _agree(both, lambda m, a, b: a ** b, [x, b], dtype, "a ** b n=%d" % n)
        _agree(both, lambda m, b: 2.0 ** b, [b], dtype, "2 ** b n=%d" % n)
        _agree(both, lambda m, a, b: a ** b, [np.array([1.7]), b], dtype, "[1.7] ** b n=%d" % n)


UNARY = {
    "exp": lambda m, x: x.exp(), "log": lambda m, x: x.log(), "sin": lambda m, x: x.sin(),
    "cos": lambda m, x: x.cos(), "tanh": lambda m, x: x.tanh(),
    "sigmoid": lambda m, x: x.sigmoid(), "sqrt": lambda m, x: x.sqrt(),
    "gelu": lambda m, x: m.nn.functional.gelu(x), "silu": lambda m, x: m.nn.functional.silu(x),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op", sorted(UNARY))
def test_transcendental_cores_agree(both, rng, dtype, op):
    for n in SIZES:
        x = _base(n, rng, positive=op in ("log", "sqrt")) * 3
        _agree(both, UNARY[op], [x], dtype, "%s n=%d" % (op, n))
        # a temporary input, which the op may overwrite (elision), and its second use
        _agree(both, lambda m, x, f=UNARY[op]: f(m, x * 1.0 + 0.0) + f(m, x),
               [x], dtype, "%s of a temporary n=%d" % (op, n))
    # a strided input (not native): the reference rule; a 2-D shape
    x = rng.uniform(0.1, 2, (40, 30))
    _agree(both, lambda m, x, f=UNARY[op]: f(m, x.T), [x], dtype, "%s of x.T" % op)


def test_ufunc_loops_found(both):
    """NumPy's inner loops are found for both float types (else the kernels fall back)."""
    loops = both[1]._core._tape._ufunc_loops() if hasattr(both[1]._core, "_tape") else None
    if loops is None:
        pytest.skip("the compiled core's module is not reachable as fastgrad._core._tape")
    assert all(all(v) for v in loops.values()), loops


def test_pow_and_unary_against_torch(fg, rng):
    torch = pytest.importorskip("torch")
    x = _base(1100, rng, positive=True)
    cases = [(lambda t: t ** 2), (lambda t: t ** 3), (lambda t: t ** -1), (lambda t: t ** 0.5),
             (lambda t: t ** 7), (lambda t: t ** 1.7), (lambda t: t.sigmoid()),
             (lambda t: t.tanh()), (lambda t: t.sin()), (lambda t: t.cos()),
             (lambda t: t.log()), (lambda t: t.exp())]
    for i, f in enumerate(cases):
        for dtype in ("float64", "float32"):
            a = fg.tensor(x.astype(dtype), requires_grad=True)
            f(a).sum().backward()
            t = torch.tensor(x.astype(dtype), requires_grad=True)
            f(t).sum().backward()
            tol = 1e-12 if dtype == "float64" else 1e-5
            np.testing.assert_allclose(f(a).detach().numpy(), f(t).detach().numpy(), rtol=tol,
                                       err_msg="case %d %s" % (i, dtype))
            np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=tol,
                                       err_msg="case %d %s grad" % (i, dtype))


def test_gelu_against_torch_finite_differences_and_special_values(fg, rng):
    """gelu = x Phi(x), accurate in both tails (float64 to 1e-12 of x erfc(-x / sqrt 2) / 2;
    float32 to a few ulps on the compiled core, its own vectorized erfc and exp), torch where its (1 + erf) / 2
    does not cancel, the gradient by central differences, and inf / NaN."""
    import math
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-14, 14, 2801), rng.normal(size=500) * 3, [0.0, -0.0]])
    cdf = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    truth = x * cdf
    truth_grad = cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    # float32: rounding x / sqrt 2 moves erfc by 2 z^2 ulps in the tail, 5e-6 at |x| = 9
    for dtype, rtol in (("float64", 1e-12), ("float32", 1e-5)):
        a = fg.tensor(x.astype(dtype), requires_grad=True)
        y = fg.nn.functional.gelu(a)
        assert y.grad_fn == "gelu"
        y.sum().backward()
        keep = np.abs(x) < 9 if dtype == "float32" else np.abs(x) < 30   # float32: e^-40 is 0
        np.testing.assert_allclose(y.detach().numpy()[keep], truth[keep], rtol=rtol, atol=0,
                                   err_msg="gelu %s" % dtype)
        # the derivative crosses 0 near x = -0.75: an absolute tolerance at its scale there
        np.testing.assert_allclose(a.grad.numpy()[keep], truth_grad[keep], rtol=rtol,
                                   atol=1e-15 if dtype == "float64" else 3e-7,
                                   err_msg="gelu' %s" % dtype)
        t = torch.tensor(x.astype(dtype), requires_grad=True)
        torch.nn.functional.gelu(t).sum().backward()
        mid = np.abs(x) < 3
        np.testing.assert_allclose(y.detach().numpy()[mid],
                                   torch.nn.functional.gelu(t).detach().numpy()[mid],
                                   rtol=10 * rtol, atol=1e-30 if dtype == "float64" else 1e-6,
                                   err_msg="gelu vs torch %s" % dtype)     # torch's 1 + erf cancels
        np.testing.assert_allclose(a.grad.numpy()[mid], t.grad.numpy()[mid], rtol=10 * rtol,
                                   atol=1e-14 if dtype == "float64" else 1e-6,
                                   err_msg="gelu' vs torch %s" % dtype)
    # central differences, float64
    x = rng.normal(size=40) * 2
    a = fg.tensor(x, requires_grad=True)
    fg.nn.functional.gelu(a).sum().backward()
    h = 1e-6
    num = (fg.nn.functional.gelu(fg.tensor(x + h)).numpy()
           - fg.nn.functional.gelu(fg.tensor(x - h)).numpy()) / (2 * h)
    np.testing.assert_allclose(a.grad.numpy(), num, rtol=1e-7, atol=1e-9)
    # special values: inf * Phi(inf) = inf, -inf * Phi(-inf) = -inf * 0 = NaN, NaN stays NaN
    for dtype in ("float64", "float32"):
        a = fg.tensor(np.array([np.inf, -np.inf, np.nan, 0.0], dtype), requires_grad=True)
        y = fg.nn.functional.gelu(a)
        y.sum().backward()
        v = y.detach().numpy()
        assert v[0] == np.inf and np.isnan(v[1]) and np.isnan(v[2]) and v[3] == 0, v
        np.testing.assert_array_equal(np.isnan(a.grad.numpy()), [True, True, True, False])
        assert a.grad.numpy()[3] == 0.5


def test_silu_against_torch_and_special_values(fg, rng):
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-120, 120, 2401), rng.normal(size=500) * 4, [0.0, -0.0]])
    for dtype, rtol, atol in (("float64", 1e-12, 1e-300), ("float32", 2e-6, 1e-30)):
        a = fg.tensor(x.astype(dtype), requires_grad=True)
        y = fg.nn.functional.silu(a)
        assert y.grad_fn == "silu"
        y.sum().backward()
        t = torch.tensor(x.astype(dtype), requires_grad=True)
        ty = torch.nn.functional.silu(t)
        ty.sum().backward()
        np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=rtol,
                                   atol=atol, err_msg="silu %s" % dtype)
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=rtol,
                                   atol=1e-15 if dtype == "float64" else 1e-7,
                                   err_msg="silu' %s" % dtype)
        a = fg.tensor(np.array([np.inf, -np.inf, np.nan], dtype), requires_grad=True)
        y = fg.nn.functional.silu(a)
        y.sum().backward()
        v = y.detach().numpy()
        assert v[0] == np.inf and np.isnan(v[1]) and np.isnan(v[2]), v   # -inf * 0 is NaN


# -- broadcasting binary ops ------------------------------------------------------
BINARY = {
    "add": lambda m, a, b: a + b, "sub": lambda m, a, b: a - b, "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b, "maximum": lambda m, a, b: m.maximum(a, b),
    "minimum": lambda m, a, b: m.minimum(a, b), "pow": lambda m, a, b: a ** b,
}
# (a's shape, b's shape): row, column, outer, N-d with size-1 axes, rank-padded, 0-size
BROADCASTS = [((32, 64), (64,)), ((32, 64), (1, 64)), ((32, 64), (32, 1)), ((17, 1), (1, 9)),
              ((2, 3, 4), (3, 1)), ((2, 1, 4), (1, 3, 1)), ((4,), (3, 1)), ((3,), (1, 3)),
              ((5, 1, 1), (1, 1, 6)), ((2, 3, 4, 5), (3, 1, 5)), ((0, 3), (3,)), ((0, 3), (1, 1)),
              ((3, 0), (3, 1)), ((1, 513), (2, 1)), ((1100, 1), (1, 3))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op", sorted(BINARY))
def test_broadcast_cores_agree(both, rng, dtype, op):
    for sa, sb in BROADCASTS + [(b, a) for a, b in BROADCASTS]:
        a = rng.uniform(0.5, 2.0, sa)
        b = rng.uniform(0.5, 2.0, sb)
        if op in ("maximum", "minimum"):          # ties: the gradient is shared
            a, b = np.round(a * 2) / 2, np.round(b * 2) / 2
        _agree(both, BINARY[op], [a, b], dtype, "%s %s %s" % (op, sa, sb))


@pytest.mark.parametrize("op", sorted(BINARY))
def test_broadcast_gradient_paths(both, rng, op):
    """An operand whose gradient already has a buffer (used twice), one that needs no
    gradient, a strided (transposed) operand, and an operand broadcast against itself."""
    f = BINARY[op]
    a, b = rng.uniform(0.5, 2.0, (6, 5)), rng.uniform(0.5, 2.0, (5,))
    _agree(both, lambda m, a, b: f(m, a, b) + a, [a, b], "float64", "%s, a again" % op)
    _agree(both, lambda m, a, b: f(m, a, b) * b + f(m, b, a), [a, b], "float64",
           "%s, both ways" % op)
    _agree(both, lambda m, a, b: f(m, a.T, b[:, None]), [a, np.ones(5) * 1.5], "float64",
           "%s, a.T" % op)
    _agree(both, lambda m, a: f(m, a, a[:, :1]), [a], "float64", "%s, a with its column" % op)
    python_fg, compiled_fg = both
    for m in both:
        x = m.tensor(a, requires_grad=True)
        y = f(m, x, m.tensor(b))                  # b needs no gradient
        y.sum().backward()
        assert x.grad.shape == (6, 5)
    ga = [None, None]
    for i, m in enumerate(both):
        x = m.tensor(a, requires_grad=True)
        f(m, x, m.tensor(b)).sum().backward()
        ga[i] = x.grad.numpy()
    np.testing.assert_allclose(ga[1], ga[0], rtol=1e-12)


def test_broadcast_against_torch(fg, rng):
    torch = pytest.importorskip("torch")
    for sa, sb in BROADCASTS:
        for name, f in BINARY.items():
            a, b = rng.uniform(0.5, 2.0, sa), rng.uniform(0.5, 2.0, sb)
            x, y = fg.tensor(a, requires_grad=True), fg.tensor(b, requires_grad=True)
            tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
            out, tout = f(fg, x, y), f(torch, tx, ty)
            out.sum().backward()
            tout.sum().backward()
            what = "%s %s %s" % (name, sa, sb)
            np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12,
                                       err_msg=what)
            np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12,
                                       atol=1e-12, err_msg=what)
            np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-12,
                                       atol=1e-12, err_msg=what)


def test_broadcast_errors_and_replay(fg, rng):
    a = fg.tensor(rng.normal(size=(3, 4)), requires_grad=True)
    with pytest.raises(ValueError, match="add: shapes"):
        a + fg.tensor(np.ones(3))
    b = fg.tensor(rng.normal(size=(4,)), requires_grad=True)
    c = fg.tensor(rng.normal(size=(3, 1)))
    step = fg.compile(lambda: ((a * c + b) * c).sum())
    step()
    want = [a.grad.numpy().copy(), b.grad.numpy().copy()]
    c.data[...] = c.numpy() * 2                   # new values, same layout: replayed
    a.grad = b.grad = None
    step()
    a2 = fg.tensor(a.numpy(), requires_grad=True)
    b2 = fg.tensor(b.numpy(), requires_grad=True)
    ((a2 * c + b2) * c).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), a2.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), b2.grad.numpy(), rtol=1e-12)
    assert not np.allclose(want[0], a2.grad.numpy())
    # an input rebound to another shape after recording: the door refuses
    y = (a * c).sum()
    c.data = np.ones((3, 4))
    with pytest.raises(RuntimeError):
        y.backward()


# -- matmul of strided operands -------------------------------------------------
MATMUL_SHAPES = [(1, 1, 1), (3, 4, 5), (1, 7, 1), (16, 8, 4), (20, 20, 21), (4, 64, 33)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_strided_matmul_cores_agree(both, rng, dtype):
    """x @ w.T, x.T @ w, sliced and flipped operands, 1-D strided operands, at sizes
    below and above the BLAS crossover (8192 multiply-adds)."""
    for n, k, m in MATMUL_SHAPES:
        x, w = rng.normal(size=(n, k)), rng.normal(size=(m, k))
        what = "%dx%dx%d" % (n, k, m)
        _agree(both, lambda fg, x, w: x @ w.T, [x, w], dtype, "x @ w.T " + what)
        _agree(both, lambda fg, xt, w: xt.T @ w.T, [x.T.copy(), w], dtype, "x.T @ w.T " + what)
        _agree(both, lambda fg, x, wt: x @ wt, [x, w.T.copy()], dtype, "x @ w " + what)
        _agree(both, lambda fg, x2, w2: x2[:, ::2] @ w2.T[::2],
               [np.repeat(x, 2, axis=1), np.repeat(w, 2, axis=1)], dtype, "sliced " + what)
        _agree(both, lambda fg, x, w: x[::-1] @ w.T, [x, w], dtype, "flipped " + what)
        _agree(both, lambda fg, v, w: v[::2] @ w.T, [rng.normal(size=2 * k), w], dtype,
               "1-D strided @ w.T " + what)
        _agree(both, lambda fg, x, v: x @ v[::3], [x, rng.normal(size=3 * k)], dtype,
               "x @ 1-D strided " + what)
        _agree(both, lambda fg, x, w: (x @ w.T) + x @ w.T, [x, w], dtype, "twice " + what)


def test_strided_matmul_against_torch_and_replay(fg, rng):
    torch = pytest.importorskip("torch")
    for n, k, m in MATMUL_SHAPES:
        x, w = rng.normal(size=(n, k)), rng.normal(size=(m, k))
        a, b = fg.tensor(x, requires_grad=True), fg.tensor(w, requires_grad=True)
        ta, tb = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        y, ty = a @ b.T, ta @ tb.T
        (y * y).sum().backward()
        (ty * ty).sum().backward()
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-11)
        np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-11)
    a = fg.tensor(rng.normal(size=(5, 3)), requires_grad=True)
    wt = fg.tensor(rng.normal(size=(4, 3)), requires_grad=True)
    step = fg.compile(lambda: ((a @ wt.T) ** 2).sum())
    step()
    first = a.grad.numpy().copy()
    a.grad = wt.grad = None
    step()
    np.testing.assert_allclose(a.grad.numpy(), first, rtol=1e-12)


# -- sums over axes --------------------------------------------------------------
REDUCTIONS = [((32, 64), 0), ((32, 64), 1), ((32, 64), -1), ((32, 64), (0, 1)), ((4, 5, 6), 1),
              ((4, 5, 6), (0, 2)), ((4, 5, 6), (1, 2)), ((4, 1, 6), 1), ((2, 3, 4, 5), (1, 3)),
              ((0, 3), 0), ((0, 3), 1), ((3, 0), 1), ((7,), 0), ((1100,), 0), ((2, 1100), 1),
              ((1100, 3), 0), ((5, 4), ())]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_over_axes_cores_agree(both, rng, dtype, keepdims):
    for shape, axis in REDUCTIONS:
        x = rng.normal(size=shape)
        what = "%s axis=%s keepdims=%s" % (shape, axis, keepdims)
        _agree(both, lambda m, x: m.sum(x, axis, keepdims), [x], dtype, "sum " + what)
        _agree(both, lambda m, x: x.mean(axis, keepdims) if axis != () else x.sum(axis),
               [x], dtype, "mean " + what)
        _agree(both, lambda m, x: m.sum(x * x, axis, keepdims) * 2, [x], dtype,
               "sum of a product " + what)


def test_sum_over_axes_against_torch_and_replay(fg, rng):
    torch = pytest.importorskip("torch")
    for shape, axis in REDUCTIONS:
        if axis == ():
            continue
        x = rng.normal(size=shape)
        a, t = fg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, ty = a.sum(axis, keepdims=True), t.sum(axis, keepdim=True)
        (y * y).sum().backward()
        (ty * ty).sum().backward()
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-12)
    a = fg.tensor(rng.normal(size=(6, 5)), requires_grad=True)
    step = fg.compile(lambda: (a.sum(1) ** 2).sum())
    step()
    first = a.grad.numpy().copy()
    np.testing.assert_allclose(first, np.repeat(2 * a.numpy().sum(1, keepdims=True), 5, 1))
    with fg.no_grad():
        a.data[...] = a.numpy() * 2
    a.grad = None
    step()
    np.testing.assert_allclose(a.grad.numpy(), 2 * first, rtol=1e-12)
    assert a.sum(1).grad_fn == "sum"


# -- max, min and logsumexp over axes ------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op", ["amax", "amin", "logsumexp"])
def test_extremes_over_axes_cores_agree(both, rng, dtype, op):
    for shape, axis in REDUCTIONS + [((3, 4), None), ((), None), ((5,), None)]:
        if 0 in shape or axis == ():
            continue
        x = np.asarray(np.round(rng.normal(size=shape) * 2) / 2)      # ties
        for special in (None, np.nan, np.inf, -np.inf):
            if special is not None and x.size > 2:
                x = x.copy()
                x.flat[1] = special
            for keepdims in (False, True):
                what = "%s %s axis=%s keepdims=%s special=%s" % (op, shape, axis, keepdims,
                                                                  special)
                _agree(both, lambda m, x: getattr(m, op)(x, axis, keepdims), [x], dtype, what)
    # a softmax built on them, through the library's own spelling
    x = rng.normal(size=(7, 513))
    _agree(both, lambda m, x: m.nn.functional.softmax(x, dim=-1) * m.tensor(x), [x], "float64",
           "softmax")
    _agree(both, lambda m, x: m.nn.functional.log_softmax(x, dim=0), [x], "float64",
           "log_softmax")


# -- var and std over axes, layer_norm over trailing axes ---------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op", ["var", "std"])
def test_spread_over_axes_cores_agree(both, rng, dtype, op):
    for shape, axis in REDUCTIONS + [((3, 4), None), ((), None), ((5,), None), ((1, 1), 0)]:
        x = np.asarray(rng.normal(size=shape) + 3.0)
        for special in (None, np.nan, np.inf):
            if special is not None and x.size > 2:
                x = x.copy()
                x.flat[1] = special
            for keepdims in (False, True):
                for correction in (0, 1, 2.5):
                    what = "%s %s axis=%s keepdims=%s correction=%s special=%s" % (
                        op, shape, axis, keepdims, correction, special)
                    _agree(both, lambda m, x: getattr(x, op)(axis, keepdims,
                                                             correction=correction),
                           [x], dtype, what)
    # a transposed (strided) input takes the reference rule on both cores
    x = rng.normal(size=(5, 7))
    _agree(both, lambda m, x: getattr(x.T, op)(1) * 2, [x], dtype, op + " of a transpose")
    # a constant row: std 0, whose gradient is taken as 0
    _agree(both, lambda m, x: getattr(x, op)(1), [np.ones((3, 4))], dtype, op + " constant")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_norm_over_axes_cores_agree(both, rng, dtype):
    for shape, axis in REDUCTIONS + [((3, 4), None), ((), None), ((5,), None)]:
        x = np.asarray(rng.normal(size=shape))
        for special in (None, 0.0, np.nan, np.inf):
            if special is not None and x.size > 2:
                x = x.copy()
                x.flat[1] = special
            for keepdims in (False, True):
                what = "norm %s axis=%s keepdims=%s special=%s" % (shape, axis, keepdims, special)
                _agree(both, lambda m, x: x.norm(dim=axis, keepdim=keepdims), [x], dtype, what)
    _agree(both, lambda m, x: x.norm(dim=1), [np.zeros((3, 4))], dtype, "norm of zeros")
    _agree(both, lambda m, x: x.T.norm(dim=0), [rng.normal(size=(3, 4))], dtype, "norm of x.T")


def test_norm_against_torch_and_replay(fg, rng):
    torch = pytest.importorskip("torch")
    for shape, axis in REDUCTIONS + [((3, 4), None)]:
        if axis == ():
            continue
        x = rng.normal(size=shape)
        a, t = fg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, ty = a.norm(dim=axis, keepdim=True), t.norm(dim=axis, keepdim=True)
        assert y.grad_fn == "norm"
        (y * y * y).sum().backward()
        (ty * ty * ty).sum().backward()
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12)
    z = fg.zeros(2, 3, requires_grad=True)
    z.norm().backward()
    assert not z.grad.numpy().any()                    # 0 where the norm is 0, as torch
    a = fg.tensor(rng.normal(size=(6, 5)), requires_grad=True)
    step = fg.compile(lambda: a.norm(dim=1).sum())
    step()
    first = a.grad.numpy().copy()
    with fg.no_grad():
        a.data[...] = a.numpy() * 2
    a.grad = None
    step()
    np.testing.assert_allclose(a.grad.numpy(), first, rtol=1e-12)
    with pytest.raises(TypeError, match="norm: expected a float"):
        fg._core_module.norm(fg.tensor([1, 2]))


def test_spread_against_torch_and_replay(fg, rng):
    torch = pytest.importorskip("torch")
    core = fg._core_module
    if core.BACKEND != "python":
        assert {"var", "std", "layer_norm"} <= set(core._native_ops())
    for shape, axis in REDUCTIONS + [((3, 4), None)]:
        if 0 in shape or axis == ():
            continue
        x = rng.normal(size=shape)
        for op in ("var", "std"):
            for keepdim in (False, True):
                a, t = fg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
                n = x.size if axis is None else np.prod([shape[d] for d in np.atleast_1d(axis)])
                correction = 1 if n > 1 else 0
                if axis is None:
                    y = getattr(a, op)(correction=correction, keepdim=keepdim)
                    ty = getattr(t, op)(correction=correction, keepdim=keepdim)
                else:
                    y = getattr(a, op)(axis, correction=correction, keepdim=keepdim)
                    ty = getattr(t, op)(axis, correction=correction, keepdim=keepdim)
                assert y.grad_fn == op
                (y * y * y).sum().backward()
                (ty * ty * ty).sum().backward()
                np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12,
                                           atol=1e-12)
                np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-9,
                                           atol=1e-12)
    a = fg.tensor(rng.normal(size=(6, 5)), requires_grad=True)
    step = fg.compile(lambda: (a.std(1) ** 2 + a.var(0).sum()).sum())
    step()
    first = a.grad.numpy().copy()
    with fg.no_grad():
        a.data[...] = a.numpy() * 2
    a.grad = None
    step()
    np.testing.assert_allclose(a.grad.numpy(), 2 * first, rtol=1e-12)


LAYER_NORM_SHAPES = [((4, 4), 1), ((3, 5, 7), 1), ((3, 5, 7), 2), ((2, 3, 4, 5), 3), ((7,), 1),
                     ((1, 1), 1), ((2, 1100), 1), ((1100, 3), 2), ((3, 513), 1), ((0, 4), 1),
                     ((3, 0), 1)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_layer_norm_cores_agree(both, rng, dtype):
    for shape, k in LAYER_NORM_SHAPES:
        x = rng.normal(size=shape) * 3 + 10
        for special in (None, np.nan, np.inf, 0.0):
            if special is not None and x.size > 2:
                x = x.copy()
                x.flat[1] = special
            what = "layer_norm %s k=%d special=%s" % (shape, k, special)
            _agree(both, lambda m, x: m.nn.functional.layer_norm(x, shape[len(shape) - k:]),
                   [x], dtype, what)
            w, b = rng.normal(size=shape[len(shape) - k:]), rng.normal(size=shape[len(shape) - k:])
            _agree(both, lambda m, x, w, b: m.nn.functional.layer_norm(
                x, shape[len(shape) - k:], w, b, eps=1e-3), [x, w, b], dtype,
                what + " weight, bias")
    _agree(both, lambda m, x: m.nn.functional.layer_norm(x.T, (4,)), [rng.normal(size=(4, 6))],
           dtype, "layer_norm of a transpose")
    _agree(both, lambda m, x: m.nn.functional.layer_norm(x, (5,)), [np.full((2, 5), 7.0)],
           dtype, "layer_norm constant rows")


def test_layer_norm_against_torch_and_replay(fg, rng):
    torch = pytest.importorskip("torch")
    for shape, k in LAYER_NORM_SHAPES:
        if 0 in shape:
            continue
        norm = shape[len(shape) - k:]
        x = rng.normal(size=shape) * 2 + 5
        layer, tlayer = fg.nn.LayerNorm(norm).double(), torch.nn.LayerNorm(norm).double()
        w, b = rng.normal(size=norm), rng.normal(size=norm)
        with torch.no_grad():
            tlayer.weight.copy_(torch.tensor(w))
            tlayer.bias.copy_(torch.tensor(b))
        with fg.no_grad():
            layer.weight.data[...] = w
            layer.bias.data[...] = b
        a, t = fg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, ty = layer(a), tlayer(t)
        g = rng.normal(size=shape)
        (y * fg.tensor(g)).sum().backward()
        (ty * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        for mine, theirs in ((a.grad, t.grad), (layer.weight.grad, tlayer.weight.grad),
                             (layer.bias.grad, tlayer.bias.grad)):
            np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-9, atol=1e-11)
    # zeros normalise to +0, as torch
    z = fg.nn.functional.layer_norm(fg.zeros(2, 3), (3,))
    assert not np.signbit(z.numpy()).any() and not z.numpy().any()
    assert fg.nn.functional.layer_norm(fg.ones(2, 3, requires_grad=True), (3,)).grad_fn \
        == "layer_norm"
    a = fg.tensor(rng.normal(size=(6, 5)), requires_grad=True)
    gw = fg.tensor(rng.normal(size=(6, 5)))
    step = fg.compile(lambda: (fg.nn.functional.layer_norm(a, (5,), eps=0.0) * gw).sum())
    step()
    first = a.grad.numpy().copy()
    with fg.no_grad():
        a.data[...] = a.numpy() * 2
    a.grad = None
    step()
    np.testing.assert_allclose(a.grad.numpy(), first / 2, rtol=1e-10, atol=1e-14)


def test_layer_norm_and_spread_errors(fg):
    core = fg._core_module
    x = fg.ones(2, 3)
    with pytest.raises(ValueError, match="layer_norm"):
        core.layer_norm(x, 3)
    with pytest.raises(ValueError, match="layer_norm"):
        core.layer_norm(x, 0)
    with pytest.raises(TypeError, match="layer_norm: expected a float"):
        core.layer_norm(fg.tensor([[1, 2]]), 1)
    with pytest.raises(TypeError, match="layer_norm: eps"):
        core.layer_norm(x, 1, "small")
    with pytest.raises(TypeError, match="layer_norm: expected a tensor"):
        core.layer_norm(2.0, 1)
    with pytest.raises(TypeError, match="var: correction"):
        core.var(x, None, False, "one")
    with pytest.raises(TypeError, match="std: expected a tensor"):
        core.std(2.0)
    with pytest.raises(ValueError, match="var: axis 2 is out of range"):
        x.var(2)
    assert x.var(0, keepdim=True).shape == (1, 3)
    assert fg.tensor([1, 2, 4]).var().dtype == np.float64       # integers: as mean


# -- views: reshape, permute, expand, basic indexing ---------------------------------
VIEWS = {
    "reshape": lambda x: x.reshape(-1),
    "view 2-D": lambda x: x.view(x.shape[0], -1) if x.ndim and x.numel() else x.view(*x.shape),
    "flatten": lambda x: x.flatten(),
    "unsqueeze": lambda x: x.unsqueeze(0),
    "T": lambda x: x.T,
    "permute": lambda x: x.permute(*reversed(range(x.ndim))),
    "transpose": lambda x: x.transpose(0, -1) if x.ndim else x,
    "slice rows": lambda x: x[1:] if x.ndim else x,
    "slice step": lambda x: x[::-2] if x.ndim else x,
    "slice column": lambda x: x[..., 1:3] if x.ndim else x,
    "one row": lambda x: x[0] if x.ndim and x.shape[0] else x,
    "None": lambda x: x[None],
    "T then reshape": lambda x: x.T.reshape(-1),
    "T of T": lambda x: x.T.T,
    "slice then T": lambda x: x[1:].T if x.ndim else x,
}
VIEW_SHAPES = [(), (1,), (7,), (4, 4), (3, 5), (1, 6), (33, 40), (2, 3, 4), (0, 3), (3, 0),
               (70, 70)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(VIEWS))
def test_views_cores_agree(both, rng, dtype, name):
    """Each view alone, then under a product and a full sum (its strided path)."""
    view = VIEWS[name]
    for shape in VIEW_SHAPES:
        x = rng.normal(size=shape)
        what = "%s %s" % (name, shape)
        _agree(both, lambda m, x: view(x), [x], dtype, what)
        _agree(both, lambda m, x: view(x) * 3.0, [x], dtype, what + " * 3")
        _agree(both, lambda m, x: view(x).sum(), [x], dtype, what + " sum")
        _agree(both, lambda m, x: view(x * x).sum() + view(x).sum(), [x], dtype,
               what + " twice")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_expand_cores_agree(both, rng, dtype):
    for old, new in [((4, 1), (4, 5)), ((1, 5), (3, 5)), ((5,), (3, 5)), ((1,), (7,)),
                     ((1, 1), (6, 9)), ((2, 1, 3), (2, 4, 3)), ((3, 1), (2, 3, 600)),
                     ((1,), (0,)), ((), (2, 2)), ((4, 1), (-1, 3))]:
        x = rng.normal(size=old)
        what = "expand %s to %s" % (old, new)
        _agree(both, lambda m, x: x.expand(*new), [x], dtype, what)
        if dtype == "float64" or np.prod(new) < 1000:     # float32 sums drift by order
            _agree(both, lambda m, x: x.expand(*new).sum(), [x], dtype, what + " sum")
        _agree(both, lambda m, x: x.expand(*new) * 2.0, [x], dtype, what + " * 2")


def test_views_against_torch(fg, rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(6, 5))
    for name, view in sorted(VIEWS.items()):
        if name == "slice step":
            continue                     # torch takes no negative steps
        a, t = fg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, ty = view(a), view(t)
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=0, atol=0, err_msg=name)
        w = rng.normal(size=tuple(ty.shape))
        (y * fg.tensor(w)).sum().backward()
        (ty * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=name)
    c, tc = fg.tensor(x[:, :1], requires_grad=True), torch.tensor(x[:, :1], requires_grad=True)
    (c.expand(6, 5) * fg.tensor(x)).sum().backward()
    (tc.expand(6, 5) * torch.tensor(x)).sum().backward()
    np.testing.assert_allclose(c.grad.numpy(), tc.grad.numpy(), rtol=1e-12)


def test_views_share_memory_and_outlive_their_base(fg, rng):
    """A view writes through to its base (and shares its version counter); its
    memory stays valid when the base is rebound or gone."""
    x = fg.tensor(rng.normal(size=(4, 6)))
    for v in (x.view(24), x.T, x[:, 1:3], x.unsqueeze(0)):
        assert np.shares_memory(v.numpy(), x.numpy())
    v = x.view(3, 8)
    with fg.no_grad():
        v.mul_(2.0)
    np.testing.assert_allclose(x.numpy().reshape(3, 8), v.numpy())
    assert x._version_counter == v._version_counter
    e = fg.tensor(rng.normal(size=(3, 1))).expand(3, 4)
    assert not e.numpy().flags.writeable
    # the base rebound (its old memory freed by the base), then dropped: the view still reads
    a = fg.tensor(rng.normal(size=(50, 40)), requires_grad=True)
    b = a * 2.0                       # values in the core's own block
    t, r = b.T, b.reshape(-1)
    want = np.array(t.numpy())
    b.data = fg.tensor(np.zeros((50, 40)))
    del b
    for _ in range(3):
        fg.tensor(rng.normal(size=(50, 40))) * 3.0        # reuse of freed blocks
    np.testing.assert_array_equal(t.numpy(), want)
    np.testing.assert_array_equal(r.numpy(), want.T.reshape(-1))
    (t.sum() + r.sum()).backward()
    np.testing.assert_allclose(a.grad.numpy(), np.full((50, 40), 4.0))


def test_views_replay_and_errors(fg, rng):
    a = fg.tensor(rng.normal(size=(5, 4)), requires_grad=True)
    col = fg.tensor(rng.normal(size=(5, 1)), requires_grad=True)
    step = fg.compile(lambda: ((a.T[1:] * 2.0).reshape(-1).sum()
                               + (col.expand(5, 3) * a[:, :3]).sum()))
    for scale in (1.0, 3.0):
        with fg.no_grad():
            col.data[...] = col.numpy() * scale
        a.grad = col.grad = None
        step()
        expect = np.zeros((5, 4))
        expect[:, 1:] += 2.0
        expect[:, :3] += col.numpy()
        np.testing.assert_allclose(a.grad.numpy(), expect, rtol=1e-12)
        np.testing.assert_allclose(col.grad.numpy(), a.numpy()[:, :3].sum(1, keepdims=True),
                                   rtol=1e-12)
    with pytest.raises(ValueError, match="reshape"):
        a.reshape(3, 3)
    with pytest.raises(ValueError, match="permute"):
        a.permute(0, 0)
    with pytest.raises(ValueError, match="expand"):
        col.expand(4, 3)
    with pytest.raises(IndexError, match="index"):
        a[7]
    with pytest.raises(IndexError, match="index"):
        a[:, 1, 2]


# -- copying indexing, cat, where (_gather.pxi) -----------------------------------------
def test_gather_cat_where_take_the_native_path(both, rng, monkeypatch):
    """With the compiled core's reference rules for index, cat and where made to fail,
    forward, backward and fg.compile's replay still run: the native rules do it all."""
    fg = both[1]
    core = fg._core_module
    codes = core.op_codes()

    def refuse(*args):
        raise AssertionError("the reference rule ran")
    forward, backward = list(core._ref.FORWARD), list(core._ref.BACKWARD)
    for name in ("index", "cat", "where"):
        forward[codes[name]] = backward[codes[name]] = refuse
    monkeypatch.setattr(core._ref, "FORWARD", tuple(forward))
    monkeypatch.setattr(core._ref, "BACKWARD", tuple(backward))
    for dtype in (np.float32, np.float64):
        x = fg.tensor(rng.normal(size=(6, 5)).astype(dtype), requires_grad=True)
        b = fg.tensor(rng.normal(size=(6, 5)).astype(dtype), requires_grad=True)
        m = rng.random((6, 5)) > 0.5
        idx = np.array([5, 0, -1, 5])

        def loss():
            parts = [x[idx].sum(), x[fg.tensor(idx)].sum(), x[:, idx[1:3]].sum(), x[m].sum(),
                     x[m[:, 0]].sum(), fg.cat([x, b], 0).sum(), fg.cat([x, b, x], 1).sum(),
                     fg.stack([x, b], 1).sum(), fg.where(m, x, b).sum(),
                     fg.where(m, 2.0, b).sum(), fg.where(m, x, b[:1, :1]).sum(),
                     fg.nn.functional.embedding(np.array([[1, 2], [2, 5]]), x).sum()]
            total = parts[0]
            for p in parts[1:]:
                total = total + p
            return total
        loss().backward()
        want = x.grad.numpy().copy()
        x.grad = b.grad = None
        step = fg.compile(loss)
        step()
        np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-6)
        with pytest.raises(AssertionError, match="reference rule"):
            x.T[idx[1:3]]                         # strided: the reference's path
        with pytest.raises(AssertionError, match="reference rule"):
            fg.where(m[:1], x, b)                 # broadcast cond: the reference's path


# -- batched matmul -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batched_matmul_cores_agree(both, rng, dtype):
    """(..., n, k) @ (..., k, m) and N-d @ 2-D, below and above the BLAS crossover."""
    for sa, sb in [((2, 3, 4), (2, 4, 5)), ((1, 1, 1), (1, 1, 1)), ((3, 2, 5, 4), (3, 2, 4, 2)),
                   ((4, 30, 30), (4, 30, 30)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (4,)),
                   ((8, 32, 64), (64, 64)), ((2, 2, 3, 4), (4, 6)), ((2, 3, 4), (1, 4, 5)),
                   ((3, 4), (2, 4, 5))]:
        x, w = rng.normal(size=sa), rng.normal(size=sb)
        _agree(both, lambda m, x, w: x @ w, [x, w], dtype, "%s @ %s" % (sa, sb))
        if dtype == "float64":           # float32 rounds the square's sums differently
            _agree(both, lambda m, x, w: (x @ w) * (x @ w), [x, w], dtype,
                   "%s @ %s twice" % (sa, sb))


def test_batched_matmul_against_torch_and_replay(fg, rng):
    torch = pytest.importorskip("torch")
    for sa, sb in [((2, 3, 4), (2, 4, 5)), ((4, 30, 30), (4, 30, 30)), ((8, 32, 64), (64, 64))]:
        x, w = rng.normal(size=sa), rng.normal(size=sb)
        a, b = fg.tensor(x, requires_grad=True), fg.tensor(w, requires_grad=True)
        ta, tb = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        y, ty = a @ b, ta @ tb
        assert y.grad_fn == "matmul"
        (y * y).sum().backward()
        (ty * ty).sum().backward()
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-11, atol=1e-11)
    a = fg.tensor(rng.normal(size=(2, 3, 4)), requires_grad=True)
    b = fg.tensor(rng.normal(size=(2, 4, 5)), requires_grad=True)
    step = fg.compile(lambda: (a @ b).sum())
    step()
    first = a.grad.numpy().copy()
    with fg.no_grad():
        b.data[...] = b.numpy() * 2
    a.grad = b.grad = None
    step()
    np.testing.assert_allclose(a.grad.numpy(), 2 * first, rtol=1e-12)


# -- softmax, log_softmax and cross entropy's rows (_softmax.pxi) ---------------------
SOFTMAX_CASES = [((0, 3), 1), ((3, 0), 0), ((), -1), ((1, 1), -1), ((4, 511), -1),
                 ((2, 513), 1), ((513, 2), 0), ((3, 4, 5), 1), ((3, 4, 5), 0), ((2, 3, 1100), 2),
                 ((2, 700, 3), 1)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_cores_agree(both, rng, dtype, op):
    for shape, axis in SOFTMAX_CASES:
        x = np.asarray(rng.normal(size=shape) * 3)
        for special in (None, np.nan, np.inf, -np.inf):
            if special is not None and x.size > 2:
                x = x.copy()
                x.flat[1] = special
            _agree(both, lambda m, x: getattr(x, op)(axis), [x], dtype,
                   "%s %s axis=%s special=%s" % (op, shape, axis, special))


def _no_reference_rule(monkeypatch, core, names):
    """Make the compiled core's copy of the reference rules of `names` raise."""
    codes = [core.op_codes()[n] for n in names]

    def refuse(*args):
        raise AssertionError("the reference rule ran")
    for table in ("FORWARD", "BACKWARD"):
        rules = list(getattr(core._ref, table))
        for code in codes:
            rules[code] = refuse
        monkeypatch.setattr(core._ref, table, tuple(rules))


def test_softmax_and_cross_entropy_take_the_native_path(both, rng, monkeypatch):
    compiled = both[1]
    core = compiled._core_module
    assert {"softmax", "log_softmax", "cross_entropy"} <= set(core._native_ops())
    _no_reference_rule(monkeypatch, core, ["softmax", "log_softmax", "cross_entropy"])
    for dtype in (np.float32, np.float64):
        for shape, axis in [((4, 4), -1), ((32, 64), 1), ((5, 6), 0), ((2, 3, 4), 1),
                            ((2, 3, 4), 0), ((), -1)]:
            for op in ("softmax", "log_softmax"):
                a = compiled.tensor(rng.normal(size=shape).astype(dtype), requires_grad=True)
                (getattr(a, op)(axis) * 1.5).sum().backward()
                assert a.grad.shape == shape
        z = compiled.tensor(rng.normal(size=(8, 300)).astype(dtype), requires_grad=True)
        compiled.nn.functional.cross_entropy(z, rng.integers(0, 300, 8)).backward()
    # a strided input goes through the reference rule (refused here)
    a = compiled.tensor(rng.normal(size=(3, 4)), requires_grad=True)
    with pytest.raises(AssertionError, match="reference rule"):
        a.T.softmax(-1)


@pytest.mark.parametrize("n", [1, 511, 512, 513, 3000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pow_with_a_tensor_exponent_backward_agrees(both, n, dtype):
    """a ** b with b a tensor: the compiled core's chunked log / pow backward (chunks of
    512) against the reference rule, with the a == 0 and b == 0 special cases and x ** x."""
    r = np.random.default_rng(n)
    a = np.abs(r.standard_normal(n)).astype(dtype)
    b = r.standard_normal(n).astype(dtype)
    a[0], b[0] = 0, 1.0             # d/db is 0 at a == 0, b >= 0
    b[-1] = 0                       # d/da is 0 at b == 0
    tol = 1e-12 if dtype == np.float64 else 2e-6
    grads = []
    for fg in both:
        x, y = fg.tensor(a, requires_grad=True), fg.tensor(b, requires_grad=True)
        z = fg.tensor(a + 0.5, requires_grad=True)
        ((x ** y).sum() + (z ** z).sum()).backward()
        grads.append([t.grad.numpy() for t in (x, y, z)])
    for g_ref, g_fast in zip(*grads):
        np.testing.assert_allclose(g_fast, g_ref, rtol=tol, atol=tol)
    assert np.all(np.isfinite(grads[1][1]))
    c = a + 0.5
    np.testing.assert_allclose(grads[1][2], c ** c * (1 + np.log(c)), rtol=tol * 10)


# -- matrix-vector products below the BLAS crossover ------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n,k", [(1, 1), (1, 3), (3, 1), (4, 4), (5, 7), (32, 64), (2, 4095)])
def test_small_matrix_vector_products_cores_agree(both, rng, dtype, n, k):
    """x @ v, v @ w and v @ v with a vector operand: the C loops' dot and outer
    product forms (n * k below 8192 multiply-adds), against the reference core,
    NumPy and, in float64, the definition element by element."""
    x, v, u = rng.normal(size=(n, k)), rng.normal(size=k), rng.normal(size=n)
    got = _agree(both, lambda fg, x, v: x @ v, [x, v], dtype, "x @ v %dx%d" % (n, k))
    np.testing.assert_allclose(got[0], x.astype(dtype) @ v.astype(dtype), rtol=TOL[dtype] * 10,
                               atol=TOL[dtype] * 10)
    _agree(both, lambda fg, u, x: u @ x, [u, x], dtype, "u @ x %dx%d" % (n, k))
    _agree(both, lambda fg, v, w: v @ w, [v, v.copy()], dtype, "v @ v %d" % k)
    if dtype == "float64":
        w = np.linspace(0.5, 1.5, n)
        want_x = np.array([[w[r] * v[i] for i in range(k)] for r in range(n)])
        want_v = np.array([sum(w[r] * x[r, i] for r in range(n)) for i in range(k)])
        np.testing.assert_allclose(got[1], want_x, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got[2], want_v, rtol=1e-12, atol=1e-12)


# -- backward()'s implicit seed ------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_implicit_seed_of_one_element_roots(fg, dtype):
    """backward() without a gradient seeds a one-element root with 1, of its own dtype
    and shape: a 0-d sum, a (1, 1) keepdims sum, a leaf itself (twice: it adds up)."""
    x = fg.tensor(np.arange(6.0).reshape(2, 3).astype(dtype), requires_grad=True)
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 3, dtype))
    assert x.grad.dtype == np.dtype(dtype)
    x.grad = None
    x.sum(axis=(0, 1), keepdims=True).backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3), dtype))
    leaf = fg.tensor(np.array([[2.0]], dtype), requires_grad=True)
    leaf.backward()
    leaf.backward()
    np.testing.assert_array_equal(leaf.grad.numpy(), np.full((1, 1), 2, dtype))
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 1).backward()
    y = (x * 2).sum()
    y.backward(retain_graph=True)
    y.backward()                        # a retained graph seeds again: the grads add up
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 5, dtype))


def test_stack_and_squeeze_short_paths_agree(both, rng):
    """stack along every axis (along a leading one: one cat and a reshape) and squeeze
    with one int dim, negative or not, of size 1 or not: against NumPy on both cores."""
    a, b, c = (rng.normal(size=(2, 3, 4)) for _ in range(3))
    for axis in (0, 1, 2, 3, -1, -2, -4):
        got = _agree(both, lambda fg, a, b, c: fg.stack([a, b, c], axis), [a, b, c], "float64",
                     "stack axis %d" % axis)
        np.testing.assert_array_equal(got[0], np.stack([a, b, c], axis))
    col = rng.normal(size=(3, 1, 2))
    for dim in (1, -2, 0, 2, -1):
        got = _agree(both, lambda fg, t: t.squeeze(dim), [col], "float64", "squeeze %d" % dim)
        want = np.squeeze(col, dim) if col.shape[dim] == 1 else col
        np.testing.assert_array_equal(got[0], want)
    for fg in both:
        with pytest.raises(ValueError, match="squeeze"):
            fg.tensor(col).squeeze(3)
        with pytest.raises(ValueError, match="stack"):
            fg.stack([fg.tensor(a), fg.tensor(a)], 4)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (1, 5), (4, 7), (33, 70), (5, 3, 9)])
def test_max_min_with_a_dim_pick_numpys_index(both, rng, dtype, shape):
    """max / min along each dim: the index is NumPy's argmax / argmin (the first of
    ties, the first NaN), the value the element there (-0.0 and 0.0 kept apart), the
    gradient goes to that one element; rows along the last dim and along the others."""
    x = rng.integers(-3, 4, size=shape).astype(dtype)       # many ties
    flat = x.reshape(-1)
    if flat.size > 4:
        flat[1], flat[3] = -0.0, np.nan
    for dim in range(len(shape)):
        for name, pick in (("max", np.argmax), ("min", np.argmin)):
            results = []
            for fg in both:
                t = fg.tensor(x, requires_grad=True)
                out = getattr(t, name)(dim)
                out.values.sum().backward()
                results.append((out.values.numpy(), out.indices.numpy(), t.grad.numpy()))
            want = pick(x, axis=dim)
            for values, indices, grad in results:
                np.testing.assert_array_equal(indices, want)
                taken = np.take_along_axis(x, np.expand_dims(want, dim), dim).squeeze(dim)
                np.testing.assert_array_equal(values, taken)
                assert np.array_equal(np.signbit(values), np.signbit(taken))
                hot = np.zeros_like(x)
                np.put_along_axis(hot, np.expand_dims(want, dim), 1, dim)
                np.testing.assert_array_equal(grad, hot)
