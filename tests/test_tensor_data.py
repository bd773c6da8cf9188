"""`t.data` as PyTorch has it: a Tensor over t's memory, outside autograd.

It does not require grad and has a version counter of its own, so changes
made through it are not seen by t's (what tells it from detach()); `t.data =
other` rebinds t's values; `p.data -= lr * p.grad.data` is the hand-written
update of a training loop, one C loop on the compiled core, and that path
must give exactly what the general (NumPy) path gives.
"""
import numpy as np
import pytest


def leaf(fg, values, dtype=np.float64, requires_grad=True):
    return fg.tensor(np.asarray(values, dtype=dtype), requires_grad=requires_grad)


def test_data_is_a_tensor_outside_autograd_sharing_memory(fg):
    p = fg.nn.Parameter(np.arange(3.0))
    d = p.data
    assert isinstance(d, fg.Tensor) and not isinstance(d, fg.nn.Parameter)
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    assert d.dtype == p.dtype and d.shape == p.shape
    assert np.shares_memory(d.numpy(), p.numpy())
    d.numpy()[0] = 7.0                       # either way round
    assert p.numpy()[0] == 7.0
    p.data.numpy()[1] = 8.0
    np.testing.assert_array_equal(p.numpy(), [7.0, 8.0, 2.0])
    assert p.grad is None
    p.grad = fg.ones(3, dtype=np.float64)
    assert isinstance(p.grad, fg.Tensor) and isinstance(p.grad.data, fg.Tensor)
    assert not p.grad.data.requires_grad


def test_data_of_a_non_leaf_is_a_leaf_with_its_values(fg):
    x = leaf(fg, [1.0, 2.0])
    y = x * 3
    d = y.data
    assert d.is_leaf and not d.requires_grad
    np.testing.assert_array_equal(d.numpy(), [3.0, 6.0])
    assert np.shares_memory(d.numpy(), y.numpy())


def test_changes_through_data_are_not_tracked_unlike_detach(fg):
    torch = pytest.importorskip("torch")
    mine = leaf(fg, [1.0, 2.0, 3.0])
    theirs = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    outs = [(mine * mine).sum(), (theirs * theirs).sum()]
    before = mine._version_counter
    mine.data.mul_(2)
    theirs.data.mul_(2)
    assert mine._version_counter == before            # PyTorch: x._version unchanged too
    outs[0].backward()
    outs[1].backward()                                 # no error on either: untracked
    np.testing.assert_array_equal(mine.grad.numpy(), theirs.grad.numpy())   # the new values
    np.testing.assert_array_equal(mine.numpy(), theirs.detach().numpy())
    # detach() shares the counter: the same change through it is caught
    w = leaf(fg, [1.0, 2.0])
    out = (w * w).sum()
    w.detach().mul_(2)
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()


def test_in_place_through_data_on_a_leaf_that_requires_grad(fg):
    p = fg.nn.Parameter(np.ones(4))
    with pytest.raises(RuntimeError, match="through .data"):
        p.mul_(2)                                      # the leaf itself: refused
    p.data.mul_(2)
    p.data.add_(fg.ones(4, dtype=np.float64), alpha=0.5)
    np.testing.assert_array_equal(p.numpy(), np.full(4, 2.5))
    p.data.zero_()
    assert not p.numpy().any()
    p.data.fill_(3.0)
    p.data.copy_(p.data * 2)
    np.testing.assert_array_equal(p.numpy(), np.full(4, 6.0))
    p.data[1:3] = 0.0
    np.testing.assert_array_equal(p.data.numpy(), [6.0, 0.0, 0.0, 6.0])
    assert p._version_counter == 0 and p.requires_grad and p.is_leaf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (64, 33)])
def test_manual_sgd_update_matches_numpy_and_torch(fg, dtype, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    p = fg.nn.Parameter(w0.copy())
    q = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    expected = w0.copy()
    lr = 0.1
    for _ in range(3):
        for t, xt in ((p, fg.tensor(x)), (q, torch.from_numpy(x))):
            t.grad = None
            ((t * xt) ** 2).sum().backward()
        g = 2 * expected * x * x
        expected -= lr * g
        version = p._version_counter
        p.data -= lr * p.grad.data
        q.data -= lr * q.grad.data
        assert p._version_counter == version          # PyTorch's rule, as above
        assert p.requires_grad and p.is_leaf
    np.testing.assert_array_equal(p.numpy(), expected)
    np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-6 if dtype == np.float32
                               else 1e-14)


def _inplace_cases(fg, dtype):
    """(description, target factory, operand factory): the compiled core's C loop
    takes some of these, the general path the others; both must give NumPy's values."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal(12).astype(dtype)
    b = rng.standard_normal(12).astype(dtype)

    def t(values):
        return fg.tensor(values.copy())
    return [
        ("same shape", lambda: t(a), lambda: t(b), lambda: b),
        ("python float", lambda: t(a), lambda: 0.1, lambda: 0.1),
        ("python int", lambda: t(a), lambda: 3, lambda: 3),
        ("huge int", lambda: t(a), lambda: 2 ** 60 + 1, lambda: 2 ** 60 + 1),
        ("size-1 tensor", lambda: t(a), lambda: t(b[:1]), lambda: b[:1]),
        ("broadcast row", lambda: t(a.reshape(3, 4)), lambda: t(b[:4]), lambda: b[:4]),
        ("other dtype", lambda: t(a), lambda: fg.tensor(b.astype(np.float64 if dtype ==
                                                                  np.float32 else np.float32)),
         lambda: b.astype(np.float64 if dtype == np.float32 else np.float32)),
        ("strided operand", lambda: t(a[:6]), lambda: t(b)[::2], lambda: b[::2]),
        ("int operand", lambda: t(a), lambda: fg.tensor(np.arange(1, 13)),
         lambda: np.arange(1, 13)),
        ("ndarray operand", lambda: t(a), lambda: b.copy(), lambda: b),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/="])
def test_augmented_assignment_matches_numpy_on_every_path(fg, dtype, op):
    for name, target, operand, expected_operand in _inplace_cases(fg, dtype):
        x = target()
        want = x.numpy().copy()
        exec("want %s expected_operand()" % op, {}, {"want": want,
                                                     "expected_operand": expected_operand})
        ns = {"x": x, "o": operand()}
        exec("x %s o" % op, {}, ns)
        assert ns["x"] is x, name                     # really in place
        np.testing.assert_array_equal(x.numpy(), want, err_msg=name)
        assert x._version_counter == 1, name


def test_augmented_assignment_with_overlapping_memory_matches_numpy(fg):
    base = np.arange(10.0)
    x = fg.tensor(base.copy())
    x[1:] -= x[:-1]                                   # NumPy copies the overlapping operand
    want = base.copy()
    want[1:] -= want[:-1].copy()
    np.testing.assert_array_equal(x.numpy(), want)
    x = fg.tensor(base.copy())
    x -= x[3:4]                                       # a size-1 view into x itself
    np.testing.assert_array_equal(x.numpy(), base - 3.0)
    x = fg.tensor(base.copy())
    x += x                                            # the same memory: elementwise is exact
    np.testing.assert_array_equal(x.numpy(), 2 * base)
    x = fg.tensor(base.copy())
    v = x.reshape(2, 5)
    v *= 2.0                                          # through a view: the base sees it
    np.testing.assert_array_equal(x.numpy(), 2 * base)
    assert x._version_counter == v._version_counter == 1


def test_augmented_assignment_keeps_autograd_rules(fg):
    w = leaf(fg, [1.0, 2.0])
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w -= 1.0
    with fg.no_grad():
        w -= 1.0                                      # the classic update: in place
    np.testing.assert_array_equal(w.numpy(), [0.0, 1.0])
    assert w.is_leaf and w.requires_grad and w._version_counter == 1
    y = w * 2
    y_before = y
    y += w                                            # tracked: a new node, as `y = y + w`
    assert y is not y_before and y.grad_fn == "add"
    y.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [3.0, 3.0])
    frozen = fg.tensor(np.ones(3))
    frozen.numpy().flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        frozen -= 1.0
    np.testing.assert_array_equal(frozen.numpy(), np.ones(3))


def test_data_of_an_intermediate_whose_values_were_not_kept(fg):
    # the compiled core lets the next op reuse a temporary's memory (no name
    # refers to it); .data then says so, as .numpy() does
    x = leaf(fg, np.ones(4096))
    z = (x * 2.0 + 1.0).tanh()
    inner = z._node()[1][0]                  # the sum, a temporary
    if getattr(inner, "_values_dropped", False):
        with pytest.raises(RuntimeError, match="were not kept"):
            inner.data
    else:
        np.testing.assert_array_equal(inner.data.numpy(), np.full(4096, 3.0))


def test_rebinding_data(fg):
    x = leaf(fg, [1.0, 2.0, 3.0])
    x.data = fg.tensor(np.zeros((2, 2), dtype=np.float32))   # shape and dtype may change
    assert x.shape == (2, 2) and x.dtype == np.float32 and x.requires_grad and x.is_leaf
    src = fg.ones(4, dtype=np.float64)
    x.data = src                                     # shares the tensor's memory, as PyTorch
    src.numpy()[0] = 5.0
    assert x.numpy()[0] == 5.0
    arr = np.full(4, 2.0)
    x.data = arr                                     # an ndarray is accepted, not copied
    assert np.shares_memory(x.numpy(), arr)
    before = x._version_counter
    x.data = x.data                                  # the same memory: nothing changes
    assert x._version_counter == before
    with pytest.raises(TypeError, match="data: expected an ndarray or a Tensor, got list"):
        x.data = [1.0, 2.0]
    with pytest.raises(TypeError, match="float16"):
        x.data = np.zeros(2, dtype=np.float16)
    with pytest.raises(TypeError, match="requires grad needs float data"):
        x.data = fg.tensor(np.arange(3))
    assert x.numpy() is arr                          # the failed assignments changed nothing
    big_endian = np.arange(3.0).astype(">f8")
    x.data = big_endian                              # converted to native order, as fg.tensor
    assert x.dtype == np.float64 and x.dtype.isnative
    np.testing.assert_array_equal(x.numpy(), [0.0, 1.0, 2.0])


def test_rebinding_data_before_backward_is_caught(fg):
    x = leaf(fg, [1.0, 2.0])
    out = (x * x).sum()
    x.data = fg.tensor(np.array([3.0, 4.0]))
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()
    out = (x * x).sum()
    x.data -= 1.0                                    # in place through .data: not tracked
    out.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 6.0])
