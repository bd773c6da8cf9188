# Views natively: reshape (view, flatten, squeeze, unsqueeze), permute
# (transpose, .T), expand and basic indexing (ints, slices, None, ...)
# (included by _tape.pyx)
# ---------------------------------------------------------------------------
# A view's values are an ndarray over its input's memory, made by NumPy's C
# API (no Python frame): the view holds that array, so the memory lives as
# long as the view, whatever becomes of the input (rebound through .data,
# freed by a consumer, released by backward).  A view of a C-contiguous
# input that is C-contiguous itself (reshape, most slices of rows) has a
# raw pointer and feeds the native kernels; a strided one (a transpose, a
# column slice) has none, and its consumers take NumPy's path, except
# matmul (_matmul.pxi) and the full sum (below), which read strides.
#
# One rule differentiates all four ops: the gradient buffer of the input
# has the input's shape, C-contiguous; the same view op applied to it
# (`_view_of`, the very function the forward uses) gives, for each element
# of the view, where its gradient goes; the incoming gradient is added
# there (`_strided_add`).  An expanded axis has stride 0, so its elements
# add up into one: the sum over the broadcast axes, without a special case.
# A native view node keeps its parameter (the shape, the axes or the key,
# checked) in _d.


cdef bint _is_view_op(int op) noexcept:
    return op == RESHAPE or op == PERMUTE or op == EXPAND or op == INDEX


cdef object _view_of(int op, cnp.ndarray arr, object d):
    """The view op `op` with parameter d applied to arr (values or gradient);
    basic indexing that picks one element gives a NumPy scalar, not a view."""
    cdef cnp.npy_intp dims[BC_MAXDIM]
    cdef cnp.npy_intp strides[BC_MAXDIM]
    cdef cnp.PyArray_Dims newdims
    cdef int i, n = len(d) if op != INDEX else 0, lead, nd
    if op == INDEX:
        return arr[d]
    for i in range(n):
        dims[i] = d[i]
    newdims.ptr = dims
    newdims.len = n
    if op == RESHAPE:
        return cnp.PyArray_Newshape(arr, &newdims, cnp.NPY_CORDER)
    if op == PERMUTE:
        return cnp.PyArray_Transpose(arr, &newdims)
    # EXPAND: the input's strides, 0 along the new leading axes and the
    # size-1 axes that grow; read-only, as np.broadcast_to (its elements alias)
    nd = cnp.PyArray_NDIM(arr)
    lead = n - nd
    for i in range(n):
        if i < lead or (cnp.PyArray_DIM(arr, i - lead) == 1 and dims[i] != 1):
            strides[i] = 0
        else:
            strides[i] = cnp.PyArray_STRIDE(arr, i - lead)
    cdef cnp.ndarray out = cnp.PyArray_New(np.ndarray, n, dims, cnp.PyArray_TYPE(arr), strides,
                                           cnp.PyArray_DATA(arr), 0, 0, None)
    cnp.set_array_base(out, arr)
    return out


cdef object _view_op(int op, TensorBase x, object d):
    """The view tensor of x, a node of `op` when x needs grad (or fg.compile
    records); None when the result is not an array (one element of x)."""
    cdef cnp.ndarray src = _array(x)       # raises for values a consumer took over
    cdef object view = _view_of(op, src, d)
    if not cnp.PyArray_Check(view):
        return None
    cdef cnp.ndarray arr = view
    cdef TensorBase out = _new_tensor()
    _set_array(out, arr)
    # a view unless NumPy had to copy (a reshape of a strided input)
    if not cnp.PyArray_CHKFLAGS(arr, cnp.NPY_ARRAY_OWNDATA):
        _alias(out, x)
    if x._dt != DT_OTHER and fg_grad_enabled() and (x._requires_grad or fg_keeps_values()):
        out._requires_grad = x._requires_grad
        out._op = op
        out._native = True
        out._form = FORM_TT
        out._a = x
        out._d = d
        out._va = _ver(x)
        out._la = x._layout
        if _node_hook is not None:
            _node_hook(out)
    return out


cdef int _view_replay(TensorBase node) except -1:
    """A fresh view of the input's current values (they may have been rebound)."""
    cdef bint direct = node._data != NULL
    cdef cnp.ndarray arr = <cnp.ndarray?>_view_of(node._op, _array(node._a), node._d)
    if (<object>arr).shape != node._shape or cnp.PyArray_TYPE(arr) != TYPENUM[node._dt]:
        raise RuntimeError("compile: '%s' gave values of shape %s on replay, but was recorded "
                           "with shape %s; call fg.compile again"
                           % (_op_name(node), (<object>arr).shape, node._shape))
    if direct and not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        arr = cnp.PyArray_NewCopy(arr, cnp.NPY_CORDER)
    _set_array(node, arr)
    return 0


cdef int _view_backward(TensorBase node) except -1:
    """The input's gradient, seen through the same view, += the node's."""
    cdef TensorBase a = node._a
    cdef bint fresh = False
    cdef char* ga
    cdef size_t nbytes = a._size * ITEMSIZE[a._dt]
    cdef cnp.ndarray dst
    cdef int i, nd
    cdef bint write
    if node._op == RESHAPE and a._g == NULL and a._size == node._size and a._dt == node._dt:
        # the same elements in the same order, into a gradient not begun: the
        # node's buffer (the sweep frees it right after this rule) is handed over
        a._g = node._g
        node._g = NULL
        return 0
    ga = _grad_buffer_raw(a, &fresh)
    if node._op == RESHAPE:                     # the same elements in the same order
        if fresh:
            memcpy(ga, node._g, nbytes)
        else:
            add_into(a._dt, ga, node._g, a._size)
        return 0
    # a permutation covers every element once: a fresh buffer is written, not zeroed first
    write = fresh and node._op == PERMUTE
    if fresh and not write:
        memset(ga, 0, nbytes)
    dst = <cnp.ndarray?>_view_of(node._op, <cnp.ndarray>_view(ga, a._shape, a._dt), node._d)
    nd = cnp.PyArray_NDIM(dst)
    if nd != len(node._shape) or cnp.PyArray_SIZE(dst) != node._size:
        raise SystemError("backward: the view of '%s' does not match its gradient"
                          % _op_name(node))
    for i in range(nd):
        if cnp.PyArray_DIM(dst, i) != <Py_ssize_t>node._shape[i]:
            raise SystemError("backward: the view of '%s' does not match its gradient"
                              % _op_name(node))
    if node._size == 0:
        return 0
    if a._dt == DT_F64:
        _strided_add(<double*>cnp.PyArray_DATA(dst), cnp.PyArray_DIMS(dst),
                     cnp.PyArray_STRIDES(dst), nd, <const double*>node._g, write)
    else:
        _strided_add(<float*>cnp.PyArray_DATA(dst), cnp.PyArray_DIMS(dst),
                     cnp.PyArray_STRIDES(dst), nd, <const float*>node._g, write)
    return 0


cdef enum:
    VIEW_TILE = 8       # rows of src a transposed add takes at once


cdef void _strided_add(floating* dst, const cnp.npy_intp* dims, const cnp.npy_intp* strides,
                       int nd, const floating* src, bint write) noexcept nogil:
    """dst (strides in bytes, shape dims) += src (C-contiguous, the same shape);
    with `write`, dst = src (for a dst whose elements are distinct).

    Size-1 axes are dropped and axes that step through dst as one are merged;
    the last axis is then a row: contiguous (a vectorized add), of stride 0
    (an expanded axis: the row's pairwise sum goes into one element) or
    strided.  A 2-D transpose, the commonest strided case, goes eight rows at
    a time so that both sides stay in cache.
    """
    cdef Py_ssize_t n[BC_MAXDIM]
    cdef Py_ssize_t s[BC_MAXDIM]        # element strides of dst
    cdef Py_ssize_t idx[BC_MAXDIM]
    cdef Py_ssize_t k, i, j, row, rs, rows, off
    cdef floating* d0
    cdef const floating* p0
    cdef int m = 0, d
    for d in range(nd - 1, -1, -1):
        if dims[d] == 1:
            continue
        if m and strides[d] == s[m - 1] * n[m - 1] * <Py_ssize_t>sizeof(floating):
            n[m - 1] *= dims[d]
        else:
            n[m] = dims[d]
            s[m] = strides[d] // <Py_ssize_t>sizeof(floating)
            m += 1
    if m == 0:
        _put(dst, src[0], write)
        return
    # n[0], s[0] are now the innermost axis (the axes run from the inside out)
    row = n[0]
    rs = s[0]
    if m == 2 and s[1] == 1 and rs != 1 and rs != 0:
        # transposed: src row i (of n[1] rows) goes down column i of dst, eight
        # rows at a time: eight contiguous elements of a dst row take one
        # element from each of eight src rows
        i = 0
        while i + VIEW_TILE <= n[1]:
            j = 0
            while j < row:
                d0 = dst + i + j * rs
                p0 = src + i * row + j
                for k in range(VIEW_TILE):
                    _put(&d0[k], p0[k * row], write)
                j += 1
            i += VIEW_TILE
        while i < n[1]:
            for j in range(row):
                _put(&dst[i + j * rs], src[i * row + j], write)
            i += 1
        return
    rows = 1
    for d in range(1, m):
        rows *= n[d]
        idx[d] = 0
    off = 0
    for k in range(rows):
        if rs == 1:
            for j in range(row):
                _put(&dst[off + j], src[j], write)
        elif rs == 0:                        # (never with write)
            dst[off] += _pairwise(src, row)
        else:
            for j in range(row):
                _put(&dst[off + j * rs], src[j], write)
        src += row
        # next row: the odometer over the outer axes
        for d in range(1, m):
            idx[d] += 1
            off += s[d]
            if idx[d] < n[d]:
                break
            off -= s[d] * n[d]
            idx[d] = 0


cdef int _strided_sum(cnp.ndarray arr, TensorBase out) except -1:
    """out = the sum of a strided float array, without a copy.

    The axes are taken in the order of their strides, the smallest inside:
    for any permutation of a contiguous array that walks its memory in
    order (the order NumPy's own sum takes, rows summed pairwise), and an
    expanded axis (stride 0) innermost is one element times its length.
    """
    cdef int nd = cnp.PyArray_NDIM(arr), i, j, m = 0
    cdef Py_ssize_t n[BC_MAXDIM]
    cdef Py_ssize_t st[BC_MAXDIM]          # byte strides, sorted (absolute value) ascending
    cdef Py_ssize_t t, tn
    for i in range(nd):
        if cnp.PyArray_DIM(arr, i) == 1:
            continue
        t = cnp.PyArray_STRIDE(arr, i)
        tn = cnp.PyArray_DIM(arr, i)
        j = m - 1
        while j >= 0 and (st[j] if st[j] >= 0 else -st[j]) > (t if t >= 0 else -t):
            st[j + 1] = st[j]
            n[j + 1] = n[j]
            j -= 1
        st[j + 1] = t
        n[j + 1] = tn
        m += 1
    j = 0                                    # merge axes that continue one another
    for i in range(1, m):
        if st[i] == st[j] * n[j] and st[j] != 0:
            n[j] *= n[i]
        else:
            j += 1
            n[j] = n[i]
            st[j] = st[i]
    if m:
        m = j + 1
    if cnp.PyArray_SIZE(arr) == 0:
        m = -1
    if out._dt == DT_F64:
        (<double*>out._data)[0] = _strided_total(<const double*>cnp.PyArray_DATA(arr), n, st, m)
    else:
        (<float*>out._data)[0] = <float>_strided_total(<const float*>cnp.PyArray_DATA(arr),
                                                       n, st, m)
    return 0


cdef floating _strided_total(const floating* p, const Py_ssize_t* n, const Py_ssize_t* st,
                             int m) noexcept nogil:
    """The sum over axes n[0] (innermost) ... n[m-1] of byte strides st; m = -1: empty."""
    cdef Py_ssize_t idx[BC_MAXDIM]
    cdef Py_ssize_t row, rs, rows = 1, k, j, off = 0
    cdef floating total = 0, acc
    cdef int d
    if m < 0:
        return 0
    if m == 0:
        return p[0]
    row = n[0]
    rs = st[0] // <Py_ssize_t>sizeof(floating)
    for d in range(1, m):
        rows *= n[d]
        idx[d] = 0
    for k in range(rows):
        if rs == 1:
            total = total + _pairwise(<const floating*>(<const char*>p + off), row)
        elif rs == 0:
            total = total + (<const floating*>(<const char*>p + off))[0] * row
        else:
            acc = 0
            for j in range(row):
                acc = acc + (<const floating*>(<const char*>p + off))[j * rs]
            total = total + acc
        for d in range(1, m):                # the odometer over the outer axes
            idx[d] += 1
            off += st[d]
            if idx[d] < n[d]:
                break
            off -= st[d] * n[d]
            idx[d] = 0
    return total


# -- the parameters, checked in C when they are plain (else the reference's checks) --

cdef tuple _reshape_shape(tuple old, Py_ssize_t size, object shape):
    """check_reshape's result, without a Python call for a tuple of ints."""
    cdef Py_ssize_t known = 1, n, free = -1, i, count
    if type(shape) is not tuple:
        return check_reshape(old, shape)
    count = len(shape)
    for i in range(count):
        item = shape[i]
        if type(item) is not int:
            return check_reshape(old, shape)
        n = <Py_ssize_t>item
        if n == -1 and free < 0:
            free = i
        elif n < 0:
            return check_reshape(old, shape)
        else:
            known *= n
    if free < 0:
        return shape if known == size else check_reshape(old, shape)
    if known == 0 or size % known:
        return check_reshape(old, shape)
    out = list(shape)
    out[free] = size // known
    return tuple(out)


cdef tuple _permute_axes(tuple old, object axes):
    """check_permute's result, without a Python call for a permutation of ints."""
    cdef int nd = len(old), i
    cdef Py_ssize_t ax
    cdef bint seen[BC_MAXDIM]
    if type(axes) is not tuple or len(axes) != nd or nd > BC_MAXDIM:
        return check_permute(old, axes)
    for i in range(nd):
        seen[i] = False
    out = []
    for i in range(nd):
        item = axes[i]
        if type(item) is not int:
            return check_permute(old, axes)
        ax = <Py_ssize_t>item
        if ax < 0:
            ax += nd
        if ax < 0 or ax >= nd or seen[ax]:
            return check_permute(old, axes)
        seen[ax] = True
        out.append(ax)
    return tuple(out)


cdef tuple _expand_shape(tuple old, object shape):
    """check_expand's result, without a Python call for a tuple of ints."""
    cdef Py_ssize_t nd = len(old), n, lead, i, m
    if type(shape) is not tuple:
        return check_expand(old, shape)
    lead = len(shape) - nd
    if lead < 0:
        return check_expand(old, shape)
    out = list(shape)
    for i in range(len(shape)):
        item = shape[i]
        if type(item) is not int:
            return check_expand(old, shape)
        n = <Py_ssize_t>item
        if i < lead:
            if n < 0:
                return check_expand(old, shape)
            continue
        m = <Py_ssize_t>old[i - lead]
        if n == -1:
            out[i] = old[i - lead]
        elif n != m and (m != 1 or n < 0):
            return check_expand(old, shape)
    return tuple(out)


cdef bint _basic_key(object key):
    """An index of ints, slices, None and Ellipsis only (a view in NumPy)."""
    if type(key) is tuple:
        for k in <tuple>key:
            if not (type(k) is int or type(k) is slice or k is None or k is Ellipsis):
                return False
        return True
    return type(key) is int or type(key) is slice or key is None or key is Ellipsis
