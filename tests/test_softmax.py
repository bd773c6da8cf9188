"""softmax and log_softmax (ops of their own on both cores) against PyTorch and
finite differences: every axis of 2-D and 3-D tensors, empty and 0-d tensors,
rows with infinities and NaN, strided inputs, fg.compile's replay, and the
saved output changed in place.  Cross entropy's rows share the kernel: its
gradient (from the saved softmax) is checked here too."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

OPS = ("softmax", "log_softmax")
CASES = [((4, 4), -1), ((4, 4), 0), ((4, 4), 1), ((3, 5), 0), ((1, 7), -1), ((7, 1), 0),
         ((2, 3, 4), -1), ((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), -2), ((3, 600), -1),
         ((600, 3), 0), ((5,), 0), ((1,), -1)]


def _against_torch(fg, name, x, axis, dtype=np.float64, tol=(1e-12, 1e-9)):
    w = np.linspace(-1.0, 2.0, x.size).reshape(x.shape)
    a = fg.tensor(x.astype(dtype), requires_grad=True)
    y = getattr(a, name)(axis)
    (y * fg.tensor(w.astype(dtype))).sum().backward()
    t = torch.tensor(x.astype(dtype), requires_grad=True)
    ty = getattr(torch, name)(t, axis)
    (ty * torch.tensor(w.astype(dtype))).sum().backward()
    assert y.shape == tuple(ty.shape) and y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=tol[0], atol=tol[0],
                               equal_nan=True, err_msg="%s %s axis %s value" % (name, x.shape, axis))
    np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=tol[1], atol=tol[1],
                               equal_nan=True, err_msg="%s %s axis %s grad" % (name, x.shape, axis))


@pytest.mark.parametrize("name", OPS)
def test_against_torch_every_axis(fg, rng, name):
    for shape, axis in CASES:
        x = rng.normal(size=shape) * 3
        _against_torch(fg, name, x, axis)
        _against_torch(fg, name, x, axis, np.float32, (1e-5, 1e-4))


@pytest.mark.parametrize("name", OPS)
def test_finite_differences(fg, rng, name):
    for shape, axis in [((3, 4), -1), ((3, 4), 0), ((2, 3, 4), 1)]:
        x = rng.normal(size=shape)
        w = rng.normal(size=shape)

        def f(v):
            return float((getattr(fg.tensor(v), name)(axis) * fg.tensor(w)).sum().item())

        a = fg.tensor(x, requires_grad=True)
        (getattr(a, name)(axis) * fg.tensor(w)).sum().backward()
        num = np.zeros_like(x)
        for i in np.ndindex(*shape):
            d = np.zeros_like(x)
            d[i] = 1e-6
            num[i] = (f(x + d) - f(x - d)) / 2e-6
        np.testing.assert_allclose(a.grad.numpy(), num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", OPS)
def test_every_spelling_is_the_op(fg, rng, name):
    x = fg.tensor(rng.normal(size=(3, 4)), requires_grad=True)
    F = fg.nn.functional
    layer = fg.nn.Softmax if name == "softmax" else fg.nn.LogSoftmax
    results = [getattr(x, name)(), getattr(x, name)(dim=-1), getattr(fg, name)(x, 1),
               getattr(F, name)(x), getattr(F, name)(x, dim=1), layer()(x), layer(dim=-1)(x)]
    for y in results:
        assert y.grad_fn == name
        np.testing.assert_array_equal(y.numpy(), results[0].numpy())
    assert getattr(x, name)(0).grad_fn == name
    with pytest.raises(TypeError, match="^%s: pass either axis= or dim=" % name):
        getattr(x, name)(0, dim=1)
    with pytest.raises(ValueError, match="^%s: axis 2 is out of range" % name):
        getattr(x, name)(2)
    with pytest.raises(TypeError, match="^%s: an axis must be an int" % name):
        getattr(x, name)((0, 1))


@pytest.mark.parametrize("name", OPS)
def test_empty_and_0d(fg, name):
    for shape, axis in [((0, 3), 0), ((0, 3), 1), ((3, 0), 1), ((3, 0), 0), ((2, 0, 4), 1),
                        ((0,), 0)]:
        a = fg.tensor(np.zeros(shape), requires_grad=True)
        y = getattr(a, name)(axis)
        assert y.shape == shape
        y.sum().backward()
        assert a.grad.shape == shape
        ty = getattr(torch, name)(torch.zeros(shape, dtype=torch.float64), axis)
        assert tuple(ty.shape) == shape
    for v in (2.0, -np.inf, np.nan):
        a = fg.tensor(v, requires_grad=True)
        y = getattr(a, name)()
        t = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        ty = getattr(torch, name)(t, 0)
        y.backward()
        ty.backward()
        assert y.shape == ()
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), equal_nan=True)
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), equal_nan=True)


@pytest.mark.parametrize("name", OPS)
def test_inf_and_nan_rows(fg, name):
    inf, nan = np.inf, np.nan
    x = np.array([[1.0, inf, 2.0], [-inf, -inf, -inf], [nan, 1.0, 2.0], [1.0, 2.0, -inf],
                  [inf, inf, inf], [-inf, 0.0, -inf], [1e300, -1e300, 0.0], [0.0, 0.0, 0.0]])
    for axis, arr in ((-1, x), (0, x.T.copy()), (1, x[None].repeat(2, 0))):
        if arr.ndim == 3:
            arr = np.ascontiguousarray(np.swapaxes(arr, 1, 2))      # rows along axis 1
        for dtype in (np.float64, np.float32):
            y = getattr(fg.tensor(arr.astype(dtype)), name)(axis).numpy()
            ty = getattr(torch, name)(torch.tensor(arr.astype(dtype)), axis).numpy()
            np.testing.assert_allclose(y, ty, rtol=1e-6, atol=0, equal_nan=True,
                                       err_msg="%s axis %d %s" % (name, axis, dtype))


@pytest.mark.parametrize("name", OPS)
def test_strided_inputs(fg, rng, name):
    x = rng.normal(size=(5, 6))
    for view in (lambda t: t.T, lambda t: t[:, ::2], lambda t: t[1:, 2:], lambda t: t.T[::2]):
        a = fg.tensor(x, requires_grad=True)
        t = torch.tensor(x, requires_grad=True)
        for axis in (-1, 0):
            y = getattr(view(a), name)(axis)
            ty = getattr(view(t), name)(axis)
            np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
            (y * y).sum().backward()
            (ty * ty).sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", OPS)
def test_compile_replays_with_new_values(fg, rng, name):
    for shape, axis in [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1)]:
        a = fg.tensor(rng.normal(size=shape), requires_grad=True)
        w = fg.tensor(rng.normal(size=shape))
        step = fg.compile(lambda: (getattr(a, name)(axis) * w).sum())
        for scale in (1.0, 2.0, -0.5):
            with fg.no_grad():
                a.data[...] = a.numpy() * scale
            a.grad = None
            loss = step()
            t = torch.tensor(a.numpy(), requires_grad=True)
            tl = (getattr(torch, name)(t, axis) * torch.tensor(w.numpy())).sum()
            tl.backward()
            np.testing.assert_allclose(float(np.asarray(loss.numpy() if hasattr(loss, "numpy")
                                                        else loss)), tl.item(), rtol=1e-12)
            np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", OPS)
def test_saved_output_changed_in_place_is_detected(fg, rng, name):
    for axis in (-1, 0):
        a = fg.tensor(rng.normal(size=(3, 4)), requires_grad=True)
        y = getattr(a, name)(axis)
        z = (y + 2).sum()                      # add reads nothing back
        if axis == -1:
            with fg.no_grad():
                y.add_(1.0)
        else:
            y.detach()[0].zero_()              # through a view of a detached alias
        with pytest.raises(RuntimeError, match="its output .* of '%s' was modified in place"
                           % name):
            z.backward()


@pytest.mark.parametrize("name", OPS)
def test_second_backward_and_retain_graph(fg, rng, name):
    x = rng.normal(size=(3, 4))
    a = fg.tensor(x, requires_grad=True)
    y = getattr(a, name)(-1)
    loss = (y * y).sum()
    loss.backward(retain_graph=True)
    first = a.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(a.grad.numpy(), 2 * first, rtol=1e-12)
    with pytest.raises(RuntimeError, match="already freed"):
        loss.backward()


def test_cross_entropy_against_torch(fg, rng):
    F = fg.nn.functional
    for n, c in [(1, 1), (4, 3), (256, 10), (8, 256), (3, 1000), (2, 1100)]:
        x = rng.normal(size=(n, c)) * 4
        target = rng.integers(0, c, n)
        for reduction in ("mean", "sum", "none"):
            for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
                a = fg.tensor(x.astype(dtype), requires_grad=True)
                loss = F.cross_entropy(a, target, reduction=reduction)
                t = torch.tensor(x.astype(dtype), requires_grad=True)
                tl = torch.nn.functional.cross_entropy(t, torch.tensor(target),
                                                       reduction=reduction)
                w = np.linspace(0.5, 1.5, loss.numel()).reshape(loss.shape).astype(dtype)
                (loss * fg.tensor(w)).sum().backward()
                (tl * torch.tensor(w)).sum().backward()
                np.testing.assert_allclose(loss.numpy(), tl.detach().numpy(), rtol=tol,
                                           atol=tol)
                np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=tol,
                                           atol=tol)


def test_cross_entropy_replay_and_retained_graph(fg, rng):
    F = fg.nn.functional
    a = fg.tensor(rng.normal(size=(6, 300)), requires_grad=True)
    target = rng.integers(0, 300, 6)
    step = fg.compile(lambda: F.cross_entropy(a, target))
    for scale in (1.0, 3.0):
        with fg.no_grad():
            a.data[...] = a.numpy() * scale
        a.grad = None
        step()
        t = torch.tensor(a.numpy(), requires_grad=True)
        torch.nn.functional.cross_entropy(t, torch.tensor(target)).backward()
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12)
    a.grad = None
    loss = F.cross_entropy(a, target)
    loss.backward(retain_graph=True)
    first = a.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(a.grad.numpy(), 2 * first, rtol=1e-12)
