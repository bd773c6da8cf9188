"""The public surface where users meet it first: Python's number protocol,
dtypes at creation, and the errors of wrong arguments.  Each error must name
the function, the bad value and what was expected; PyTorch is the oracle
where it has the same thing."""
import math
import operator
import re

import numpy as np
import pytest


# ---------------------------------------------------------------------------
# Tensors where Python wants numbers
# ---------------------------------------------------------------------------
def test_zero_d_tensors_compare_sort_and_pick_like_numbers(fg):
    losses = [fg.tensor(v) for v in (0.7, 0.2, 0.9)]
    best = 0.5
    assert bool(losses[1] < best) and not bool(losses[0] < best)
    assert bool(1.0 > losses[2]) and bool(losses[2] >= 0.9)
    assert float(max(losses)) == pytest.approx(0.9)
    assert float(min(losses)) == pytest.approx(0.2)
    assert [round(float(t), 6) for t in sorted(losses)] == [0.2, 0.7, 0.9]
    out = losses[0] < best
    assert isinstance(out, fg.Tensor) and out.dtype == np.bool_ and out.shape == ()
    assert isinstance(out.numpy(), np.ndarray)


def test_format_like_a_python_number(fg):
    torch = pytest.importorskip("torch")
    for value in (0.123456, 3.0, -2.5e-7):
        t, ref = fg.tensor(value, dtype=np.float64), torch.tensor(value, dtype=torch.float64)
        for spec in (".4f", "8.2e", "", ">10.3g"):
            assert format(t, spec) == format(ref, spec), spec
    assert f"{fg.tensor(7):d}" == f"{torch.tensor(7):d}" == "7"
    # one element in a 1-d tensor formats as its value too (torch refuses)
    assert f"{fg.tensor([0.25]):.3f}" == "0.250"
    vec = fg.tensor([1.0, 2.0])
    assert f"{vec}" == str(vec)
    with pytest.raises(TypeError, match=r"format.*\.2f.*shape \(2,\)"):
        f"{vec:.2f}"


def test_index_protocol_for_integer_and_bool_0d_tensors(fg):
    torch = pytest.importorskip("torch")
    n = fg.tensor(3)
    assert operator.index(n) == operator.index(torch.tensor(3)) == 3
    assert list(range(n)) == [0, 1, 2]
    assert [10, 20, 30, 40][n] == 40
    assert operator.index(fg.tensor(True)) == operator.index(torch.tensor(True)) == 1
    assert operator.index(fg.from_numpy(np.array(2, dtype=np.int32))) == 2
    with pytest.raises(TypeError) as ref:
        operator.index(torch.tensor(2.0))
    with pytest.raises(TypeError, match=r"__index__.*float32.*int\(t\)"):
        operator.index(fg.tensor(2.0))
    assert "integer" in str(ref.value)
    # not a 1-element 1-d tensor: NumPy would take it as an integer index
    with pytest.raises(TypeError, match=r"__index__.*shape \(1,\)"):
        operator.index(fg.tensor([2]))
    a = np.arange(5.0)
    assert a[fg.tensor([2])].shape == (1,)
    # the conversions that already worked still do
    assert int(n) == 3 and float(fg.tensor(0.5)) == 0.5 and bool(fg.tensor(1.0))
    assert math.isclose(fg.tensor(1.0), 1.0)


# ---------------------------------------------------------------------------
# Dtypes at creation
# ---------------------------------------------------------------------------
def _big_endian():
    return np.array([1e300, -2.5, 3.0], dtype=">f8")


def test_non_native_byte_order_keeps_float64_precision(fg):
    be = _big_endian()
    made = {
        "tensor": fg.tensor(be),
        "from_numpy": fg.from_numpy(be),
        "Parameter": fg.nn.Parameter(be),
        "operand": fg.zeros(3, dtype=np.float64) + be,
        "zeros": fg.zeros(3, dtype=">f8") + 1e300,
    }
    t = fg.zeros(3, dtype=np.float64)
    t.data = be
    made["data"] = t
    for name, x in made.items():
        assert x.dtype == np.float64 and x.dtype.isnative, name
        assert np.all(np.isfinite(x.numpy())) and x.numpy()[0] == 1e300, name
    # a from_numpy of a big-endian array is differentiable on both cores
    x = fg.from_numpy((_big_endian() / 1e300).astype(">f8")).requires_grad_()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * _big_endian() / 1e300)


def test_from_numpy_keeps_integer_dtypes_and_shares_memory(fg):
    torch = pytest.importorskip("torch")
    for dtype in (np.int32, np.uint8, np.int64, np.bool_, np.float32, np.float64):
        a = np.zeros(3, dtype=dtype)
        t = fg.from_numpy(a)
        assert t.dtype == a.dtype == torch.from_numpy(a).numpy().dtype
        a[1] = 1
        assert t.numpy()[1] == 1                 # shared, not copied
    assert fg.tensor(np.ones(2, np.int32)).dtype == np.int64
    assert fg.tensor(np.ones(2, np.uint8)).dtype == np.int64
    # a big-endian integer array is brought to native order, values kept
    big = np.array([2 ** 30, -7], dtype=">i4")
    for t in (fg.from_numpy(big), fg.tensor(big), fg.ones(2) + big):
        assert t.dtype.isnative
        # ones(2) (float32) + int32 is float32, as in torch: 2**30 + 1 rounds to 2**30
        expected = np.array([2 ** 30, -7]).astype(t.dtype) + (t.dtype.kind == "f")
        np.testing.assert_array_equal(t.numpy(), expected)
    # strided, Fortran-order and reversed arrays give the right values
    base = np.arange(12.0).reshape(3, 4)
    for a in (np.asfortranarray(base), base[:, ::2], base[::-1], base.T):
        np.testing.assert_array_equal(fg.tensor(a).numpy(), a)
        np.testing.assert_array_equal((fg.from_numpy(a) * 2).numpy(), a * 2)


def test_float16_is_refused_everywhere_with_advice(fg):
    half = np.ones(3, dtype=np.float16)
    x = fg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    attempts = [
        ("tensor", lambda: fg.tensor(half)),
        ("tensor", lambda: fg.tensor([1.0], dtype=np.float16)),
        ("from_numpy", lambda: fg.from_numpy(half)),
        ("tensor", lambda: fg.nn.Parameter(half)),
        ("zeros", lambda: fg.zeros(3, dtype=np.float16)),
        ("mul", lambda: x * half),
        ("to", lambda: x.to(np.float16)),
    ]
    for name, attempt in attempts:
        with pytest.raises(TypeError, match=r"^%s: float16 is not supported.*astype\(np\.float32\)"
                           % name):
            attempt()
    t = fg.tensor([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match=r"^data: float16"):
        t.data = half
    assert t.dtype == np.float32                 # the failed assignment changed nothing


@pytest.mark.parametrize("bad", [
    np.array([1 + 2j, 3j]),
    np.array([1.0, None], dtype=object),
    np.array(["a", "b"]),
    np.array([b"a", b"b"]),
    np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]"),
    np.zeros(2, dtype=[("a", "f8"), ("b", "i4")]),
], ids=["complex", "object", "str", "bytes", "datetime", "void"])
def test_unsupported_dtypes_raise_at_creation(fg, bad):
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    for name, attempt in [("tensor", lambda: fg.tensor(bad)),
                          ("from_numpy", lambda: fg.from_numpy(bad)),
                          ("tensor", lambda: fg.nn.Parameter(bad)),
                          ("add", lambda: x + bad)]:
        with pytest.raises(TypeError, match=r"^%s: arrays of dtype .* are not supported" % name):
            attempt()
    t = fg.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match=r"^data: arrays of dtype"):
        t.data = bad
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])


def test_no_op_silently_drops_requires_grad_through_a_complex_value(fg):
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="complex128"):
        x * np.array([1j, 2.0])
    with pytest.raises(TypeError, match="complex128"):
        x < np.array([1j, 2.0])
    with pytest.raises(TypeError, match="complex128"):
        fg.where(x > 1, x, np.array([1j, 0]))
    with pytest.raises(TypeError, match="^to: arrays of dtype complex"):
        x.to(np.complex128)

    class ToComplex(fg.Function):
        @staticmethod
        def forward(ctx, a):
            return np.asarray(a) * 1j

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(TypeError, match=r"^ToComplex\.forward: arrays of dtype complex"):
        ToComplex.apply(x)


# ---------------------------------------------------------------------------
# fg.grad with an input listed twice
# ---------------------------------------------------------------------------
def test_grad_of_an_input_listed_twice(fg):
    torch = pytest.importorskip("torch")
    v = np.array([0.5, -1.5, 2.0])
    x, w = fg.tensor(v, requires_grad=True), fg.tensor(v[::-1].copy(), requires_grad=True)
    gx1, gw, gx2 = fg.grad(((x * x) * w).sum(), [x, w, x])
    tx, tw = torch.tensor(v, requires_grad=True), torch.tensor(v[::-1].copy(), requires_grad=True)
    rx1, rw, rx2 = torch.autograd.grad(((tx * tx) * tw).sum(), [tx, tw, tx])
    for ours, ref in ((gx1, rx1), (gw, rw), (gx2, rx2)):
        np.testing.assert_allclose(ours.numpy(), ref.numpy())
    gx2.numpy()[0] = 99.0                        # each gradient is its own tensor
    assert gx1.numpy()[0] != 99.0
    assert x.grad is None


# ---------------------------------------------------------------------------
# Clear errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("axis", ["a", 1.5, 1.0, None, True, (0, 1.0)], ids=repr)
def test_axis_must_be_an_integer(fg, axis):
    torch = pytest.importorskip("torch")
    t = fg.tensor(np.ones((2, 3)))
    if axis is None:
        axis = [None]                            # a list holding None
    for name, call in (("mean", lambda: t.mean(axis=axis)), ("sum", lambda: t.sum(axis)),
                       ("sum", lambda: fg.sum(t, dim=axis)), ("max", lambda: t.max(axis)),
                       ("logsumexp", lambda: t.logsumexp(axis)),
                       ("softmax", lambda: t.softmax(dim=axis)),
                           ("log_softmax", lambda: t.log_softmax(dim=axis)),
                       ("argmax", lambda: t.argmax(axis if not isinstance(axis, tuple) else 1.5))):
        with pytest.raises(TypeError, match=r"^%s: an axis must be an int or a tuple of ints"
                           % name):
            call()
    with pytest.raises(TypeError):
        torch.ones(2, 3).sum(dim=1.5)
    # NumPy integers are axes
    assert t.sum(np.int64(1)).shape == (2,) and t.mean((np.int32(0), 1)).shape == ()


def test_axis_and_dim_together_name_the_function(fg):
    t = fg.tensor(np.ones((2, 3)))
    for name, call in (("sum", lambda: t.sum(axis=0, dim=1)),
                       ("mean", lambda: fg.mean(t, axis=0, dim=1)),
                       ("cat", lambda: fg.cat([t, t], axis=0, dim=1)),
                       ("logsumexp", lambda: t.logsumexp(axis=0, dim=1))):
        with pytest.raises(TypeError, match=r"^%s: pass either axis= or dim=, not both "
                           r"\(got axis=0 and dim=1\)" % name):
            call()


def test_flatten_checks_its_dims(fg):
    torch = pytest.importorskip("torch")
    t, ref = fg.tensor(np.ones((2, 3))), torch.ones(2, 3)
    for start, end in ((5, -1), (0, 2), (-3, -1), (0, -3)):
        with pytest.raises(IndexError):
            ref.flatten(start, end)
        with pytest.raises(ValueError, match=r"^flatten: (start|end)_dim -?\d is out of range "
                           r".*shape \(2, 3\).*-2 to 1"):
            t.flatten(start, end)
    with pytest.raises(TypeError, match=r"^flatten: start_dim must be an int, got 0.5"):
        t.flatten(0.5)
    scalar = fg.tensor(1.0)
    assert scalar.flatten(-1, 0).shape == tuple(torch.ones(()).flatten(-1, 0).shape) == (1,)
    with pytest.raises(ValueError, match="flatten: start_dim 1"):
        scalar.flatten(1)
    assert t.flatten(1, -1).shape == (2, 3) and fg.flatten(t).shape == (6,)


def _cube_with(fg, grad_fn):
    class Cube(fg.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a ** 3

        @staticmethod
        def backward(ctx, g):
            return grad_fn(ctx, g)

    return Cube


def test_custom_function_gradient_of_the_wrong_shape(fg):
    torch = pytest.importorskip("torch")

    class TorchBad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return torch.ones(5)

    with pytest.raises(RuntimeError, match=r"invalid gradient at index 0"):
        TorchBad.apply(torch.ones(3, requires_grad=True)).sum().backward()
    for bad in ((5,), (1,), (3, 2)):
        Bad = _cube_with(fg, lambda ctx, g, bad=bad: np.ones(bad))
        x = fg.tensor(np.ones(3), requires_grad=True)
        y = Bad.apply(x).sum()
        with pytest.raises(RuntimeError, match=r"^Cube\.backward returned a gradient of shape "
                           r"%s for input 0, which has shape \(3,\)" % re_shape(bad)):
            y.backward()
        assert x.grad is None
    Complex = _cube_with(fg, lambda ctx, g: np.asarray(g) * 1j)
    x = fg.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match=r"^Cube\.backward returned a gradient of dtype complex128"):
        Complex.apply(x).sum().backward()


def re_shape(shape):
    return re.escape(str(tuple(shape)))


    _check_broadcast_gradient_is_summed_as_torch(fg, torch)


def _check_broadcast_gradient_is_summed_as_torch(fg, torch):

    class TorchWide(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return torch.arange(6.0, dtype=torch.float64).reshape(2, 3)

    Wide = _cube_with(fg, lambda ctx, g: np.arange(6.0).reshape(2, 3))
    for shape in ((3,), (1, 3)):
        x = fg.tensor(np.ones(shape), requires_grad=True)
        Wide.apply(x).sum().backward()
        tx = torch.ones(shape, dtype=torch.float64, requires_grad=True)
        TorchWide.apply(tx).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_on_an_empty_batch_as_torch(fg, reduction):
    torch = pytest.importorskip("torch")
    F = fg.nn.functional
    targets = (np.ones((0, 3)), np.zeros(0, dtype=np.int64))
    for target in targets:
        z = fg.tensor(np.ones((0, 3)), requires_grad=True)
        out = F.cross_entropy(z, target, reduction=reduction)
        ref = torch.nn.functional.cross_entropy(torch.ones(0, 3, dtype=torch.float64),
                                                torch.from_numpy(target), reduction=reduction)
        assert out.shape == tuple(ref.shape)
        np.testing.assert_array_equal(out.numpy(), ref.numpy())
        if reduction != "none":
            out.backward()
            assert z.grad.shape == (0, 3)
    loss = fg.nn.CrossEntropyLoss(reduction=reduction)(fg.tensor(np.ones((0, 3))),
                                                       np.ones((0, 3)))
    assert loss.shape == (() if reduction != "none" else (0,))


def test_softmax_and_logsumexp_over_an_empty_axis_as_torch(fg):
    torch = pytest.importorskip("torch")
    x = fg.tensor(np.ones((2, 0)), requires_grad=True)
    ref = torch.ones(2, 0, dtype=torch.float64)
    np.testing.assert_array_equal(x.logsumexp(1).numpy(), ref.logsumexp(1).numpy())
    np.testing.assert_array_equal(fg.logsumexp(x, dim=1, keepdim=True).numpy(),
                                  ref.logsumexp(1, keepdim=True).numpy())
    assert float(fg.tensor(np.ones(0)).logsumexp()) == -math.inf
    for ours, theirs in ((x.softmax(1), ref.softmax(1)), (x.log_softmax(-1), ref.log_softmax(-1)),
                         (fg.nn.functional.softmax(x, 1), ref.softmax(1)),
                         (fg.tensor(np.ones((0, 3))).softmax(1), torch.ones(0, 3).softmax(1))):
        assert ours.shape == tuple(theirs.shape)
    x.logsumexp(1).sum().backward()
    assert x.grad.shape == (2, 0)


# ---------------------------------------------------------------------------
# Wrong-type arguments to the public functions
# ---------------------------------------------------------------------------
def test_factories_name_themselves_and_the_bad_size(fg):
    torch = pytest.importorskip("torch")
    for bad in (None, "a", 2.0):
        with pytest.raises(TypeError):
            torch.zeros(bad)
        for name in ("zeros", "ones", "empty", "randn", "rand"):
            with pytest.raises(TypeError, match=r"^%s: a size must be a sequence of ints, got %s"
                               % (name, re.escape(repr(bad)))):
                getattr(fg, name)(bad)
        with pytest.raises(TypeError, match=r"^full: a size must be"):
            fg.full(bad, 1.0)
        with pytest.raises(TypeError, match=r"^eye: a size must be"):
            fg.eye(bad)
    with pytest.raises(TypeError, match=r"^zeros: a size must be .*\(2, None\)"):
        fg.zeros(2, None)
    with pytest.raises(ValueError, match=r"^ones: sizes must be non-negative, got \(2, -1\)"):
        fg.ones((2, -1))
    with pytest.raises(TypeError, match=r"^full: fill_value must be a number, got 'x'"):
        fg.full((2,), "x")
    with pytest.raises(TypeError, match=r"^arange: end must be a number, got 'a'"):
        fg.arange("a")
    with pytest.raises(ValueError, match=r"^arange: step must be nonzero"):
        fg.arange(0, 3, 0)
    with pytest.raises(TypeError, match=r"^randint: high must be an int, got 2.5"):
        fg.randint(2.5)
    with pytest.raises(TypeError, match=r"^zeros: 'nope' is not a dtype"):
        fg.zeros(2, dtype="nope")
    with pytest.raises(TypeError, match=r"^randn: the dtype must be float32 or float64"):
        fg.randn(2, dtype=np.int64)
    with pytest.raises(TypeError, match=r"^zeros_like: expected a tensor or an ndarray"):
        fg.zeros_like([1.0, 2.0])
    with pytest.raises(TypeError, match=r"^tensor: expected a number.*got None"):
        fg.tensor(None)
    assert fg.zeros((np.int64(2), 3)).shape == (2, 3) and fg.randint(3, size=4).shape == (4,)
    assert fg.full((2,), fg.tensor(1.5)).numpy().tolist() == [1.5, 1.5]


def test_cat_stack_where_check_their_arguments(fg):
    torch = pytest.importorskip("torch")
    a = fg.tensor(np.ones((2, 3), np.float32))
    for name in ("cat", "stack"):
        fn = getattr(fg, name)
        for bad in (None, a, 3):
            with pytest.raises(TypeError, match=r"^%s: expected a list or tuple of tensors, got"
                               % name):
                fn(bad)
        with pytest.raises(TypeError, match=r"^%s: expected a list .* got NoneType at position 1"
                           % name):
            fn([a, None])
        with pytest.raises(TypeError, match=r"^%s: an axis must be an int.* got 'a'" % name):
            fn([a, a], dim="a")
        with pytest.raises(ValueError, match=r"^%s: expected a non-empty sequence" % name):
            fn([])
    # mixed dtypes promote as in torch: float32 with int64 stays float32
    mixes = ((np.float32, np.int64), (np.float32, np.float64), (np.int64, np.bool_),
             (np.int32, np.int64))
    for da, db in mixes:
        x, y = np.ones((2, 3), da), np.zeros((2, 3), db)
        ref = torch.cat([torch.from_numpy(x), torch.from_numpy(y)]).numpy().dtype
        assert fg.cat([fg.from_numpy(x), fg.from_numpy(y)]).dtype == ref, (da, db)
        assert fg.stack([fg.from_numpy(x), fg.from_numpy(y)]).dtype == ref, (da, db)
    # a float32 input still gets a float32 gradient when a float64 one widens the result
    x32 = fg.tensor(np.ones(2, np.float32), requires_grad=True)
    x64 = fg.tensor(np.ones(2, np.float64), requires_grad=True)
    fg.cat([x32, x64]).sum().backward()
    assert x32.grad.dtype == np.float32 and x64.grad.dtype == np.float64
    with pytest.raises(TypeError, match=r"^where: condition must be a bool tensor or array, "
                       r"got NoneType"):
        fg.where(None, a, a)
    with pytest.raises(TypeError, match=r"^where: condition must be bool.*float32"):
        fg.where(a, a, a)
    with pytest.raises(TypeError, match=r"^where: input must be a tensor, an array or a number, "
                       r"got str"):
        fg.where(a > 0, "a", a)
    np.testing.assert_array_equal(fg.where([True, False, True], a, 0.0).numpy()[0], [1, 0, 1])


def test_elementwise_parameters_must_be_numbers(fg):
    t = fg.tensor([1.0, -2.0])
    with pytest.raises(TypeError, match=r"^leaky_relu: negative_slope must be a number, got 'a'"):
        t.leaky_relu("a")
    with pytest.raises(TypeError, match=r"^leaky_relu: negative_slope must be a number"):
        fg.leaky_relu(t, None)
    with pytest.raises(TypeError, match=r"^clip: max must be a number, got 'b'"):
        fg.clip(t, -1.0, "b")
    np.testing.assert_array_equal(t.clip(fg.tensor(0.0)).numpy(), [1.0, 0.0])


def test_comparing_with_none_or_a_string_is_python_s_answer_as_torch(fg):
    torch = pytest.importorskip("torch")
    t, ref = fg.tensor(np.ones((2, 3))), torch.ones(2, 3)
    assert (t == None) is (ref == None) is False        # noqa: E711 (the operator is the test)
    assert (t != None) is (ref != None) is True         # noqa: E711
    assert (fg.tensor(1.0) == "a") is False
    assert None not in [t] and t in [t]
    for op in (operator.lt, operator.ge):
        with pytest.raises(TypeError) as theirs:
            op(ref, None)
        with pytest.raises(TypeError, match=re.escape(str(theirs.value))):
            op(t, None)


def test_integer_0d_tensors_are_ints_for_axes_sizes_and_dims_as_torch(fg):
    torch = pytest.importorskip("torch")
    t, ref = fg.tensor(np.ones((2, 3))), torch.ones(2, 3)
    one = fg.tensor(1)
    assert t.sum(one).shape == tuple(ref.sum(torch.tensor(1)).shape) == (2,)
    assert fg.zeros(fg.tensor(2)).shape == tuple(torch.zeros(torch.tensor(2)).shape) == (2,)
    assert fg.cat([t, t], one).shape == (2, 6) and t.flatten(fg.tensor(0)).shape == (6,)
    assert t.size(one) == ref.size(torch.tensor(1)) == 3
    with pytest.raises(TypeError):
        ref.sum(torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"^sum: an axis must be an int.*got tensor\(1\."):
        t.sum(fg.tensor(1.0))
    with pytest.raises(IndexError):
        ref.size(2)
    with pytest.raises(IndexError, match=r"^size: dimension 2 is out of range .*shape \(2, 3\)"):
        t.size(2)
    with pytest.raises(TypeError, match=r"^size: an axis must be an int.*'a'"):
        t.size("a")


def test_stack_range_ragged_lists_and_grad_outputs_name_the_function(fg):
    t = fg.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"^stack: axis 4 is out of range .*shape \(2, 3\) "
                       r"\(expected -3 to 2\)"):
        fg.stack([t, t], 4)
    assert fg.stack([t, t], -3).shape == (2, 2, 3)
    with pytest.raises(ValueError, match=r"^tensor: cannot make a tensor from this data"):
        fg.tensor([[1.0, 2.0], [3.0]])
    with pytest.raises(TypeError, match=r"^grad: expected tensors as outputs, got float"):
        fg.grad([1.0], [t])
