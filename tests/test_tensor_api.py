"""PyTorch's tensor surface: devices, dtypes, promotion and the tensor ops, against torch.

Every differentiable op is checked three ways on both cores: values against
torch in float64 (to 1e-9), gradients against torch, and gradients against
central finite differences.  Cases are one line each in tables swept by the
same helper.
"""
import math
import operator

import numpy as np
import pytest

TOL = 1e-9


def _torch():
    return pytest.importorskip("torch")


def _parts(out):
    """The tensors an op returns, as a list (a tuple, a named tuple or one tensor)."""
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _float_parts(parts):
    return [p for p in parts if np.dtype(_np_dtype(p)).kind == "f"]


def _np_dtype(p):
    return p.dtype if isinstance(p.dtype, np.dtype) else p.detach().numpy().dtype


def _numpy(p):
    return p.detach().numpy() if hasattr(p, "detach") else np.asarray(p)


def check_op(fg, ours, theirs, arrays, seed=0, fd=True):
    """ours(fg, *tensors) against theirs(torch, *tensors): values, gradients, finite differences."""
    torch = _torch()
    rng = np.random.default_rng(seed)
    xs = [fg.tensor(a, dtype=np.float64, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    got, want = _parts(ours(fg, *xs)), _parts(theirs(torch, *ts))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert tuple(g.shape) == tuple(w.shape)
        assert g.dtype == _numpy(w).dtype, (g.dtype, w.dtype)
        np.testing.assert_allclose(g.numpy(), _numpy(w), rtol=TOL, atol=TOL)
    fgot = [g for g in got if g.dtype.kind == "f"]
    fwant = [w for w in want if w.dtype.is_floating_point]
    if not fgot or not any(w.requires_grad for w in fwant):
        return
    ups = [rng.normal(size=g.shape) for g in fgot]
    loss = sum((g * fg.tensor(u)).sum() for g, u in zip(fgot, ups))
    tloss = sum((w * torch.tensor(u)).sum() for w, u in zip(fwant, ups))
    loss.backward()
    tloss.backward()
    for x, t in zip(xs, ts):
        want_grad = np.zeros(x.shape) if t.grad is None else t.grad.numpy()
        have = np.zeros(x.shape) if x.grad is None else x.grad.numpy()
        np.testing.assert_allclose(have, want_grad, rtol=TOL, atol=TOL)
    if not fd:
        return

    def scalar(values):
        with fg.no_grad():
            outs = [g for g in _parts(ours(fg, *[fg.tensor(v, dtype=np.float64)
                                                 for v in values])) if g.dtype.kind == "f"]
            return sum(float((o.numpy() * u).sum()) for o, u in zip(outs, ups))

    h = 1e-6
    for i, a in enumerate(arrays):
        grad = np.zeros(np.shape(a))
        for j in np.ndindex(*np.shape(a)):
            up, down = [np.array(v, dtype=np.float64) for v in arrays], \
                [np.array(v, dtype=np.float64) for v in arrays]
            up[i][j] += h
            down[i][j] -= h
            grad[j] = (scalar(up) - scalar(down)) / (2 * h)
        have = np.zeros(np.shape(a)) if xs[i].grad is None else xs[i].grad.numpy()
        np.testing.assert_allclose(have, grad, rtol=1e-5, atol=1e-6)


def distinct(*shape, seed=0):
    """Values with no ties (sort, topk, max have one answer and one gradient)."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) * 0.37 - 1.1


def normal(*shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape)


I = np.array([[2, 0, 1], [1, 1, 0]])            # an int64 index for gather / scatter
MASK = np.array([[True, False, True], [False, False, True]])

# (id, ours(fg, *xs), theirs(torch, *ts), inputs)
DIFFERENTIABLE = [
    ("pow", lambda m, a: m.pow(a, 3), lambda t, a: t.pow(a, 3), [normal(2, 3)]),
    ("pow method", lambda m, a, b: a.abs().pow(b), lambda t, a, b: a.abs().pow(b),
     [normal(2, 3), normal(2, 3)]),
    ("mm", lambda m, a, b: m.mm(a, b), lambda t, a, b: t.mm(a, b), [normal(2, 3), normal(3, 4)]),
    ("bmm", lambda m, a, b: a.bmm(b), lambda t, a, b: a.bmm(b), [normal(2, 2, 3), normal(2, 3, 2)]),
    ("t", lambda m, a: a.t(), lambda t, a: a.t(), [normal(2, 3)]),
    ("t 1d", lambda m, a: m.t(a), lambda t, a: t.t(a), [normal(3)]),
    ("gather 0", lambda m, a: a.gather(0, m.tensor(I[:, :2] % 2)),
     lambda t, a: a.gather(0, t.tensor(I[:, :2] % 2)), [normal(2, 3)]),
    ("gather 1", lambda m, a: m.gather(a, 1, m.tensor(I)), lambda t, a: t.gather(a, 1, t.tensor(I)),
     [normal(2, 4)]),
    ("gather repeats", lambda m, a: a.gather(-1, m.tensor([[0, 0, 0]])),
     lambda t, a: a.gather(-1, t.tensor([[0, 0, 0]])), [normal(2, 2)]),
    ("scatter", lambda m, a, s: a.scatter(1, m.tensor([[2, 0], [1, 0]]), s),
     lambda t, a, s: a.scatter(1, t.tensor([[2, 0], [1, 0]]), s), [normal(2, 3), normal(2, 2)]),
    ("scatter value", lambda m, a: m.scatter(a, 0, m.tensor([[1, 0, 1]]), value=2.5),
     lambda t, a: t.scatter(a, 0, t.tensor([[1, 0, 1]]), value=2.5), [normal(2, 3)]),
    ("scatter_add", lambda m, a, s: a.scatter_add(1, m.tensor(I), s),
     lambda t, a, s: a.scatter_add(1, t.tensor(I), s), [normal(2, 3), normal(2, 3)]),
    ("scatter_add 0", lambda m, a, s: m.scatter_add(a, 0, m.tensor([[1, 1, 0]]), s),
     lambda t, a, s: t.scatter_add(a, 0, t.tensor([[1, 1, 0]]), s), [normal(3, 3), normal(1, 3)]),
    ("index_select", lambda m, a: a.index_select(1, m.tensor([2, 0, 2])),
     lambda t, a: a.index_select(1, t.tensor([2, 0, 2])), [normal(2, 3)]),
    ("index_select 0", lambda m, a: m.index_select(a, 0, m.tensor([1])),
     lambda t, a: t.index_select(a, 0, t.tensor([1])), [normal(2, 3)]),
    ("masked_fill", lambda m, a: a.masked_fill(m.tensor(MASK), -1.5),
     lambda t, a: a.masked_fill(t.tensor(MASK), -1.5), [normal(2, 3)]),
    ("masked_fill bcast", lambda m, a: m.masked_fill(a, m.tensor([True, False, True]), 0.0),
     lambda t, a: t.masked_fill(a, t.tensor([True, False, True]), 0.0), [normal(2, 3)]),
    ("topk", lambda m, a: a.topk(2), lambda t, a: a.topk(2), [distinct(3, 4)]),
    ("topk smallest dim0", lambda m, a: m.topk(a, 2, dim=0, largest=False),
     lambda t, a: t.topk(a, 2, dim=0, largest=False), [distinct(3, 4)]),
    ("sort", lambda m, a: a.sort(), lambda t, a: a.sort(), [distinct(3, 4)]),
    ("sort desc 0", lambda m, a: m.sort(a, dim=0, descending=True),
     lambda t, a: t.sort(a, dim=0, descending=True), [distinct(3, 4)]),
    ("sort ties stable", lambda m, a: a.sort(stable=True, descending=True),
     lambda t, a: a.sort(stable=True, descending=True), [np.array([1.0, 2, 1, 2, 0])], False),
    ("max dim", lambda m, a: a.max(1), lambda t, a: a.max(1), [distinct(3, 4)]),
    ("max dim keepdim", lambda m, a: m.max(a, dim=0, keepdim=True),
     lambda t, a: t.max(a, dim=0, keepdim=True), [distinct(3, 4)]),
    ("max axis=", lambda m, a: m.max(a, axis=-1), lambda t, a: t.max(a, dim=-1), [distinct(2, 5)]),
    ("min dim", lambda m, a: a.min(dim=1), lambda t, a: a.min(dim=1), [distinct(3, 4)]),
    ("max ties", lambda m, a: a.max(1), lambda t, a: a.max(1), [np.array([[1.0, 3, 3], [2, 2, 0]])],
     False),            # ties: no finite differences, the gradient goes to the index (torch)
    ("max all", lambda m, a: a.max(), lambda t, a: a.max(), [distinct(3, 4)]),
    ("max other", lambda m, a, b: a.max(b), lambda t, a, b: a.max(b), [distinct(3), normal(3)]),
    ("amax axes", lambda m, a: a.amax((0, 2)), lambda t, a: a.amax((0, 2)), [distinct(2, 3, 2)]),
    ("amin keepdim", lambda m, a: m.amin(a, 1, keepdim=True),
     lambda t, a: t.amin(a, 1, keepdim=True), [distinct(2, 3)]),
    ("cumsum", lambda m, a: a.cumsum(1), lambda t, a: a.cumsum(1), [normal(2, 4)]),
    ("cumsum 0", lambda m, a: m.cumsum(a, dim=0), lambda t, a: t.cumsum(a, dim=0), [normal(3, 2)]),
    ("cumsum 1d", lambda m, a: a.cumsum(-1), lambda t, a: a.cumsum(-1), [normal(5)]),
    ("tril", lambda m, a: a.tril(), lambda t, a: a.tril(), [normal(3, 4)]),
    ("tril -1", lambda m, a: m.tril(a, -1), lambda t, a: t.tril(a, -1), [normal(2, 3, 3)]),
    ("triu", lambda m, a: a.triu(), lambda t, a: a.triu(), [normal(4, 3)]),
    ("triu 1", lambda m, a: m.triu(a, diagonal=1), lambda t, a: t.triu(a, diagonal=1),
     [normal(3, 3)]),
    ("roll", lambda m, a: a.roll(1, 1), lambda t, a: a.roll(1, 1), [normal(2, 3)]),
    ("roll flat", lambda m, a: m.roll(a, -2), lambda t, a: t.roll(a, -2), [normal(2, 3)]),
    ("roll two", lambda m, a: a.roll((1, -1), (0, 1)), lambda t, a: a.roll((1, -1), (0, 1)),
     [normal(3, 3)]),
    ("flip", lambda m, a: a.flip(0), lambda t, a: a.flip(0), [normal(2, 3)]),
    ("flip two", lambda m, a: m.flip(a, (0, -1)), lambda t, a: t.flip(a, (0, -1)), [normal(2, 3)]),
    ("repeat", lambda m, a: a.repeat(2, 1), lambda t, a: a.repeat(2, 1), [normal(2, 3)]),
    ("repeat more dims", lambda m, a: a.repeat(2, 1, 3), lambda t, a: a.repeat(2, 1, 3),
     [normal(2, 2)]),
    ("split", lambda m, a: a.split(2, 1), lambda t, a: a.split(2, 1), [normal(2, 5)]),
    ("split sizes", lambda m, a: m.split(a, [1, 2], 0), lambda t, a: t.split(a, [1, 2], 0),
     [normal(3, 2)]),
    ("chunk", lambda m, a: a.chunk(3, 1), lambda t, a: a.chunk(3, 1), [normal(2, 5)]),
    ("chunk fewer", lambda m, a: m.chunk(a, 4, 0), lambda t, a: t.chunk(a, 4, 0), [normal(3, 2)]),
    ("contiguous", lambda m, a: a.T.contiguous() * 2, lambda t, a: a.T.contiguous() * 2,
     [normal(2, 3)]),
    ("einsum matmul", lambda m, a, b: m.einsum("ij,jk->ik", a, b),
     lambda t, a, b: t.einsum("ij,jk->ik", a, b), [normal(2, 3), normal(3, 2)]),
    ("einsum implicit", lambda m, a, b: m.einsum("ij,kj", a, b),
     lambda t, a, b: t.einsum("ij,kj", a, b), [normal(2, 3), normal(4, 3)]),
    ("einsum trace", lambda m, a: m.einsum("ii", a), lambda t, a: t.einsum("ii", a),
     [normal(3, 3)]),
    ("einsum diagonal", lambda m, a: m.einsum("ii->i", a), lambda t, a: t.einsum("ii->i", a),
     [normal(3, 3)]),
    ("einsum sum out", lambda m, a, b: m.einsum("ij,j->", a, b),
     lambda t, a, b: t.einsum("ij,j->", a, b), [normal(2, 3), normal(3)]),
    ("einsum outer", lambda m, a, b: m.einsum("i,j->ij", a, b),
     lambda t, a, b: t.einsum("i,j->ij", a, b), [normal(2), normal(3)]),
    ("einsum ellipsis", lambda m, a, b: m.einsum("...ij,...jk->...ik", a, b),
     lambda t, a, b: t.einsum("...ij,...jk->...ik", a, b), [normal(2, 2, 3), normal(2, 3, 2)]),
    ("einsum list", lambda m, a, b, c: m.einsum("ab,bc,c->a", [a, b, c]),
     lambda t, a, b, c: t.einsum("ab,bc,c->a", [a, b, c]), [normal(2, 3), normal(3, 2), normal(2)]),
    ("einsum transpose", lambda m, a: m.einsum("ijk->kji", a), lambda t, a: t.einsum("ijk->kji", a),
     [normal(2, 3, 2)]),
    ("norm", lambda m, a: a.norm(), lambda t, a: a.norm(), [normal(2, 3)]),
    ("norm dim", lambda m, a: m.norm(a, dim=1), lambda t, a: t.norm(a, dim=1), [normal(2, 3)]),
    ("norm p1", lambda m, a: a.norm(1, dim=0, keepdim=True),
     lambda t, a: a.norm(1, dim=0, keepdim=True), [normal(2, 3)]),
    ("norm p3", lambda m, a: a.norm(3), lambda t, a: a.norm(3), [normal(2, 3)]),
    ("norm inf", lambda m, a: a.norm(math.inf, dim=1), lambda t, a: a.norm(math.inf, dim=1),
     [distinct(2, 3)]),
    ("norm zero row", lambda m, a: a.norm(dim=1), lambda t, a: a.norm(dim=1),
     [np.array([[0.0, 0.0], [3.0, -4.0]])]),
    ("clamp tensors", lambda m, a, lo: a.clamp(min=lo, max=lo + 1),
     lambda t, a, lo: a.clamp(min=lo, max=lo + 1), [normal(2, 3), distinct(2, 3) * 0.3]),
    ("clamp numbers", lambda m, a: m.clamp(a, -0.5, 0.5), lambda t, a: t.clamp(a, -0.5, 0.5),
     [normal(2, 3)]),
    ("pad constant", lambda m, a: m.pad(a, (1, 2)), lambda t, a: t.nn.functional.pad(a, (1, 2)),
     [normal(2, 3)]),
    ("pad 2d value", lambda m, a: m.pad(a, (1, 0, 0, 2), value=1.5),
     lambda t, a: t.nn.functional.pad(a, (1, 0, 0, 2), value=1.5), [normal(2, 3)]),
    ("pad crop", lambda m, a: m.pad(a, (-1, 1)), lambda t, a: t.nn.functional.pad(a, (-1, 1)),
     [normal(2, 3)]),
    ("pad reflect", lambda m, a: m.pad(a, (2, 1), mode="reflect"),
     lambda t, a: t.nn.functional.pad(a, (2, 1), mode="reflect"), [normal(2, 4)]),
    ("pad replicate", lambda m, a: m.pad(a, (1, 2, 2, 0), mode="replicate"),
     lambda t, a: t.nn.functional.pad(a, (1, 2, 2, 0), mode="replicate"), [normal(1, 2, 3)]),
    ("pad circular", lambda m, a: m.pad(a, (1, 2), mode="circular"),
     lambda t, a: t.nn.functional.pad(a, (1, 2), mode="circular"), [normal(1, 2, 3)]),
    ("abs builtin", lambda m, a: abs(a), lambda t, a: abs(a), [normal(2, 3)]),
]

ZERO_GRAD = [
    ("round", lambda m, a: a.round(), lambda t, a: a.round()),
    ("round decimals", lambda m, a: m.round(a, decimals=1), lambda t, a: t.round(a, decimals=1)),
    ("floor", lambda m, a: a.floor(), lambda t, a: a.floor()),
    ("ceil", lambda m, a: m.ceil(a), lambda t, a: t.ceil(a)),
    ("sign", lambda m, a: a.sign(), lambda t, a: a.sign()),
]


@pytest.mark.parametrize("case", DIFFERENTIABLE, ids=[c[0] for c in DIFFERENTIABLE])
def test_differentiable_op_matches_torch(fg, case):
    name, ours, theirs, inputs, *fd = case
    check_op(fg, ours, theirs, inputs, fd=fd[0] if fd else True)


@pytest.mark.parametrize("case", ZERO_GRAD, ids=[c[0] for c in ZERO_GRAD])
def test_zero_gradient_ops(fg, case):
    _, ours, theirs = case
    values = np.array([[-2.5, -0.5, 0.5], [1.5, 2.25, 0.0], [-0.0, 3.7, -1.26]])
    check_op(fg, ours, theirs, [values], fd=False)
    x = fg.tensor(values, dtype=np.float64, requires_grad=True)
    ours(fg, x).sum().backward()
    assert np.array_equal(x.grad.numpy(), np.zeros((3, 3)))


def test_special_values_of_new_elementwise_ops(fg):
    torch = _torch()
    v = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 2.5, -3.5, 1e300])
    x, t = fg.tensor(v, dtype=np.float64), torch.tensor(v)
    for name in ("round", "floor", "ceil", "sign", "isnan", "isinf", "isfinite"):
        np.testing.assert_array_equal(getattr(x, name)().numpy(), getattr(t, name)().numpy(),
                                      err_msg=name)
    for got, want in ((x.cumsum(0), t.cumsum(0)), (x.sort().values, t.sort().values),
                      (x.sort(descending=True).values, t.sort(descending=True).values),
                      (x.max(0).values, t.max(0).values), (x.max(0).indices, t.max(0).indices),
                      (x.norm(), t.norm())):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_int_inputs_keep_torch_dtypes(fg):
    torch = _torch()
    a = np.array([[3, -1, 2], [0, 5, -4]])
    x, t = fg.tensor(a), torch.tensor(a)
    for ours, theirs in (
            (x.cumsum(1), t.cumsum(1)), (x.flip(1), t.flip(1)), (x.tril(), t.tril()),
            (x.repeat(1, 2), t.repeat(1, 2)), (x.roll(1), t.roll(1)),
            (x.gather(1, fg.tensor(I)), t.gather(1, torch.tensor(I))),
            (x.masked_fill(fg.tensor(MASK), 7), t.masked_fill(torch.tensor(MASK), 7)),
            (x.sort(1).values, t.sort(1).values), (x.max(1).values, t.max(1).values),
            (x.abs(), t.abs()), (x.sign(), t.sign()), (x.floor(), t.floor())):
        assert ours.dtype == theirs.numpy().dtype
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


# ---------------------------------------------------------------------------
# Non-differentiable ops
# ---------------------------------------------------------------------------
def test_comparisons_and_tests_as_functions_and_methods(fg):
    torch = _torch()
    a, b = normal(3, 4), normal(3, 4, seed=2)
    a[0, 0] = b[0, 0]
    x, y, ta, tb = fg.tensor(a), fg.tensor(b), torch.tensor(a), torch.tensor(b)
    for name in ("eq", "ne", "lt", "le", "gt", "ge"):
        for ours, theirs in ((getattr(fg, name)(x, y), getattr(torch, name)(ta, tb)),
                             (getattr(x, name)(0.5), getattr(ta, name)(0.5))):
            assert ours.dtype == np.bool_ and not ours.requires_grad
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=name)
    z = fg.tensor([[0.0, 1.0], [0.0, 0.0]])
    tz = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    for dim in (None, 0, 1):
        for name in ("any", "all"):
            ours = getattr(z, name)() if dim is None else getattr(fg, name)(z, dim=dim)
            theirs = getattr(tz, name)() if dim is None else getattr(torch, name)(tz, dim=dim)
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert z.any(1, keepdim=True).shape == (2, 1)
    np.testing.assert_array_equal(z.nonzero().numpy(), tz.nonzero().numpy())
    for ours, theirs in zip(fg.nonzero(z, as_tuple=True), torch.nonzero(tz, as_tuple=True)):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_argsort_matches_torch(fg):
    torch = _torch()
    a = np.array([[3.0, 1, 2, 1, np.nan], [0, 0, -1, 5, 2]])
    for kw in ({}, {"descending": True}, {"dim": 0}, {"dim": 0, "descending": True}):
        ours = fg.argsort(fg.tensor(a), stable=True, **kw)
        theirs = torch.argsort(torch.tensor(a), stable=True, **kw)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=str(kw))
        assert ours.dtype == np.int64


def test_one_hot_matches_torch(fg):
    torch = _torch()
    for labels, n in (([0, 2, 1], -1), ([[1], [0]], 4), ([], 3)):
        ours = fg.one_hot(fg.tensor(labels, dtype=np.int64), n)
        theirs = torch.nn.functional.one_hot(torch.tensor(labels, dtype=torch.int64), n)
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_random_factories_and_in_place_fills(fg):
    fg.manual_seed(3)
    a = fg.randperm(6)
    assert a.dtype == np.int64 and sorted(a.tolist()) == list(range(6))
    x = fg.ones(2, 3, dtype=np.float64)
    for made in (fg.rand_like(x), fg.randn_like(x), fg.randn_like(x, dtype=np.float32)):
        assert made.shape == (2, 3) and not made.requires_grad
    assert fg.rand_like(x).dtype == np.float64 and fg.randn_like(x, dtype=np.float32).dtype == np.float32
    assert np.all((fg.rand_like(x).numpy() >= 0) & (fg.rand_like(x).numpy() < 1))
    big = fg.zeros(20000, dtype=np.float64)
    assert big.normal_(2.0, 0.5) is big
    assert abs(big.numpy().mean() - 2.0) < 0.05 and abs(big.numpy().std() - 0.5) < 0.05
    big.uniform_(-1, 3)
    assert big.numpy().min() >= -1 and big.numpy().max() < 3 and abs(big.numpy().mean() - 1) < 0.1
    assert big.fill_(1.5) is big and np.all(big.numpy() == 1.5)
    assert big.zero_() is big and not big.numpy().any()
    m = fg.tensor([[1.0, 2.0], [3.0, 4.0]])
    before = m._version_counter
    assert m.masked_fill_(fg.tensor([[True, False], [False, True]]), 0.0) is m
    assert m.tolist() == [[0.0, 2.0], [3.0, 0.0]] and m._version_counter == before + 1
    w = fg.tensor([[0.0, 1.0, 0.0, 3.0], [5.0, 0.0, 2.0, 0.0]])
    draws = fg.multinomial(w, 2)
    assert draws.shape == (2, 2) and draws.dtype == np.int64
    for row, picked in zip(w.numpy(), draws.numpy()):
        assert len(set(picked)) == 2 and all(row[k] > 0 for k in picked)
    assert sorted(fg.multinomial(w[0], 2).tolist()) == [1, 3]      # without replacement
    counts = np.bincount(fg.multinomial(fg.tensor([1.0, 3.0]), 4000, replacement=True).numpy())
    assert abs(counts[1] / 4000 - 0.75) < 0.05


def test_linspace_matches_torch(fg):
    torch = _torch()
    for args, kw in (((0, 1, 5), {}), ((-2.5, 3, 7), {"dtype": np.float64}), ((1, 1, 1), {}),
                     ((0, 10, 4), {"dtype": np.int64}), ((3, -3, 0), {})):
        tkw = {"dtype": {np.float64: torch.float64, np.int64: torch.int64}[kw["dtype"]]} \
            if kw else {}
        ours, theirs = fg.linspace(*args, **kw), torch.linspace(*args, **tkw)
        assert ours.dtype == theirs.numpy().dtype
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


# ---------------------------------------------------------------------------
# Devices and dtypes
# ---------------------------------------------------------------------------
FACTORIES = [
    ("tensor", lambda fg, d: fg.tensor([1.0, 2.0], device=d)),
    ("zeros", lambda fg, d: fg.zeros(2, 3, device=d)),
    ("ones", lambda fg, d: fg.ones((2,), device=d)),
    ("full", lambda fg, d: fg.full((2,), 1.5, device=d)),
    ("empty", lambda fg, d: fg.empty(2, device=d)),
    ("zeros_like", lambda fg, d: fg.zeros_like(fg.ones(2), device=d)),
    ("ones_like", lambda fg, d: fg.ones_like(fg.ones(2), device=d)),
    ("full_like", lambda fg, d: fg.full_like(fg.ones(2), 3.0, device=d)),
    ("empty_like", lambda fg, d: fg.empty_like(fg.ones(2), device=d)),
    ("rand_like", lambda fg, d: fg.rand_like(fg.ones(2), device=d)),
    ("randn_like", lambda fg, d: fg.randn_like(fg.ones(2), device=d)),
    ("arange", lambda fg, d: fg.arange(3, device=d)),
    ("eye", lambda fg, d: fg.eye(2, device=d)),
    ("randn", lambda fg, d: fg.randn(2, device=d)),
    ("rand", lambda fg, d: fg.rand(2, device=d)),
    ("randint", lambda fg, d: fg.randint(0, 5, (3,), device=d)),
    ("linspace", lambda fg, d: fg.linspace(0, 1, 3, device=d)),
    ("randperm", lambda fg, d: fg.randperm(3, device=d)),
    ("Tensor", lambda fg, d: fg.Tensor([1, 2], device=d)),
]


@pytest.mark.parametrize("case", FACTORIES, ids=[c[0] for c in FACTORIES])
def test_factories_take_the_cpu_and_refuse_other_devices(fg, case):
    name, make = case
    for d in (None, "cpu", "cpu:0", fg.device("cpu"), fg.device("cpu", 0)):
        assert make(fg, d).device == fg.device("cpu")
    for bad in ("cuda", "cuda:1", "mps", fg.device.__name__ and "xla"):
        with pytest.raises(RuntimeError, match=r"^%s: fastgrad runs on the CPU" % name):
            make(fg, bad)
    with pytest.raises(TypeError, match=name):
        make(fg, 1.5)


def test_device_class_as_torch(fg):
    torch = _torch()
    for args in (("cpu",), ("cpu:0",), ("cpu", 0)):
        ours, theirs = fg.device(*args), torch.device(*args)
        assert (str(ours), ours.type, ours.index, repr(ours)) == \
            (str(theirs), theirs.type, theirs.index, repr(theirs))
    assert fg.device("cpu") == fg.device("cpu") != fg.device("cpu:0")
    assert (fg.device("cpu") == "cpu") is False            # as torch: a device is not a string
    assert len({fg.device("cpu"), fg.device("cpu")}) == 1
    assert fg.device(fg.device("cpu:0")) == fg.device("cpu:0")
    with pytest.raises(RuntimeError, match="fastgrad runs on the CPU"):
        fg.device("cuda")
    with pytest.raises(RuntimeError, match="unknown device type"):
        fg.device("gpu")
    with pytest.raises(ValueError, match="invalid device string"):
        fg.device("cpu:x")
    assert fg.cuda.is_available() is False and fg.cuda.device_count() == 0


def test_to_cpu_and_dtype_conversions(fg):
    torch = _torch()
    x = fg.tensor([1.7, -2.2], requires_grad=True)
    assert x.to("cpu") is x and x.cpu() is x and x.to(fg.device("cpu")) is x and not x.is_cuda
    d = x.to("cpu", fg.float64)
    assert d.dtype == np.float64 and d.grad_fn == "cast"
    assert x.to(fg.double).dtype == np.float64 and x.to(dtype=fg.float64, device="cpu").dtype == np.float64
    assert x.to(fg.zeros(1, dtype=np.int64)).dtype == np.int64
    assert x.to(copy=True) is not x
    d.sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeError, match="^to: fastgrad runs on the CPU"):
        x.to("cuda")
    with pytest.raises(RuntimeError, match="^cuda: fastgrad runs on the CPU"):
        x.cuda()
    t = torch.tensor([1.7, -2.2])
    for name in ("float", "double", "long", "int", "bool"):
        ours, theirs = getattr(x.detach(), name)(), getattr(t, name)()
        assert ours.dtype == theirs.numpy().dtype, name
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        assert ours.type() == theirs.type().replace("torch.", "fastgrad."), name
        assert x.detach().type(ours.dtype).dtype == ours.dtype
        assert x.detach().type(ours.type()).dtype == ours.dtype
    for name, np_dtype in (("float32", np.float32), ("float64", np.float64), ("float", np.float32),
                           ("double", np.float64), ("long", np.int64), ("int64", np.int64),
                           ("int32", np.int32), ("int", np.int32), ("bool", np.bool_),
                           ("half", np.float16), ("float16", np.float16)):
        assert getattr(fg, name) is np_dtype
    for call in (lambda: x.half(), lambda: fg.zeros(2, dtype=fg.half), lambda: x.to(fg.float16),
                 lambda: fg.tensor([1.0], dtype=fg.half)):
        with pytest.raises(TypeError, match="float16 is not supported"):
            call()
    with pytest.raises(ValueError, match="type: unknown type name"):
        x.type("torch.ComplexTensor")


def test_tensor_class_constructors_as_torch(fg):
    torch = _torch()
    for args in (([1, 2],), ([[1.5], [2.0]],), (2, 3), ((2, 3),), ()):
        ours, theirs = fg.Tensor(*args), torch.Tensor(*args)
        assert tuple(ours.shape) == tuple(theirs.shape) and ours.dtype == np.float32
        if args and not isinstance(args[0], int):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    for name in ("FloatTensor", "DoubleTensor", "LongTensor", "IntTensor", "BoolTensor"):
        ours, theirs = getattr(fg, name)([1, 0, 2]), getattr(torch, name)([1, 0, 2])
        assert ours.dtype == theirs.numpy().dtype
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        assert getattr(fg, name)(2, 2).shape == (2, 2)
    assert fg.Tensor(np.arange(3.0)).dtype == np.float32     # as torch.Tensor: the default dtype
    assert fg.Tensor([1.0], requires_grad=True).requires_grad
    with pytest.raises(TypeError, match="^Tensor:"):
        fg.Tensor([1], [2])


# ---------------------------------------------------------------------------
# Promotion: one rule for every binary op of both cores, as torch
# ---------------------------------------------------------------------------
DTYPES = ["float32", "float64", "int64", "int32", "bool"]


def _operand(fg, torch, kind, dtype, seed):
    values = np.random.default_rng(seed).normal(size=3) * 3
    if kind == "number":
        py = {"float32": 1.5, "float64": 1.5, "int64": 2, "int32": 2, "bool": True}[dtype]
        return py, py
    arr = values.astype(dtype) if dtype != "bool" else values > 0
    if dtype.startswith("int"):
        arr = np.where(arr == 0, 1, arr).astype(dtype)
    if kind == "0d":
        arr = arr[0]
    return fg.tensor(np.asarray(arr), dtype=np.dtype(dtype)), torch.tensor(np.asarray(arr))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")       # x / False
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "minimum"])
def test_binary_promotion_matches_torch(fg, op):
    torch = _torch()
    fns = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
           "maximum": None, "minimum": None}
    for da in DTYPES:
        for kb in ("tensor", "0d", "number"):
            for db in DTYPES:
                if kb == "number" and db in ("float64", "int32"):
                    continue
                if op == "sub" and "bool" == da == db:
                    continue          # torch refuses bool - bool
                if op in ("maximum", "minimum") and kb == "number":
                    continue          # torch.maximum takes tensors only
                xa, ta = _operand(fg, torch, "tensor", da, 0)
                xb, tb = _operand(fg, torch, kb, db, 1)
                if op == "sub" and (da == "bool" or db == "bool") and \
                        not (np.dtype(da).kind == "f" or (kb != "number" and np.dtype(db).kind == "f")):
                    continue          # torch refuses bool in subtraction with ints
                if fns[op] is None:
                    ours, theirs = getattr(fg, op)(xa, xb), getattr(torch, op)(ta, tb)
                else:
                    try:
                        theirs = fns[op](ta, tb)
                    except RuntimeError:
                        continue
                    ours = fns[op](xa, xb)
                    rev, trev = fns[op](xb, xa), fns[op](tb, ta)
                    assert rev.dtype == trev.numpy().dtype, (op, db, kb, da, "reversed")
                assert ours.dtype == theirs.numpy().dtype, (op, da, kb, db)
                np.testing.assert_allclose(ours.numpy().astype(np.float64),
                                           theirs.numpy().astype(np.float64), rtol=1e-6)


def test_promotion_keeps_float32_gradients(fg):
    x = fg.ones(3, requires_grad=True)
    mask = fg.tensor([1, 0, 1])
    y = x * mask
    assert y.dtype == np.float32
    scale = fg.tensor(2.0, dtype=np.float64, requires_grad=True)
    z = (y * scale).sum()                         # a 0-d float64 does not widen float32
    assert z.dtype == np.float32
    z.backward()
    assert x.grad.dtype == np.float32 and x.grad.tolist() == [2.0, 0.0, 2.0]
    assert scale.grad.dtype == np.float64 and scale.grad.item() == 2.0
    assert (fg.tensor([1, 2]) * 2.5).dtype == fg.get_default_dtype()
    assert (fg.tensor([1, 2]) * fg.tensor([3, 4])).dtype == np.int64
    assert fg.tensor([1, 4]).sqrt().dtype == fg.get_default_dtype()
    fg.set_default_dtype(np.float64)
    try:
        assert (fg.tensor([1, 2]) / 2).dtype == np.float64
        assert fg.tensor([1, 4]).exp().dtype == np.float64
    finally:
        fg.set_default_dtype(np.float32)
    assert (fg.tensor([1, 2]) / 2).dtype == np.float32


# ---------------------------------------------------------------------------
# Python protocols
# ---------------------------------------------------------------------------
def test_python_protocols_as_torch(fg):
    torch = _torch()
    a = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    x, t = fg.tensor(a), torch.tensor(a)
    assert len(x) == len(t) == 3
    assert [r.tolist() for r in x] == [r.tolist() for r in t]
    assert [r.tolist() for r in reversed(x)] == [r.tolist() for r in reversed(t)]
    assert (2.0 in x) and (7.0 not in x) and (fg.tensor(4.0) in x)
    assert (2.0 in t) and (7.0 not in t)
    assert hash(x) == id(x) and len({x, x, fg.tensor(a)}) == 2
    assert abs(fg.tensor(-2.5)).item() == 2.5
    with pytest.raises(TypeError):
        len(fg.tensor(1.0))


# ---------------------------------------------------------------------------
# Clear errors naming the op; nothing changed by a failed call
# ---------------------------------------------------------------------------
ERRORS = [
    ("gather", lambda fg, x: x.gather(1, fg.tensor([0, 1])), ValueError, "dimensions"),
    ("gather", lambda fg, x: x.gather(1, fg.tensor([[0, 5]])), IndexError, "index values"),
    ("gather", lambda fg, x: x.gather(1, fg.tensor([[0.0]])), TypeError, "integer"),
    ("gather", lambda fg, x: x.gather(0, fg.tensor([[-1]])), IndexError, "index values"),
    ("scatter", lambda fg, x: x.scatter(1, fg.tensor([[3]]), 1.0), IndexError, "index values"),
    ("gather", lambda fg, x: x.gather(2, fg.tensor([[0]])), IndexError, "out of range"),
    ("scatter", lambda fg, x: x.scatter(0, fg.tensor([[0, 1]]), 1.0, value=2.0), TypeError,
     "exactly one"),
    ("scatter_add", lambda fg, x: x.scatter_add(0, fg.tensor([[0, 1, 0]]), fg.ones(1, 1)),
     ValueError, "src"),
    ("index_select", lambda fg, x: x.index_select(0, fg.tensor([[0]])), ValueError, "1-d"),
    ("index_select", lambda fg, x: x.index_select(0, fg.tensor([2])), IndexError, "index values"),
    ("masked_fill", lambda fg, x: x.masked_fill(fg.tensor([1, 0, 1]), 0.0), TypeError, "bool"),
    ("masked_fill", lambda fg, x: x.masked_fill(fg.tensor([True, False]), 0.0), ValueError,
     "broadcast"),
    ("topk", lambda fg, x: x.topk(4), ValueError, "k=4"),
    ("topk", lambda fg, x: x.topk(1.5), TypeError, "int"),
    ("split", lambda fg, x: x.split([1, 1], 1), ValueError, "sum to 2"),
    ("split", lambda fg, x: x.split(0, 1), ValueError, "positive"),
    ("chunk", lambda fg, x: x.chunk(0), ValueError, "positive"),
    ("einsum", lambda fg, x: fg.einsum("ij,jk", x), ValueError, "2 operand"),
    ("einsum", lambda fg, x: fg.einsum("ijk", x), ValueError, "subscripts"),
    ("einsum", lambda fg, x: fg.einsum("ij->ik", x), ValueError, "appears in no operand"),
    ("einsum", lambda fg, x: fg.einsum("ij,ij->i", x, fg.ones(3, 2)), ValueError, "size"),
    ("einsum", lambda fg, x: fg.einsum("i1->i", x), ValueError, "letters"),
    ("einsum", lambda fg, x: fg.einsum(3, x), TypeError, "string"),
    ("mm", lambda fg, x: fg.mm(x, fg.ones(3)), ValueError, "2-d"),
    ("bmm", lambda fg, x: fg.bmm(x, x), ValueError, "3-d"),
    ("t", lambda fg, x: fg.ones(2, 2, 2).t(), ValueError, "at most 2"),
    ("tril", lambda fg, x: fg.ones(3).tril(), ValueError, "at least 2"),
    ("roll", lambda fg, x: x.roll((1, 2), 0), ValueError, "same length"),
    ("flip", lambda fg, x: x.flip(0, 0), ValueError, "repeat"),
    ("repeat", lambda fg, x: x.repeat(2), ValueError, "at least one per dimension"),
    ("norm", lambda fg, x: x.norm(-1), ValueError, "positive"),
    ("norm", lambda fg, x: x.norm("nuc"), ValueError, "'fro'"),
    ("multinomial", lambda fg, x: fg.multinomial(-x, 1), ValueError, "non-negative"),
    ("multinomial", lambda fg, x: fg.multinomial(fg.tensor([1.0, 0.0]), 2), ValueError,
     "without replacement"),
    ("one_hot", lambda fg, x: fg.one_hot(fg.tensor([0, 3]), 3), ValueError, "out of range"),
    ("one_hot", lambda fg, x: fg.one_hot(x, 3), TypeError, "integer"),
    ("pad", lambda fg, x: fg.pad(x, (1,)), ValueError, "even"),
    ("pad", lambda fg, x: fg.pad(x, (3, 0), mode="reflect"), ValueError, "smaller"),
    ("pad", lambda fg, x: fg.pad(x, (1, 1), mode="wrap"), ValueError, "mode"),
    ("max", lambda fg, x: x.max((0, 1)), TypeError, "amax"),
    ("max", lambda fg, x: x.max(2), IndexError, "out of range"),
    ("linspace", lambda fg, x: fg.linspace(0, 1, -1), ValueError, "non-negative"),
    ("randperm", lambda fg, x: fg.randperm(-1), ValueError, "non-negative"),
    ("normal_", lambda fg, x: x.detach().normal_(0, -1), ValueError, "std"),
    ("uniform_", lambda fg, x: x.detach().uniform_(1, 0), ValueError, "a <= b"),
    ("clamp_", lambda fg, x: x.detach().clamp_(), ValueError, "at least one"),
    ("masked_fill_", lambda fg, x: x.detach().masked_fill_(fg.tensor([[True], [False], [True]]), 1.0),
     ValueError, "broadcast"),
]


@pytest.mark.parametrize("case", ERRORS, ids=["%s-%d" % (c[0], i) for i, c in enumerate(ERRORS)])
def test_bad_arguments_raise_clear_errors(fg, case):
    name, call, error, words = case
    x = fg.tensor(np.arange(6.0).reshape(2, 3) + 1, dtype=np.float64, requires_grad=True)
    before = x.numpy().copy()
    with pytest.raises(error, match=r"^%s: .*%s" % (name, words.replace("(", r"\("))):
        call(fg, x)
    assert np.array_equal(x.numpy(), before) and x._version_counter == 0


def test_new_ops_replay_under_compile_and_agree_between_cores(both):
    py, cc = both
    a, b = normal(3, 4), normal(4, 2)
    results = []
    for fg in both:
        x = fg.tensor(a, dtype=np.float64, requires_grad=True)
        w = fg.tensor(b, dtype=np.float64, requires_grad=True)
        y = fg.einsum("ij,jk->ik", x.cumsum(1), w).tril().flip(0)
        z = fg.pad(y, (1, 1)).roll(1, 0).norm() + x.topk(2).values.sum() + x.max(1).values.sum()
        z = z + x.gather(1, fg.tensor([[0], [1], [3]])).sum() + x.repeat(2, 1).split(3)[1].sum()
        z.backward()
        results.append((z.item(), x.grad.numpy().copy(), w.grad.numpy().copy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    for g0, g1 in zip(results[0][1:], results[1][1:]):
        np.testing.assert_allclose(g0, g1, rtol=1e-12, atol=1e-14)


def test_function_nodes_replay_under_compile(fg):
    a = normal(3, 4)
    w = fg.tensor(a, dtype=np.float64, requires_grad=True)
    m = fg.tensor(normal(4, 2, seed=5), dtype=np.float64)

    def loss():
        y = fg.einsum("ij,jk->ik", w.cumsum(1), m)
        z = y.scatter_add(0, fg.tensor([[2, 0]]), y[:1]).norm(dim=0).sum()
        return z + w.round().sum() + fg.pad(w, (1, 1), mode="reflect").tril().sum()

    def eager():
        x = fg.tensor(w.numpy(), dtype=np.float64, requires_grad=True)
        m_ = m
        y = fg.einsum("ij,jk->ik", x.cumsum(1), m_)
        z = y.scatter_add(0, fg.tensor([[2, 0]]), y[:1]).norm(dim=0).sum()
        z = z + x.round().sum() + fg.pad(x, (1, 1), mode="reflect").tril().sum()
        z.backward()
        return z.item(), x.grad.numpy().copy()

    step = fg.compile(loss)
    for k in range(3):
        want_loss, want_grad = eager()
        w.grad = None
        got = step()
        np.testing.assert_allclose(got, want_loss, rtol=1e-12)
        np.testing.assert_allclose(w.grad.numpy(), want_grad, rtol=1e-12, atol=1e-14)
        with fg.no_grad():
            w -= 0.1 * w.grad


def test_no_grad_as_a_decorator(fg):
    @fg.no_grad()
    def double(x):
        return x * 2

    x = fg.ones(2, requires_grad=True)
    assert not double(x).requires_grad and (x * 2).requires_grad


def test_binary_ops_of_two_numbers(fg):
    # no tensor among the operands: a 0-d tensor, the same on both cores (no stray memory read)
    for op in (fg.maximum, fg.minimum, fg.pow):
        out = op(2.0, 3)
        assert out.shape == () and out.item() == {fg.maximum: 3.0, fg.minimum: 2.0,
                                                  fg.pow: 8.0}[op]
