# Copying indexing and joining natively: an integer-array (or bool-mask)
# index, cat (and so stack) and where  (included by _tape.pyx)
# ---------------------------------------------------------------------------
# These nodes are recorded as reference.apply records them (_inputs,
# _params, _versions, _layouts), so the sweep's walk, the one door
# (_check_node) and fg.explain see the node the reference core would make;
# `_form = FORM_LISTED` tells the sweep and the replay to run the op's row
# of the native table instead of the reference rule.  Whatever the native
# forward does not take (strided or mixed-dtype inputs, broadcasting
# beyond one element, keys with more than one array) goes through `apply`
# and the reference rule, as before.
#
# gather: x[idx], x[:, idx], ... (full slices around one integer array) and
#   x[mask] (a bool array over x's leading axes).  The index is copied into
#   a private int64 array (negatives made positive), checked once in C; out
#   of range, the reference's check raises its message.  The node keeps
#   (idx, outer, n, inner, shape) in _d: x seen as (outer, n, inner), the
#   result (of that shape) as (outer, len(idx), inner).  Forward copies
#   rows; backward adds them back (repeated indices accumulate), after
#   checking idx against x's shape again.
# cat: blocks copied per input; backward copies (or adds) the gradient's
#   blocks into each input's gradient.
# where: cond of the result's shape; each side a tensor of that shape, a
#   one-element tensor or a Python number.


cdef int _record_listed(TensorBase out, int op, tuple inputs, tuple params,
                        bint needs) except -1:
    """Make `out` a node of `op` recorded as reference.apply does, run by the native table."""
    cdef list versions = [], layouts = []
    for x in inputs:
        if isinstance(x, TensorBase):
            versions.append(_ver(<TensorBase>x))
            layouts.append((<TensorBase>x)._layout)
        else:
            versions.append(None)
            layouts.append(None)
    out._requires_grad = needs
    out._op = op
    out._form = FORM_LISTED
    out._inputs = inputs
    out._params = params
    out._versions = tuple(versions)
    out._layouts = tuple(layouts)
    if _node_hook is not None:
        _node_hook(out)
    return 0


cdef inline bint _records(bint needs) noexcept:
    return fg_grad_enabled() and (needs or fg_keeps_values())


cdef inline bint _full_slice(object k):
    return type(k) is slice and (<slice>k).start is None and (<slice>k).stop is None \
        and (<slice>k).step is None


cdef Py_ssize_t _prod_of(object shape, Py_ssize_t start, Py_ssize_t stop):
    cdef Py_ssize_t p = 1, i
    for i in range(start, stop):
        p *= <Py_ssize_t>shape[i]
    return p


# -- gather ---------------------------------------------------------------------

cdef object _gather(TensorBase x, object key):
    """x[key] natively, or None for a key the reference's path takes."""
    cdef Py_ssize_t nd = len(x._shape), nk, i, pos = -1, j, m, n, outer, inner, v
    cdef cnp.ndarray src, idx
    cdef long long* p
    cdef tuple items
    if x._dt == DT_OTHER or x._data == NULL or nd == 0:
        return None
    items = <tuple>key if type(key) is tuple else (key,)
    nk = len(items)
    if nk > nd:
        return None
    k = None
    for i in range(nk):
        item = items[i]
        if _full_slice(item):
            continue
        if pos >= 0:
            return None
        pos = i
        k = item
    if pos < 0:
        return None
    if isinstance(k, TensorBase):
        if (<TensorBase>k)._dropped:
            return None
        k = _array(<TensorBase>k)
    elif type(k) is list:
        k = np.asarray(k)
    if not cnp.PyArray_Check(k):
        return None
    src = <cnp.ndarray>k
    if cnp.PyArray_TYPE(src) == cnp.NPY_BOOL:
        # a mask over the leading axes: the positions of its True entries
        m = cnp.PyArray_NDIM(src)
        if pos != 0 or m == 0 or m > nd:
            return None
        for i in range(m):
            if cnp.PyArray_DIM(src, i) != <Py_ssize_t>x._shape[i]:
                return None
        key = (cnp.PyArray_NewCopy(src, cnp.NPY_CORDER),)   # the reference's key: a copy
        idx = _true_positions(<cnp.ndarray>key[0])
        outer, n, inner = 1, _prod_of(x._shape, 0, m), _prod_of(x._shape, m, nd)
        shape = (cnp.PyArray_DIM(idx, 0),) + x._shape[m:]
    else:
        if not cnp.PyArray_ISINTEGER(src) or (cnp.PyArray_ISUNSIGNED(src)
                                              and cnp.PyArray_ITEMSIZE(src) >= 8):
            return None
        # a private copy (the caller may change theirs), int64 and C-contiguous
        idx = <cnp.ndarray>cnp.PyArray_FROMANY(src, cnp.NPY_INT64, 0, 0,
                                                cnp.NPY_ARRAY_C_CONTIGUOUS
                                                | cnp.NPY_ARRAY_ALIGNED
                                                | cnp.NPY_ARRAY_ENSURECOPY)
        n = x._shape[pos]
        p = <long long*>cnp.PyArray_DATA(idx)
        m = cnp.PyArray_SIZE(idx)
        for j in range(m):
            v = p[j]
            if v < 0:
                v += n
            if v < 0 or v >= n:
                return None               # check_index raises NumPy's message
            p[j] = v
        outer, inner = _prod_of(x._shape, 0, pos), _prod_of(x._shape, pos + 1, nd)
        shape = x._shape[:pos] + (<object>idx).shape + x._shape[pos + 1:]
        if nk == 1:
            key = (idx,)
        else:
            key = items[:pos] + (idx,) + items[pos + 1:]
    m = cnp.PyArray_SIZE(idx)
    cdef TensorBase out = _alloc(shape, outer * m * inner, x._dt)
    _gather_rows(x._data, out._data, <const long long*>cnp.PyArray_DATA(idx),
                 outer, n, m, inner * ITEMSIZE[x._dt])
    if _records(x._requires_grad):
        out._d = (idx, outer, n, inner, shape)
        _record_listed(out, INDEX, (x,), (key,), x._requires_grad)
    return out


cdef cnp.ndarray _true_positions(cnp.ndarray mask):
    """The flat positions of a C-contiguous bool array's True entries, as int64."""
    cdef const cnp.npy_bool* c = <const cnp.npy_bool*>cnp.PyArray_DATA(mask)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(mask), i, count = 0, last
    cdef cnp.npy_intp dims[1]
    for i in range(n):
        count += c[i] != 0
    dims[0] = count
    cdef cnp.ndarray idx = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT64, 0)
    cdef long long* p = <long long*>cnp.PyArray_DATA(idx)
    # without a branch (a random mask would mispredict half of them): every
    # position is written, the count moves on at True ones; up to the last
    # True entry, the count stays below the total
    last = n - 1
    while last >= 0 and not c[last]:
        last -= 1
    count = 0
    for i in range(last + 1):
        p[count] = i
        count += c[i] != 0
    return idx


cdef void _gather_rows(const char* src, char* dst, const long long* idx, Py_ssize_t outer,
                       Py_ssize_t n, Py_ssize_t m, Py_ssize_t row) noexcept nogil:
    """dst (outer, m, row bytes) = src (outer, n, row bytes) at rows idx."""
    cdef Py_ssize_t o, j
    cdef const char* s
    for o in range(outer):
        s = src + o * n * row
        if row == 4:
            for j in range(m):
                (<float*>dst)[j] = (<const float*>s)[idx[j]]
            dst += m * 4
        elif row == 8:
            for j in range(m):
                (<double*>dst)[j] = (<const double*>s)[idx[j]]
            dst += m * 8
        else:
            for j in range(m):
                memcpy(dst, s + idx[j] * row, row)
                dst += row


cdef void _scatter_rows(floating* ga, const floating* g, const long long* idx, Py_ssize_t outer,
                        Py_ssize_t n, Py_ssize_t m, Py_ssize_t inner) noexcept nogil:
    """ga (outer, n, inner) at rows idx += g (outer, m, inner), in the order of idx."""
    cdef Py_ssize_t o, j, k
    cdef floating* d
    if inner == 1:
        for o in range(outer):
            for j in range(m):
                ga[idx[j]] += g[j]
            g += m
            ga += n
        return
    for o in range(outer):
        for j in range(m):
            d = ga + idx[j] * inner
            for k in range(inner):
                d[k] += g[k]
            g += inner
        ga += n * inner


cdef const long long* _gather_index(TensorBase node, TensorBase x, Py_ssize_t* outer,
                                    Py_ssize_t* n, Py_ssize_t* m,
                                    Py_ssize_t* inner) except NULL:
    """The node's private index, checked against x's shape (backward, replay)."""
    cdef tuple d = node._d
    cdef cnp.ndarray idx = d[0]
    cdef const long long* p = <const long long*>cnp.PyArray_DATA(idx)
    cdef Py_ssize_t j
    outer[0], n[0], inner[0] = d[1], d[2], d[3]
    m[0] = cnp.PyArray_SIZE(idx)
    if outer[0] * n[0] * inner[0] != x._size or outer[0] * m[0] * inner[0] != node._size \
            or x._dt != node._dt or node._shape != d[4]:
        raise RuntimeError("backward: the index of '%s' no longer fits its input of shape %s"
                           % (_op_name(node), tuple(x._shape)))
    for j in range(m[0]):
        if p[j] < 0 or p[j] >= n[0]:
            raise RuntimeError("backward: index %d of '%s' is out of range for its input of "
                               "shape %s" % (p[j], _op_name(node), tuple(x._shape)))
    return p


cdef int _gather_replay(TensorBase node) except -1:
    cdef TensorBase x = node._inputs[0]
    cdef Py_ssize_t outer, n, m, inner
    cdef const long long* p = _gather_index(node, x, &outer, &n, &m, &inner)
    if x._data == NULL or node._data == NULL:
        raise RuntimeError("compile: the values of '%s' or of its input are not in the layout "
                           "recorded; call fg.compile again" % _op_name(node))
    _gather_rows(x._data, node._data, p, outer, n, m, inner * ITEMSIZE[x._dt])
    return 0


cdef int _gather_backward(TensorBase node) except -1:
    cdef TensorBase x = node._inputs[0]
    cdef Py_ssize_t outer, n, m, inner
    cdef bint fresh = False
    cdef const long long* p
    if not x._requires_grad:
        return 0
    p = _gather_index(node, x, &outer, &n, &m, &inner)
    cdef char* ga = _grad_buffer_raw(x, &fresh)
    if fresh:
        memset(ga, 0, (x._size if x._size else 1) * ITEMSIZE[x._dt])
    if x._dt == DT_F64:
        _scatter_rows(<double*>ga, <const double*>node._g, p, outer, n, m, inner)
    else:
        _scatter_rows(<float*>ga, <const float*>node._g, p, outer, n, m, inner)
    return 0


cdef int _index_replay(TensorBase node) except -1:
    """INDEX's row: a view (basic key, _views.pxi) or a gather (an array key, above)."""
    if node._native:
        return _view_replay(node)
    return _gather_replay(node)


cdef int _index_backward(TensorBase node) except -1:
    if node._native:
        return _view_backward(node)
    return _gather_backward(node)


# -- cat --------------------------------------------------------------------------

cdef object _cat(list tensors, object axis):
    """cat natively: one float dtype, C-contiguous inputs; None for the reference's path."""
    cdef TensorBase first = tensors[0], t, out
    cdef Py_ssize_t nd = len(first._shape), ax, i, total = 0, outer, inner
    cdef int dt = first._dt
    cdef bint needs = False
    if type(axis) is not int or nd == 0 or dt == DT_OTHER:
        return None
    ax = <Py_ssize_t>axis
    if ax < 0:
        ax += nd
    if ax < 0 or ax >= nd:
        return None
    for t in tensors:
        if t._dt != dt or t._data == NULL or len(t._shape) != nd:
            return None
        if t is not first:
            for i in range(nd):
                if i != ax and t._shape[i] != first._shape[i]:
                    return None
        total += <Py_ssize_t>t._shape[ax]
        needs = needs or t._requires_grad
    outer, inner = _prod_of(first._shape, 0, ax), _prod_of(first._shape, ax + 1, nd)
    out = _alloc(first._shape[:ax] + (total,) + first._shape[ax + 1:], outer * total * inner, dt)
    inputs = tuple(tensors)
    _cat_values(inputs, ax, out)
    if _records(needs):
        _record_listed(out, CAT, inputs, (ax,), needs)
    return out


cdef int _cat_values(tuple inputs, Py_ssize_t ax, TensorBase out) except -1:
    """out = the inputs joined along ax (each copied block by block)."""
    cdef TensorBase t
    cdef Py_ssize_t item = ITEMSIZE[out._dt], nd = len(out._shape)
    cdef Py_ssize_t outer = _prod_of(out._shape, 0, ax)
    cdef Py_ssize_t inner = _prod_of(out._shape, ax + 1, nd) * item
    cdef Py_ssize_t row = <Py_ssize_t>out._shape[ax] * inner, off = 0, blk, o
    for t in inputs:
        if t._data == NULL:
            raise RuntimeError("compile: an input of 'cat' is not in the layout recorded; "
                               "call fg.compile again")
    for t in inputs:
        blk = <Py_ssize_t>t._shape[ax] * inner
        for o in range(outer):
            memcpy(out._data + o * row + off, t._data + o * blk, blk)
        off += blk
    return 0


cdef int _cat_fits(TensorBase node, str what) except -1:
    """The node's shape is its inputs' joined (the loops read and write by those shapes)."""
    cdef TensorBase t
    cdef Py_ssize_t ax = node._params[0], total = 0, i, nd = len(node._shape)
    for t in node._inputs:
        if t._dt != node._dt or len(t._shape) != nd:
            break
        for i in range(nd):
            if i != ax and t._shape[i] != node._shape[i]:
                break
        else:
            total += <Py_ssize_t>t._shape[ax]
            continue
        break
    else:
        if total == <Py_ssize_t>node._shape[ax]:
            return 0
    raise RuntimeError("%s: the values of 'cat' (shape %s) no longer fit its inputs; they were "
                       "rebound through .data" % (what, tuple(node._shape)))


cdef int _cat_replay(TensorBase node) except -1:
    _cat_fits(node, "compile")
    return _cat_values(node._inputs, node._params[0], node)


cdef int _cat_backward(TensorBase node) except -1:
    cdef TensorBase t
    cdef int dt = node._dt
    cdef Py_ssize_t ax = node._params[0], item = ITEMSIZE[dt], nd = len(node._shape)
    cdef Py_ssize_t outer = _prod_of(node._shape, 0, ax)
    cdef Py_ssize_t inner = _prod_of(node._shape, ax + 1, nd)
    cdef Py_ssize_t row = <Py_ssize_t>node._shape[ax] * inner, off = 0, blk, o, total = 0
    cdef bint fresh = False
    cdef char* ga
    _cat_fits(node, "backward")
    for t in node._inputs:
        blk = <Py_ssize_t>t._shape[ax] * inner          # elements
        if t._requires_grad:
            ga = _grad_buffer_raw(t, &fresh)
            for o in range(outer):
                if fresh:
                    memcpy(ga + o * blk * item, node._g + (o * row + off) * item, blk * item)
                else:
                    add_into(dt, ga + o * blk * item, node._g + (o * row + off) * item, blk)
        off += blk
    return 0


# -- where ------------------------------------------------------------------------

cdef enum:
    SIDE_FULL = 0       # a tensor of the result's shape
    SIDE_ONE = 1        # a one-element tensor
    SIDE_NUMBER = 2     # a Python number


cdef inline const cnp.npy_bool* _cond_data(TensorBase cond, Py_ssize_t size):
    """cond's values as bools in C order, or NULL if they are not laid out so."""
    if cond._dropped or cond._arr is None or cond._size != size:
        return NULL
    cdef cnp.ndarray arr = <cnp.ndarray>cond._arr
    if cnp.PyArray_TYPE(arr) != cnp.NPY_BOOL or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return NULL
    return <const cnp.npy_bool*>cnp.PyArray_DATA(arr)


cdef int _where_side(object x, TensorBase cond, int* dt, double* number) except -2:
    """SIDE_* of one operand of where, or -1 if the native path does not take it."""
    cdef TensorBase t
    if isinstance(x, TensorBase):
        t = <TensorBase>x
        if t._dt == DT_OTHER or t._data == NULL or (dt[0] >= 0 and dt[0] != t._dt):
            return -1
        dt[0] = t._dt
        if t._size == cond._size and t._shape == cond._shape:
            return SIDE_FULL
        if t._size == 1 and len(t._shape) <= len(cond._shape):
            return SIDE_ONE
        return -1
    if type(x) is float or type(x) is bool or (type(x) is int and -2**53 <= x <= 2**53):
        number[0] = <double>x
        return SIDE_NUMBER
    return -1


cdef object _where(TensorBase cond, object a, object b):
    """where natively, or None for the reference's path."""
    cdef int dt = -1, sa, sb
    cdef double ca = 0, cb = 0
    if _cond_data(cond, cond._size) == NULL:
        return None
    sa = _where_side(a, cond, &dt, &ca)
    if sa < 0:
        return None
    sb = _where_side(b, cond, &dt, &cb)
    if sb < 0 or dt < 0:
        return None
    if dt == DT_F32 and ((sa == SIDE_NUMBER and fabs(ca) > 3.4028234663852886e38
                          and fabs(ca) != INFINITY)
                         or (sb == SIDE_NUMBER and fabs(cb) > 3.4028234663852886e38
                             and fabs(cb) != INFINITY)):
        return None                    # NumPy's overflow, as the reference has it
    cdef TensorBase out = _alloc(cond._shape, cond._size, dt)
    _where_values(cond, a, b, out)
    cdef bint needs = _wants_grad(a) or _wants_grad(b)
    if _records(needs):
        _record_listed(out, WHERE, (cond, a, b), (), needs)
    return out


cdef inline const char* _side_ptr(object x, double* slot, int dt, Py_ssize_t* step):
    """Where one operand's values are read from, and their step (0: one value)."""
    if isinstance(x, TensorBase):
        step[0] = 1 if (<TensorBase>x)._size > 1 else 0
        return (<TensorBase>x)._data
    step[0] = 0
    if dt == DT_F32:
        (<float*>slot)[0] = <float>(<double>x)
    else:
        slot[0] = <double>x
    return <const char*>slot


cdef int _where_values(TensorBase cond, object a, object b, TensorBase out) except -1:
    cdef const cnp.npy_bool* c = _cond_data(cond, out._size)
    cdef double slot_a, slot_b
    cdef Py_ssize_t step_a, step_b
    if c == NULL:
        raise RuntimeError("compile: the condition of 'where' is not in the layout recorded; "
                           "call fg.compile again")
    for x in (a, b):
        if isinstance(x, TensorBase) and ((<TensorBase>x)._data == NULL
                                          or (<TensorBase>x)._dt != out._dt
                                          or (<TensorBase>x)._size not in (1, out._size)):
            raise RuntimeError("compile: an input of 'where' is not in the layout recorded; "
                               "call fg.compile again")
    cdef const char* pa = _side_ptr(a, &slot_a, out._dt, &step_a)
    cdef const char* pb = _side_ptr(b, &slot_b, out._dt, &step_b)
    if out._dt == DT_F64:
        _where_loop(c, <const uint64_t*>pa, step_a, <const uint64_t*>pb, step_b,
                    <uint64_t*>out._data, out._size)
    else:
        _where_loop(c, <const uint32_t*>pa, step_a, <const uint32_t*>pb, step_b,
                    <uint32_t*>out._data, out._size)
    return 0


ctypedef fused _bits:
    uint32_t
    uint64_t


cdef void _where_loop(const cnp.npy_bool* c, const _bits* a, Py_ssize_t sa,
                      const _bits* b, Py_ssize_t sb, _bits* y, Py_ssize_t n) noexcept nogil:
    """y = a where c else b, on the values' bits: a mask, not a branch (random
    conditions would mispredict), and exact for every value (NaN, -0.0)."""
    cdef Py_ssize_t i
    cdef _bits m
    if sa == 1 and sb == 1:
        for i in range(n):
            m = <_bits>0 - <_bits>(c[i] != 0)
            y[i] = (a[i] & m) | (b[i] & ~m)
    else:
        for i in range(n):
            m = <_bits>0 - <_bits>(c[i] != 0)
            y[i] = (a[i * sa] & m) | (b[i * sb] & ~m)


cdef int _where_replay(TensorBase node) except -1:
    _where_values(node._inputs[0], node._inputs[1], node._inputs[2], node)
    return 0


cdef int _where_backward(TensorBase node) except -1:
    cdef TensorBase cond = node._inputs[0]
    cdef const cnp.npy_bool* c = _cond_data(cond, node._size)
    if node._shape != cond._shape:
        raise RuntimeError("backward: the values of 'where' (shape %s) no longer fit its "
                           "condition; they were rebound through .data" % (tuple(node._shape),))
    if c == NULL:
        return _reference_backward(node)       # cond's memory changed layout: NumPy reads it
    cdef int side
    for side in range(2):
        x = node._inputs[1 + side]
        if not _wants_grad(x):
            continue
        if (<TensorBase>x)._dt != node._dt or (<TensorBase>x)._size not in (1, node._size):
            raise SystemError("backward: an input of 'where' does not fit its gradient")
        if node._dt == DT_F64:
            _where_grad(<TensorBase>x, c, side == 0, <const double*>node._g, node._size)
        else:
            _where_grad(<TensorBase>x, c, side == 0, <const float*>node._g, node._size)
    return 0


cdef int _where_grad(TensorBase t, const cnp.npy_bool* c, bint when, const floating* g,
                     Py_ssize_t n) except -1:
    """t's gradient += g where c is `when` (summed, for a one-element t), 0 elsewhere."""
    cdef bint fresh = False
    cdef floating* ga = <floating*>_grad_buffer_raw(t, &fresh)
    cdef Py_ssize_t i
    cdef double s = 0
    if t._size == n and n != 1:
        if sizeof(floating) == 8:
            _masked_grad(c, when, <const uint64_t*>g, <uint64_t*>ga, fresh, n)
        else:
            _masked_grad(c, when, <const uint32_t*>g, <uint32_t*>ga, fresh, n)
        return 0
    for i in range(n):
        if (c[i] != 0) == when:
            s += g[i]
    if fresh:
        ga[0] = <floating>s
    else:
        ga[0] += <floating>s
    return 0


cdef void _masked_grad(const cnp.npy_bool* c, bint when, const _bits* g, _bits* ga, bint fresh,
                       Py_ssize_t n) noexcept nogil:
    """ga = (or +=) g where c is `when`, +0.0 elsewhere (a mask on the bits)."""
    cdef Py_ssize_t i
    cdef _bits m, flip = <_bits>0 if when else ~(<_bits>0)
    if fresh:
        for i in range(n):
            m = (<_bits>0 - <_bits>(c[i] != 0)) ^ flip
            ga[i] = g[i] & m
    elif sizeof(_bits) == 8:
        for i in range(n):
            m = (<_bits>0 - <_bits>(c[i] != 0)) ^ flip
            (<double*>ga)[i] += _as_f64(g[i] & m)
    else:
        for i in range(n):
            m = (<_bits>0 - <_bits>(c[i] != 0)) ^ flip
            (<float*>ga)[i] += _as_f32(g[i] & m)


cdef inline double _as_f64(uint64_t v) noexcept nogil:
    cdef double d
    memcpy(&d, &v, 8)
    return d


cdef inline float _as_f32(uint32_t v) noexcept nogil:
    cdef float f
    memcpy(&f, &v, 4)
    return f
