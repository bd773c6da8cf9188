"""Copying indexing (an integer array or a bool mask as the key), cat, stack and where.

On both cores: values and gradients against PyTorch and central finite
differences (float64), repeated and negative indices, out-of-range errors,
1-D to 3-D inputs, empty indices, non-contiguous inputs, an index changed
by its owner after the forward, and fg.compile's replay.
"""
import numpy as np
import pytest


def _grad_fd(f, x, eps=1e-6):
    """Central finite differences of the scalar f at x (float64)."""
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        gf[i] = (up - down) / (2 * eps)
    return g


def _check(fg, fn, tfn, arrays, rng, grads=None):
    """fn (fastgrad) against tfn (torch): values, and gradients of sum(y * w)."""
    torch = pytest.importorskip("torch")
    grads = range(len(arrays)) if grads is None else grads
    xs = [fg.tensor(a, requires_grad=i in grads) for i, a in enumerate(arrays)]
    ts = [torch.tensor(a, requires_grad=i in grads) for i, a in enumerate(arrays)]
    y, ty = fn(*xs), tfn(*ts)
    assert tuple(y.shape) == tuple(ty.shape)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=0, atol=0)
    w = rng.normal(size=tuple(ty.shape))
    (y * fg.tensor(w)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    for i in grads:
        np.testing.assert_allclose(xs[i].grad.numpy(), ts[i].grad.numpy(), rtol=1e-12,
                                   atol=1e-12)
    return xs


INDEX_CASES = [
    ((5,), lambda i: i, np.array([0, 4, 4, -1, 2])),
    ((6, 3), lambda i: i, np.array([5, 0, 0, -6, 2, 5])),
    ((6, 3), lambda i: (slice(None), i), np.array([2, 0, -1, 2])),
    ((4, 3, 5), lambda i: i, np.array([[1, 3], [3, -4]])),
    ((4, 3, 5), lambda i: (slice(None), i), np.array([2, 2, 0])),
    ((4, 3, 5), lambda i: (slice(None), slice(None), i), np.array([4, -5, 1, 1])),
    ((4, 3, 5), lambda i: (i, slice(None)), np.array([0, 0])),
    ((6, 3), lambda i: i, np.array([], dtype=np.int64)),
    ((6, 3), lambda i: (slice(None), i), np.array([], dtype=np.int64)),
    ((0, 3), lambda i: (slice(None), i), np.array([1, 2])),
    ((6, 3), lambda i: i, np.array(4)),
]


@pytest.mark.parametrize("case", range(len(INDEX_CASES)))
def test_integer_index_against_torch_and_fd(fg, rng, case):
    shape, key, idx = INDEX_CASES[case]
    torch = pytest.importorskip("torch")
    x = rng.normal(size=shape)
    for as_tensor in (False, True):
        i_fg = fg.tensor(idx) if as_tensor else idx
        _check(fg, lambda x: x[key(i_fg)], lambda t: t[key(torch.tensor(idx))], [x], rng)
    w = rng.normal(size=x[key(idx)].shape)

    def f(v):
        return float((fg.tensor(v)[key(idx)] * fg.tensor(w)).sum().item())
    t = fg.tensor(x, requires_grad=True)
    (t[key(idx)] * fg.tensor(w)).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), _grad_fd(f, x.copy()), rtol=1e-6, atol=1e-7)


def test_index_dtypes_lists_and_float32(fg, rng):
    x = rng.normal(size=(5, 4))
    for idx in ([3, 1, 3], np.array([3, 1, 3], dtype=np.int32),
                np.array([3, 1, 3], dtype=np.uint8), np.array([3, 1, 3], dtype=np.int16)):
        t = fg.tensor(x, requires_grad=True)
        y = t[idx]
        np.testing.assert_array_equal(y.numpy(), x[[3, 1, 3]])
        y.sum().backward()
        np.testing.assert_array_equal(t.grad.numpy()[:, 0], [0, 1, 0, 2, 0])
    t32 = fg.tensor(x.astype(np.float32), requires_grad=True)
    y = t32[:, [0, 0, 3]]
    assert y.dtype == np.float32
    (y * 2.0).sum().backward()
    np.testing.assert_array_equal(t32.grad.numpy()[0], np.array([4, 0, 0, 2], np.float32))


def test_index_out_of_range_and_bad_keys(fg, rng):
    t = fg.tensor(rng.normal(size=(4, 3)), requires_grad=True)
    for key in ([4], [-5], (slice(None), [3]), (slice(None), np.array([-4])), [0, 9, 1]):
        with pytest.raises(IndexError, match=r"index.*\(4, 3\)"):
            t[key]
    with pytest.raises(IndexError, match="index"):
        t[np.array([0.5, 1.0])]
    with pytest.raises(IndexError, match="index"):
        t[np.array([True, False])]           # a mask of the wrong length
    assert t.grad is None


def test_index_mutated_after_forward(fg, rng):
    x = rng.normal(size=(5, 3))
    idx = np.array([0, 2, 2])
    it = fg.tensor(idx.copy())
    for key in (idx, it):
        t = fg.tensor(x, requires_grad=True)
        y = t[key]
        if key is idx:
            idx[:] = [4, 4, 4]
        else:
            it.numpy()[:] = [4, 4, 4]
        y.sum().backward()
        np.testing.assert_array_equal(t.grad.numpy()[:, 0], [1, 0, 2, 0, 0])
        np.testing.assert_array_equal(y.numpy(), x[[0, 2, 2]])


def test_index_of_non_contiguous_and_views(fg, rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(6, 5))
    idx = np.array([3, 0, 3, 1])
    _check(fg, lambda x: x.T[idx], lambda t: t.T[torch.tensor(idx)], [x], rng)
    _check(fg, lambda x: x[1:][idx], lambda t: t[1:][torch.tensor(idx)], [x], rng)
    _check(fg, lambda x: (x * 2.0)[:, idx].T, lambda t: (t * 2.0)[:, torch.tensor(idx)].T,
           [x], rng)
    _check(fg, lambda x: x[idx][idx], lambda t: t[torch.tensor(idx)][torch.tensor(idx)],
           [x], rng)


MASK_CASES = [(7,), (4, 5), (3, 4, 2)]


@pytest.mark.parametrize("shape", MASK_CASES)
def test_mask_index_against_torch(fg, rng, shape):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=shape)
    for lead in range(1, len(shape) + 1):
        m = rng.random(shape[:lead]) > 0.4
        _check(fg, lambda x: x[m], lambda t: t[torch.tensor(m)], [x], rng)
        _check(fg, lambda x: x[fg.tensor(m)], lambda t: t[torch.tensor(m)], [x], rng)
    none = np.zeros(shape[:1], dtype=bool)
    _check(fg, lambda x: x[none], lambda t: t[torch.tensor(none)], [x], rng)


CAT_SHAPES = [[(3,), (5,)], [(2, 3), (4, 3), (1, 3)], [(2, 3), (2, 1)], [(2, 3, 4), (2, 3, 1)],
              [(2, 3, 4), (2, 2, 4)], [(2, 3, 4), (1, 3, 4)], [(0, 3), (2, 3)], [(2, 0), (2, 3)]]


@pytest.mark.parametrize("case", range(len(CAT_SHAPES)))
def test_cat_against_torch(fg, rng, case):
    torch = pytest.importorskip("torch")
    shapes = CAT_SHAPES[case]
    nd = len(shapes[0])
    axes = [d for d in range(-nd, nd) if all(s[i] == shapes[0][i] for s in shapes
                                             for i in range(nd) if i != d % nd)]
    assert axes
    arrays = [rng.normal(size=s) for s in shapes]
    for axis in axes:
        _check(fg, lambda *xs: fg.cat(list(xs), axis), lambda *ts: torch.cat(ts, axis),
               arrays, rng)
        _check(fg, lambda *xs: fg.cat(list(xs) + [xs[0]], axis) * 1.5,
               lambda *ts: torch.cat(list(ts) + [ts[0]], axis) * 1.5, arrays, rng)
        _check(fg, lambda *xs: fg.cat(list(xs), axis), lambda *ts: torch.cat(ts, axis),
               arrays, rng, grads=[0])


def test_cat_mixed_and_strided_fall_back(fg, rng):
    torch = pytest.importorskip("torch")
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 3))
    _check(fg, lambda a, b: fg.cat([a, b.T], 0), lambda a, b: torch.cat([a, b.T], 0), [a, b], rng)
    y = fg.cat([fg.tensor(a.astype(np.float32)), fg.tensor(a)], 1)
    assert y.dtype == np.float64
    with pytest.raises(ValueError, match="cat"):
        fg.cat([fg.tensor(a), fg.tensor(b)], 0)
    with pytest.raises(ValueError, match="cat"):
        fg.cat([fg.tensor(a), fg.tensor(a)], 2)


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 3, 4), (0, 2)])
def test_stack_against_torch(fg, rng, shape):
    torch = pytest.importorskip("torch")
    arrays = [rng.normal(size=shape) for _ in range(3)]
    for axis in range(-len(shape) - 1, len(shape) + 1):
        _check(fg, lambda *xs: fg.stack(list(xs), axis), lambda *ts: torch.stack(ts, axis),
               arrays, rng)


@pytest.mark.parametrize("shape", [(), (1,), (7,), (4, 5), (2, 3, 4), (0, 3)])
def test_where_against_torch(fg, rng, shape):
    torch = pytest.importorskip("torch")
    m = rng.random(shape) > 0.5
    a, b = rng.normal(size=shape), rng.normal(size=shape)
    tm = torch.tensor(m)
    _check(fg, lambda a, b: fg.where(m, a, b), lambda a, b: torch.where(tm, a, b), [a, b], rng)
    _check(fg, lambda a, b: fg.where(fg.tensor(m), a, a * b),
           lambda a, b: torch.where(tm, a, a * b), [a, b], rng)
    _check(fg, lambda a: fg.where(m, a, 2.5), lambda a: torch.where(tm, a, 2.5), [a], rng)
    _check(fg, lambda a: fg.where(m, -1, a), lambda a: torch.where(tm, -1.0, a), [a], rng)
    one = rng.normal(size=(1,) * min(len(shape), 1))
    _check(fg, lambda a, o: fg.where(m, a, o), lambda a, o: torch.where(tm, a, o), [a, one], rng)
    _check(fg, lambda o, a: fg.where(m, o, a), lambda o, a: torch.where(tm, o, a), [one, a], rng)


def test_where_float32_special_values_and_broadcast(fg, rng):
    torch = pytest.importorskip("torch")
    m = np.array([True, False, True, False])
    a = np.array([np.nan, 1.0, -0.0, np.inf], np.float32)
    b = np.array([2.0, -np.inf, 3.0, np.nan], np.float32)
    y = fg.where(m, fg.tensor(a), fg.tensor(b))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), np.where(m, a, b))
    assert np.signbit(y.numpy()[2])
    x = rng.normal(size=(3, 4))
    mb = rng.random((3, 1)) > 0.5
    _check(fg, lambda x: fg.where(mb, x, x * 2.0),
           lambda x: torch.where(torch.tensor(mb), x, x * 2.0), [x], rng)
    with pytest.raises(ValueError, match="where"):
        fg.where(np.ones((2, 3), bool), fg.tensor(x), 0.0)


def test_cores_agree_in_float64(both, rng):
    """The compiled core's native rules against the reference rules, to 1e-12."""
    x = rng.normal(size=(6, 5))
    b = rng.normal(size=(6, 5))
    m = rng.random((6, 5)) > 0.5
    idx = np.array([4, -1, 0, 0, 3])
    cases = [lambda fg, x, b: x[idx] * b[:5], lambda fg, x, b: x[:, idx] + b,
             lambda fg, x, b: x[m] * b[m], lambda fg, x, b: x[m[:, 0]],
             lambda fg, x, b: fg.cat([x, b, x], 0), lambda fg, x, b: fg.cat([x, b], 1),
             lambda fg, x, b: fg.stack([x, b], 1), lambda fg, x, b: fg.where(m, x, b),
             lambda fg, x, b: fg.where(m, x, 0.5), lambda fg, x, b: fg.where(m, b[:1, :1], x)]
    for i, f in enumerate(cases):
        out = []
        for mod in both:
            xs = [mod.tensor(x, requires_grad=True), mod.tensor(b, requires_grad=True)]
            y = f(mod, *xs)
            (y * mod.tensor(np.linspace(0.5, 1.5, y.numel()).reshape(y.shape))).sum().backward()
            out.append([y.numpy()] + [None if t.grad is None else t.grad.numpy() for t in xs])
        for p, c in zip(*out):
            assert (p is None) == (c is None), "case %d" % i
            if p is None:
                continue
            np.testing.assert_allclose(c, p, rtol=1e-12, atol=1e-12, err_msg="case %d" % i)


def test_compile_replays_gather_cat_where(fg, rng):
    torch = pytest.importorskip("torch")
    x = fg.tensor(rng.normal(size=(5, 4)), requires_grad=True)
    b = fg.tensor(rng.normal(size=(5, 4)), requires_grad=True)
    m = rng.random((5, 4)) > 0.5
    idx = np.array([4, 4, 0, -2])

    def loss():
        g = x[idx] * 2.0 + x[:, idx[2:]].sum() + x[m].sum()
        return (fg.cat([g, b], 0).tanh() + fg.stack([x, b]).sum(0).sum()
                + fg.where(m, x, b * 3.0).sum()).sum()

    step = fg.compile(loss)
    for scale in (1.0, -2.0, 0.5):
        with fg.no_grad():
            x.data[...] = x.numpy() * scale
            b.data[...] = b.numpy() + scale
        x.grad = b.grad = None
        out = step()
        tx = torch.tensor(x.numpy(), requires_grad=True)
        tb = torch.tensor(b.numpy(), requires_grad=True)
        tm, ti = torch.tensor(m), torch.tensor(idx)
        g = tx[ti] * 2.0 + tx[:, ti[2:]].sum() + tx[tm].sum()
        want = (torch.cat([g, tb], 0).tanh() + torch.stack([tx, tb]).sum(0).sum()
                + torch.where(tm, tx, tb * 3.0).sum()).sum()
        want.backward()
        np.testing.assert_allclose(float(out), want.item(), rtol=1e-12)
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_backward_twice_and_inplace_checks(fg, rng):
    x = fg.tensor(rng.normal(size=(4, 3)), requires_grad=True)
    y = (x[[1, 1]].sum() + fg.cat([x, x], 1).sum() + fg.where(x.detach().numpy() > 0, x, 0.0)
         .sum())
    y.backward(retain_graph=True)
    g1 = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * g1)
    with pytest.raises(RuntimeError, match="freed"):
        y.backward()
    # where's backward reads nothing of a or b: changing them in place is allowed
    a = fg.tensor(rng.normal(size=(3,)), requires_grad=True)
    z = fg.where(np.array([True, False, True]), a * 1.0, a * 2.0)
    z.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [1.0, 2.0, 1.0])


def test_results_rebound_through_data_are_refused(fg, rng):
    """A result given values of another shape (same size) through .data: backward
    raises on both cores rather than reading the gradient by the old shape."""
    x = fg.tensor(rng.normal(size=(2, 3)), requires_grad=True)
    for make, new in [(lambda: fg.cat([x, x], 0), (3, 4)), (lambda: x[[0, 1, 1]], (9,)),
                      (lambda: fg.where(np.ones((2, 3), bool), x, 0.0), (3, 2))]:
        y = make()
        y.data = fg.tensor(np.ones(new))
        with pytest.raises((RuntimeError, ValueError)):
            y.sum().backward()
