"""Datasets and mini-batching: epochs, batch counts, shuffling, splits, and the
lectures' SGD / mini-batch / full-batch descent done by hand."""
import math

import numpy as np
import pytest

N = 10
X = np.arange(2 * N, dtype=np.float64).reshape(N, 2)
Y = np.arange(N, dtype=np.int64) * 10


def _loader(fg, **kwargs):
    return fg.data.DataLoader(fg.data.TensorDataset(X, Y), **kwargs)


# --- TensorDataset ------------------------------------------------------------------

def test_tensor_dataset_items_and_lengths(fg):
    ds = fg.data.TensorDataset(X, fg.tensor(Y), [[1.0]] * N)
    assert len(ds) == N
    x, y, z = ds[3]
    assert isinstance(x, fg.Tensor) and isinstance(y, fg.Tensor)
    np.testing.assert_array_equal(x.numpy(), X[3])
    assert y.item() == 30 and y.dtype == np.int64
    assert z.dtype == fg.get_default_dtype()        # Python floats: the default dtype


def test_tensor_dataset_validates_lengths(fg):
    with pytest.raises(ValueError, match="same length.*10, 9"):
        fg.data.TensorDataset(X, Y[:9])
    with pytest.raises(ValueError, match="scalar"):
        fg.data.TensorDataset(X, np.float64(1.0))
    with pytest.raises(ValueError, match="at least one"):
        fg.data.TensorDataset()


# --- DataLoader: batches and epochs ---------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 3, 4, N, N + 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_steps_per_epoch(fg, batch_size, drop_last):
    loader = _loader(fg, batch_size=batch_size, drop_last=drop_last)
    expected = N // batch_size if drop_last else math.ceil(N / batch_size)
    assert len(loader) == expected
    batches = list(loader)
    assert len(batches) == expected
    sizes = [len(b[0]) for b in batches]
    if drop_last:
        assert sizes == [batch_size] * expected
    else:
        assert sizes == [batch_size] * (expected - 1) + [N - batch_size * (expected - 1)]


def test_sgd_minibatch_fullbatch_step_counts(fg):
    # SGD: n steps per epoch; mini-batch: ceil(n / B); full batch: one.
    assert [len(_loader(fg, batch_size=b)) for b in (1, 4, N)] == [N, 3, 1]


def test_batches_in_order_without_shuffle(fg):
    batches = list(_loader(fg, batch_size=4))
    for k, (xb, yb) in enumerate(batches):
        assert isinstance(xb, fg.Tensor) and isinstance(yb, fg.Tensor)
        np.testing.assert_array_equal(xb.numpy(), X[4 * k:4 * k + 4])
        np.testing.assert_array_equal(yb.numpy(), Y[4 * k:4 * k + 4])
        assert xb.dtype == np.float64 and yb.dtype == np.int64
    assert isinstance(batches[0], tuple)


def test_tensor_dataset_is_indexed_once_per_batch(fg):
    class Counting(np.ndarray):
        calls = 0

        def __getitem__(self, key):
            Counting.calls += 1
            return np.asarray(self).__getitem__(key)

    xs = X.view(Counting)
    loader = fg.data.DataLoader(fg.data.TensorDataset(xs), batch_size=4)
    batches = list(loader)
    assert Counting.calls == 3 and len(batches) == 3
    np.testing.assert_array_equal(batches[2][0].numpy(), X[8:])


def test_seeded_shuffle_is_reproducible_and_changes_every_epoch(fg):
    a = _loader(fg, batch_size=3, shuffle=True, seed=7)
    b = _loader(fg, batch_size=3, shuffle=True, seed=7)
    epochs_a = [np.concatenate([yb.numpy() for _, yb in a]) for _ in range(3)]
    epochs_b = [np.concatenate([yb.numpy() for _, yb in b]) for _ in range(3)]
    for ea, eb in zip(epochs_a, epochs_b):
        np.testing.assert_array_equal(ea, eb)
        assert sorted(ea) == sorted(Y)                      # each epoch is a permutation
    assert not np.array_equal(epochs_a[0], epochs_a[1])
    assert not np.array_equal(epochs_a[1], epochs_a[2])
    # the documented source of the order: np.random.default_rng(seed)
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(epochs_a[0], Y[rng.permutation(N)])
    np.testing.assert_array_equal(epochs_a[1], Y[rng.permutation(N)])
    other = _loader(fg, batch_size=3, shuffle=True, seed=8)
    assert not np.array_equal(np.concatenate([yb.numpy() for _, yb in other]), epochs_a[0])


def test_unseeded_shuffle_follows_manual_seed(fg):
    def epoch(loader):
        return np.concatenate([yb.numpy() for _, yb in loader])

    loader = _loader(fg, batch_size=4, shuffle=True)
    fg.manual_seed(123)
    first = epoch(loader)
    second = epoch(loader)
    fg.manual_seed(123)
    np.testing.assert_array_equal(epoch(loader), first)
    np.testing.assert_array_equal(epoch(loader), second)
    assert not np.array_equal(first, second)


def test_generic_dataset_is_stacked(fg):
    class Squares:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.array([i, i * i], dtype=np.float32), i % 2, float(i) / 2

    xb, yb, zb = next(iter(fg.data.DataLoader(Squares(), batch_size=3)))
    np.testing.assert_array_equal(xb.numpy(), [[0, 0], [1, 1], [2, 4]])
    assert xb.dtype == np.float32 and yb.dtype == np.int64
    np.testing.assert_array_equal(yb.numpy(), [0, 1, 0])
    assert zb.dtype == fg.get_default_dtype()
    np.testing.assert_allclose(zb.numpy(), [0.0, 0.5, 1.0])


def test_single_value_items_give_one_tuples(fg):
    batches = list(fg.data.DataLoader([fg.tensor([1.0, 2.0]), fg.tensor([3.0, 4.0]),
                                       fg.tensor([5.0, 6.0])], batch_size=2))
    assert [len(b) for b in batches] == [1, 1]
    np.testing.assert_array_equal(batches[0][0].numpy(), [[1, 2], [3, 4]])


def test_loader_errors(fg):
    ds = fg.data.TensorDataset(X)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            fg.data.DataLoader(ds, batch_size=bad)
    with pytest.raises(TypeError, match="__len__"):
        fg.data.DataLoader(object())
    ragged = [np.ones(2), np.ones(3)]
    with pytest.raises(ValueError, match="different shapes"):
        list(fg.data.DataLoader(ragged, batch_size=2))
    with pytest.raises(TypeError, match="cannot batch"):
        list(fg.data.DataLoader([object()], batch_size=1))


# --- random_split and Subset --------------------------------------------------------

def test_random_split_counts_and_fractions(fg):
    ds = fg.data.TensorDataset(X, Y)
    parts = fg.data.random_split(ds, [6, 4], seed=0)
    assert [len(p) for p in parts] == [6, 4]
    seen = np.concatenate([np.concatenate([yb.data for _, yb in fg.data.DataLoader(p, 3)])
                           for p in parts])
    assert sorted(seen) == sorted(Y)                          # disjoint and complete
    # fractions: floor of each share, the remainder dealt to the first parts (as PyTorch)
    assert [len(p) for p in fg.data.random_split(ds, [0.7, 0.3], seed=0)] == [7, 3]
    assert [len(p) for p in fg.data.random_split(ds, [0.33, 0.33, 0.34], seed=0)] == [4, 3, 3]
    again = fg.data.random_split(ds, [6, 4], seed=0)
    np.testing.assert_array_equal(again[0].indices, parts[0].indices)


def test_random_split_lengths_match_torch(fg):
    torch = pytest.importorskip("torch")
    for lengths in ([0.5, 0.5], [0.1, 0.2, 0.7], [0.25, 0.25, 0.25, 0.25], [0.6, 0.4]):
        ours = [len(p) for p in fg.data.random_split(list(range(11)), lengths, seed=1)]
        theirs = [len(p) for p in torch.utils.data.random_split(list(range(11)), lengths)]
        assert ours == theirs


def test_random_split_errors(fg):
    ds = fg.data.TensorDataset(X)
    with pytest.raises(ValueError, match="do not add up"):
        fg.data.random_split(ds, [5, 4])
    with pytest.raises(ValueError, match="do not add up"):
        fg.data.random_split(ds, [0.5, 0.6])
    with pytest.raises(ValueError, match="non-negative"):
        fg.data.random_split(ds, [12, -2])


def test_random_split_follows_manual_seed(fg):
    fg.manual_seed(5)
    a = fg.data.random_split(list(range(N)), [5, 5])
    fg.manual_seed(5)
    b = fg.data.random_split(list(range(N)), [5, 5])
    np.testing.assert_array_equal(a[0].indices, b[0].indices)


def test_subset(fg):
    ds = fg.data.TensorDataset(X, Y)
    sub = fg.data.Subset(ds, [9, 0, 4])
    assert len(sub) == 3
    assert sub[0][1].item() == 90
    (xb, yb), = list(fg.data.DataLoader(sub, batch_size=3))
    np.testing.assert_array_equal(yb.numpy(), [90, 0, 40])
    with pytest.raises(IndexError):
        fg.data.Subset(ds, [10])


# --- the lectures: one epoch of SGD / mini-batch / full-batch descent by hand ------------

def test_one_sgd_step_of_the_lecture_neuron(fg):
    # t_pred = x1*w1 + x2*w2 + b, L = (t_pred - t_true)^2, x = (1, 2), w = (0.5, -0.3),
    # b = 0.1, t_true = 1: t_pred = 0, dL/dt_pred = -2, dL/dw = (-2, -4), dL/db = -2;
    # with lr = 0.1: w = (0.7, 0.1), b = 0.3.
    w = fg.tensor(np.array([0.5, -0.3]), requires_grad=True)
    b = fg.tensor(0.1, dtype=np.float64, requires_grad=True)
    loader = fg.data.DataLoader(fg.data.TensorDataset(np.array([[1.0, 2.0]]), np.array([1.0])))
    opt = fg.optim.SGD([w, b], lr=0.1)
    for xb, tb in loader:
        opt.zero_grad()
        loss = (((xb * w).sum(axis=1) + b - tb) ** 2).mean()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(w.numpy(), [0.7, 0.1], rtol=1e-15)
    assert b.item() == pytest.approx(0.3, rel=1e-15)


@pytest.mark.parametrize("batch_size", [1, 4, 10])
def test_one_epoch_of_descent_equals_the_hand_update(fg, batch_size):
    # t = w . x + b, squared loss averaged over each batch:
    # w <- w - lr * (2/B) sum_k (w . x_k + b - t_k) x_k,  b <- b - lr * (2/B) sum_k (...)
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((10, 3))
    ts = xs @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.standard_normal(10)
    lr = 0.05
    w = fg.tensor(np.zeros(3), requires_grad=True)
    b = fg.tensor(np.zeros(1), requires_grad=True)
    opt = fg.optim.SGD([w, b], lr=lr)
    loader = fg.data.DataLoader(fg.data.TensorDataset(xs, ts), batch_size=batch_size,
                                shuffle=True, seed=3)
    steps = 0
    for xb, tb in loader:
        opt.zero_grad()
        loss = ((xb @ w + b - tb) ** 2).mean()
        loss.backward()
        opt.step()
        steps += 1
    assert steps == math.ceil(10 / batch_size)

    hand_w, hand_b = np.zeros(3), 0.0
    order = np.random.default_rng(3).permutation(10)
    for start in range(0, 10, batch_size):
        k = order[start:start + batch_size]
        residual = xs[k] @ hand_w + hand_b - ts[k]
        grad_w = 2.0 / len(k) * (residual @ xs[k])
        grad_b = 2.0 / len(k) * residual.sum()
        hand_w, hand_b = hand_w - lr * grad_w, hand_b - lr * grad_b
    np.testing.assert_allclose(w.numpy(), hand_w, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b.numpy(), [hand_b], rtol=1e-12, atol=1e-15)
