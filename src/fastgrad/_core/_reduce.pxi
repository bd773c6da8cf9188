# sum over axes natively (included by _tape.pyx; uses _broadcast.pxi)
# ---------------------------------------------------------------------------
# A sum over axes is the broadcast of its result, read backwards: with
# `kept` the input's shape with a 1 at each summed axis, the input and the
# result are the two operands of the broadcast plan of (shape, kept).  The
# forward is then what `x + r` does for r's gradient (rows summed pairwise,
# as NumPy's sum does along the last axis; rows added one after another over
# the outer axes, as NumPy does too), and the backward is `ga + g`, g
# broadcast over the summed axes, written in place.  mean is this sum times
# 1/n (tensor.py), so it is native too.  A native SUM node over axes keeps
# the normalised axes (a tuple) in _d and keepdims in _c; the full sum keeps
# None in _d.


cdef tuple _sum_kept(tuple shape, tuple axes):
    """The input's shape with a 1 at each summed axis."""
    return tuple([1 if d in axes else shape[d] for d in range(len(shape))])


cdef tuple _sum_shape(tuple shape, tuple axes, bint keepdims):
    if keepdims:
        return _sum_kept(shape, axes)
    return tuple([shape[d] for d in range(len(shape)) if d not in axes])


cdef void _sum_axes_values(const _Plan* p, TensorBase a, TensorBase out) noexcept:
    memset(out._data, 0, out._size * ITEMSIZE[out._dt])
    if out._dt == DT_F64:
        _bc_grad(ADD, p, <double*>a._data, <double*>a._data, <double*>out._data,
                 <double*>NULL, <double*>out._data)
    else:
        _bc_grad(ADD, p, <float*>a._data, <float*>a._data, <float*>out._data,
                 <float*>NULL, <float*>out._data)


cdef object _sum_axes(TensorBase a, tuple axes, bint keepdims):
    """sum(a, axes, keepdims) natively (a contiguous float tensor), or None."""
    cdef _Plan p
    cdef TensorBase out
    if not _bc_plan(a._shape, _sum_kept(a._shape, axes), &p):
        return None
    shape = _sum_shape(a._shape, axes, keepdims)
    out = _alloc(shape, _prod(shape), a._dt)
    _sum_axes_values(&p, a, out)
    if fg_grad_enabled() and a._requires_grad:
        out._requires_grad = True
        out._op = SUM
        out._native = True
        out._form = FORM_TT
        out._a = a
        out._d = axes
        out._c = 1 if keepdims else 0
        out._va = _ver(a)
        out._la = a._layout
        if _node_hook is not None:
            _node_hook(out)
    return out


cdef Py_ssize_t _prod(tuple shape):
    cdef Py_ssize_t n = 1
    for v in shape:
        n *= <Py_ssize_t>v
    return n


cdef bint _sum_axes_plan(TensorBase node, _Plan* p) except -1:
    """The plan of a native SUM node over axes, checked against the node's own shape."""
    cdef TensorBase a = node._a
    if not _bc_plan(a._shape, _sum_kept(a._shape, node._d), p) \
            or _sum_shape(a._shape, node._d, node._c != 0) != node._shape:
        raise RuntimeError("backward: the values of '%s' were replaced through .data by an "
                           "array of another shape" % _op_name(node))
    return True


cdef bint _sum_axes_replay(TensorBase node) except -1:
    """A replay's forward of a SUM node; False if it is the full sum."""
    cdef _Plan p
    if node._d is None:
        return False
    _sum_axes_plan(node, &p)
    _sum_axes_values(&p, node._a, node)
    return True


cdef bint _sum_axes_backward(TensorBase node) except -1:
    """The backward rule of a SUM node over axes; False if it is the full sum."""
    cdef _Plan p
    cdef TensorBase a = node._a
    cdef char* ga
    if node._d is None:
        return False
    _sum_axes_plan(node, &p)
    ga = _grad_buffer(a)
    if a._dt == DT_F64:
        _bc_forward(ADD, &p, <double*>ga, <double*>node._g, <double*>ga)
    else:
        _bc_forward(ADD, &p, <float*>ga, <float*>node._g, <float*>ga)
    return True
