"""The fused kernels of the layers (batch normalisation, tiled max pooling, the
patches of a convolution): the compiled loops agree with the NumPy reference
(float64 to 1e-12), with a definition written out element by element, and
refuse what their raw-pointer loops could not take safely."""
import itertools

import numpy as np
import pytest


def _kernels(both):
    py, compiled = both
    ref, fast = py._core.fused, compiled._core.fused
    assert fast.__name__.endswith("_fused") and ref.__name__.endswith("fused_reference")
    return ref, fast


# ---------------------------------------------------------------------------
# batch normalisation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 1, 1), (3, 2, 5), (32, 16, 64), (4, 3, 7)])
def test_batch_norm_kernels_agree(both, shape):
    ref, fast = _kernels(both)
    r = np.random.default_rng(3)
    x = r.standard_normal(shape) * 3 + 1
    w, b = r.standard_normal(shape[1]), r.standard_normal(shape[1])
    out1, out2 = ref.batch_norm_forward(x, w, b, 1e-5), fast.batch_norm_forward(x, w, b, 1e-5)
    for a1, a2 in zip(out1, out2):
        np.testing.assert_allclose(a2, a1, rtol=1e-12, atol=1e-12)
    # the definition: per channel over N and L, the biased variance
    mean = x.mean(axis=(0, 2))
    var = x.var(axis=(0, 2))
    np.testing.assert_allclose(out2[2], mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out2[3], var, rtol=1e-12, atol=1e-12)
    expected = (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-5) * w[:, None] + b[:, None]
    np.testing.assert_allclose(out2[0], expected, rtol=1e-11, atol=1e-11)
    g = r.standard_normal(shape)
    for input_grad in (True, False):
        b1 = ref.batch_norm_backward(g, out1[1], out1[4], w, input_grad)
        b2 = fast.batch_norm_backward(g, out2[1], out2[4], w, input_grad)
        assert (b1[0] is None) == (b2[0] is None) == (not input_grad)
        for a1, a2 in zip(b1, b2):
            if a1 is not None:
                np.testing.assert_allclose(a2, a1, rtol=1e-11, atol=1e-11)


def test_batch_norm_kernels_float32_and_mixed_dtypes(both):
    ref, fast = _kernels(both)
    r = np.random.default_rng(4)
    x = r.standard_normal((8, 3, 10))
    w, b = r.standard_normal(3), r.standard_normal(3)
    exact = ref.batch_norm_forward(x, w, b, 1e-5)[0]
    single = fast.batch_norm_forward(*(a.astype(np.float32) for a in (x, w, b)), 1e-5)[0]
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, exact, rtol=1e-4, atol=1e-4)
    # a float64 weight on a float32 input promotes as NumPy does, in both modules
    mixed = [m.batch_norm_forward(x.astype(np.float32), w, b, 1e-5)[0] for m in (ref, fast)]
    assert mixed[0].dtype == mixed[1].dtype == np.float64
    np.testing.assert_allclose(mixed[1], mixed[0], rtol=1e-12)
    # a strided input is taken as its values
    xt = np.ascontiguousarray(x.transpose(2, 1, 0)).transpose(2, 1, 0)
    np.testing.assert_allclose(fast.batch_norm_forward(xt, w, b, 1e-5)[0], exact, rtol=1e-12)


# ---------------------------------------------------------------------------
# max pooling over tiling windows
# ---------------------------------------------------------------------------

def _pool_by_definition(x, kh, kw):
    b, h, w = x.shape
    out = np.empty((b, h // kh, w // kw))
    arg = np.empty(out.shape, dtype=np.int64)
    for n, i, j in itertools.product(range(b), range(h // kh), range(w // kw)):
        window = [x[n, i * kh + a, j * kw + e] for a in range(kh) for e in range(kw)]
        nans = [k for k, v in enumerate(window) if v != v]
        k = nans[0] if nans else max(range(len(window)), key=lambda k: (window[k], -k))
        out[n, i, j], arg[n, i, j] = window[k], k
    return out, arg


@pytest.mark.parametrize("kh,kw", [(2, 2), (3, 1), (1, 4), (3, 3), (1, 1), (6, 12)])
def test_max_pool_kernels_agree_with_the_definition(both, kh, kw):
    ref, fast = _kernels(both)
    r = np.random.default_rng(5)
    # small integers: many ties, where the first maximum must win; some NaNs
    x = r.integers(0, 3, (5, 6, 12)).astype(np.float64)
    x[r.random(x.shape) < 0.05] = np.nan
    want, want_arg = _pool_by_definition(x, kh, kw)
    g = r.standard_normal(want.shape)
    for mod in (ref, fast):
        out, arg = mod.max_pool2d_forward(x, kh, kw)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(arg, want_arg)
        dx = mod.max_pool2d_backward(g, arg, kh, kw)
        expected = np.zeros(x.shape)
        for n, i, j in itertools.product(*map(range, g.shape)):
            a, e = divmod(int(arg[n, i, j]), kw)
            expected[n, i * kh + a, j * kw + e] = g[n, i, j]
        np.testing.assert_array_equal(dx, expected)


def test_max_pool_kernel_refuses_offsets_outside_the_window(both):
    _, fast = _kernels(both)
    g = np.ones((1, 2, 2))
    for bad in (4, -1):
        arg = np.zeros((1, 2, 2), dtype=np.int64)
        arg[0, 1, 1] = bad
        with pytest.raises(ValueError, match="window offsets"):
            fast.max_pool2d_backward(g, arg, 2, 2)


# ---------------------------------------------------------------------------
# convolution patches (im2col / col2im)
# ---------------------------------------------------------------------------

GEOMETRIES = [
    # N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw
    (2, 3, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1),
    (2, 2, 7, 9, 2, 3, 2, 1, 0, 2, 2, 1),
    (1, 1, 1, 8, 1, 3, 1, 2, 0, 1, 1, 3),
    (3, 2, 4, 4, 4, 4, 1, 1, 0, 0, 1, 1),
    (1, 2, 3, 3, 3, 3, 3, 3, 2, 2, 1, 1),        # windows mostly in the padding
]


def _out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _patches_by_definition(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    n, c, h, w = x.shape
    cols = np.zeros((n, oh, ow, c, kh, kw))
    for b, i, j, ch, a, e in itertools.product(range(n), range(oh), range(ow), range(c),
                                               range(kh), range(kw)):
        ih, iw = i * sh - ph + a * dh, j * sw - pw + e * dw
        if 0 <= ih < h and 0 <= iw < w:
            cols[b, i, j, ch, a, e] = x[b, ch, ih, iw]
    return cols.reshape(n * oh * ow, -1)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_patch_kernels_agree_with_the_definition(both, geometry):
    ref, fast = _kernels(both)
    n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw = geometry
    oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    args = (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    r = np.random.default_rng(6)
    x = r.standard_normal((n, c, h, w))
    want = _patches_by_definition(x, *args)
    g = r.standard_normal(want.shape)
    # col2im is the adjoint of im2col: <im2col(x), g> = <x, col2im(g)> for every x, g
    for mod in (ref, fast):
        cols = mod.im2col(x, *args)
        np.testing.assert_array_equal(cols, want)
        dx = mod.col2im(g, x.shape, *args)
        assert dx.shape == x.shape
        np.testing.assert_allclose(np.vdot(dx, x), np.vdot(g, want), rtol=1e-12)
    np.testing.assert_allclose(fast.col2im(g, x.shape, *args), ref.col2im(g, x.shape, *args),
                               rtol=1e-12, atol=1e-12)


def test_patch_kernels_float32_and_against_torch(both):
    torch = pytest.importorskip("torch")
    _, fast = _kernels(both)
    n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw = GEOMETRIES[1]
    oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    args = (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    x = np.random.default_rng(7).standard_normal((n, c, h, w)).astype(np.float32)
    cols = fast.im2col(x, *args)
    assert cols.dtype == np.float32
    unfold = torch.nn.functional.unfold(torch.from_numpy(x), (kh, kw), dilation=(dh, dw),
                                        padding=(ph, pw), stride=(sh, sw)).numpy()
    np.testing.assert_array_equal(cols, unfold.transpose(0, 2, 1).reshape(cols.shape))
    g = np.ones_like(cols)
    fold = torch.nn.functional.fold(torch.from_numpy(g.reshape(n, oh * ow, -1)).transpose(1, 2),
                                    (h, w), (kh, kw), dilation=(dh, dw), padding=(ph, pw),
                                    stride=(sh, sw)).numpy()
    np.testing.assert_allclose(fast.col2im(g, x.shape, *args), fold, rtol=1e-6)


def test_patch_kernels_refuse_bad_geometry(both):
    _, fast = _kernels(both)
    x = np.ones((1, 1, 4, 4))
    with pytest.raises(ValueError, match="im2col: bad geometry"):
        fast.im2col(x, 3, 3, 0, 1, 0, 0, 1, 1, 2, 2)         # stride 0
    with pytest.raises(ValueError, match="im2col: bad geometry"):
        fast.im2col(x.reshape(1, 4, 4), 3, 3, 1, 1, 0, 0, 1, 1, 2, 2)
    # a gradient of the wrong size never reaches the C loop
    with pytest.raises(ValueError):
        fast.col2im(np.ones(5), x.shape, 3, 3, 1, 1, 0, 0, 1, 1, 2, 2)
