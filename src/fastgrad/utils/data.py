"""Datasets, samplers and DataLoader: torch.utils.data's surface on NumPy arrays.

    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True, seed=0)
    for xb, yb in loader:          # tuples of tensors
        ...

One epoch is one pass over the dataset in ceil(n / batch_size) batches
(n // batch_size with drop_last=True): batch_size=1 is stochastic gradient
descent, batch_size=len(dataset) full-batch gradient descent, anything in
between mini-batch descent.

The pieces are PyTorch's: a *sampler* yields dataset indices (sequential,
random, a shard per rank), a *batch sampler* groups them into lists, and the
loader fetches each batch and *collates* its items.  Any object with
`__len__` and `__getitem__` is a dataset.

Design: the fast path.  PyTorch fetches a batch item by item and stacks the
items; for arrays in memory that costs a Python call per sample.  Here, with
the default collation, a TensorDataset (and a Subset of one) is batched by
indexing each array once with the whole batch of indices, and the built-in
samplers hand out their epoch's order as one index array, sliced per batch
(no per-index Python list).  A custom sampler, batch sampler or collate_fn
takes PyTorch's general path: lists of indices, items fetched one by one,
collate_fn called on the list.

Randomness: `generator=` is a NumPy Generator (fastgrad's generators are
NumPy Generators; `fg.manual_seed` returns the global one).  Without one,
shuffling draws from fastgrad's global generator, looked up every epoch, so
`fg.manual_seed(s)` makes it reproducible; `seed=` (fastgrad's keyword) gives
the loader its own `np.random.default_rng(seed)`.  Each epoch draws a fresh
permutation, so epochs differ and the sequence of epochs is reproducible.
The orders are NumPy's, not the same numbers as torch's randperm.
"""
import collections.abc
import math
import numbers

import numpy as np

from ..tensor import default_generator, tensor as _tensor_of
from .._core import core

__all__ = ["Dataset", "TensorDataset", "Subset", "DataLoader", "random_split", "Sampler",
           "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler",
           "DistributedSampler", "default_collate", "default_convert"]


# ---------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------

class Dataset:
    """Optional base class: a dataset only needs `__len__` and `__getitem__`."""

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError


def _as_array(x, what):
    if isinstance(x, core.TensorBase):
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return _tensor_of(x).numpy()     # lists and numbers: fg.tensor's dtype rules
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
        return tuple(core.from_array(a[indices]) for a in self.arrays)


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
    """A batch of `dataset` with the default collation (a tuple of tensors, or a dict)."""
    gather = getattr(dataset, "_gather", None)
    if gather is not None:
        return gather(indices)
    batch = default_collate([dataset[int(i)] for i in indices])
    # fastgrad's batches are tuples, also for datasets of single values
    return (batch,) if isinstance(batch, core.TensorBase) else batch


def _short(x):
    text = repr(x)
    return text if len(text) < 60 else text[:57] + "..."


def _stack(values, field):
    first = values[0]
    if isinstance(first, core.TensorBase):
        arrays = [v.numpy() if isinstance(v, core.TensorBase) else np.asarray(v) for v in values]
    elif isinstance(first, (np.ndarray, np.generic)):
        arrays = [np.asarray(v.numpy() if isinstance(v, core.TensorBase) else v) for v in values]
    else:                                  # Python numbers: fg.tensor's dtype rules
        return _tensor_of(values).numpy()
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError("DataLoader: field %d has items of different shapes %s; they cannot be "
                         "stacked into a batch" % (field, sorted(shapes)))
    return np.stack(arrays)


# ---------------------------------------------------------------------------
# Collation (the general path)
# ---------------------------------------------------------------------------

def default_collate(batch, _field=0):
    """Merge a list of items into one batch, recursively, as torch's default_collate.

    Tensors, arrays and NumPy scalars are stacked into a tensor; Python
    numbers become a 1-D tensor (fg.tensor's dtype rules: floats take the
    default dtype, where torch gives float64); strings stay a list; a dict
    gives a dict of batches, a namedtuple a namedtuple, another sequence a
    tuple of batches (torch gives a list; both unpack the same way).
    """
    if not isinstance(batch, (list, tuple)) or not batch:
        raise TypeError("default_collate: expected a non-empty list of items, got %s"
                        % _short(batch))
    first = batch[0]
    if isinstance(first, (core.TensorBase, np.ndarray, np.generic, bool, numbers.Number)):
        return core.from_array(np.asarray(_stack(list(batch), _field)))
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, collections.abc.Mapping):
        for item in batch:
            if not isinstance(item, collections.abc.Mapping) or set(item) != set(first):
                raise ValueError("default_collate: dict items have different keys: %s and %s"
                                 % (sorted(map(str, first)), sorted(map(str, item))))
        return {key: default_collate([item[key] for item in batch]) for key in first}
    if isinstance(first, collections.abc.Sequence):
        width = len(first)
        for item in batch:
            if not isinstance(item, collections.abc.Sequence) or len(item) != width:
                raise RuntimeError("default_collate: each element in list of batch should be of "
                                   "equal size (%r and %r)" % (_short(first), _short(item)))
        fields = [default_collate([item[j] for item in batch], j) for j in range(width)]
        if isinstance(first, tuple) and hasattr(first, "_fields"):
            return type(first)(*fields)
        return tuple(fields)
    raise TypeError("default_collate: cannot batch field %d of type %s (expected tensors, "
                    "arrays, numbers, strings, dicts or sequences of them)"
                    % (_field, type(first).__name__))


def default_convert(item):
    """Without auto-batching (batch_size=None): arrays become tensors, containers are walked."""
    if isinstance(item, np.ndarray) and item.dtype.kind in "biuf":
        return core.from_array(item)
    if isinstance(item, collections.abc.Mapping):
        return {key: default_convert(value) for key, value in item.items()}
    if isinstance(item, tuple) and hasattr(item, "_fields"):
        return type(item)(*(default_convert(v) for v in item))
    if isinstance(item, (tuple, list)):
        return type(item)(default_convert(v) for v in item)
    return item


# ---------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------

def _check_generator(generator, where):
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError("%s: generator must be a numpy.random.Generator (fastgrad's generators "
                        "are NumPy's; fg.manual_seed returns the global one) or None, got %s"
                        % (where, type(generator).__name__))


class Sampler:
    """Base class of samplers: `__iter__` yields dataset indices, `__len__` counts them."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def _order(self):
        return np.arange(len(self.data_source))

    def __iter__(self):
        return iter(self._order().tolist())

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random order: a new permutation every epoch, or draws with replacement.

    num_samples (default len(data_source)) larger than the dataset without
    replacement chains whole permutations, as PyTorch does.
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        if not isinstance(replacement, bool):
            raise TypeError("RandomSampler: replacement should be a boolean value, but got "
                            "replacement=%r" % (replacement,))
        if num_samples is not None and (isinstance(num_samples, bool)
                                        or not isinstance(num_samples, numbers.Integral)
                                        or num_samples <= 0):
            raise ValueError("RandomSampler: num_samples should be a positive integer value, but "
                             "got num_samples=%r" % (num_samples,))
        _check_generator(generator, "RandomSampler")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = None if num_samples is None else int(num_samples)
        self.generator = generator

    @property
    def num_samples(self):
        # Read at every epoch, as PyTorch: the dataset may change size.
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def _order(self):
        n, count = len(self.data_source), self.num_samples
        # Looked up every epoch: fg.manual_seed replaces the global generator.
        rng = self.generator if self.generator is not None else default_generator()
        if self.replacement:
            return rng.integers(0, n, size=count, dtype=np.int64)
        if count == n:
            return rng.permutation(n)
        whole = [rng.permutation(n) for _ in range(count // n)]
        return np.concatenate(whole + [rng.permutation(n)[:count % n]])

    def __iter__(self):
        return iter(self._order().tolist())

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order, a new one every epoch."""

    def __init__(self, indices, generator=None):
        _check_generator(generator, "SubsetRandomSampler")
        self.indices = indices
        self.generator = generator

    def _order(self):
        rng = self.generator if self.generator is not None else default_generator()
        return np.asarray(self.indices, dtype=np.int64)[rng.permutation(len(self.indices))]

    def __iter__(self):
        return iter(self._order().tolist())

    def __len__(self):
        return len(self.indices)


def _check_batch_size(batch_size, where):
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size <= 0:
        raise ValueError("%s: batch_size should be a positive integer value, but got "
                         "batch_size=%r" % (where, batch_size))


class BatchSampler(Sampler):
    """Group the indices of `sampler` into lists of `batch_size` (the last may be shorter)."""

    def __init__(self, sampler, batch_size, drop_last):
        _check_batch_size(batch_size, "BatchSampler")
        if not isinstance(drop_last, bool):
            raise ValueError("BatchSampler: drop_last should be a boolean value, but got "
                             "drop_last=%r" % (drop_last,))
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def _index_batches(self, order=None):
        """The batches as index arrays: one order per epoch, sliced (the fast path)."""
        if order is None:
            order = _fast_order(self.sampler)
        if order is None:
            for batch in self:
                yield np.asarray(batch, dtype=np.int64)
            return
        size = self.batch_size
        stop = len(order) - len(order) % size if self.drop_last else len(order)
        for start in range(0, stop, size):
            yield order[start:start + size]

    def __iter__(self):
        order = _fast_order(self.sampler)
        if order is not None:
            for batch in self._index_batches(order):
                yield batch.tolist()
            return
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return -(-len(self.sampler) // self.batch_size)


def _fast_order(sampler):
    """The epoch's order as one index array when `sampler` is a built-in sampler, else None.

    A subclass that overrides __iter__ defines its own order, so it takes the
    general path.
    """
    cls = type(sampler)
    if getattr(cls, "__iter__", None) in _ORDER_ITERS:
        return sampler._order()
    return None


# DistributedSampler (fastgrad.distributed) joins this set when it is defined.
_ORDER_ITERS = {SequentialSampler.__iter__, RandomSampler.__iter__,
                SubsetRandomSampler.__iter__}


# ---------------------------------------------------------------------------
# DataLoader
# ---------------------------------------------------------------------------

class DataLoader:
    """Iterate over a dataset in batches, as torch.utils.data.DataLoader.

    Arguments (PyTorch's, with its checks):
      batch_size   items per batch (default 1); None turns auto-batching off
                   (each item is yielded on its own, arrays made tensors).
      shuffle      a new random order every epoch (a RandomSampler).
      sampler      the order of indices (any iterable of ints with a length);
                   excludes shuffle.
      batch_sampler  yields lists of indices; excludes batch_size, shuffle,
                   sampler and drop_last.
      collate_fn   merges a list of items into a batch (default_collate);
                   without it, batches are tuples of tensors, and a
                   TensorDataset or Subset is gathered in one indexing per
                   array.
      drop_last    skip a final batch smaller than batch_size.
      generator    a numpy.random.Generator for the random order (None:
                   fastgrad's global generator, as set by fg.manual_seed).
      seed         fastgrad's shorthand: generator=np.random.default_rng(seed).
      num_workers, pin_memory, timeout, worker_init_fn, prefetch_factor,
      persistent_workers
                   accepted for PyTorch scripts, with PyTorch's checks.  Batches
                   are always built in the main process (one batch of in-memory
                   arrays is a fancy index, faster than sending it between
                   processes), so num_workers only changes nothing; pin_memory is
                   a no-op: fastgrad runs on the CPU.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device="",
                 seed=None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError("DataLoader: the dataset must have __len__ and __getitem__, got %s"
                            % type(dataset).__name__)
        if isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral) \
                or num_workers < 0:
            raise ValueError("DataLoader: num_workers option should be non-negative; use "
                             "num_workers=0 to disable multiprocessing (got %r)" % (num_workers,))
        if not timeout >= 0:
            raise ValueError("DataLoader: timeout option should be non-negative, got %r"
                             % (timeout,))
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("DataLoader: prefetch_factor option could only be specified in "
                             "multiprocessing; let num_workers > 0 to enable it")
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
        if seed is not None and generator is not None:
            raise ValueError("DataLoader: give seed or generator, not both")
        if seed is not None:
            generator = np.random.default_rng(seed)
        _check_generator(generator, "DataLoader")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler option is mutually exclusive with "
                                 "batch_size, shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None:
            if drop_last:
                raise ValueError("DataLoader: batch_size=None option disables auto-batching and "
                                 "is mutually exclusive with drop_last")
        else:
            _check_batch_size(batch_size, "DataLoader")
        if not isinstance(drop_last, bool):
            raise ValueError("DataLoader: drop_last should be a boolean value, but got "
                             "drop_last=%r" % (drop_last,))
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError("DataLoader: collate_fn must be callable, got %r" % (collate_fn,))
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle \
                else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, int(batch_size), drop_last)
        self.dataset = dataset
        self.batch_size = None if batch_size is None else int(batch_size)
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = int(num_workers)
        self.collate_fn = collate_fn
        self.pin_memory = bool(pin_memory)
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = bool(persistent_workers)
        self.pin_memory_device = pin_memory_device
        self.seed = seed

    @property
    def shuffle(self):
        return isinstance(self.sampler, RandomSampler)

    def __len__(self):
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    def __iter__(self):
        dataset, collate_fn = self.dataset, self.collate_fn
        if self.batch_sampler is None:           # no auto-batching: one item at a time
            convert = collate_fn if collate_fn is not None else default_convert
            for index in self.sampler:
                yield convert(dataset[index])
            return
        if collate_fn is None:
            batches = self.batch_sampler._index_batches() \
                if isinstance(self.batch_sampler, BatchSampler) else self.batch_sampler
            for indices in batches:
                yield _gather(dataset, np.asarray(indices, dtype=np.int64))
            return
        for indices in self.batch_sampler:
            yield collate_fn([dataset[i] for i in indices])

    def __repr__(self):
        return ("DataLoader(%d items, batch_size=%r, sampler=%s, drop_last=%s)"
                % (len(self.dataset), self.batch_size, type(self.sampler).__name__,
                   self.drop_last))


def random_split(dataset, lengths, generator=None, seed=None):
    """Split `dataset` at random into Subsets of the given lengths.

    `lengths` are item counts summing to len(dataset), or fractions summing
    to 1 (each gets floor(f * n) items; the remainder goes one by one to the
    first subsets, as in PyTorch).  The permutation comes from `generator`
    (a NumPy Generator), np.random.default_rng(seed), or fastgrad's global
    generator.
    """
    if seed is not None and generator is not None:
        raise ValueError("random_split: give seed or generator, not both")
    _check_generator(generator, "random_split")
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
    if generator is not None:
        rng = generator
    else:
        rng = np.random.default_rng(seed) if seed is not None else default_generator()
    order = rng.permutation(n)
    subsets = []
    start = 0
    for count in counts:
        subsets.append(Subset(dataset, order[start:start + count]))
        start += count
    return subsets


# torch.utils.data exports DistributedSampler too.  Imported last: the
# distributed module builds on Sampler above.
from ..distributed import DistributedSampler  # noqa: E402
_ORDER_ITERS.add(DistributedSampler.__iter__)
