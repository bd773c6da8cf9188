"""Every op of the API: gradients against central finite differences, the two
cores against each other, float32 against float64, and PyTorch as an oracle.

Each case is one line: a name, the op written once for fastgrad (`f`) and
once for PyTorch (`t`, None where PyTorch has no such call), and the inputs
as (shape, domain).  Domains keep inputs away from kinks (abs, relu, clip,
max ties) and outside undefined regions (log, sqrt, pow).
"""
import numpy as np
import pytest

# domains: how inputs are drawn
ANY, POS, AWAY = "any", "pos", "away"       # AWAY: |x| in [0.2, 1.5], a random sign


def draw(rng, shape, domain):
    if domain == POS:
        return rng.uniform(0.5, 2.0, shape)
    if domain == AWAY:
        return rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    return rng.normal(size=shape)


def distinct(rng, shape, domain=ANY):
    """Values with no ties (max/min/maximum are not differentiable at ties)."""
    n = int(np.prod(shape)) if shape else 1
    return (rng.permutation(n) * 0.37 - n * 0.15 + rng.uniform(0, 0.05, n)).reshape(shape)


IDX = np.array([2, 0, 2])      # integer-array indexing with a repeat (gradients add up)

# (name, fastgrad op, torch op or None, [(shape, domain)])
CASES = [
    ("add", lambda a, b: a + b, lambda a, b: a + b, [((3, 4), ANY), ((3, 4), ANY)]),
    ("add broadcast", lambda a, b: a + b, lambda a, b: a + b, [((3, 1), ANY), ((1, 4), ANY)]),
    ("add number", lambda a: 2.5 + a, lambda a: 2.5 + a, [((2, 3), ANY)]),
    ("sub", lambda a, b: a - b, lambda a, b: a - b, [((2, 3, 4), ANY), ((4,), ANY)]),
    ("sub number", lambda a: 1.5 - a, lambda a: 1.5 - a, [((3,), ANY)]),
    ("mul", lambda a, b: a * b, lambda a, b: a * b, [((3, 4), ANY), ((3, 4), ANY)]),
    ("mul broadcast", lambda a, b: a * b, lambda a, b: a * b, [((2, 1, 4), ANY), ((3, 1), ANY)]),
    ("mul 0-d", lambda a, b: a * b, lambda a, b: a * b, [((), ANY), ((2, 3), ANY)]),
    ("div", lambda a, b: a / b, lambda a, b: a / b, [((3, 4), ANY), ((3, 4), AWAY)]),
    ("div broadcast", lambda a, b: a / b, lambda a, b: a / b, [((3, 4), ANY), ((4,), AWAY)]),
    ("rdiv number", lambda a: 2.0 / a, lambda a: 2.0 / a, [((5,), AWAY)]),
    ("neg", lambda a: -a, lambda a: -a, [((3, 2), ANY)]),
    ("pow number", lambda a: a ** 3, lambda a: a ** 3, [((4,), ANY)]),
    ("pow fractional", lambda a: a ** 0.5, lambda a: a ** 0.5, [((4,), POS)]),
    ("pow tensor", lambda a, b: a ** b, lambda a, b: a ** b, [((3, 2), POS), ((3, 2), ANY)]),
    ("rpow", lambda a: 2.0 ** a, lambda a: 2.0 ** a, [((3,), ANY)]),
    ("matmul", lambda a, b: a @ b, lambda a, b: a @ b, [((3, 4), ANY), ((4, 5), ANY)]),
    ("matmul big", lambda a, b: a @ b, lambda a, b: a @ b, [((20, 30), ANY), ((30, 25), ANY)]),
    ("matmul batched", lambda a, b: a @ b, lambda a, b: a @ b, [((2, 3, 4), ANY), ((4, 5), ANY)]),
    ("matmul batch both", lambda a, b: a @ b, lambda a, b: a @ b,
     [((2, 3, 4), ANY), ((2, 4, 5), ANY)]),
    ("matmul batch bcast", lambda a, b: a @ b, lambda a, b: a @ b,
     [((2, 1, 3, 4), ANY), ((3, 4, 2), ANY)]),
    ("matmul vec-mat", lambda a, b: a @ b, lambda a, b: a @ b, [((4,), ANY), ((4, 3), ANY)]),
    ("matmul mat-vec", lambda a, b: a @ b, lambda a, b: a @ b, [((3, 4), ANY), ((4,), ANY)]),
    ("matmul vec-vec", lambda a, b: a @ b, lambda a, b: a @ b, [((4,), ANY), ((4,), ANY)]),
    ("exp", lambda a: a.exp(), lambda a: a.exp(), [((3, 4), ANY)]),
    ("log", lambda a: a.log(), lambda a: a.log(), [((3, 4), POS)]),
    ("sqrt", lambda a: a.sqrt(), lambda a: a.sqrt(), [((3, 4), POS)]),
    ("abs", lambda a: a.abs(), lambda a: a.abs(), [((3, 4), AWAY)]),
    ("sin", lambda a: a.sin(), lambda a: a.sin(), [((5,), ANY)]),
    ("cos", lambda a: a.cos(), lambda a: a.cos(), [((5,), ANY)]),
    ("tanh", lambda a: a.tanh(), lambda a: a.tanh(), [((3, 4), ANY)]),
    ("sigmoid", lambda a: a.sigmoid(), lambda a: a.sigmoid(), [((3, 4), ANY)]),
    ("relu", lambda a: a.relu(), lambda a: a.relu(), [((3, 4), AWAY)]),
    ("leaky_relu", lambda a: a.leaky_relu(0.1), None, [((3, 4), AWAY)]),
    ("clip", lambda a: a.clip(-0.5, 0.7), lambda a: a.clamp(-0.5, 0.7), [((4, 5), ANY)]),
    ("clip min only", lambda a: a.clip(min=0.1), lambda a: a.clamp(min=0.1), [((6,), ANY)]),
    ("sum all", lambda a: a.sum(), lambda a: a.sum(), [((3, 4), ANY)]),
    ("sum axis", lambda a: a.sum(axis=1), lambda a: a.sum(dim=1), [((3, 4), ANY)]),
    ("sum axes keepdim", lambda a: a.sum(dim=(0, 2), keepdim=True),
     lambda a: a.sum(dim=(0, 2), keepdim=True), [((2, 3, 4), ANY)]),
    ("sum negative axis", lambda a: a.sum(axis=-1, keepdims=True),
     lambda a: a.sum(dim=-1, keepdim=True), [((2, 3), ANY)]),
    ("mean", lambda a: a.mean(), lambda a: a.mean(), [((3, 4), ANY)]),
    ("mean axes", lambda a: a.mean(axis=(0, 1)), lambda a: a.mean(dim=(0, 1)),
     [((2, 3, 4), ANY)]),
    ("max all", lambda a: a.max(), lambda a: a.max(), [((3, 4), "distinct")]),
    ("max axis", lambda a: a.amax(axis=1), lambda a: a.amax(dim=1), [((3, 4), "distinct")]),
    ("min axis keepdim", lambda a: a.amin(dim=0, keepdim=True),
     lambda a: a.amin(dim=0, keepdim=True), [((3, 4), "distinct")]),
    ("var", lambda a: a.var(), lambda a: a.var(), [((3, 4), ANY)]),
    ("var axis ddof0", lambda a: a.var(axis=1, ddof=0), lambda a: a.var(dim=1, correction=0),
     [((3, 4), ANY)]),
    ("std", lambda a: a.std(axis=0), lambda a: a.std(dim=0), [((5, 3), ANY)]),
    ("std correction", lambda a: a.std(correction=2), lambda a: a.std(correction=2),
     [((6,), ANY)]),
    ("logsumexp", lambda a: a.logsumexp(axis=1), lambda a: a.logsumexp(dim=1), [((3, 4), ANY)]),
    ("logsumexp all", lambda a: a.logsumexp(), lambda a: a.logsumexp(dim=(0, 1)),
     [((3, 4), ANY)]),
    ("softmax", lambda a: a.softmax(), lambda a: a.softmax(dim=-1), [((3, 4), ANY)]),
    ("softmax dim0", lambda a: a.softmax(dim=0), lambda a: a.softmax(dim=0), [((3, 4), ANY)]),
    ("log_softmax", lambda a: a.log_softmax(), lambda a: a.log_softmax(dim=-1),
     [((3, 4), ANY)]),
    ("reshape", lambda a: a.reshape(4, 3) * 1.0, lambda a: a.reshape(4, 3) * 1.0,
     [((3, 4), ANY)]),
    ("view -1", lambda a: a.view(-1), lambda a: a.view(-1), [((3, 4), ANY)]),
    ("flatten", lambda a: a.flatten(1), lambda a: a.flatten(1), [((2, 3, 4), ANY)]),
    ("transpose", lambda a: a.transpose(0, 2), lambda a: a.transpose(0, 2), [((2, 3, 4), ANY)]),
    ("T", lambda a: a.T, lambda a: a.T, [((3, 4), ANY)]),
    ("permute", lambda a: a.permute(2, 0, 1), lambda a: a.permute(2, 0, 1), [((2, 3, 4), ANY)]),
    ("squeeze", lambda a: a.squeeze(), lambda a: a.squeeze(), [((3, 1, 4), ANY)]),
    ("unsqueeze", lambda a: a.unsqueeze(1), lambda a: a.unsqueeze(1), [((3, 4), ANY)]),
    ("expand", lambda a: a.expand(2, 3, 4), lambda a: a.expand(2, 3, 4), [((3, 1), ANY)]),
    ("index int", lambda a: a[1], lambda a: a[1], [((3, 4), ANY)]),
    ("index slice", lambda a: a[1:, ::2], lambda a: a[1:, ::2], [((3, 4), ANY)]),
    ("index negative", lambda a: a[-1, -2], lambda a: a[-1, -2], [((3, 4), ANY)]),
    ("index array", lambda a: a[IDX], lambda a: a[IDX], [((3, 4), ANY)]),
    ("index mixed", lambda a: a[IDX, 1:3], lambda a: a[IDX, 1:3], [((3, 4), ANY)]),
    ("index ellipsis", lambda a: a[..., 0], lambda a: a[..., 0], [((2, 3, 4), ANY)]),
    ("cat", lambda a, b: _fg.cat([a, b], dim=1), lambda a, b: _torch.cat([a, b], dim=1),
     [((2, 3), ANY), ((2, 2), ANY)]),
    ("stack", lambda a, b: _fg.stack([a, b]), lambda a, b: _torch.stack([a, b]),
     [((2, 3), ANY), ((2, 3), ANY)]),
    ("where", lambda a, b: _fg.where(a > b, a, b * 2), lambda a, b: _torch.where(a > b, a, b * 2),
     [((3, 4), ANY), ((3, 4), ANY)]),
    ("maximum", lambda a, b: _fg.maximum(a, b), lambda a, b: _torch.maximum(a, b),
     [((3, 4), "distinct"), ((4,), ANY)]),
    ("minimum", lambda a, b: _fg.minimum(a, b), lambda a, b: _torch.minimum(a, b),
     [((3, 4), "distinct"), ((3, 1), ANY)]),
    ("fg.matmul", lambda a, b: _fg.matmul(a, b), lambda a, b: _torch.matmul(a, b),
     [((2, 3), ANY), ((3, 2), ANY)]),
    ("functional exp", lambda a: _fg.exp(a), lambda a: _torch.exp(a), [((3,), ANY)]),
    ("functional sum dim", lambda a: _fg.sum(a, dim=0), lambda a: _torch.sum(a, dim=0),
     [((3, 2), ANY)]),
    ("chain", lambda a, b: ((a @ b).tanh() * 0.5 + 1).log().sum(axis=0),
     lambda a, b: ((a @ b).tanh() * 0.5 + 1).log().sum(dim=0), [((3, 4), ANY), ((4, 2), ANY)]),
]

_fg = None       # the module under test, for cases that call fg.* functions
_torch = None


def case_ids():
    return [c[0] for c in CASES]


def make_inputs(spec, seed=0):
    rng = np.random.default_rng(seed)
    arrays = []
    for shape, domain in spec:
        if domain == "distinct":
            arrays.append(distinct(rng, shape))
        else:
            arrays.append(np.asarray(draw(rng, shape, domain), dtype=np.float64))
    return arrays


def run_fastgrad(fg, f, arrays, dtype=np.float64):
    """Output values and input gradients for a fixed random weighting of the output."""
    global _fg
    _fg = fg
    xs = [fg.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    out = f(*xs)
    weights = np.random.default_rng(99).normal(size=out.shape)
    (out * fg.tensor(weights.astype(dtype))).sum().backward()
    return out, [x.grad for x in xs], weights


def numeric_grads(fg, f, arrays, weights, eps=1e-6):
    global _fg
    _fg = fg

    def loss(values):
        with fg.no_grad():
            out = f(*[fg.tensor(v) for v in values])
        return float((out.numpy() * weights).sum())

    grads = []
    for i, a in enumerate(arrays):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            plus = [v.copy() for v in arrays]
            minus = [v.copy() for v in arrays]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            g[idx] = (loss(plus) - loss(minus)) / (2 * eps)
        grads.append(g)
    return grads


@pytest.mark.parametrize("name, f, t, spec", CASES, ids=case_ids())
def test_gradient_matches_finite_differences(fg, name, f, t, spec):
    arrays = make_inputs(spec)
    out, grads, weights = run_fastgrad(fg, f, arrays)
    assert out.dtype == np.float64
    for analytic, numeric in zip(grads, numeric_grads(fg, f, arrays, weights)):
        assert analytic is not None and analytic.shape == numeric.shape
        np.testing.assert_allclose(analytic.numpy(), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, f, t, spec", CASES, ids=case_ids())
def test_cores_agree(both, name, f, t, spec):
    arrays = make_inputs(spec, seed=1)
    (out_p, grads_p, _), (out_c, grads_c, _) = [run_fastgrad(m, f, arrays) for m in both]
    np.testing.assert_allclose(out_c.numpy(), out_p.numpy(), rtol=1e-12, atol=1e-14)
    for gp, gc in zip(grads_p, grads_c):
        np.testing.assert_allclose(gc.numpy(), gp.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, f, t, spec", CASES, ids=case_ids())
def test_float32_follows_float64(fg, name, f, t, spec):
    arrays = make_inputs(spec, seed=2)
    out64, grads64, _ = run_fastgrad(fg, f, arrays)
    out32, grads32, _ = run_fastgrad(fg, f, arrays, dtype=np.float32)
    assert out32.dtype == np.float32
    scale = max(1.0, float(np.abs(out64.numpy()).max(initial=0)))
    np.testing.assert_allclose(out32.numpy(), out64.numpy(), rtol=2e-5, atol=2e-5 * scale)
    for g32, g64 in zip(grads32, grads64):
        assert g32.dtype == np.float32
        gscale = max(1.0, float(np.abs(g64.numpy()).max(initial=0)))
        np.testing.assert_allclose(g32.numpy(), g64.numpy(), rtol=1e-4, atol=1e-4 * gscale)


@pytest.mark.parametrize("name, f, t, spec", [c for c in CASES if c[2] is not None],
                         ids=[c[0] for c in CASES if c[2] is not None])
def test_against_pytorch(fg, name, f, t, spec):
    torch = pytest.importorskip("torch")
    global _torch
    _torch = torch
    arrays = make_inputs(spec, seed=3)
    out, grads, weights = run_fastgrad(fg, f, arrays)
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    ref = t(*xs)
    (ref * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-9, atol=1e-12)
    for g, x in zip(grads, xs):
        np.testing.assert_allclose(g.numpy(), x.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_forward_values_match_numpy(fg):
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(3, 4)), rng.uniform(0.5, 2, size=(4,))
    A, B = fg.tensor(a), fg.tensor(b)
    checks = [
        (A + B, a + b), (A * B, a * b), (A / B, a / b), (A ** 2, a ** 2), (B.log(), np.log(b)),
        (A.sum(axis=0), a.sum(axis=0)), (A.mean(), a.mean()), (A.var(axis=1), a.var(axis=1, ddof=1)),
        (A.std(), a.std(ddof=1)), (A.amax(axis=1), a.max(axis=1)), (A.T, a.T),
        (A.argmax(axis=1), a.argmax(axis=1)), (A.argmin(), a.argmin()),
        (A[[0, 2]], a[[0, 2]]), (A > 0, a > 0), (A == A, a == a),
    ]
    for got, want in checks:
        assert got.numpy().dtype == want.dtype or want.dtype.kind == "f"
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert A.argmax().dtype == np.int64 and not A.argmax().requires_grad
    assert (A > 0).dtype == np.bool_


# --- random graphs: the cores agree on long mixed chains ----------------------

UNARY = ["exp_small", "tanh", "sigmoid", "sin", "square", "softplus", "abs_shift", "neg"]
BINARY = ["add", "sub", "mul", "div_safe", "maximum", "broadcast_mul", "matmul_square"]


def random_graph(fg, seed, n_ops=60, dtype=np.float64):
    rng = np.random.default_rng(seed)
    leaves = [fg.tensor(rng.normal(size=(4, 4)).astype(dtype), requires_grad=True)
              for _ in range(3)]
    row = fg.tensor(rng.normal(size=(4,)).astype(dtype), requires_grad=True)
    pool = list(leaves)
    for _ in range(n_ops):
        x = pool[rng.integers(len(pool))]
        if rng.random() < 0.5:
            op = UNARY[rng.integers(len(UNARY))]
            y = {"exp_small": lambda: (x * 0.1).exp(), "tanh": lambda: x.tanh(),
                 "sigmoid": lambda: x.sigmoid(), "sin": lambda: x.sin(),
                 "square": lambda: x * x * 0.5, "softplus": lambda: (x.exp() + 1).log(),
                 "abs_shift": lambda: (x + 0.123).abs(), "neg": lambda: -x}[op]()
        else:
            z = pool[rng.integers(len(pool))]
            op = BINARY[rng.integers(len(BINARY))]
            y = {"add": lambda: x + z, "sub": lambda: x - z, "mul": lambda: x * z,
                 "div_safe": lambda: x / (z * z + 1), "maximum": lambda: fg.maximum(x, z + 0.01),
                 "broadcast_mul": lambda: x * row, "matmul_square": lambda: (x @ z) * 0.25}[op]()
        pool.append(y.tanh() if rng.random() < 0.3 else y)
    loss = sum((t.sum() for t in pool[-8:]), fg.tensor(np.zeros((), dtype)))
    loss.backward()
    return loss, [t.grad for t in leaves + [row]]


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_agree_between_cores(both, seed):
    (lp, gp), (lc, gc) = [random_graph(m, seed) for m in both]
    np.testing.assert_allclose(lc.item(), lp.item(), rtol=1e-12)
    assert any(g is not None for g in gp)
    for a, b in zip(gp, gc):
        assert (a is None) == (b is None)
        if a is None:
            continue            # a leaf the random graph never used
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("seed", range(3))
def test_random_graphs_float32(fg, seed):
    l64, g64 = random_graph(fg, seed)
    l32, g32 = random_graph(fg, seed, dtype=np.float32)
    assert l32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32)
    np.testing.assert_allclose(l32.item(), l64.item(), rtol=1e-4)
    for a, b in zip(g64, g32):
        if a is None:
            assert b is None
            continue
        scale = max(1.0, float(np.abs(a.numpy()).max()))
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=2e-3, atol=2e-3 * scale)


def test_dtype_casts_are_differentiable(fg):
    x = fg.tensor([1.5, -2.0], dtype=np.float64, requires_grad=True)
    y = x.float()
    assert y.dtype == np.float32 and y.grad_fn == "cast"
    (y * fg.tensor([2.0, 3.0], dtype=np.float32)).sum().backward()
    assert x.grad.dtype == np.float64                       # the gradient is cast back
    assert x.grad.numpy().tolist() == [2.0, 3.0]
    z = fg.tensor([1.0], dtype=np.float32, requires_grad=True)
    for converted in (z.double(), z.to(np.float64), z.astype(np.float64)):
        assert converted.dtype == np.float64
        converted.sum().backward()
    assert z.grad.dtype == np.float32 and z.grad.item() == 3.0


def test_op_codes_of_the_compiled_core_match_the_table(both):
    import importlib
    ops = importlib.import_module(both[1].__name__ + "._ops")
    assert both[1]._core_module.op_codes() == ops.CODES


# --- custom Functions ----------------------------------------------------

def test_custom_function(fg):
    class Cube(fg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved_tensors
            return 3 * x ** 2 * grad_out

    x = fg.tensor([1.0, -2.0, 0.5], dtype=np.float64, requires_grad=True)
    y = Cube.apply(x)
    assert y.grad_fn == "Cube"
    (y * 2).sum().backward()
    np.testing.assert_allclose(y.numpy(), [1.0, -8.0, 0.125])
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 24.0, 1.5])


def test_linear_and_cross_entropy_core_ops(fg):
    core = fg._core_module
    rng = np.random.default_rng(5)
    x, w, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
    target = np.array([0, 3, 1, 1, 2])
    f = lambda x_, w_, b_: core.cross_entropy(core.linear(x_, w_, b_), target)
    out, grads, weights = run_fastgrad(fg, f, [x, w, b])
    for analytic, numeric in zip(grads, numeric_grads(fg, f, [x, w, b], weights)):
        np.testing.assert_allclose(analytic.numpy(), numeric, rtol=1e-5, atol=1e-8)
    with pytest.raises(IndexError, match="target 7"):
        core.cross_entropy(fg.tensor(x @ w.T), np.array([0, 7, 1, 1, 2]))
    with pytest.raises(ValueError, match="linear"):
        core.linear(fg.tensor(x), fg.tensor(rng.normal(size=(4, 2))))
