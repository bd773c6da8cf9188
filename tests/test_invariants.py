"""The tensor invariants both cores check at one door: a node's inputs keep the layout
they were recorded with, saved values are not changed behind autograd's back (through
any alias: views share their base's version counter), class targets still fit, and
nothing writes into memory it does not own."""
import numpy as np
import pytest


def leaf(fg, values, requires_grad=True):
    return fg.tensor(np.asarray(values, dtype=np.float64), requires_grad=requires_grad)


# -- .data rebound after the graph was built -----------------------------------

@pytest.mark.parametrize("new", [np.zeros(5), np.zeros((3, 1)), np.zeros(3, np.float32),
                                 np.zeros(6)[::2]])
def test_rebinding_data_to_another_layout_is_caught_at_backward(fg, new):
    x = leaf(fg, [1.0, 2.0, 3.0])
    y = leaf(fg, [4.0, 5.0, 6.0])
    out = (x + y).sum()                  # add saves nothing, but its kernel reads the sizes
    x.data = new                         # allowed, as in PyTorch
    with pytest.raises(RuntimeError, match=r"input 0 of 'add'.*another shape, dtype or layout"):
        out.backward()
    assert x.grad is None and y.grad is None     # nothing half-done


def test_rebinding_data_of_a_saved_input_is_stale_even_with_the_same_shape(fg):
    x = leaf(fg, [1.0, 2.0])
    out = (x * x).sum()
    x.data = np.array([3.0, 4.0])
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()


def test_rebinding_data_of_an_input_nothing_reads_is_fine(fg):
    x = leaf(fg, [1.0, 2.0])
    y = leaf(fg, [3.0, 4.0])
    out = (x + y).sum()
    x.data = np.array([7.0, 8.0])        # same layout: add's gradient does not read it
    out.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(x.numpy(), [7.0, 8.0])


def test_rebinding_an_operand_of_matmul_and_linear_is_caught(fg):
    w = leaf(fg, np.ones((3, 2)))
    x = leaf(fg, np.ones((4, 3)))
    out = (x @ w).sum()
    w.data = np.ones((3, 2))[:, :1].repeat(2, axis=1)[::1, ::-1]  # same shape, not contiguous
    with pytest.raises(RuntimeError):
        out.backward()
    lin = fg.nn.Linear(3, 2, dtype=np.float64)
    out = lin(x).sum()
    lin.bias.data = np.zeros(5)
    with pytest.raises(RuntimeError, match="input 2 of 'linear'"):
        out.backward()


def test_replay_after_a_batch_of_another_size_is_refused(fg):
    w = leaf(fg, np.ones((3, 1)))
    x = fg.tensor(np.ones((8, 3)))
    step = fg.compile(lambda: ((x @ w).tanh() ** 2).sum())
    first = step()
    x.data = np.ones((8, 3)) * 0.5       # same layout: replays with the new values
    assert step() != first
    x.data = np.ones((16, 3))            # another batch size
    with pytest.raises(RuntimeError, match="compile"):
        step()


# -- cross_entropy's class targets ------------------------------------------------

def test_targets_overwritten_before_backward_are_checked(fg):
    z = leaf(fg, np.zeros((4, 3)))
    target = np.array([0, 1, 2, 1])
    loss = fg.nn.functional.cross_entropy(z, target)
    target[2] = 1000
    with pytest.raises(IndexError, match="target 1000 is out of range for 3 classes"):
        loss.backward()
    target[2] = 2
    target.shape = (2, 2)                # reshaped in place
    with pytest.raises(ValueError, match="targets of shape"):
        loss.backward()
    target.shape = (4,)
    loss.backward()                      # fixed again: the gradient is computed
    assert z.grad.shape == (4, 3)


def test_out_of_range_targets_between_replays_are_refused(fg):
    z = leaf(fg, np.zeros((4, 3)))
    target = fg.tensor(np.array([0, 1, 2, 1]))
    step = fg.compile(lambda: fg.nn.functional.cross_entropy(z * 2.0, target))
    step()
    target.numpy()[1] = -5
    with pytest.raises(IndexError, match="target -5"):
        step()


# -- .grad: dtype checked when assigned, never written where it may not be --------------

@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_grad_of_another_dtype_is_refused_when_assigned(fg, dtype):
    x = leaf(fg, [1.0, 2.0])
    with pytest.raises(TypeError, match="grad: assigned grad has dtype"):
        x.grad = fg.from_numpy(np.zeros(2, dtype=dtype))
    assert x.grad is None
    with pytest.raises(TypeError, match="complex"):          # no complex tensor to assign
        x.grad = fg.from_numpy(np.zeros(2, dtype=np.complex128))
    assert x.grad is None


def test_grad_over_read_only_memory_is_replaced_not_written(fg, tmp_path):
    raw = bytes(16)
    x = leaf(fg, [1.0, 2.0])
    x.grad = fg.from_numpy(np.frombuffer(raw, dtype=np.float64))
    (x * 3).sum().backward()
    assert raw == bytes(16)                          # the immutable bytes are untouched
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    path = tmp_path / "g.bin"
    np.ones(2).tofile(path)
    y = leaf(fg, [1.0, 2.0])
    y.grad = fg.from_numpy(np.memmap(path, dtype=np.float64, mode="r", shape=(2,)))
    (y * 2).sum().backward()                         # a read-only mapping: would segfault
    np.testing.assert_array_equal(y.grad.numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(np.fromfile(path), [1.0, 1.0])


def test_grad_rebound_to_another_dtype_does_not_half_update(fg):
    a = leaf(fg, [1.0, 2.0])
    b = leaf(fg, [1.0, 2.0])
    a.grad = fg.zeros(2, dtype=np.float64)
    b.grad = fg.zeros(2, dtype=np.float64)
    b.grad.data = np.zeros(2, dtype=np.int64)        # behind the setter's back
    (a * b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 2.0])
    assert b.grad.dtype == np.float64


# -- views share memory and the version counter ---------------------------------------

def test_basic_slices_and_transposes_write_through(fg):
    t = fg.tensor(np.arange(6.0).reshape(2, 3))
    t[0:1].zero_()
    np.testing.assert_array_equal(t.numpy(), [[0, 0, 0], [3, 4, 5]])
    w = fg.tensor(np.zeros((2, 3)))
    w.T[0].fill_(7)
    np.testing.assert_array_equal(w.numpy(), [[7, 0, 0], [7, 0, 0]])
    v = fg.tensor(np.zeros(6))
    v.view(2, 3)[1].add_(1.0)
    v.reshape(3, 2).unsqueeze(0).squeeze(0)[0].sub_(2.0)
    np.testing.assert_array_equal(v.numpy(), [-2, -2, 0, 1, 1, 1])


@pytest.mark.parametrize("make", [
    lambda t: t[1:], lambda t: t.T, lambda t: t.reshape(-1), lambda t: t.transpose(0, 1),
    lambda t: t.permute(1, 0), lambda t: t.unsqueeze(0), lambda t: t[None].squeeze(0),
    lambda t: t.expand(4, 2, 3), lambda t: t.detach(), lambda t: t[1:].T.detach(),
])
def test_views_share_memory_and_version_with_their_base(fg, make):
    t = fg.tensor(np.arange(6.0).reshape(2, 3))
    v = make(t)
    assert np.shares_memory(v.numpy(), t.numpy())
    before = t._version_counter
    with fg.no_grad():
        t.add_(1.0)
    assert v._version_counter == t._version_counter == before + 1


def test_integer_and_mask_indexing_copy(fg):
    t = fg.tensor(np.arange(4.0))
    assert not np.shares_memory(t[[0, 1]].numpy(), t.numpy())
    assert not np.shares_memory(t[t > 1].numpy(), t.numpy())


def test_changing_a_saved_tensor_through_a_view_is_caught(fg):
    x = leaf(fg, [1.0, 2.0, 3.0])
    h = x * 2                            # mul saves its inputs: h is read by h * h
    out = (h * h).sum()
    with fg.no_grad():
        h[0:1].zero_()
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()


def test_changing_a_saved_tensor_through_detach_is_caught(fg):
    torch = pytest.importorskip("torch")
    x = leaf(fg, [1.0, 2.0])
    out = (x.exp() * 1.0).sum()          # exp's backward reads its output
    e = x.exp()
    out = (e * e).sum()
    e.detach().zero_()
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()
    tx = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    te = tx.exp()
    tout = (te * te).sum()
    te.detach().zero_()
    with pytest.raises(RuntimeError):    # PyTorch refuses too
        tout.backward()


def test_gradients_flow_through_views(fg):
    x = leaf(fg, np.arange(6.0).reshape(2, 3))
    out = (x.T[1:] * x.reshape(3, 2)[1:]).sum() + x[:, 1].expand(2, 2).sum()
    out.backward()
    xv = np.arange(6.0).reshape(2, 3)
    expected = np.zeros((2, 3))
    # d/dx of sum(x.T[1:] * x.reshape(3, 2)[1:]), by hand
    a, b = xv.T[1:], xv.reshape(3, 2)[1:]
    ga = np.zeros((3, 2)); ga[1:] = b
    gb = np.zeros((3, 2)); gb[1:] = a
    expected += ga.T + gb.reshape(2, 3)
    expected[:, 1] += 2
    np.testing.assert_allclose(x.grad.numpy(), expected)


def test_clone_copies_and_is_differentiable(fg):
    x = leaf(fg, [1.0, 2.0])
    c = x.clone()
    assert not np.shares_memory(c.numpy(), x.numpy())
    assert c.grad_fn == "clone"
    (c * c).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


def test_replay_refuses_a_function_whose_result_changes_shape(fg):
    calls = []

    class Grow(fg.Function):
        @staticmethod
        def forward(ctx, x):
            calls.append(1)
            return np.ones(2 + len(calls)) * np.asarray(x).sum()

        @staticmethod
        def backward(ctx, g):
            return np.ones(2) * np.asarray(g).sum()

    x = leaf(fg, [1.0, 2.0])
    other = leaf(fg, np.ones(3))
    step = fg.compile(lambda: (Grow.apply(x) * other).sum())
    step()
    with pytest.raises(RuntimeError, match="gave values of shape"):
        step()                           # a native mul would read past its buffer
