"""Datasets and mini-batching: TensorDataset, DataLoader, random_split, Subset.

    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True, seed=0)
    for xb, yb in loader:          # tuples of tensors
        ...

One epoch is one pass over the dataset in ceil(n / batch_size) batches
(n // batch_size with drop_last=True): batch_size=1 is stochastic gradient
descent, batch_size=len(dataset) full-batch gradient descent, anything in
between mini-batch descent.

Any object with `__len__` and `__getitem__` is a dataset; its items (a
tuple of fields, or one value) are stacked field by field.  A TensorDataset
(and a Subset of one) is batched without the per-item loop: each array is
indexed once with the whole batch of indices.

Shuffling draws a fresh permutation every epoch from the loader's own NumPy
Generator when `seed` is given (so the sequence of epochs is reproducible,
and each epoch differs from the last), otherwise from fastgrad's global
generator, so `fg.manual_seed(s)` makes it reproducible too.
"""
import math
import numbers

import numpy as np

from .tensor import default_generator, tensor as _tensor_of
from ._core import core

__all__ = ["Dataset", "TensorDataset", "Subset", "DataLoader", "random_split"]


class Dataset:
    """Optional base class: a dataset only needs `__len__` and `__getitem__`."""

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError


def _as_array(x, what):
    if isinstance(x, core.TensorBase):
        return x.data
    if isinstance(x, np.ndarray):
        return x
    try:
        return _tensor_of(x).data      # lists and numbers: fg.tensor's dtype rules
    except (TypeError, ValueError) as exc:
        raise TypeError("%s: cannot make an array from %s (%s)" % (what, type(x).__name__, exc))


class TensorDataset(Dataset):
    """Samples are rows (first-axis entries) of the given arrays or tensors, all of one length."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: give at least one array or tensor")
        arrays = tuple(_as_array(a, "TensorDataset") for a in arrays)
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError("TensorDataset: argument %d is a scalar; every argument needs a "
                                 "first (sample) dimension" % i)
        lengths = [len(a) for a in arrays]
        if len(set(lengths)) > 1:
            raise ValueError("TensorDataset: all arrays must have the same length (first "
                             "dimension), got %s" % ", ".join(map(str, lengths)))
        self.arrays = arrays

    @property
    def tensors(self):
        """The data as tensors (sharing memory), as torch's TensorDataset names it."""
        return tuple(core.from_array(a) for a in self.arrays)

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(_tensor_of(a[index]) for a in self.arrays)

    def _gather(self, indices):
        """One batch: every array indexed once with the whole index array."""
        return tuple(a[indices] for a in self.arrays)


class Subset(Dataset):
    """The items of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset)
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError("Subset: indices must be in [-%d, %d) for a dataset of %d items"
                             % (n, n, n))

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        if isinstance(index, (list, np.ndarray)):
            return [self.dataset[int(i)] for i in self.indices[index]]
        return self.dataset[int(self.indices[index])]

    def _gather(self, indices):
        return _gather(self.dataset, self.indices[indices])


def _gather(dataset, indices):
    """A batch of `dataset` as a tuple of arrays, one per field."""
    gather = getattr(dataset, "_gather", None)
    if gather is not None:
        return gather(indices)
    items = [dataset[int(i)] for i in indices]
    return _collate(items)


def _collate(items):
    """Stack a list of items (tuples of fields, or single values) field by field."""
    first = items[0]
    if isinstance(first, (tuple, list)):
        width = len(first)
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != width:
                raise ValueError("DataLoader: dataset items differ in structure: %r and %r"
                                 % (_short(first), _short(item)))
        return tuple(_stack([item[j] for item in items], j) for j in range(width))
    return (_stack(items, 0),)


def _short(x):
    text = repr(x)
    return text if len(text) < 60 else text[:57] + "..."


def _stack(values, field):
    first = values[0]
    if isinstance(first, core.TensorBase):
        arrays = [v.data if isinstance(v, core.TensorBase) else np.asarray(v) for v in values]
    elif isinstance(first, (np.ndarray, np.generic)):
        arrays = [np.asarray(v.data if isinstance(v, core.TensorBase) else v) for v in values]
    elif isinstance(first, (bool, numbers.Number)):
        return _tensor_of(values).data     # Python numbers: fg.tensor's dtype rules
    else:
        raise TypeError("DataLoader: cannot batch field %d of type %s (expected tensors, "
                        "arrays or numbers)" % (field, type(first).__name__))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError("DataLoader: field %d has items of different shapes %s; they cannot be "
                         "stacked into a batch" % (field, sorted(shapes)))
    return np.stack(arrays)


class DataLoader:
    """Iterate over a dataset in batches; each batch is a tuple of tensors.

    Arguments: `batch_size` (positive int), `shuffle` (a new order every
    epoch), `drop_last` (skip a final batch smaller than batch_size), `seed`
    (the loader's own generator; None draws from fastgrad's global one).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError("DataLoader: the dataset must have __len__ and __getitem__, got %s"
                            % type(dataset).__name__)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size <= 0:
            raise ValueError("DataLoader: batch_size must be a positive integer, got %r"
                             % (batch_size,))
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self._generator = np.random.default_rng(seed) if seed is not None else None

    def __len__(self):
        n = len(self.dataset)
        if self.drop_last:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def _order(self):
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        # Looked up every epoch: fg.manual_seed replaces the global generator.
        rng = self._generator if self._generator is not None else default_generator()
        return rng.permutation(n)

    def __iter__(self):
        order = self._order()
        batch = self.batch_size
        stop = len(self) * batch
        for start in range(0, stop, batch):
            fields = _gather(self.dataset, order[start:start + batch])
            yield tuple(core.from_array(np.asarray(f)) for f in fields)

    def __repr__(self):
        return ("DataLoader(%d items, batch_size=%d, shuffle=%s, drop_last=%s, seed=%r)"
                % (len(self.dataset), self.batch_size, self.shuffle, self.drop_last, self.seed))


def random_split(dataset, lengths, seed=None):
    """Split `dataset` at random into Subsets of the given lengths.

    `lengths` are item counts summing to len(dataset), or fractions summing
    to 1 (each gets floor(f * n) items; the remainder goes one by one to the
    first subsets, as in PyTorch).  The permutation comes from
    np.random.default_rng(seed), or from fastgrad's global generator.
    """
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths is empty")
    for x in lengths:
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not x >= 0:
            raise ValueError("random_split: lengths must be non-negative numbers, got %r"
                             % (lengths,))
    total = sum(lengths)
    if all(isinstance(x, numbers.Integral) for x in lengths):
        counts = [int(x) for x in lengths]
    elif math.isclose(total, 1) and total <= 1 + 1e-12:
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
    else:
        counts = None
    if counts is None or sum(counts) != n:
        raise ValueError("random_split: the lengths %r do not add up to the dataset's %d items "
                         "(give counts summing to %d, or fractions summing to 1)"
                         % (lengths, n, n))
    rng = np.random.default_rng(seed) if seed is not None else default_generator()
    order = rng.permutation(n)
    subsets = []
    start = 0
    for count in counts:
        subsets.append(Subset(dataset, order[start:start + count]))
        start += count
    return subsets

