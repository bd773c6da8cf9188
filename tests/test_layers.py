"""Convolution, pooling, batch norm, more activations and losses, buffers and containers.

Each layer is checked against PyTorch (float64, torch's initial weights
loaded into the fastgrad layer through load_state_dict: outputs and the
input and weight gradients to 1e-9), against finite differences on small
cases (fg.gradcheck), and for its argument errors.  Every test runs on both
cores.
"""
import math
import warnings

import numpy as np
import pytest

RNG = np.random.default_rng(11)
TOL = 1e-9


def _torch():
    return pytest.importorskip("torch")


def torch_state(tmod):
    return {k: v.detach().numpy().copy() for k, v in tmod.state_dict().items()}


def against_torch(fg, tmod, fmod, x, train=True, check_params=True):
    """Load tmod's weights into fmod, run both on x, compare outputs and gradients."""
    torch = _torch()
    fmod.load_state_dict(torch_state(tmod))
    tmod.train(train)
    fmod.train(train)
    tx = torch.tensor(x, requires_grad=True)
    fx = fg.tensor(x, requires_grad=True)
    ty, fy = tmod(tx), fmod(fx)
    np.testing.assert_allclose(fy.numpy(), ty.detach().numpy(), rtol=TOL, atol=TOL)
    g = RNG.standard_normal(ty.shape)
    ty.backward(torch.tensor(g))
    fy.backward(fg.tensor(g))
    np.testing.assert_allclose(fx.grad.numpy(), tx.grad.numpy(), rtol=TOL, atol=TOL)
    if check_params:
        tparams = dict(tmod.named_parameters())
        for name, p in fmod.named_parameters():
            np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=TOL,
                                       atol=TOL, err_msg=name)
    return fy, ty


@pytest.fixture
def f64(fg):
    before = fg.get_default_dtype()
    fg.set_default_dtype(np.float64)
    yield fg
    fg.set_default_dtype(before)


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------
CONV2D = [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2)),
    dict(padding="same", dilation=2),
    dict(padding="same", kernel_size=(2, 4)),
    dict(padding="valid", bias=False),
    dict(groups=3, padding=1),
    dict(groups=3, out_channels=3, padding=1),
    dict(padding=2, padding_mode="reflect"),
    dict(padding=1, padding_mode="replicate", stride=2),
    dict(padding=(1, 2), padding_mode="circular"),
]


@pytest.mark.parametrize("kw", CONV2D, ids=lambda kw: ",".join("%s=%s" % i for i in kw.items()))
def test_conv2d_matches_torch(f64, kw):
    torch = _torch()
    kw = dict(kw)
    args = (3, kw.pop("out_channels", 6), kw.pop("kernel_size", 3))
    x = RNG.standard_normal((2, 3, 7, 6))
    against_torch(f64, torch.nn.Conv2d(*args, **kw).double(), f64.nn.Conv2d(*args, **kw), x)


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=2, dilation=2),
                                dict(padding="same", groups=2), dict(padding=3,
                                                                     padding_mode="reflect")])
def test_conv1d_matches_torch(f64, kw):
    torch = _torch()
    x = RNG.standard_normal((3, 4, 9))
    against_torch(f64, torch.nn.Conv1d(4, 6, 3, **kw).double(), f64.nn.Conv1d(4, 6, 3, **kw), x)


def test_conv_unbatched_and_functional(f64):
    torch = _torch()
    x = RNG.standard_normal((3, 5, 5))
    w = RNG.standard_normal((4, 3, 2, 2))
    b = RNG.standard_normal(4)
    ours = f64.nn.functional.conv2d(f64.tensor(x), f64.tensor(w), f64.tensor(b), stride=2,
                                    padding=1)
    theirs = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b),
                                        stride=2, padding=1)
    assert ours.shape == tuple(theirs.shape) == (4, 3, 3)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=TOL, atol=TOL)
    x1, w1 = RNG.standard_normal((2, 4, 8)), RNG.standard_normal((6, 2, 3))
    ours = f64.nn.functional.conv1d(f64.tensor(x1), f64.tensor(w1), groups=2, dilation=2)
    theirs = torch.nn.functional.conv1d(torch.tensor(x1), torch.tensor(w1), groups=2, dilation=2)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=TOL, atol=TOL)


def test_conv_gradients_against_finite_differences(f64):
    F = f64.nn.functional
    x = f64.tensor(RNG.standard_normal((1, 2, 4, 5)), requires_grad=True)
    w = f64.tensor(RNG.standard_normal((4, 1, 2, 3)), requires_grad=True)
    b = f64.tensor(RNG.standard_normal(4), requires_grad=True)
    assert f64.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=(1, 2), padding=1, groups=2),
                         (x, w, b))
    x1 = f64.tensor(RNG.standard_normal((2, 2, 6)), requires_grad=True)
    w1 = f64.tensor(RNG.standard_normal((3, 2, 2)), requires_grad=True)
    assert f64.gradcheck(lambda x, w: F.conv1d(x, w, padding="same", dilation=3), (x1, w1))


def test_conv_init_is_torchs_rule(fg):
    fg.manual_seed(0)
    conv = fg.nn.Conv2d(4, 8, (3, 5))
    bound = 1 / math.sqrt(4 * 15)
    assert conv.weight.shape == (8, 4, 3, 5) and conv.bias.shape == (8,)
    for p in (conv.weight, conv.bias):
        assert np.abs(p.numpy()).max() <= bound
    assert np.abs(conv.weight.numpy()).max() > 0.95 * bound       # 480 draws fill the range
    assert conv.weight.dtype == fg.get_default_dtype()


def test_conv_errors_name_the_layer_and_shapes(fg):
    nn = fg.nn
    x = fg.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"Conv2d: the kernel \(5, 5\).*padded input \(4, 4\)"):
        nn.Conv2d(3, 2, 5)(x)
    with pytest.raises(ValueError, match=r"Conv2d: expected input with 4 channels.*\(2, 3, 4, 4\)"):
        nn.Conv2d(4, 2, 3)(x)
    with pytest.raises(ValueError, match=r"Conv2d: padding_mode must be one of.*'mirror'"):
        nn.Conv2d(3, 2, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match=r"Conv2d: in_channels=3 must be divisible by groups=2"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"Conv2d: out_channels=3 must be divisible by groups=2"):
        nn.Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match=r"Conv2d: padding='same' is not supported for strided"):
        nn.Conv2d(3, 2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"Conv2d: padding must be 'valid', 'same'"):
        nn.Conv2d(3, 2, 3, padding="full")
    with pytest.raises(ValueError, match=r"Conv2d: expected a 3D \(unbatched\) or 4D"):
        nn.Conv2d(3, 2, 3)(fg.randn(3, 4))
    with pytest.raises(ValueError, match=r"Conv1d: kernel_size must be an int or a tuple of 1"):
        nn.Conv1d(3, 2, (3, 3))
    with pytest.raises(ValueError, match=r"Conv2d: padding_mode='reflect' needs padding smaller"):
        nn.Conv2d(3, 2, 3, padding=4, padding_mode="reflect")(fg.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"conv2d: groups=2 must divide"):
        fg.nn.functional.conv2d(fg.randn(1, 4, 4, 4), fg.randn(3, 2, 3, 3), groups=2)
    with pytest.raises(TypeError, match=r"Conv2d: input dtype float64 and weight dtype float32"):
        nn.Conv2d(3, 2, 3, dtype=np.float32)(fg.tensor(np.zeros((1, 3, 4, 4))))


def test_conv_float32_agrees_with_float64(fg):
    conv = fg.nn.Conv2d(2, 3, 3, padding=1, dtype=np.float32)
    x = RNG.standard_normal((2, 2, 5, 5))
    y32 = conv(fg.tensor(x.astype(np.float32)))
    assert y32.dtype == np.float32
    conv.double()
    y64 = conv(fg.tensor(x))
    np.testing.assert_allclose(y32.numpy(), y64.numpy(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------
POOL = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
]


@pytest.mark.parametrize("kw", POOL, ids=str)
def test_max_pool2d_matches_torch(fg, kw):
    torch = _torch()
    x = RNG.standard_normal((2, 3, 7, 6))
    fy, ty = against_torch(fg, torch.nn.MaxPool2d(**kw), fg.nn.MaxPool2d(**kw), x)
    fy, fi = fg.nn.MaxPool2d(**kw, return_indices=True)(fg.tensor(x))
    ty, ti = torch.nn.MaxPool2d(**kw, return_indices=True)(torch.tensor(x))
    np.testing.assert_array_equal(fi.numpy(), ti.numpy())
    assert fi.dtype == np.int64


def test_max_pool1d_matches_torch(fg):
    torch = _torch()
    x = RNG.standard_normal((2, 3, 11))
    for kw in (dict(kernel_size=3), dict(kernel_size=4, stride=2, padding=2, dilation=2),
               dict(kernel_size=2, ceil_mode=True)):
        against_torch(fg, torch.nn.MaxPool1d(**kw), fg.nn.MaxPool1d(**kw), x)
    out = fg.nn.functional.max_pool1d(fg.tensor(x[0]), 3)          # unbatched
    np.testing.assert_allclose(out.numpy(), torch.nn.functional.max_pool1d(
        torch.tensor(x[0]), 3).numpy())


@pytest.mark.parametrize("kw", POOL[:2] + [
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, divisor_override=3)], ids=str)
def test_avg_pool2d_matches_torch(fg, kw):
    torch = _torch()
    x = RNG.standard_normal((2, 3, 7, 6))
    against_torch(fg, torch.nn.AvgPool2d(**kw), fg.nn.AvgPool2d(**kw), x)


@pytest.mark.parametrize("size", [1, 3, (2, 4), (None, 2), (7, 6), (5, 4)], ids=str)
def test_adaptive_avg_pool2d_matches_torch(fg, size):
    torch = _torch()
    x = RNG.standard_normal((2, 3, 7, 6))
    against_torch(fg, torch.nn.AdaptiveAvgPool2d(size), fg.nn.AdaptiveAvgPool2d(size), x)


def test_pooling_gradients_against_finite_differences(fg):
    F = fg.nn.functional
    x = fg.tensor(RNG.standard_normal((1, 2, 5, 5)), requires_grad=True)
    assert fg.gradcheck(lambda x: F.max_pool2d(x, 3, 2, padding=1), (x,))
    assert fg.gradcheck(lambda x: F.avg_pool2d(x, 2, 2, padding=1, ceil_mode=True,
                                               count_include_pad=False), (x,))
    assert fg.gradcheck(lambda x: F.adaptive_avg_pool2d(x, (3, 2)), (x,))


def test_pooling_errors(fg):
    nn = fg.nn
    with pytest.raises(ValueError, match=r"MaxPool2d: padding should be at most half"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match=r"MaxPool2d: the output would be empty: input of "
                                         r"shape \(1, 1, 2, 2\)"):
        nn.MaxPool2d(3)(fg.randn(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"AvgPool2d: expected a 3D \(unbatched\) or 4D"):
        nn.AvgPool2d(2)(fg.randn(4, 4))
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d: output_size must be"):
        nn.AdaptiveAvgPool2d((0, 2))


# ---------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", [
    ("BatchNorm2d", (4, 3, 5, 5), dict()),
    ("BatchNorm2d", (4, 3, 5, 5), dict(momentum=None)),
    ("BatchNorm2d", (4, 3, 2, 2), dict(affine=False, momentum=0.3)),
    ("BatchNorm1d", (6, 3), dict()),
    ("BatchNorm1d", (6, 3, 4), dict(eps=1e-3)),
    ("BatchNorm1d", (6, 3), dict(track_running_stats=False)),
], ids=str)
def test_batch_norm_train_then_eval_matches_torch(f64, case):
    torch = _torch()
    name, shape, kw = case
    tbn = getattr(torch.nn, name)(3, **kw).double()
    fbn = getattr(f64.nn, name)(3, **kw)
    if tbn.affine:
        with torch.no_grad():
            tbn.weight.uniform_(0.5, 1.5)
            tbn.bias.uniform_(-1, 1)
    fbn.load_state_dict(torch_state(tbn))
    for step in range(3):       # several training steps: the running stats follow torch's
        x = RNG.standard_normal(shape) * (step + 1) + step
        against_torch(f64, tbn, fbn, x, train=True)
        tbn.zero_grad()
        fbn.zero_grad()
        for key, value in torch_state(tbn).items():
            np.testing.assert_allclose(fbn.state_dict()[key], value, rtol=TOL, atol=TOL,
                                       err_msg=key)
    x = RNG.standard_normal(shape)
    against_torch(f64, tbn, fbn, x, train=False)
    assert list(fbn.state_dict()) == list(tbn.state_dict())


def test_batch_norm_eval_uses_running_stats_and_gradcheck(f64):
    bn = f64.nn.BatchNorm2d(2)
    x = f64.tensor(RNG.standard_normal((3, 2, 2, 2)) * 3 + 1, requires_grad=True)
    bn(x)
    bn.eval()
    mean, var = bn.running_mean.numpy(), bn.running_var.numpy()
    out = bn(x).numpy()
    expected = (x.numpy() - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    bn.train()
    w = f64.tensor(RNG.standard_normal(2), requires_grad=True)
    b = f64.tensor(RNG.standard_normal(2), requires_grad=True)
    F = f64.nn.functional
    assert f64.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                         (x, w, b))


def test_batch_norm_errors_and_failed_call_changes_nothing(fg):
    bn = fg.nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected input with 3 channels "
                                         r"\(num_features=3\), got input of shape \(2, 4, 3, 3\)"):
        bn(fg.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected a 4D input, got a 2D input"):
        bn(fg.randn(2, 3))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected more than 1 value per channel"):
        fg.nn.BatchNorm1d(3)(fg.randn(1, 3))
    assert bn.num_batches_tracked.item() == 0
    np.testing.assert_array_equal(bn.running_mean.numpy(), 0)


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------
ACTIVATIONS = [
    ("GELU", {}), ("GELU", dict(approximate="tanh")), ("SiLU", {}), ("ELU", {}),
    ("ELU", dict(alpha=0.5)), ("Softplus", {}), ("Softplus", dict(beta=2.0, threshold=3.0)),
    ("Hardtanh", {}), ("Hardtanh", dict(min_val=-0.5, max_val=2.0)),
]


@pytest.mark.parametrize("name,kw", ACTIVATIONS, ids=str)
def test_activations_match_torch(fg, name, kw):
    torch = _torch()
    x = RNG.standard_normal((4, 5)) * 3
    x[0, :3] = [0.0, -0.5, 2.0]             # the switch points of ELU and Hardtanh
    against_torch(fg, getattr(torch.nn, name)(**kw), getattr(fg.nn, name)(**kw), x)
    small = fg.tensor(RNG.standard_normal(6) + 0.1, requires_grad=True)
    assert fg.gradcheck(getattr(fg.nn, name)(**kw), (small,))


def test_prelu_matches_torch(f64):
    torch = _torch()
    x = RNG.standard_normal((3, 4, 5))
    x[0, 0, 0] = 0.0
    tp = torch.nn.PReLU(4).double()
    with torch.no_grad():
        tp.weight.uniform_(0, 1)
    against_torch(f64, tp, f64.nn.PReLU(4), x)
    against_torch(f64, torch.nn.PReLU().double(), f64.nn.PReLU(), x)
    with pytest.raises(ValueError, match=r"prelu: weight of shape \(3,\)"):
        f64.nn.PReLU(3)(f64.randn(2, 4))


def test_activation_functional_forms_and_errors(fg):
    F = fg.nn.functional
    x = fg.tensor([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(F.silu(x).numpy(), (x * x.sigmoid()).numpy(), rtol=1e-6)  # float32
    np.testing.assert_allclose(F.hardtanh(x, -0.5, 0.5).numpy(), [-0.5, 0.0, 0.5])
    with pytest.raises(ValueError, match=r"GELU: approximate must be 'none' or 'tanh'"):
        fg.nn.GELU("erf")
    with pytest.raises(ValueError, match=r"Hardtanh: min_val"):
        fg.nn.Hardtanh(1.0, -1.0)


# ---------------------------------------------------------------------------
# losses and distances
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_smooth_l1_and_huber_match_torch(fg, reduction):
    torch = _torch()
    x, t = RNG.standard_normal((4, 3)) * 2, RNG.standard_normal((4, 3))
    x[0, 0] = t[0, 0] + 1.0                  # exactly at the switch
    cases = [("SmoothL1Loss", {}), ("SmoothL1Loss", dict(beta=0.5)),
             ("SmoothL1Loss", dict(beta=0.0)), ("HuberLoss", {}), ("HuberLoss", dict(delta=2.0))]
    for name, kw in cases:
        tx, fx = torch.tensor(x, requires_grad=True), fg.tensor(x, requires_grad=True)
        ty = getattr(torch.nn, name)(reduction=reduction, **kw)(tx, torch.tensor(t))
        fy = getattr(fg.nn, name)(reduction=reduction, **kw)(fx, fg.tensor(t))
        np.testing.assert_allclose(fy.numpy(), ty.detach().numpy(), rtol=TOL, atol=TOL)
        ty.sum().backward()
        fy.sum().backward()
        np.testing.assert_allclose(fx.grad.numpy(), tx.grad.numpy(), rtol=TOL, atol=TOL,
                                   err_msg=name)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(fg, reduction, log_target):
    torch = _torch()
    logp = np.log(RNG.dirichlet(np.ones(5), size=4))
    q = RNG.dirichlet(np.ones(5), size=4)
    q[0, 1] = 0.0
    target = np.log(q + 1e-3) if log_target else q
    tx, fx = torch.tensor(logp, requires_grad=True), fg.tensor(logp, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ty = torch.nn.KLDivLoss(reduction=reduction, log_target=log_target)(tx,
                                                                           torch.tensor(target))
        fy = fg.nn.KLDivLoss(reduction=reduction, log_target=log_target)(fx, fg.tensor(target))
    np.testing.assert_allclose(fy.numpy(), ty.detach().numpy(), rtol=TOL, atol=TOL)
    ty.sum().backward()
    fy.sum().backward()
    np.testing.assert_allclose(fx.grad.numpy(), tx.grad.numpy(), rtol=TOL, atol=TOL)


def test_loss_argument_errors(fg):
    nn = fg.nn
    with pytest.raises(ValueError, match=r"HuberLoss: delta must be a positive number"):
        nn.HuberLoss(delta=0)
    with pytest.raises(ValueError, match=r"SmoothL1Loss: beta must be a non-negative"):
        nn.SmoothL1Loss(beta=-1)
    with pytest.raises(ValueError, match=r"KLDivLoss: reduction must be"):
        nn.KLDivLoss(reduction="avg")
    with pytest.warns(UserWarning, match="batchmean"):
        nn.functional.kl_div(fg.zeros(2, 2), fg.ones(2, 2) * 0.5)


def test_cosine_similarity_and_normalize_match_torch(fg):
    torch = _torch()
    F, TF = fg.nn.functional, torch.nn.functional
    a, b = RNG.standard_normal((4, 6)), RNG.standard_normal((1, 6))
    a[1] = 0.0                                 # a zero vector: the eps clamp
    for ours, theirs in [(lambda x, y: F.cosine_similarity(x, y),
                          lambda x, y: TF.cosine_similarity(x, y)),
                         (lambda x, y: F.cosine_similarity(x, y, dim=0),
                          lambda x, y: TF.cosine_similarity(x, y.expand(4, 6), dim=0)),
                         (lambda x, y: F.normalize(x) * y, lambda x, y: TF.normalize(x) * y),
                         (lambda x, y: F.normalize(x, p=1.0, dim=0) + y,
                          lambda x, y: TF.normalize(x, p=1.0, dim=0) + y)]:
        fa, ta = fg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        fy, ty = ours(fa, fg.tensor(b)), theirs(ta, torch.tensor(b))
        np.testing.assert_allclose(fy.numpy(), ty.detach().numpy(), rtol=TOL, atol=TOL)
        fy.sum().backward()
        ty.sum().backward()
        np.testing.assert_allclose(fa.grad.numpy(), ta.grad.numpy(), rtol=TOL, atol=TOL)


# ---------------------------------------------------------------------------
# nn.utils
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_matches_torch(fg, norm_type):
    torch = _torch()
    grads = [RNG.standard_normal((3, 4)), RNG.standard_normal(5)]
    fps = [fg.nn.Parameter(fg.tensor(np.zeros_like(g))) for g in grads]
    tps = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for fp, tp, g in zip(fps, tps, grads):
        fp.grad, tp.grad = fg.tensor(g.copy()), torch.tensor(g.copy())
    ours = fg.nn.utils.clip_grad_norm_(fps, 0.5, norm_type)
    theirs = torch.nn.utils.clip_grad_norm_(tps, 0.5, norm_type)
    assert abs(ours.item() - theirs.item()) < 1e-12
    for fp, tp in zip(fps, tps):
        np.testing.assert_allclose(fp.grad.numpy(), tp.grad.numpy(), rtol=1e-12)
    fps[0].grad = fg.tensor(np.full((3, 4), np.nan))
    with pytest.raises(RuntimeError, match="non-finite"):
        fg.nn.utils.clip_grad_norm_(fps, 1.0, error_if_nonfinite=True)
    np.testing.assert_allclose(fps[1].grad.numpy(), tps[1].grad.numpy())   # nothing changed


def test_clip_grad_value_and_vectors(fg):
    torch = _torch()
    lin = fg.nn.Linear(3, 2)
    lin.weight.grad = fg.tensor(RNG.standard_normal((2, 3)).astype(lin.weight.dtype) * 3)
    lin.bias.grad = None
    fg.nn.utils.clip_grad_value_(lin.parameters(), 1.0)
    assert np.abs(lin.weight.grad.numpy()).max() <= 1.0
    vec = fg.nn.utils.parameters_to_vector(lin.parameters())
    assert vec.shape == (8,)
    np.testing.assert_array_equal(vec.numpy()[:6], lin.weight.numpy().ravel())
    new = fg.tensor(np.arange(8, dtype=lin.weight.dtype))
    fg.nn.utils.vector_to_parameters(new, lin.parameters())
    np.testing.assert_array_equal(lin.bias.numpy(), [6, 7])
    with pytest.raises(ValueError, match=r"vec has 3 elements but the parameters hold 8"):
        fg.nn.utils.vector_to_parameters(fg.zeros(3), lin.parameters())
    np.testing.assert_array_equal(lin.bias.numpy(), [6, 7])
    (vec * fg.tensor(np.arange(8.0, dtype=vec.dtype))).sum().backward()
    np.testing.assert_array_equal(lin.bias.grad.numpy(), [6, 7])
    del torch


# ---------------------------------------------------------------------------
# buffers, containers, state_dict
# ---------------------------------------------------------------------------
def _torch_cnn(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.GELU(), nn.Flatten(),
                         nn.Linear(6, 5), nn.BatchNorm1d(5))


def _fg_cnn(fg):
    nn = fg.nn
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.GELU(), nn.Flatten(),
                         nn.Linear(6, 5), nn.BatchNorm1d(5))


def test_loading_a_torch_model_gives_its_outputs(f64):
    torch = _torch()
    tm = _torch_cnn(torch).double()
    tm.train()
    with torch.no_grad():
        tm(torch.tensor(RNG.standard_normal((8, 1, 6, 6))))       # running stats move
    fm = _fg_cnn(f64)
    assert list(fm.state_dict()) == list(tm.state_dict())
    x = RNG.standard_normal((3, 1, 6, 6))
    against_torch(f64, tm, fm, x, train=False)
    against_torch(f64, tm, fm, x, train=True, check_params=False)


def test_buffers_state_dict_round_trip(fg):
    nn = fg.nn
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    names = [n for n, _ in model.named_buffers()]
    assert names == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias",
                                        "1.running_mean", "1.running_var",
                                        "1.num_batches_tracked"]
    model(fg.randn(4, 2))
    state = model.state_dict()
    assert state["1.num_batches_tracked"] == 1 and state["1.num_batches_tracked"].dtype == np.int64
    other = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    other.load_state_dict(state)
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, state[key])
    bad = dict(state)
    bad["1.running_var"] = np.ones(4)
    bad["0.bias"] = np.zeros(3)
    before = other.state_dict()
    with pytest.raises(RuntimeError, match=r"size mismatch for '1.running_var'"):
        other.load_state_dict(bad)
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    del bad["1.running_mean"]
    bad["1.running_var"] = np.ones(3)
    with pytest.raises(RuntimeError, match=r"missing key\(s\): '1.running_mean'"):
        other.load_state_dict(bad)
    model.double()
    assert model[1].running_mean.dtype == np.float64
    assert model[1].num_batches_tracked.dtype == np.int64


def test_register_buffer_rules(fg):
    nn = fg.nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("kept", fg.zeros(2))
            self.register_buffer("scratch", fg.ones(1), persistent=False)

    m = M()
    assert [n for n, _ in m.named_buffers()] == ["kept", "scratch"]
    assert list(m.state_dict()) == ["kept"]
    m.kept = fg.ones(2)                          # assigning a tensor keeps it a buffer
    np.testing.assert_array_equal(m.state_dict()["kept"], [1, 1])
    with pytest.raises(TypeError, match=r"cannot assign int as buffer 'kept'"):
        m.kept = 3
    with pytest.raises(KeyError, match=r"attribute 'training' already exists"):
        m.register_buffer("training", fg.zeros(1))
    with pytest.raises(KeyError, match=r"invalid buffer name 'a.b'"):
        m.register_buffer("a.b", fg.zeros(1))
    with pytest.raises(TypeError, match=r"buffer 'x' must be a tensor or None"):
        m.register_buffer("x", np.zeros(1))
    del m.kept
    assert [n for n, _ in m.named_buffers()] == ["scratch"]


def test_module_dict_parameter_list_and_dict(fg):
    nn = fg.nn
    d = nn.ModuleDict({"enc": nn.Linear(2, 3), "dec": nn.Linear(3, 2)})
    assert list(d) == ["enc", "dec"] and len(d) == 2 and "enc" in d
    d["act"] = nn.ReLU()
    assert [n for n, _ in d.named_parameters()] == ["enc.weight", "enc.bias", "dec.weight",
                                                    "dec.bias"]
    assert d.pop("act").__class__.__name__ == "ReLU" and "act" not in d
    with pytest.raises(KeyError, match=r"ModuleDict: no module named 'nope'"):
        d["nope"]
    with pytest.raises(TypeError, match=r"expected an nn.Module"):
        d["x"] = 3
    pl = nn.ParameterList([nn.Parameter(fg.zeros(2)), fg.ones(3)])
    pl.append(fg.zeros(1))
    assert len(pl) == 3 and all(isinstance(p, nn.Parameter) for p in pl)
    assert [n for n, _ in pl.named_parameters()] == ["0", "1", "2"]
    assert pl[-1].shape == (1,)
    with pytest.raises(IndexError, match="out of range for 3 parameters"):
        pl[3]
    pd = nn.ParameterDict({"a": fg.zeros(2)})
    pd["b"] = nn.Parameter(fg.ones(1))
    assert list(pd.state_dict()) == ["a", "b"]
    seen = []
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Sequential", "Sequential"]
    assert [n for n, _ in model.named_modules()] == ["", "0", "1", "1.0"]
    assert [n for n, _ in model.named_children()] == ["0", "1"]
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    assert model.get_submodule("1.0").__class__.__name__ == "ReLU"


@pytest.mark.parametrize("kernel", [2, (2, 3), (4, 1)], ids=str)
def test_pooling_windows_that_tile_the_input_match_torch(fg, kernel):
    # stride = kernel and sizes divisible by it: the reshape path, no gather
    torch = _torch()
    x = RNG.standard_normal((2, 3, 8, 6))
    against_torch(fg, torch.nn.MaxPool2d(kernel), fg.nn.MaxPool2d(kernel), x)
    against_torch(fg, torch.nn.AvgPool2d(kernel), fg.nn.AvgPool2d(kernel), x)
    against_torch(fg, torch.nn.MaxPool1d(2), fg.nn.MaxPool1d(2), x[0])
    against_torch(fg, torch.nn.AvgPool1d(3), fg.nn.AvgPool1d(3), x[:, 0])
    xt = fg.tensor(x[:, :, :4, :4], requires_grad=True)
    assert fg.gradcheck(lambda t: fg.nn.functional.max_pool2d(t, kernel), (xt,))


def test_tiled_max_pool_sends_a_tied_gradient_to_the_first_maximum_as_torch(fg):
    torch = _torch()
    x = RNG.integers(0, 3, (2, 3, 4, 6)).astype(np.float64)      # many ties
    x[0, 0, 0, 1] = np.nan
    against_torch(fg, torch.nn.MaxPool2d(2), fg.nn.MaxPool2d(2), x)
    against_torch(fg, torch.nn.MaxPool2d((2, 3)), fg.nn.MaxPool2d((2, 3)), x)


def test_conv_net_under_compile_replays_like_eager(f64):
    # every layer recomputes from the current parameters on replay (no value-dependent
    # index or mask is frozen into the recording).  The input stays fixed: a data tensor is
    # a constant of the recording when its first op has no input that requires grad, as
    # the conv's patch gather here.
    fg, nn = f64, f64.nn
    fg.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.GELU(),
                          nn.MaxPool2d(2), nn.Conv2d(3, 2, 2), nn.ELU(), nn.Flatten(),
                          nn.Linear(2, 2))
    x = fg.tensor(RNG.standard_normal((4, 1, 4, 4)))
    y = fg.tensor(np.array([0, 1, 1, 0]))
    step = fg.compile(lambda: nn.functional.cross_entropy(model(x), y))
    for _ in range(3):
        model.zero_grad()
        loss = step()
        grads = [p.grad.numpy().copy() for p in model.parameters()]
        model.zero_grad()
        eager = nn.functional.cross_entropy(model(x), y)
        eager.backward()
        assert abs(loss - eager.item()) < 1e-12
        for g, p in zip(grads, model.parameters()):
            np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-10, atol=1e-12)
        with fg.no_grad():
            for p in model.parameters():
                p.data -= 0.5 * p.grad.data


def test_models_with_buffers_copy_and_pickle(fg, same_copy):
    import copy
    import pickle
    nn = fg.nn
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.PReLU(2))
    model(fg.randn(3, 1, 5, 5))
    for clone in (copy.deepcopy(model), None):
        if clone is None:
            with same_copy():
                clone = pickle.loads(pickle.dumps(model))
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(clone.state_dict()[key], value)
        assert [n for n, _ in clone.named_buffers()] == [n for n, _ in model.named_buffers()]
        clone[1].running_mean.numpy()[...] = 5.0          # its own storage
        assert not np.any(model[1].running_mean.numpy() == 5.0)
