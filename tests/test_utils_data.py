"""fastgrad.utils.data against torch.utils.data: index orders, lengths, argument
checks and collation; samplers and the fast path."""
import numpy as np
import pytest

N = 10
X = np.arange(2 * N, dtype=np.float64).reshape(N, 2)
Y = np.arange(N, dtype=np.int64) * 10


def _dataset(fg):
    return fg.utils.data.TensorDataset(X, Y)


def test_data_is_utils_data(fg):
    assert fg.data is fg.utils.data
    assert fg.data.DataLoader is fg.utils.data.DataLoader
    assert fg.utils.data.DistributedSampler is fg.distributed.DistributedSampler


@pytest.mark.parametrize("n", [0, 1, 7, 10])
@pytest.mark.parametrize("batch_size", [1, 3, 10, 12])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sequential_and_batch_sampler_match_torch(fg, n, batch_size, drop_last):
    torch = pytest.importorskip("torch")
    data = fg.utils.data
    source = list(range(n))
    ours = data.BatchSampler(data.SequentialSampler(source), batch_size, drop_last)
    theirs = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(source),
                                           batch_size, drop_last)
    assert list(data.SequentialSampler(source)) == list(torch.utils.data.SequentialSampler(source))
    assert list(ours) == list(theirs)
    assert len(ours) == len(theirs)
    # a plain list as the sampler: the general (per-index) path
    order = source[::-1]
    assert list(data.BatchSampler(order, batch_size, drop_last)) == \
        list(torch.utils.data.BatchSampler(order, batch_size, drop_last))


@pytest.mark.parametrize("batch_size", [None, 1, 3, 4, N, N + 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_lengths_and_batches_match_torch(fg, batch_size, drop_last):
    torch = pytest.importorskip("torch")
    if batch_size is None and drop_last:
        return                                          # an error in both (tested below)
    ours = fg.utils.data.DataLoader(_dataset(fg), batch_size=batch_size, drop_last=drop_last)
    theirs = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)),
        batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    got, expected = list(ours), list(theirs)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert len(a) == len(b)
        for field, other in zip(a, b):
            assert isinstance(field, fg.Tensor)
            np.testing.assert_array_equal(field.numpy(), other.numpy())


def test_batch_sampler_argument_of_the_loader_matches_torch(fg):
    torch = pytest.importorskip("torch")
    batches = [[3, 1], [0, 2, 4], [9]]
    ours = fg.utils.data.DataLoader(_dataset(fg), batch_sampler=batches)
    theirs = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)),
        batch_sampler=batches)
    assert len(ours) == len(theirs) == 3
    for (xa, ya), (xb, yb) in zip(ours, theirs):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def _torch_ok(torch, **kwargs):
    try:
        torch.utils.data.DataLoader(list(range(N)), **kwargs)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("kwargs", [
    dict(sampler=[0, 1], shuffle=True),
    dict(batch_sampler=[[0]], batch_size=2),
    dict(batch_sampler=[[0]], shuffle=True),
    dict(batch_sampler=[[0]], sampler=[0]),
    dict(batch_sampler=[[0]], drop_last=True),
    dict(batch_size=None, drop_last=True),
    dict(num_workers=-1),
    dict(persistent_workers=True),
    dict(prefetch_factor=2),
    dict(batch_size=0),
])
def test_argument_checks_match_torch(fg, kwargs):
    torch = pytest.importorskip("torch")
    assert not _torch_ok(torch, **kwargs)          # the case is an error in torch too
    with pytest.raises(ValueError):
        fg.utils.data.DataLoader(list(range(N)), **kwargs)


def test_argument_combinations_torch_accepts_are_accepted(fg):
    torch = pytest.importorskip("torch")
    data = fg.utils.data
    for kwargs in (dict(sampler=[2, 0]), dict(batch_sampler=[[1, 2]], batch_size=1),
                   dict(batch_size=None), dict(num_workers=2, pin_memory=True)):
        assert _torch_ok(torch, **kwargs)
        data.DataLoader(_dataset(fg), **kwargs)


def test_collate_of_dict_and_tuple_items_matches_torch(fg):
    torch = pytest.importorskip("torch")

    class Items:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"x": np.array([i, i * i], dtype=np.float64), "label": i % 2,
                    "pair": (np.float64(i), np.array([i], dtype=np.int64)), "name": "s%d" % i}

    ours = list(fg.utils.data.DataLoader(Items(), batch_size=2))
    theirs = list(torch.utils.data.DataLoader(Items(), batch_size=2))
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        assert isinstance(a, dict) and set(a) == set(b)
        np.testing.assert_array_equal(a["x"].numpy(), b["x"].numpy())
        assert a["x"].dtype == np.float64
        np.testing.assert_array_equal(a["label"].numpy(), b["label"].numpy())
        assert a["label"].dtype == np.int64 == b["label"].numpy().dtype
        assert isinstance(a["pair"], tuple) and len(a["pair"]) == len(b["pair"]) == 2
        for mine, other in zip(a["pair"], b["pair"]):
            np.testing.assert_array_equal(mine.numpy(), other.numpy())
        assert a["name"] == b["name"]


def test_collate_fn_gets_the_list_of_items(fg):
    seen = []

    def collate(items):
        seen.append(items)
        return len(items)

    loader = fg.utils.data.DataLoader(_dataset(fg), batch_size=4, collate_fn=collate)
    assert list(loader) == [4, 4, 2]
    assert len(seen[0]) == 4 and isinstance(seen[0][0], tuple)
    np.testing.assert_array_equal(seen[2][1][0].numpy(), X[9])


def test_default_collate_namedtuple_and_errors(fg):
    from collections import namedtuple
    data = fg.utils.data
    Point = namedtuple("Point", "x y")
    batch = data.default_collate([Point(1, 2.5), Point(3, 4.5)])
    assert isinstance(batch, Point)
    np.testing.assert_array_equal(batch.x.numpy(), [1, 3])
    with pytest.raises(RuntimeError, match="equal size"):
        data.default_collate([(1, 2), (1,)])
    with pytest.raises(ValueError, match="different keys"):
        data.default_collate([{"a": 1}, {"b": 1}])
    with pytest.raises(TypeError, match="cannot batch"):
        data.default_collate([object()])


def test_no_auto_batching_yields_items(fg):
    items = list(fg.utils.data.DataLoader([np.array([1.0, 2.0]), np.array([3.0, 4.0])],
                                          batch_size=None))
    assert len(items) == 2 and isinstance(items[0], fg.Tensor)
    np.testing.assert_array_equal(items[1].numpy(), [3.0, 4.0])


def test_generator_is_a_numpy_generator(fg):
    data = fg.utils.data
    a = data.DataLoader(_dataset(fg), batch_size=3, shuffle=True,
                        generator=np.random.default_rng(5))
    b = data.DataLoader(_dataset(fg), batch_size=3, shuffle=True, seed=5)
    for _ in range(2):                                   # two epochs, the same sequence
        np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in a]),
                                      np.concatenate([y.numpy() for _, y in b]))
    assert a.shuffle and not data.DataLoader(_dataset(fg)).shuffle
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        data.DataLoader(_dataset(fg), shuffle=True, generator=123)
    with pytest.raises(ValueError, match="seed or generator"):
        data.DataLoader(_dataset(fg), seed=1, generator=np.random.default_rng(1))
    parts = data.random_split(_dataset(fg), [4, 6], generator=np.random.default_rng(3))
    same = data.random_split(_dataset(fg), [4, 6], seed=3)
    np.testing.assert_array_equal(parts[0].indices, same[0].indices)


def test_random_sampler(fg):
    data = fg.utils.data
    source = list(range(N))
    sampler = data.RandomSampler(source, generator=np.random.default_rng(0))
    first, second = list(sampler), list(sampler)
    assert sorted(first) == source and sorted(second) == source and first != second
    chained = list(data.RandomSampler(source, num_samples=25,
                                      generator=np.random.default_rng(0)))
    assert len(chained) == 25
    assert sorted(chained[:10]) == source and sorted(chained[10:20]) == source
    assert len(set(chained[20:])) == 5
    drawn = data.RandomSampler(source, replacement=True, num_samples=50,
                               generator=np.random.default_rng(0))
    values = list(drawn)
    assert len(drawn) == 50 and len(values) == 50 and set(values) <= set(source)
    with pytest.raises(TypeError, match="replacement"):
        data.RandomSampler(source, replacement=1)
    with pytest.raises(ValueError, match="num_samples"):
        data.RandomSampler(source, num_samples=0)
    subset = list(data.SubsetRandomSampler([7, 3, 5], generator=np.random.default_rng(0)))
    assert sorted(subset) == [3, 5, 7]
    with pytest.raises(ValueError, match="batch_size"):
        data.BatchSampler(source, 0, False)
    with pytest.raises(ValueError, match="drop_last"):
        data.BatchSampler(source, 2, 1)


def test_custom_sampler_and_subclass_take_the_general_path(fg):
    data = fg.utils.data

    class Reversed(data.SequentialSampler):
        def __iter__(self):
            return iter(range(len(self.data_source) - 1, -1, -1))

    loader = data.DataLoader(_dataset(fg), batch_size=4, sampler=Reversed(X))
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in loader]), Y[::-1])
    loader = data.DataLoader(_dataset(fg), batch_size=4, sampler=iter_order([2, 5, 1]))
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in loader]), Y[[2, 5, 1]])


class iter_order:
    def __init__(self, order):
        self.order = order

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


def test_subset_of_tensor_dataset_is_indexed_once_per_batch(fg):
    class Counting(np.ndarray):
        calls = 0

        def __getitem__(self, key):
            Counting.calls += 1
            return np.asarray(self).__getitem__(key)

    data = fg.utils.data
    subset = data.Subset(data.TensorDataset(X.view(Counting)), [9, 8, 7, 6, 5])
    batches = list(data.DataLoader(subset, batch_size=2, shuffle=True, seed=0))
    assert Counting.calls == 3 and len(batches) == 3
    assert sorted(np.concatenate([b[0].numpy()[:, 0] for b in batches])) == [10, 12, 14, 16, 18]


def test_workers_and_pin_memory_change_nothing(fg):
    data = fg.utils.data
    plain = list(data.DataLoader(_dataset(fg), batch_size=4, shuffle=True, seed=2))
    other = list(data.DataLoader(_dataset(fg), batch_size=4, shuffle=True, seed=2, num_workers=2,
                                 pin_memory=True, persistent_workers=True, prefetch_factor=2))
    for (xa, ya), (xb, yb) in zip(plain, other):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
