"""NaN, infinities and signed zeros through every differentiable op, against PyTorch.

Each case feeds an op inputs built from {nan, inf, -inf, 0, -0.0} and a few
ordinary values (binary ops: every pair), then compares the forward values and
the gradients (upstream gradient of ones) with PyTorch's: NaN positions and
infinities exactly, finite values to a tight tolerance, and the sign of zero
in forward values.  Both cores run every case, so they also agree with each
other.  Without PyTorch the expected results come from
tests/data/special_values.json, written by tools/make_special_values.py.

The large cases repeat a small case's inputs past the compiled core's size
thresholds (NumPy ufuncs from 256 elements, overwriting a temporary from 1024,
BLAS for products from 8192 multiply-adds), so every code path meets the same
values; their expected results are the small case's, repeated.
"""
import json
import math
import os

import numpy as np
import pytest

# the inputs are meant to hit invalid operations: NumPy's and PyTorch's notes about them are noise
pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")]

NAN, INF = math.nan, math.inf
SPECIAL = [NAN, INF, -INF, 0.0, -0.0, 1.5, -0.5, 2.0]
DTYPES = ("float64", "float32")
TABLE = os.path.join(os.path.dirname(__file__), "data", "special_values.json")
BIG = 130                       # 8 * 130 = 1040 elements: past both elementwise thresholds

PAIR_A = np.repeat(SPECIAL, len(SPECIAL))      # every (a, b) pair once
PAIR_B = np.tile(SPECIAL, len(SPECIAL))


def _ce(reduction):
    target = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    return (lambda F, z: F.cross_entropy(z, target, reduction=reduction),
            lambda F, z: F.cross_entropy(z, _torch().as_tensor(target), reduction=reduction))


def _torch():
    import torch
    return torch


LOGITS = np.array([[NAN, 0.0, 1.0], [INF, 0.0, 1.0], [-INF, 0.0, 1.0], [0.0, -0.0, 0.0],
                   [INF, INF, 0.0], [-INF, -INF, -INF], [-INF, 1.0, 2.0], [1.0, 2.0, 3.0],
                   [INF, -INF, 0.0]])
ROWS = np.array([[a, b, c] for a in SPECIAL[:6] for b in SPECIAL[:6] for c in (1.5, NAN, -0.0)])


def _matrix(n, k, seed):
    """Exact small values (sums are exact in either order) with special entries."""
    m = ((np.arange(n * k).reshape(n, k) * (7 + seed)) % 9 - 4) * 0.5
    m[0, 0] = NAN
    m[1 % n, 1 % k] = INF
    m[2 % n, :] = 0.0
    m[:, (3 + seed) % k] = -INF if seed else m[:, (3 + seed) % k]
    return m


def _rows(fn):
    """fastgrad's max/min over an axis: each slice as torch's full max() of that slice."""
    def run(t, x):
        return t.stack([fn(t, r) for r in x.unbind(0)])
    return run


# (name, fastgrad f(fg, *tensors), torch t(torch, *tensors), inputs, tiled)
# tiled: the case is elementwise, so a large copy of it runs too.
def _cases():
    v = np.array(SPECIAL)
    c = []

    def unary(name, f, t, x=v, tiled=True):
        c.append((name, f, t, [x], tiled))

    def binary(name, f, t):
        c.append((name, f, t, [PAIR_A, PAIR_B], True))
        for k, s in enumerate(SPECIAL):       # one operand a Python number or a 0-d tensor
            c.append(("%s tensor-number %d" % (name, k), lambda fg, a, s=s: f(fg, a, s),
                      lambda tc, a, s=s: t(tc, a, s), [v], True))
            c.append(("%s number-tensor %d" % (name, k), lambda fg, b, s=s: f(fg, s, b),
                      lambda tc, b, s=s: t(tc, s, b), [v], True))
            c.append(("%s tensor-0d %d" % (name, k), f, t, [v, np.array(s)], True))
            c.append(("%s 0d-tensor %d" % (name, k), f, t, [np.array(s), v], True))

    for name, fn in [("neg", lambda m, x: -x), ("exp", lambda m, x: m.exp(x)),
                     ("log", lambda m, x: m.log(x)), ("sqrt", lambda m, x: m.sqrt(x)),
                     ("abs", lambda m, x: m.abs(x)), ("sin", lambda m, x: m.sin(x)),
                     ("cos", lambda m, x: m.cos(x)), ("tanh", lambda m, x: m.tanh(x)),
                     ("sigmoid", lambda m, x: m.sigmoid(x)), ("relu", lambda m, x: m.relu(x))]:
        unary(name, fn, fn)
    unary("leaky_relu", lambda fg, x: fg.nn.functional.leaky_relu(x, 0.1),
          lambda tc, x: tc.nn.functional.leaky_relu(x, 0.1))
    unary("softplus", lambda fg, x: x.softplus(), lambda tc, x: tc.nn.functional.softplus(x))
    unary("softplus wide", lambda fg, x: x.softplus(), lambda tc, x: tc.nn.functional.softplus(x),
          np.array([-1000.0, -40.0, -20.0, 20.0, 40.0, 1000.0, 1e-8, -1e-8]))
    for lo, hi in [(-1.0, 1.0), (0.0, None), (None, 0.0), (1.0, -1.0), (NAN, 1.0), (-1.0, NAN),
                   (-INF, INF), (0.0, 0.0), (-0.0, None)]:
        unary("clip %r %r" % (lo, hi), lambda m, x, lo=lo, hi=hi: m.clip(x, lo, hi),
              lambda tc, x, lo=lo, hi=hi: tc.clamp(x, lo, hi))
    for name in ("round", "floor", "ceil", "sign"):       # zero gradients, as torch
        unary(name, lambda m, x, name=name: getattr(m, name)(x),
              lambda m, x, name=name: getattr(m, name)(x))
    unary("cumsum", lambda m, x: m.cumsum(x, 0), lambda m, x: m.cumsum(x, 0), tiled=False)
    unary("flip", lambda m, x: m.flip(x, 0), lambda m, x: m.flip(x, (0,)))
    for e in (2.0, 3, 0.5, 0.0, -1.0, -2.0, NAN, INF):
        unary("pow x**%r" % (e,), lambda m, x, e=e: x ** e, lambda m, x, e=e: x ** e)
    for base in (2.0, 0.0, -0.0, 0.5):
        unary("pow %r**x" % (base,), lambda m, x, b=base: b ** x, lambda m, x, b=base: b ** x)

    binary("add", lambda m, a, b: a + b, lambda m, a, b: a + b)
    binary("sub", lambda m, a, b: a - b, lambda m, a, b: a - b)
    binary("mul", lambda m, a, b: a * b, lambda m, a, b: a * b)
    binary("div", lambda m, a, b: a / b, lambda m, a, b: a / b)
    binary("pow", lambda m, a, b: a ** b, lambda m, a, b: a ** b)
    binary("maximum", lambda fg, a, b: fg.maximum(a, b), lambda tc, a, b: tc.maximum(
        *[x if isinstance(x, tc.Tensor) else tc.tensor(x, dtype=_other(a, b).dtype)
          for x in (a, b)]))
    binary("minimum", lambda fg, a, b: fg.minimum(a, b), lambda tc, a, b: tc.minimum(
        *[x if isinstance(x, tc.Tensor) else tc.tensor(x, dtype=_other(a, b).dtype)
          for x in (a, b)]))
    for loss in ("mse_loss", "l1_loss"):
        c.append((loss, lambda m, a, b, loss=loss: getattr(m.nn.functional, loss)(
            a, b, reduction="none"), lambda m, a, b, loss=loss: getattr(m.nn.functional, loss)(
            a, b, reduction="none"), [PAIR_A, PAIR_B], True))
    c.append(("binary_cross_entropy_with_logits",
              lambda m, z: m.nn.functional.binary_cross_entropy_with_logits(
                  z, np.tile([0.0, 0.25, 1.0], 8)[:len(SPECIAL) * 3], reduction="none"),
              lambda m, z: m.nn.functional.binary_cross_entropy_with_logits(
                  z, m.tensor(np.tile([0.0, 0.25, 1.0], 8)[:len(SPECIAL) * 3], dtype=z.dtype),
                  reduction="none"), [np.repeat(SPECIAL, 3)], False))
    c.append(("where", lambda fg, a, b: fg.where(a.data > 0, a, b),
              lambda tc, a, b: tc.where(a.detach() > 0, a, b), [PAIR_A, PAIR_B], True))

    # reductions: of everything (0-d result) and along the last axis of ROWS
    reductions = [
        ("sum", lambda m, x, **k: m.sum(x, **k), lambda m, x, **k: m.sum(x, **k)),
        ("mean", lambda m, x, **k: m.mean(x, **k), lambda m, x, **k: m.mean(x, **k)),
        ("var", lambda m, x, **k: m.var(x, **k), lambda m, x, **k: m.var(x, **k)),
        ("std", lambda m, x, **k: m.std(x, **k), lambda m, x, **k: m.std(x, **k)),
        ("logsumexp", lambda m, x, **k: m.logsumexp(x, **k),
         lambda m, x, **k: m.logsumexp(x, **(k or {"dim": 0}))),
        ("norm", lambda m, x, **k: m.norm(x, **k), lambda m, x, **k: m.norm(x, **k)),
    ]
    vectors = [v, np.array([1.5, 1.5, -0.5]), np.array([0.0, -0.0]), np.array([NAN, NAN, 1.0]),
               np.array([INF, -INF]), np.array([INF, INF, 1.0]), np.array([-INF, -INF]),
               np.array([2.0, 2.0, 2.0, 2.0]), np.array([-0.0, -0.0]), np.array([1.0])]
    for name, f, t in reductions:
        for i, x in enumerate(vectors):
            c.append(("%s all %d" % (name, i), f, t, [x], False))
        c.append(("%s rows" % name, lambda m, x, f=f: f(m, x, dim=1),
                  lambda m, x, t=t: t(m, x, dim=1), [ROWS], False))
    for name in ("var", "std"):
        c.append(("%s columns" % name, lambda m, x, name=name: getattr(m, name)(x, dim=0),
                  lambda m, x, name=name: getattr(m, name)(x, dim=0), [ROWS], False))
    c.append(("layer_norm rows", lambda m, x: m.nn.functional.layer_norm(x, x.shape[1:]),
              lambda m, x: m.nn.functional.layer_norm(x, x.shape[1:]), [ROWS], False))
    c.append(("layer_norm all", lambda m, x: m.nn.functional.layer_norm(x, x.shape),
              lambda m, x: m.nn.functional.layer_norm(x, x.shape), [ROWS], False))
    for i, x in enumerate(vectors):
        c.append(("layer_norm vector %d" % i, lambda m, x: m.nn.functional.layer_norm(x, x.shape),
                  lambda m, x: m.nn.functional.layer_norm(x, x.shape), [x], False))
    for name in ("max", "min"):
        f = (lambda m, x, name=name: getattr(m, name)(x))
        for i, x in enumerate(vectors):
            c.append(("%s all %d" % (name, i), f, f, [x], False))
        c.append(("%s rows" % name, lambda fg, x, name=name: getattr(fg, "a" + name)(x, axis=1),
                  _rows(lambda tc, r, name=name: getattr(tc, name)(r)), [ROWS], False))
    for name in ("softmax", "log_softmax"):
        c.append((name, lambda fg, x, name=name: getattr(fg.nn.functional, name)(x, dim=1),
                  lambda tc, x, name=name: getattr(tc, name)(x, dim=1), [ROWS], False))
        # down the columns (the compiled core's other kernel) and of each vector
        c.append(("%s columns" % name, lambda fg, x, name=name: getattr(fg, name)(x, dim=0),
                  lambda tc, x, name=name: getattr(tc, name)(x, dim=0), [ROWS.T.copy()], False))
        for i, x in enumerate(vectors):
            c.append(("%s vector %d" % (name, i),
                      lambda fg, x, name=name: getattr(x, name)(-1),
                      lambda tc, x, name=name: getattr(tc, name)(x, dim=-1), [x], False))

    # matrix products: C loops (small) and BLAS (from 8192 multiply-adds)
    for n, k, m in [(3, 4, 5), (16, 32, 16)]:
        a, b = _matrix(n, k, 0), _matrix(k, m, 1)
        c.append(("matmul %dx%dx%d" % (n, k, m), lambda fg, a, b: a @ b,
                  lambda tc, a, b: a @ b, [a, b], False))
        c.append(("linear %dx%dx%d" % (n, k, m),
                  lambda fg, x, w, bias: fg.nn.functional.linear(x, w, bias),
                  lambda tc, x, w, bias: tc.nn.functional.linear(x, w, bias),
                  [a, b.T.copy(), np.array(SPECIAL * 4)[:m]], False))
    for reduction in ("none", "mean", "sum"):
        f, t = _ce(reduction)
        c.append(("cross_entropy %s" % reduction, lambda fg, z, f=f: f(fg.nn.functional, z),
                  lambda tc, z, t=t: t(tc.nn.functional, z), [LOGITS], False))
    return c


def _other(a, b):
    return a if hasattr(a, "dtype") else b


CASES = _cases()
NAMES = [case[0] for case in CASES]
assert len(set(NAMES)) == len(NAMES)

# Known differences from PyTorch, each needing a change outside the op rules;
# strict: the test fails as soon as the difference is gone.
KNOWN = {}


def _params(cases):
    return [pytest.param(case, id=case[0], marks=[pytest.mark.xfail(
        strict=True, reason=KNOWN[case[0]])] if case[0] in KNOWN else [])
        for case in cases]


def torch_results(case, dtype):
    """PyTorch's forward values and input gradients for one case, as float64 arrays."""
    torch = _torch()
    name, _, t, inputs, _ = case
    xs = [torch.tensor(x, dtype=getattr(torch, dtype), requires_grad=True) for x in inputs]
    y = t(torch, *xs)
    y.backward(torch.ones_like(y))
    return ([y.detach().numpy().astype(np.float64)]
            + [x.grad.numpy().astype(np.float64) for x in xs])


def _expected(case, dtype):
    """Torch's results when it is installed, else the stored table's."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return _table()["%s|%s" % (case[0], dtype)]
    return torch_results(case, dtype)


_TABLE = []


def _table():
    if not _TABLE:
        with open(TABLE) as f:
            raw = json.load(f)
        # read in the entry's dtype: the shortest decimal form is exact there
        _TABLE.append({key: [np.array(flat, dtype=key.split("|")[1]).astype(np.float64)
                             .reshape(shape) for shape, flat in arrays]
                       for key, arrays in raw.items()})
    return _TABLE[0]


def _run(fg, case, dtype, reps=1, temp=False):
    name, f, _, inputs, _ = case
    # a 0-d input stays 0-d: it broadcasts over the repeated other operand
    xs = [fg.tensor(np.tile(x, reps) if reps > 1 and np.ndim(x) else x, dtype=dtype,
                    requires_grad=True) for x in inputs]
    # temp: the op gets a fresh unnamed temporary (x * 1 keeps nan, inf and -0.0)
    y = f(fg, *[x * 1.0 for x in xs]) if temp else f(fg, *xs)
    y.backward(fg.tensor(np.ones(y.shape), dtype=dtype))
    return [y.numpy()] + [x.grad.numpy() if x.grad is not None else np.zeros(x.shape)
                          for x in xs]


def check_same(got, want, dtype, what, signed_zero=True, scaled=False):
    """signed_zero: compare the sign of zeros (True, False, or a mask of where to).
    scaled: the absolute tolerance scales with the largest finite value (for
    gradients, where a sum that cancels to 0 leaves rounding noise)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, "%s: shape %s, expected %s" % (what, got.shape, want.shape)
    bad = np.isnan(got) != np.isnan(want)
    assert not bad.any(), "%s: NaN at %s; got %s, expected %s" % (
        what, np.argwhere(bad)[:5].tolist(), got[bad][:5], want[bad][:5])
    both = ~np.isnan(want)
    inf = np.isinf(want) | np.isinf(got)
    bad = inf & both & (got != want)
    assert not bad.any(), "%s: infinity at %s; got %s, expected %s" % (
        what, np.argwhere(bad)[:5].tolist(), got[bad][:5], want[bad][:5])
    fin = both & ~inf
    rtol, atol = (1e-12, 1e-300) if dtype == "float64" else (2e-6, 1e-30)
    if scaled and fin.any():
        atol = 4 * rtol * max(1.0, float(np.abs(want[fin]).max()))
    bad = fin & ~np.isclose(got, want, rtol=rtol, atol=atol)
    assert not bad.any(), "%s: values at %s; got %s, expected %s" % (
        what, np.argwhere(bad)[:5].tolist(), got[bad][:5], want[bad][:5])
    if signed_zero is not False:
        bad = (want == 0) & (got == 0) & (np.signbit(got) != np.signbit(want)) & signed_zero
        assert not bad.any(), "%s: sign of zero at %s; got %s, expected %s" % (
            what, np.argwhere(bad)[:5].tolist(), got[bad][:5], want[bad][:5])


def _check_case(fg, case, dtype, reps=1, temp=False):
    want = _expected(case, dtype)
    # The sign of a zero value is compared where PyTorch gives the same sign
    # in float32 and float64 (its vectorized maximum(0.0, -0.0) does not).
    other = _expected(case, DTYPES[1 - DTYPES.index(dtype)])[0]
    signs = np.signbit(want[0]) == np.signbit(other)
    if reps > 1:
        # a 0-d input's gradient sums over the repeats
        want = [np.tile(want[0], reps)] + [np.tile(w, reps) if np.ndim(x) else w * reps
                                           for w, x in zip(want[1:], case[3])]
        signs = np.tile(signs, reps)
    got = _run(fg, case, dtype, reps, temp)
    for i, (g, w) in enumerate(zip(got, want)):
        what = "%s %s %s%s" % (case[0], dtype, "value" if i == 0 else "grad %d" % (i - 1),
                               " x%d%s" % (reps, " temp" if temp else "") if reps > 1 else "")
        # a gradient's zero sign depends on how each framework masks it: not compared
        check_same(g, w, dtype, what, signed_zero=signs if i == 0 else False, scaled=i > 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", _params(CASES))
def test_special_values(fg, case, dtype):
    _check_case(fg, case, dtype)


TILED = [case for case in CASES if case[4]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", _params(TILED))
def test_special_values_large(fg, case, dtype):
    """The same values past the size thresholds, from a leaf and from a temporary."""
    reps = BIG if max(np.size(x) for x in case[3]) < 64 else BIG // 8 + 1
    _check_case(fg, case, dtype, reps)
    _check_case(fg, case, dtype, reps, temp=True)


def test_cores_agree(both):
    """The two cores give the same bits on every case (where torch is not needed)."""
    py, cc = both
    for case in CASES:
        for dtype in DTYPES:
            a, b = _run(py, case, dtype), _run(cc, case, dtype)
            for i, (x, y) in enumerate(zip(a, b)):
                check_same(x, y, dtype, "%s %s %d: python vs compiled" % (case[0], dtype, i),
                           signed_zero=(i == 0))


def test_table_matches_torch():
    """The stored table is PyTorch's results (regenerate with tools/make_special_values.py)."""
    pytest.importorskip("torch")
    table = _table()
    assert sorted(table) == sorted("%s|%s" % (case[0], d) for case in CASES for d in DTYPES)
    for case in CASES[::7]:
        for dtype in DTYPES:
            for i, (w, t) in enumerate(zip(table["%s|%s" % (case[0], dtype)],
                                           torch_results(case, dtype))):
                check_same(w, t, dtype, "%s %s %d: table" % (case[0], dtype, i))


# -- the compiled full sum: NumPy's pairwise order in the element type -----------
SUM_SIZES = [0, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 127, 128, 129, 130, 135, 136, 200, 255, 256,
             257, 511, 1000, 1023, 1024, 1025, 4097, 10007, 65537]


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_equals_numpy_bits(fg, dtype):
    rng = np.random.default_rng(7)
    for n in SUM_SIZES:
        x = rng.normal(size=n).astype(dtype) * rng.choice([1e-3, 1.0, 1e4], n).astype(dtype)
        got = fg.tensor(x, requires_grad=True).sum().numpy()
        want = np.sum(x)
        assert got.dtype == want.dtype
        assert got.tobytes() == want.tobytes(), (n, dtype, got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_overflows_as_numpy(fg, dtype):
    big = np.finfo(dtype).max
    for n in (2, 10, 300):
        x = np.full(n, big / 1.5, dtype=dtype)
        assert fg.tensor(x).sum().item() == math.inf
        assert fg.tensor(-x).sum().item() == -math.inf
        assert fg.tensor(x, requires_grad=True).mean().item() == math.inf


def test_replay_recomputes_var_std_softplus(fg):
    """var, std and softplus hold no values of their first call: fg.compile replays them."""
    rng = np.random.default_rng(3)
    x = fg.tensor(rng.normal(size=(4, 5)), requires_grad=True)

    def loss():
        return x.var(1).sum() + x.std().sum() + x.softplus().sum() + x.std(0).sum()

    step = fg.compile(loss)
    step()
    for values in (rng.normal(size=(4, 5)) * 3, np.ones((4, 5))):    # the last: std = 0
        x.data[...] = values
        x.grad = None
        got_loss, got_grad = step(), x.grad.numpy().copy()
        x.grad = None
        want = loss()
        want.backward()
        assert math.isclose(got_loss, want.item(), rel_tol=1e-12)
        np.testing.assert_allclose(got_grad, x.grad.numpy(), rtol=1e-12)
        assert np.isfinite(got_grad).all()
