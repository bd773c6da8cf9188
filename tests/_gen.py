"""Shared input generators for the fuzz and differential tests.

`LAYOUTS` turns a C-ordered float64 array into the same values held in an
unusual NumPy layout (strided, reversed, Fortran, big-endian, read-only,
memory-mapped, a subclass, ...).  Every layout keeps the values, so a test
can compare whatever fastgrad computes on it with NumPy on the plain array.
"""
import os
import tempfile

import numpy as np


def _strided(a):
    # Every other element of a buffer twice as long on the last axis.
    if a.ndim == 0:
        return a.copy()
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


def _reversed(a):
    # Negative strides on every axis, same values in the same order.
    flipped = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
    return flipped[(slice(None, None, -1),) * a.ndim]


def _read_only(a):
    b = a.copy()
    b.setflags(write=False)
    return b


def _memmap(a):
    handle, path = tempfile.mkstemp(suffix=".bin")
    os.close(handle)
    m = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape if a.shape else (1,))
    m[...] = a.reshape(m.shape)
    os.unlink(path)         # the mapping stays valid after the name is gone (POSIX)
    return m.reshape(a.shape) if a.shape != m.shape else m


class Sub(np.ndarray):
    """A trivial ndarray subclass (a user's own array type)."""


def _broadcast(a):
    # A zero-stride view: every row is the same memory.
    if a.ndim == 0 or a.shape[0] == 0:
        return a.copy()
    rows = np.broadcast_to(a[:1], a.shape)
    if np.array_equal(rows, a):
        return rows
    return a.copy()


def _unaligned(a):
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    view = raw[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


LAYOUTS = {
    "contiguous": lambda a: a.copy(),
    "fortran": lambda a: np.asfortranarray(a),
    "strided": _strided,
    "reversed": _reversed,
    "transposed": lambda a: np.ascontiguousarray(a.T).T,
    "big_endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "read_only": _read_only,
    "memmap": _memmap,
    "subclass": lambda a: a.copy().view(Sub),
    "zero_stride": _broadcast,
    "unaligned": _unaligned,
}


def odd(a, layout):
    """`a`'s values held in `layout` (one of LAYOUTS)."""
    a = np.asarray(a)
    out = LAYOUTS[layout](a) if a.ndim else LAYOUTS[layout](a.reshape(1)).reshape(())
    assert out.shape == a.shape and np.array_equal(np.asarray(out, dtype=np.float64),
                                                   np.asarray(a, dtype=np.float64))
    return out


def snapshot(*tensors):
    """What an error must leave unchanged: values, grad, version counter, requires_grad."""
    out = []
    for t in tensors:
        if not hasattr(t, "_version_counter"):
            out.append(None)
            continue
        g = t.grad
        out.append((np.array(t.numpy(), copy=True), None if g is None else np.array(g.numpy()),
                    t._version_counter, t.requires_grad))
    return out


def assert_unchanged(before, tensors, what=""):
    after = snapshot(*tensors)
    for i, (b, a) in enumerate(zip(before, after)):
        if b is None:
            continue
        assert b[0].shape == a[0].shape and np.array_equal(b[0], a[0], equal_nan=True), \
            "%s: the values of input %d changed after an error" % (what, i)
        assert (b[1] is None) == (a[1] is None), "%s: .grad of input %d changed" % (what, i)
        if b[1] is not None:
            assert np.array_equal(b[1], a[1], equal_nan=True), "%s: .grad of input %d changed" % (what, i)
        assert b[2] == a[2], "%s: the version counter of input %d moved (%d -> %d)" % (
            what, i, b[2], a[2])
        assert b[3] == a[3], "%s: requires_grad of input %d changed" % (what, i)
