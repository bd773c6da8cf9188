# The compiled core's tensor, as a C struct (see _tape.pyx for the design).

cdef class TensorBase:
    # -- values ---------------------------------------------------------------
    cdef object _arr           # ndarray holding the values, or None while they live in _buf
    cdef char* _buf            # malloc'd values of a native result (owned), NULL once _arr exists
    cdef char* _data           # C-contiguous values (into _buf or _arr), NULL if _arr is strided
    cdef object _shape         # tuple
    cdef Py_ssize_t _size
    cdef int _dt               # DT_F32, DT_F64 or DT_OTHER (NumPy handles those)
    # -- node ---------------------------------------------------------------
    cdef int _op               # fastgrad._ops code; LEAF for leaves
    cdef bint _requires_grad
    cdef bint _retains_grad
    cdef bint _released
    cdef bint _native          # inputs in _a/_b/_c (C kernels) rather than _inputs/_params
    cdef object _a             # native: first tensor input (None if a constant)
    cdef object _b             # native: second tensor input (None if a constant or unary)
    cdef object _d             # native: third input (linear's bias) or a saved array (targets)
    cdef double _c             # native: the constant operand, or an op parameter
    cdef double _c2            # native: a second op parameter (clip's upper bound)
    cdef int _form             # native: how the operands are laid out (FORM_*)
    cdef long _va              # native: versions of _a and _b when recorded
    cdef long _vb
    cdef long _vd
    cdef object _inputs        # generic: tuple of tensors and Python numbers
    cdef object _params        # generic: tuple of op parameters
    cdef object _versions      # generic: versions of the tensor inputs when recorded
    cdef object _grad          # .grad
    cdef long _version         # bumped by every in-place change (read through _ver: views share it)
    cdef long _layout          # bumped when .data is rebound to another shape, dtype or layout
    cdef object _base          # the tensor a view shares memory and version counter with, or None
    cdef long _la              # native: layouts of _a, _b, _d when recorded (see _check_node)
    cdef long _lb
    cdef long _ld
    cdef object _layouts       # generic: layouts of the tensor inputs when recorded
    cdef char* _saved          # native: values the backward reads besides its inputs and output
                               # (cross_entropy's softmax of the rows), owned, or NULL
    cdef bint _dropped         # values handed on to the consumer (nothing reads them again)
    # -- sweep scratch ----------------------------------------------------------
    cdef char* _g              # gradient accumulated during a sweep (owned)
    cdef long _mark            # id of the sweep that last visited this node
    cdef int _stage            # 1 while expanding, 2 once emitted (valid when _mark is current)
