# Binary ops of two tensors of different shapes: NumPy broadcasting natively
# (included by _tape.pyx; a node of this form has _form == FORM_BC)
# ---------------------------------------------------------------------------
# The shapes are aligned from the right and turned into element strides
# (0 along an axis an operand is broadcast over), size-1 axes of the result
# are dropped, and neighbouring axes that step through both operands alike
# are merged.  What is left is a loop over rows of the last axis, each row
# one call of the same-shape / scalar kernels above with literal strides 0
# or 1 (so vectorized): the bias add `x + b` (rows of b, stride 1 against 1),
# the normalisation `x / s[:, None]` (a scalar per row, stride 1 against 0),
# outer sums `u[:, None] + v`.  The backward rule runs over the same rows:
# an operand's gradient buffer has the operand's layout, so it takes the
# operand's strides, and a stride of 0 sums the rows into it (the
# unbroadcast of reference.py, without a NumPy call).  The operand that has
# the result's shape takes its gradient over the incoming one, in place.
#
# Memory: every pointer is the operand's own C-contiguous block, and the
# strides come from its shape, so a row never leaves it; the backward
# recomputes the plan from the inputs' shapes (checked by _check_node) and
# checks the result's shape against it before reading anything.
# pow stays on the reference rule here: NumPy's loop takes sqrt for a
# broadcast exponent of 0.5 inside a row, which the reference rule shares.

cdef enum:
    FORM_BC = 5          # two tensors of different shapes, broadcast
    BC_MAXDIM = 64       # NumPy's limit on dimensions


cdef struct _Plan:
    int ndim                      # dimensions of the result
    Py_ssize_t shape[BC_MAXDIM]   # the result's shape
    Py_ssize_t size
    int nd                        # dimensions after merging (the last one is the row)
    Py_ssize_t n[BC_MAXDIM]
    Py_ssize_t sa[BC_MAXDIM]      # element strides of a (0: broadcast)
    Py_ssize_t sb[BC_MAXDIM]


cdef bint _bc_plan(tuple sha, tuple shb, _Plan* p) noexcept:
    """Fill p for the broadcast of shapes sha and shb; False if they do not broadcast."""
    cdef Py_ssize_t ra = len(sha), rb = len(shb)
    cdef Py_ssize_t r = ra if ra > rb else rb
    cdef Py_ssize_t d, k, da, db, m, stra = 1, strb = 1
    cdef Py_ssize_t n[BC_MAXDIM]
    cdef Py_ssize_t sa[BC_MAXDIM]
    cdef Py_ssize_t sb[BC_MAXDIM]
    if r > BC_MAXDIM:
        return False
    p.ndim = <int>r
    p.size = 1
    for k in range(r):                       # k-th axis from the right
        d = r - 1 - k
        da = <Py_ssize_t>sha[ra - 1 - k] if k < ra else 1
        db = <Py_ssize_t>shb[rb - 1 - k] if k < rb else 1
        if da == db or db == 1:
            m = da
        elif da == 1:
            m = db
        else:
            return False
        p.shape[d] = m
        p.size *= m
        n[d] = m
        sa[d] = stra if da != 1 else 0
        sb[d] = strb if db != 1 else 0
        stra *= da
        strb *= db
    # merge, from the innermost axis out
    p.nd = 0
    for d in range(r - 1, -1, -1):
        if n[d] == 1:
            continue
        if p.nd and sa[d] == p.sa[p.nd - 1] * p.n[p.nd - 1] \
                and sb[d] == p.sb[p.nd - 1] * p.n[p.nd - 1]:
            p.n[p.nd - 1] *= n[d]
        else:
            p.n[p.nd] = n[d]
            p.sa[p.nd] = sa[d]
            p.sb[p.nd] = sb[d]
            p.nd += 1
    if p.nd == 0:                            # every axis 1: one element
        p.n[0] = 1
        p.sa[0] = 0
        p.sb[0] = 0
        p.nd = 1
    # outermost first
    for d in range(p.nd // 2):
        k = p.nd - 1 - d
        p.n[d], p.n[k] = p.n[k], p.n[d]
        p.sa[d], p.sa[k] = p.sa[k], p.sa[d]
        p.sb[d], p.sb[k] = p.sb[k], p.sb[d]
    return True


cdef object _bc_shape(const _Plan* p, TensorBase a, TensorBase b):
    """The result's shape as a tuple (a's or b's own when it is theirs: no new tuple)."""
    cdef int d
    for t in (a, b):
        if len((<TensorBase>t)._shape) == p.ndim:
            for d in range(p.ndim):
                if <Py_ssize_t>(<TensorBase>t)._shape[d] != p.shape[d]:
                    break
            else:
                return (<TensorBase>t)._shape
    return tuple([p.shape[d] for d in range(p.ndim)])


cdef inline bint _bc_next(const _Plan* p, Py_ssize_t* idx, Py_ssize_t* oa,
                          Py_ssize_t* ob) noexcept nogil:
    """Step the row counter (axes 0 .. nd-2) and the operands' offsets."""
    cdef int d = p.nd - 2
    while d >= 0:
        idx[d] += 1
        oa[0] += p.sa[d]
        ob[0] += p.sb[d]
        if idx[d] < p.n[d]:
            return True
        oa[0] -= p.sa[d] * p.n[d]
        ob[0] -= p.sb[d] * p.n[d]
        idx[d] = 0
        d -= 1
    return False


cdef void _bc_forward(int op, const _Plan* p, const floating* a, const floating* b,
                      floating* y) noexcept nogil:
    cdef Py_ssize_t idx[BC_MAXDIM]
    cdef Py_ssize_t oa = 0, ob = 0, row, m = p.n[p.nd - 1]
    cdef Py_ssize_t sa = p.sa[p.nd - 1], sb = p.sb[p.nd - 1]
    if p.size == 0:
        return
    memset(idx, 0, p.nd * sizeof(Py_ssize_t))
    for row in range(p.size // m):
        binary_kernel(op, FORWARD, <const floating*>NULL, a + oa, sa, b + ob, sb, y + row * m,
                      <floating*>NULL, <floating*>NULL, m, False, False)
        _bc_next(p, idx, &oa, &ob)


cdef floating _bc_row_sum(int op, bint of_b, const floating* g, const floating* a,
                          Py_ssize_t sa, const floating* b, Py_ssize_t sb, floating* t,
                          floating* fill, Py_ssize_t m) noexcept nogil:
    """The sum over a row of g * dy/da (of_b: dy/db), where that operand is one value
    for the whole row (stride 0).  A sum into one memory cell would be a chain of
    dependent adds; instead the row's terms go to scratch (the same-shape kernel,
    the operand spread into a run of its value) and are summed pairwise, as
    NumPy's sum is."""
    cdef Py_ssize_t j, i, k
    cdef floating s = 0
    if op == ADD or (op == SUB and not of_b):
        return _pairwise(g, m)       # dy/d(operand) is 1: the sum of the row of g itself
    for j in range(0, m, 512):
        k = m - j if m - j < UL_CHUNK else UL_CHUNK
        if of_b:
            for i in range(k):
                fill[i] = b[0]
            binary_kernel(op, BACKWARD, g + j, a + j * sa, sa, fill, 1, <floating*>(g + j),
                          <floating*>NULL, t, k, False, True)
        else:
            for i in range(k):
                fill[i] = a[0]
            binary_kernel(op, BACKWARD, g + j, fill, 1, b + j * sb, sb, <floating*>(g + j), t,
                          <floating*>NULL, k, True, False)
        s += _pairwise(t, k)
    return s


cdef void _bc_grad(int op, const _Plan* p, const floating* g, const floating* a,
                   const floating* b, floating* ga, floating* gb) noexcept nogil:
    """ga += (the a-part of) g * dy/da summed over a's broadcast axes; likewise gb
    (either NULL).  The buffers have their operand's layout: its strides."""
    cdef Py_ssize_t idx[BC_MAXDIM]
    cdef Py_ssize_t oa = 0, ob = 0, row, m = p.n[p.nd - 1]
    cdef Py_ssize_t sa = p.sa[p.nd - 1], sb = p.sb[p.nd - 1]
    cdef double t[UL_CHUNK]
    cdef double fill[UL_CHUNK]
    if p.size == 0:
        return
    memset(idx, 0, p.nd * sizeof(Py_ssize_t))
    for row in range(p.size // m):
        if ga != NULL:
            if sa == 0:
                ga[oa] += _bc_row_sum(op, False, g + row * m, a + oa, 0, b + ob, sb,
                                      <floating*>t, <floating*>fill, m)
            else:
                binary_kernel(op, BACKWARD, g + row * m, a + oa, sa, b + ob, sb,
                              <floating*>(g + row * m), ga + oa, <floating*>NULL, m, False, False)
        if gb != NULL:
            if sb == 0:
                gb[ob] += _bc_row_sum(op, True, g + row * m, a + oa, sa, b + ob, 0,
                                      <floating*>t, <floating*>fill, m)
            else:
                binary_kernel(op, BACKWARD, g + row * m, a + oa, sa, b + ob, sb,
                              <floating*>(g + row * m), <floating*>NULL, gb + ob, m, False, False)
        _bc_next(p, idx, &oa, &ob)


cdef void _bc_grad_inplace(int op, const _Plan* p, floating* g, const floating* a,
                           const floating* b, bint swap) noexcept nogil:
    """g = g * dy/d(full operand), over g itself: a has the result's shape (or b, when
    swap: then a and b trade places, which mul/maximum/minimum allow)."""
    cdef Py_ssize_t idx[BC_MAXDIM]
    cdef Py_ssize_t oa = 0, ob = 0, row, m = p.n[p.nd - 1]
    cdef Py_ssize_t sa = p.sa[p.nd - 1], sb = p.sb[p.nd - 1]
    if p.size == 0:
        return
    memset(idx, 0, p.nd * sizeof(Py_ssize_t))
    for row in range(p.size // m):
        if swap:
            binary_kernel(op, BACKWARD_OVER, g + row * m, b + ob, 1, a + oa, sa, g + row * m,
                          g + row * m, <floating*>NULL, m, False, False)
        else:
            binary_kernel(op, BACKWARD_OVER, g + row * m, a + oa, 1, b + ob, sb, g + row * m,
                          g + row * m, <floating*>NULL, m, False, False)
        _bc_next(p, idx, &oa, &ob)


cdef object _binary_broadcast(int op, TensorBase a, TensorBase b):
    """a op b for tensors of different shapes (same float dtype, contiguous), or None
    when the shapes do not broadcast (the caller's generic path says why) or op is pow."""
    cdef _Plan p
    cdef TensorBase out
    if op == POW or not _bc_plan(a._shape, b._shape, &p):
        return None
    out = _alloc(_bc_shape(&p, a, b), p.size, a._dt)
    _bc_values(op, &p, a, b, out)
    if fg_grad_enabled() and (a._requires_grad or b._requires_grad):
        out._requires_grad = True
        out._op = op
        out._native = True
        out._form = FORM_BC
        out._a = a
        out._b = b
        out._va = _ver(a)
        out._la = a._layout
        out._vb = _ver(b)
        out._lb = b._layout
        if _node_hook is not None:
            _node_hook(out)
    return out


cdef void _bc_values(int op, const _Plan* p, TensorBase a, TensorBase b,
                     TensorBase out) noexcept:
    if out._dt == DT_F64:
        _bc_forward(op, p, <double*>a._data, <double*>b._data, <double*>out._data)
    else:
        _bc_forward(op, p, <float*>a._data, <float*>b._data, <float*>out._data)


cdef bint _bc_replay(int op, TensorBase a, TensorBase b, TensorBase out) noexcept:
    """A replay's forward of a FORM_BC node; False if the shapes no longer fit (the
    replay's door checked the inputs' layouts; the output's is checked here)."""
    cdef _Plan p
    if not _bc_plan(a._shape, b._shape, &p) or p.size != out._size:
        return False
    _bc_values(op, &p, a, b, out)
    return True


cdef int _bc_backward(TensorBase node) except -1:
    """The backward rule of a FORM_BC node."""
    cdef TensorBase a = node._a, b = node._b, full = None
    cdef int op = node._op, dt = node._dt
    cdef _Plan p
    cdef char* g = node._g
    cdef char* ga = NULL
    cdef char* gb = NULL
    cdef bint swap = False
    if a._data == NULL or b._data == NULL:
        if (a._data == NULL and not a._dropped) or (b._data == NULL and not b._dropped) \
                or SAVES_A[op] or SAVES_B[op]:
            raise RuntimeError("backward: the values of an input of '%s' were replaced "
                               "through .data by an array of another layout" % _op_name(node))
    if not _bc_plan(a._shape, b._shape, &p) or p.size != node._size \
            or _bc_shape(&p, a, b) != node._shape:
        raise RuntimeError("backward: the values of '%s' were replaced through .data by an "
                           "array of another shape" % _op_name(node))
    # The operand of the result's shape, if it needs its first gradient, takes it over
    # the incoming one (after the other operand's pass, which reads it).
    if a._requires_grad and a._g == NULL and a._size == node._size \
            and (op == ADD or op == SUB or op == MUL or op == DIV or op == MAXIMUM
                 or op == MINIMUM):
        full = a
    elif b._requires_grad and b._g == NULL and b._size == node._size \
            and (op == ADD or op == SUB or op == MUL or op == MAXIMUM or op == MINIMUM):
        full = b
        swap = True
    if a._requires_grad and a is not full:
        ga = _grad_buffer(a)
    if b._requires_grad and b is not full:
        gb = _grad_buffer(b)
    if ga != NULL or gb != NULL:
        if dt == DT_F64:
            _bc_grad(op, &p, <double*>g, <double*>a._data, <double*>b._data, <double*>ga,
                     <double*>gb)
        else:
            _bc_grad(op, &p, <float*>g, <float*>a._data, <float*>b._data, <float*>ga,
                     <float*>gb)
    if full is None:
        return 0
    full._g = g
    node._g = NULL
    if op == ADD or (op == SUB and not swap):
        return 0                                  # the gradient is the incoming one
    if op == SUB:                                 # b of a - b: minus it
        if dt == DT_F64:
            unary_kernel(NEG, BACKWARD_OVER, <double*>g, <double*>g, <double*>g, <double*>g,
                         node._size, 0, 0)
        else:
            unary_kernel(NEG, BACKWARD_OVER, <float*>g, <float*>g, <float*>g, <float*>g,
                         node._size, 0, 0)
        return 0
    if dt == DT_F64:
        _bc_grad_inplace(op, &p, <double*>g, <double*>a._data, <double*>b._data, swap)
    else:
        _bc_grad_inplace(op, &p, <float*>g, <float*>a._data, <float*>b._data, swap)
    return 0
