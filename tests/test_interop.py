"""Tensors among NumPy and PyTorch: ufuncs give differentiable tensors; DLPack shares memory."""
import numpy as np
import pytest


UNARY = ["exp", "log", "sqrt", "absolute", "sin", "cos", "tanh", "negative"]


@pytest.mark.parametrize("name", UNARY)
def test_numpy_unary_ufuncs_are_fastgrads_ops(fg, name):
    x0 = np.array([0.5, 1.5, 2.0])
    a = fg.tensor(x0, requires_grad=True)
    b = fg.tensor(x0, requires_grad=True)
    via_numpy = getattr(np, name)(a)
    fastgrad_name = {"absolute": "abs", "negative": "neg"}.get(name, name)
    direct = getattr(fg._core_module, fastgrad_name)(b)
    assert isinstance(via_numpy, fg.Tensor) and via_numpy.grad_fn == direct.grad_fn
    np.testing.assert_array_equal(via_numpy.numpy(), direct.numpy())
    via_numpy.sum().backward()
    direct.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "true_divide", "power",
                                  "maximum", "minimum"])
def test_numpy_binary_ufuncs_with_arrays_on_either_side(fg, name):
    x0, y0 = np.array([[0.5, 1.5], [2.0, 3.0]]), np.array([1.5, 0.25])
    x = fg.tensor(x0, requires_grad=True)
    out = getattr(np, name)(y0, x)                 # the array first: still the tensor's op
    assert isinstance(out, fg.Tensor)
    np.testing.assert_allclose(out.numpy(), getattr(np, name)(y0, x0))
    out.sum().backward()
    eps = 1e-6
    numeric = (getattr(np, name)(y0, x0 + eps) - getattr(np, name)(y0, x0 - eps)) / (2 * eps)
    np.testing.assert_allclose(x.grad.numpy(), numeric, rtol=1e-6)


def test_numpy_matmul_operator_and_comparisons(fg):
    w = fg.tensor(np.eye(2) * 2, requires_grad=True)
    out = np.ones((3, 2)) @ w
    assert isinstance(out, fg.Tensor) and out.grad_fn == "matmul"
    mask = np.greater(w, 1.0)
    assert mask.dtype == np.bool_ and mask.numpy().tolist() == [[True, False], [False, True]]


def test_unsupported_numpy_calls_say_what_to_do(fg):
    t = fg.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="np.arctan is not a differentiable op"):
        np.arctan(t)
    with pytest.raises(TypeError, match="np.add.reduce on a tensor"):
        np.add.reduce(t)
    with pytest.raises(TypeError, match="out="):
        np.exp(t, out=np.empty(2))


def test_dlpack_with_numpy_shares_memory_both_ways(fg):
    t = fg.tensor([1.0, 2.0, 3.0])
    a = np.from_dlpack(t)
    assert np.shares_memory(a, t.numpy())
    a[0] = 9.0
    assert t.numpy()[0] == 9.0
    b = np.arange(4.0)
    u = fg.from_dlpack(b)
    assert isinstance(u, fg.Tensor) and np.shares_memory(u.numpy(), b)
    assert t.__dlpack_device__() == (1, 0)         # kDLCPU, device 0
    with pytest.raises(RuntimeError, match="requires grad"):
        fg.tensor([1.0], requires_grad=True).__dlpack__()
    with pytest.raises(TypeError, match="does not export DLPack"):
        fg.from_dlpack([1, 2])


def test_dlpack_with_torch_shares_memory_both_ways(fg):
    torch = pytest.importorskip("torch")
    t = fg.tensor([1.0, 2.0], dtype=np.float64)
    tt = torch.from_dlpack(t)
    assert tt.dtype == torch.float64
    tt[1] = 7.0
    assert t.numpy()[1] == 7.0
    src = torch.arange(3, dtype=torch.float32)
    u = fg.from_dlpack(src)
    src[0] = 5.0
    assert u.numpy()[0] == 5.0 and u.dtype == np.float32
