"""fastgrad.nn on both cores: modules, layers, losses (every reduction), init.

Layers and losses are checked three ways: gradients against central finite
differences, values and gradients against PyTorch when it is importable
(float64, same inputs and weights), and the two cores against each other.
"""
import math
import warnings

import numpy as np
import pytest

RNG = np.random.default_rng(7)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to the array x (changed in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


# ---------------------------------------------------------------------------
# Module: registration, names, modes, state
# ---------------------------------------------------------------------------
def make_net(fg):
    nn = fg.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(np.ones(1))
            self.body = nn.Sequential(nn.Linear(4, 5, dtype=np.float64), nn.ReLU(),
                                      nn.Linear(5, 3, dtype=np.float64))
            self.head = nn.Linear(3, 2, bias=False, dtype=np.float64)
            self.drop = nn.Dropout(0.25)

        def forward(self, x):
            return self.head(self.drop(self.body(x))) * self.scale

    return Net()


def test_parameters_register_in_order_with_dotted_names(fg):
    net = make_net(fg)
    names = [name for name, _ in net.named_parameters()]
    assert names == ["scale", "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias",
                     "head.weight"]
    assert list(net.state_dict()) == names
    assert [type(m).__name__ for m in net.children()] == ["Sequential", "Linear", "Dropout"]
    assert len(list(net.modules())) == 7
    assert all(isinstance(p, fg.nn.Parameter) and p.requires_grad and p.is_leaf
               for p in net.parameters())
    assert net.body[0].weight.shape == (5, 4) and net.body[0].bias.shape == (5,)


def test_shared_parameter_is_listed_once(fg):
    nn = fg.nn
    a = nn.Linear(3, 3)
    model = nn.Sequential(a, nn.Tanh(), a)
    assert len(list(model.parameters())) == 2
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]


def test_assignment_rules(fg):
    nn = fg.nn
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="parameter 'weight'"):
        lin.weight = fg.zeros(2, 2)
    lin.bias = None                              # allowed, as in PyTorch
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert lin(fg.ones(1, 2)).shape == (1, 2)

    class Forgot(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Forgot()


def test_train_eval_reach_every_module(fg):
    net = make_net(fg)
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad_and_dtype_conversion(fg):
    net = make_net(fg)
    net(fg.ones(2, 4, dtype=np.float64)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.numpy() == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    assert net(fg.ones(2, 4)).dtype == np.float32


def test_repr_names_layers(fg):
    nn = fg.nn
    text = repr(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Dropout(0.1)))
    assert "(0): Linear(in_features=2, out_features=3, bias=True)" in text
    assert "(2): Dropout(p=0.1)" in text
    assert repr(nn.Parameter(np.zeros(2))).startswith("Parameter containing:")


def test_state_dict_is_a_copy_and_round_trips(fg, tmp_path):
    fg.manual_seed(1)
    a, b = make_net(fg), make_net(fg)
    sd = a.state_dict()
    sd["head.weight"][...] = 123.0               # a copy: the model is untouched
    assert not np.any(a.head.weight.numpy() == 123.0)
    path = tmp_path / "net.fg"
    fg.save({"model": a.state_dict(), "epoch": 3}, str(path))
    loaded = fg.load(str(path))
    result = b.load_state_dict(loaded["model"])
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (n1, p1), (n2, p2) in zip(a.named_parameters(), b.named_parameters()):
        assert n1 == n2 and np.array_equal(p1.numpy(), p2.numpy())
    x = fg.tensor(RNG.normal(size=(3, 4)))
    a.eval(), b.eval()
    assert np.array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_accepts_tensors_and_casts(fg):
    nn = fg.nn
    lin = nn.Linear(2, 2)                        # float32
    lin.load_state_dict({"weight": fg.tensor(np.eye(2)), "bias": [1.0, 2.0]})
    assert lin.weight.dtype == np.float32
    assert np.array_equal(lin.weight.numpy(), np.eye(2, dtype=np.float32))
    assert lin.bias.numpy().tolist() == [1.0, 2.0]


def test_load_state_dict_reports_every_problem_and_changes_nothing(fg):
    net = make_net(fg)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    bad = net.state_dict()
    del bad["scale"]
    bad["body.0.weight"] = np.zeros((4, 5))      # transposed
    bad["extra.bias"] = np.zeros(3)
    bad["head.weight"][...] = 9.0                # a good key that must not be copied either
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(bad)
    message = str(info.value)
    assert "'scale'" in message and "missing" in message
    assert "'extra.bias'" in message and "unexpected" in message
    assert "'body.0.weight'" in message and "(4, 5)" in message and "(5, 4)" in message
    for k, v in net.state_dict().items():
        assert np.array_equal(v, before[k]), k
    # strict=False forgives missing and unexpected keys but never a wrong shape
    with pytest.raises(RuntimeError, match="size mismatch"):
        net.load_state_dict(bad, strict=False)
    del bad["body.0.weight"]
    result = net.load_state_dict(bad, strict=False)
    assert result.missing_keys == ["scale", "body.0.weight"]
    assert result.unexpected_keys == ["extra.bias"]
    assert np.all(net.head.weight.numpy() == 9.0)


def test_load_state_dict_bumps_versions_so_stale_graphs_are_refused(fg):
    lin = fg.nn.Linear(2, 1, dtype=np.float64)
    y = lin.weight * lin.weight                  # mul saves the weight for backward
    lin.load_state_dict({k: v + 1 for k, v in lin.state_dict().items()})
    with pytest.raises(RuntimeError):
        y.sum().backward()
    (lin.weight * lin.weight).sum().backward()   # a graph built afterwards is fine
    np.testing.assert_allclose(lin.weight.grad.numpy(), 2 * lin.weight.numpy())


# ---------------------------------------------------------------------------
# Linear and init
# ---------------------------------------------------------------------------
def test_linear_init_follows_pytorch_and_manual_seed(fg):
    nn = fg.nn
    fg.manual_seed(3)
    lin = nn.Linear(400, 50)
    bound = 1 / math.sqrt(400)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert w.dtype == np.float32 and w.shape == (50, 400)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.03 * bound   # uniform's std
    fg.manual_seed(3)
    again = nn.Linear(400, 50)
    assert np.array_equal(again.weight.numpy(), w) and np.array_equal(again.bias.numpy(), b)
    assert nn.Linear(2, 2, dtype=np.float64).weight.dtype == np.float64


def test_linear_matches_a_hand_computation_and_torch(fg):
    nn = fg.nn
    lin = nn.Linear(3, 2, dtype=np.float64)
    x0 = RNG.normal(size=(4, 3))
    x = fg.tensor(x0, requires_grad=True)
    out = lin(x)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    np.testing.assert_allclose(out.numpy(), x0 @ w.T + b, rtol=1e-13)
    g = RNG.normal(size=(4, 2))
    (out * fg.tensor(g)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), g @ w, rtol=1e-12)
    np.testing.assert_allclose(lin.weight.grad.numpy(), g.T @ x0, rtol=1e-12)
    np.testing.assert_allclose(lin.bias.grad.numpy(), g.sum(0), rtol=1e-12)
    # a batch of sequences: (2, 4, 3) -> (2, 4, 2)
    assert lin(fg.tensor(RNG.normal(size=(2, 4, 3)))).shape == (2, 4, 2)


def test_linear_bad_input_is_named_and_changes_nothing(fg):
    nn = fg.nn
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"linear: input of shape \(5, 3\).*expected 4"):
        model(fg.ones(5, 3))
    with pytest.raises(TypeError, match=r"x\.float\(\)"):
        model(fg.tensor(np.ones((5, 4))))        # float64 input, float32 model
    with pytest.raises(ValueError, match="out_features"):
        nn.Linear(3, -1)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_init_functions(fg):
    init = fg.nn.init
    fg.manual_seed(0)
    w = fg.nn.Parameter(np.empty((300, 200)))
    assert init.uniform_(w, -0.5, 0.25) is w
    assert w.numpy().min() >= -0.5 and w.numpy().max() <= 0.25
    init.normal_(w, 1.0, 0.1)
    assert abs(w.numpy().mean() - 1.0) < 0.01 and abs(w.numpy().std() - 0.1) < 0.01
    init.xavier_uniform_(w)
    bound = math.sqrt(6 / (200 + 300))
    assert np.abs(w.numpy()).max() <= bound and abs(w.numpy().std() - bound / math.sqrt(3)) < 0.01
    init.kaiming_uniform_(w, nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 200)) < 0.005
    init.kaiming_uniform_(w, a=math.sqrt(5))     # what Linear's bound is derived from
    assert abs(np.abs(w.numpy()).max() - 1 / math.sqrt(200)) < 1e-3
    init.zeros_(w)
    assert not np.any(w.numpy())
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(fg.nn.Parameter(np.zeros(3)))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(w, mode="fan_middle")
    fg.manual_seed(5)
    a = init.normal_(fg.zeros(4)).numpy().copy()
    fg.manual_seed(5)
    assert np.array_equal(init.normal_(fg.zeros(4)).numpy(), a)


# ---------------------------------------------------------------------------
# Activations and other layers: against finite differences and PyTorch
# ---------------------------------------------------------------------------
LAYERS = [
    ("ReLU", lambda nn: nn.ReLU(), "ReLU", {}),
    ("Sigmoid", lambda nn: nn.Sigmoid(), "Sigmoid", {}),
    ("Tanh", lambda nn: nn.Tanh(), "Tanh", {}),
    ("LeakyReLU", lambda nn: nn.LeakyReLU(0.2), "LeakyReLU", {"negative_slope": 0.2}),
    ("Softmax", lambda nn: nn.Softmax(dim=1), "Softmax", {"dim": 1}),
    ("Softmax0", lambda nn: nn.Softmax(dim=0), "Softmax", {"dim": 0}),
    ("LogSoftmax", lambda nn: nn.LogSoftmax(dim=-1), "LogSoftmax", {"dim": -1}),
    ("Identity", lambda nn: nn.Identity(), "Identity", {}),
    ("Flatten", lambda nn: nn.Flatten(), "Flatten", {}),
]


@pytest.mark.parametrize("name,make,torch_name,kwargs", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_gradients(fg, name, make, torch_name, kwargs):
    x0 = RNG.uniform(0.1, 1.0, (3, 2, 2)) * RNG.choice([-1, 1], (3, 2, 2))
    if name != "Flatten":
        x0 = x0.reshape(3, 4)
    weights = RNG.normal(size=x0.shape if name != "Flatten" else (3, 4))
    layer = make(fg.nn)
    x = fg.tensor(x0.copy(), requires_grad=True)
    out = layer(x)
    (out * fg.tensor(weights)).sum().backward()
    num = numeric_grad(lambda: float((layer(fg.tensor(x0)).numpy() * weights).sum()), x0)
    np.testing.assert_allclose(x.grad.numpy(), num, rtol=1e-6, atol=1e-8)
    try:
        import torch
    except ImportError:
        return
    tlayer = getattr(torch.nn, torch_name)(**kwargs)
    tx = torch.tensor(x0, requires_grad=True)
    tout = tlayer(tx)
    (tout * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_functional_aliases(fg):
    F = fg.nn.functional
    x = fg.tensor(RNG.normal(size=(2, 5)))
    assert np.allclose(F.relu(x).numpy(), np.maximum(x.numpy(), 0))
    assert np.allclose(F.softmax(x).numpy().sum(-1), 1)
    assert np.allclose(F.log_softmax(x, dim=1).numpy(), F.softmax(x, 1).log().numpy())
    assert np.allclose(F.sigmoid(x).numpy(), 1 / (1 + np.exp(-x.numpy())))
    assert np.allclose(F.tanh(x).numpy(), np.tanh(x.numpy()))
    assert np.allclose(F.leaky_relu(x, 0.3).numpy(), np.where(x.numpy() > 0, 1, 0.3) * x.numpy())
    w, b = fg.tensor(RNG.normal(size=(3, 5))), fg.tensor(RNG.normal(size=3))
    assert np.allclose(F.linear(x, w, b).numpy(), x.numpy() @ w.numpy().T + b.numpy())
    import fastgrad.nn.functional  # noqa: F401  (importable by its full name)


# ---------------------------------------------------------------------------
# Dropout: the lecture's rule
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_zeroes_about_p_and_scales_the_rest(fg, p):
    fg.manual_seed(11)
    drop = fg.nn.Dropout(p)
    x = fg.ones(200, 100, dtype=np.float64, requires_grad=True)
    y = drop(x)
    values = y.numpy()
    zeroed = np.mean(values == 0)
    assert abs(zeroed - p) < 4 * math.sqrt(p * (1 - p) / values.size)
    np.testing.assert_allclose(values[values != 0], 1 / (1 - p), rtol=1e-12)
    y.sum().backward()                                   # the same mask scales the gradient
    np.testing.assert_array_equal(x.grad.numpy(), values)
    drop.eval()
    assert drop(x) is x                                  # identity in eval
    fg.manual_seed(11)
    assert np.array_equal(fg.nn.Dropout(p)(x).numpy(), values)   # masks follow manual_seed


def test_dropout_edges_and_errors(fg):
    nn, F = fg.nn, fg.nn.functional
    x = fg.ones(10, dtype=np.float64)
    assert nn.Dropout(0.0)(x) is x
    assert not np.any(nn.Dropout(1.0)(x).numpy())
    assert F.dropout(x, 0.5, training=False) is x
    for bad in (-0.1, 1.5, "half"):
        with pytest.raises(ValueError, match="between 0 and 1"):
            nn.Dropout(bad)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 2.0)


# ---------------------------------------------------------------------------
# Losses: every reduction, against finite differences and PyTorch
# ---------------------------------------------------------------------------
def _probs(shape):
    return RNG.uniform(0.05, 0.95, shape)


def _loss_cases():
    logits = RNG.normal(size=(5, 4))
    classes = np.array([0, 3, 1, 3, 2])
    soft = RNG.dirichlet(np.ones(4), size=5)
    cw = np.array([0.5, 2.0, 1.0, 1.5])
    reg_in, reg_t = RNG.normal(size=(6, 2)), RNG.normal(size=(6, 2))
    bin_t = RNG.integers(0, 2, (6, 2)).astype(float)
    el_w = RNG.uniform(0.5, 2, (6, 2))
    pw = np.array([1.5, 0.5])
    logp = np.log(RNG.dirichlet(np.ones(4), size=5))
    ignore = np.array([0, -100, 1, 3, -100])
    # name, fg loss(F, input, target), torch loss(F, input, target), input, target, target grad
    return [
        ("mse", lambda F, i, t, r: F.mse_loss(i, t, reduction=r),
         lambda F, i, t, r: F.mse_loss(i, t, reduction=r), reg_in, reg_t, True),
        ("l1", lambda F, i, t, r: F.l1_loss(i, t, reduction=r),
         lambda F, i, t, r: F.l1_loss(i, t, reduction=r), reg_in, reg_t, True),
        ("bce", lambda F, i, t, r: F.binary_cross_entropy(i, t, reduction=r),
         lambda F, i, t, r: F.binary_cross_entropy(i, t, reduction=r), _probs((6, 2)),
         _probs((6, 2)), True),
        ("bce weight", lambda F, i, t, r: F.binary_cross_entropy(i, t, weight=el_w, reduction=r),
         lambda F, i, t, r: F.binary_cross_entropy(i, t, weight=_tt(el_w), reduction=r),
         _probs((6, 2)), bin_t, False),
        ("bce logits", lambda F, i, t, r: F.binary_cross_entropy_with_logits(i, t, reduction=r),
         lambda F, i, t, r: F.binary_cross_entropy_with_logits(i, t, reduction=r), reg_in * 3,
         _probs((6, 2)), True),
        ("bce logits pos_weight",
         lambda F, i, t, r: F.binary_cross_entropy_with_logits(i, t, weight=el_w, reduction=r,
                                                              pos_weight=pw),
         lambda F, i, t, r: F.binary_cross_entropy_with_logits(i, t, weight=_tt(el_w),
                                                              reduction=r, pos_weight=_tt(pw)),
         reg_in, _probs((6, 2)), True),
        ("cross_entropy", lambda F, i, t, r: F.cross_entropy(i, t, reduction=r),
         lambda F, i, t, r: F.cross_entropy(i, t, reduction=r), logits, classes, False),
        ("cross_entropy weight", lambda F, i, t, r: F.cross_entropy(i, t, weight=cw, reduction=r),
         lambda F, i, t, r: F.cross_entropy(i, t, weight=_tt(cw), reduction=r), logits,
         classes, False),
        ("cross_entropy ignore", lambda F, i, t, r: F.cross_entropy(i, t, reduction=r),
         lambda F, i, t, r: F.cross_entropy(i, t, reduction=r), logits, ignore, False),
        ("cross_entropy smoothing",
         lambda F, i, t, r: F.cross_entropy(i, t, weight=cw, reduction=r, label_smoothing=0.2),
         lambda F, i, t, r: F.cross_entropy(i, t, weight=_tt(cw), reduction=r,
                                            label_smoothing=0.2), logits, classes, False),
        ("cross_entropy probabilities", lambda F, i, t, r: F.cross_entropy(i, t, reduction=r),
         lambda F, i, t, r: F.cross_entropy(i, t, reduction=r), logits, soft, True),
        ("cross_entropy unbatched", lambda F, i, t, r: F.cross_entropy(i, t, reduction=r),
         lambda F, i, t, r: F.cross_entropy(i, t, reduction=r), logits[0], np.array(2), False),
        ("nll", lambda F, i, t, r: F.nll_loss(i, t, weight=cw, reduction=r),
         lambda F, i, t, r: F.nll_loss(i, t, weight=_tt(cw), reduction=r), logp, classes, False),
        ("nll ignore", lambda F, i, t, r: F.nll_loss(i, t, ignore_index=-100, reduction=r),
         lambda F, i, t, r: F.nll_loss(i, t, ignore_index=-100, reduction=r), logp, ignore,
         False),
    ]


def _tt(a):
    import torch
    return torch.tensor(a)


LOSSES = _loss_cases()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", LOSSES, ids=[c[0] for c in LOSSES])
def test_losses(fg, case, reduction):
    name, f, tf, x0, t0, target_grad = case
    F = fg.nn.functional
    x0, t0 = x0.copy(), t0.copy()
    x = fg.tensor(x0, requires_grad=True)
    t = fg.tensor(t0, requires_grad=target_grad)
    loss = f(F, x, t, reduction)
    weights = RNG.normal(size=loss.shape)
    (loss * fg.tensor(weights)).sum().backward()

    def scalar():
        return float((f(F, fg.tensor(x0), fg.tensor(t0), reduction).numpy() * weights).sum())

    np.testing.assert_allclose(x.grad.numpy(), numeric_grad(scalar, x0), rtol=1e-5, atol=1e-7)
    if target_grad:
        np.testing.assert_allclose(t.grad.numpy(), numeric_grad(scalar, t0), rtol=1e-5,
                                   atol=1e-7)
    try:
        import torch
    except ImportError:
        return
    tx = torch.tensor(x0, requires_grad=True)
    tt = torch.tensor(t0, requires_grad=target_grad)
    tloss = tf(torch.nn.functional, tx, tt, reduction)
    (tloss * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(loss.numpy(), tloss.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-14)
    if target_grad:
        np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-10, atol=1e-14)


LOSS_CLASSES = [
    ("MSELoss", {}, "mse_loss"), ("L1Loss", {}, "l1_loss"),
    ("BCELoss", {}, "binary_cross_entropy"),
    ("BCEWithLogitsLoss", {}, "binary_cross_entropy_with_logits"),
    ("CrossEntropyLoss", {"label_smoothing": 0.1}, "cross_entropy"),
    ("NLLLoss", {}, "nll_loss"),
]


@pytest.mark.parametrize("cls,kwargs,fn", LOSS_CLASSES, ids=[c[0] for c in LOSS_CLASSES])
def test_loss_classes_call_their_functions(fg, cls, kwargs, fn):
    nn, F = fg.nn, fg.nn.functional
    if fn in ("cross_entropy", "nll_loss"):
        x, t = fg.tensor(RNG.normal(size=(4, 3))), np.array([0, 2, 1, 1])
    else:
        x, t = fg.tensor(_probs((4, 3))), fg.tensor(_probs((4, 3)))
    for reduction in ("mean", "sum", "none"):
        mine = getattr(nn, cls)(reduction=reduction, **kwargs)(x, t)
        theirs = getattr(F, fn)(x, t, reduction=reduction, **kwargs)
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    with pytest.raises(ValueError, match="reduction"):
        getattr(nn, cls)(reduction="average")


def test_bce_is_finite_at_zero_and_one(fg):
    F = fg.nn.functional
    p = fg.tensor(np.array([0.0, 1.0, 0.0, 1.0]), requires_grad=True)
    y = fg.tensor(np.array([0.0, 1.0, 1.0, 0.0]))
    loss = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_array_equal(loss.numpy(), [0.0, 0.0, 100.0, 100.0])   # clamped at -100
    loss.sum().backward()
    assert np.all(np.isfinite(p.grad.numpy()))


def test_bce_with_logits_is_stable_for_large_logits(fg):
    F = fg.nn.functional
    z = fg.tensor(np.array([-800.0, 800.0, -30.0, 30.0]), requires_grad=True)
    y = fg.tensor(np.array([1.0, 0.0, 0.0, 1.0]))
    loss = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    np.testing.assert_allclose(loss.numpy(), [800.0, 800.0, math.log1p(math.exp(-30.0)),
                                              math.log1p(math.exp(-30.0))], rtol=1e-12)
    assert loss.numpy()[2] > 0                   # log1p keeps the tiny value
    loss.sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), [-1.0, 1.0, 0.0, 0.0], atol=1e-12)


def test_cross_entropy_is_stable_for_large_logits(fg):
    F = fg.nn.functional
    z = fg.tensor(np.array([[1000.0, 0.0], [0.0, -1000.0]]), requires_grad=True)
    loss = F.cross_entropy(z, np.array([1, 1]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [1000.0, 1000.0])
    loss.sum().backward()
    assert np.all(np.isfinite(z.grad.numpy()))


def test_float32_losses_keep_float32(fg):
    F = fg.nn.functional
    x = fg.tensor(RNG.normal(size=(4, 3)).astype(np.float32), requires_grad=True)
    for loss in (F.cross_entropy(x, np.array([0, 1, 2, 0])),
                 F.binary_cross_entropy_with_logits(x, (x.numpy() > 0).astype(np.float32)),
                 F.mse_loss(x, np.zeros((4, 3), np.float32))):
        assert loss.dtype == np.float32
        x.grad = None
        loss.backward()
        assert x.grad.dtype == np.float32


def test_loss_input_errors_change_nothing(fg):
    F = fg.nn.functional
    x = fg.tensor(RNG.normal(size=(3, 4)), requires_grad=True)
    checks = [
        (IndexError, r"target 4 is out of range for 4 classes",
         lambda: F.cross_entropy(x, np.array([0, 4, 1]))),
        (IndexError, r"target -1 is out of range", lambda: F.nll_loss(x, np.array([0, -1, 1]))),
        (ValueError, r"targets of shape \(3,\)", lambda: F.cross_entropy(x, np.array([0, 1]))),
        (TypeError, "integers", lambda: F.nll_loss(x, np.array([0.0, 1.0, 2.0]))),
        (ValueError, "weight must have one entry per class",
         lambda: F.cross_entropy(x, np.array([0, 1, 2]), weight=np.ones(3))),
        (ValueError, "between 0 and 1",
         lambda: F.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=1.5)),
        (ValueError, "reduction", lambda: F.mse_loss(x, x, reduction="avg")),
        (ValueError, r"probability in \[0, 1\]",
         lambda: F.binary_cross_entropy(x, np.zeros((3, 4)))),
        (ValueError, r"input's shape \(3, 4\)",
         lambda: F.binary_cross_entropy_with_logits(x, np.zeros((3, 1)))),
        (ValueError, "do not broadcast", lambda: F.mse_loss(x, np.zeros((2, 4)))),
    ]
    for error, message, call in checks:
        with pytest.raises(error, match=message):
            call()
    assert x.grad is None


def test_mse_warns_when_shapes_only_broadcast(fg):
    F = fg.nn.functional
    x = fg.tensor(np.zeros((5, 1)))
    with pytest.warns(UserWarning, match=r"target shape \(5,\) differs from input shape \(5, 1\)"):
        loss = F.mse_loss(x, np.ones(5))
    assert loss.item() == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.mse_loss(x, np.ones((5, 1)))


# ---------------------------------------------------------------------------
# Whole models: both cores agree, and PyTorch trains them identically
# ---------------------------------------------------------------------------
def _torch_copy(torch, model, fg):
    """A torch.nn.Sequential with the same layers and weights as a fastgrad Sequential."""
    layers = []
    for m in model:
        name = type(m).__name__
        if name == "Linear":
            t = torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None,
                                dtype=torch.float64)
            with torch.no_grad():
                t.weight.copy_(torch.tensor(m.weight.numpy()))
                if m.bias is not None:
                    t.bias.copy_(torch.tensor(m.bias.numpy()))
            layers.append(t)
        elif name == "LeakyReLU":
            layers.append(torch.nn.LeakyReLU(m.negative_slope))
        else:
            layers.append(getattr(torch.nn, name)())
    return torch.nn.Sequential(*layers)


OPTIMIZERS = [
    ("SGD", {"lr": 0.1}), ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                    "weight_decay": 1e-3}),
    ("Adam", {"lr": 0.01}), ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
]


@pytest.mark.parametrize("opt_name,kwargs", OPTIMIZERS, ids=[o[0] + str(i) for i, o in
                                                             enumerate(OPTIMIZERS)])
def test_training_trajectory_matches_torch(fg, opt_name, kwargs):
    torch = pytest.importorskip("torch")
    nn = fg.nn
    fg.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 8, dtype=np.float64), nn.Tanh(),
                          nn.Linear(8, 6, dtype=np.float64), nn.LeakyReLU(0.1),
                          nn.Linear(6, 3, dtype=np.float64))
    tmodel = _torch_copy(torch, model, fg)
    opt = getattr(fg.optim, opt_name)(model.parameters(), **kwargs)
    topt = getattr(torch.optim, opt_name)(tmodel.parameters(), **kwargs)
    rng = np.random.default_rng(9)
    for step in range(10):
        x0, y0 = rng.normal(size=(8, 3)), rng.integers(0, 3, 8)
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(model(fg.tensor(x0)), y0)
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.CrossEntropyLoss()(tmodel(torch.tensor(x0)), torch.tensor(y0))
        tloss.backward()
        topt.step()
        assert abs(loss.item() - tloss.item()) < 1e-6
    for p, tp in zip(model.parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-6, atol=1e-9)


def test_cores_agree_on_a_model(both):
    py, cc = both
    results = []
    for fg in (py, cc):
        fg.manual_seed(2)
        model = fg.nn.Sequential(fg.nn.Linear(5, 7, dtype=np.float64), fg.nn.ReLU(),
                                 fg.nn.Dropout(0.3), fg.nn.Linear(7, 4, dtype=np.float64))
        x = fg.tensor(np.random.default_rng(0).normal(size=(6, 5)))
        loss = fg.nn.functional.cross_entropy(model(x), np.array([0, 1, 2, 3, 0, 1]))
        loss.backward()
        results.append([loss.numpy()] + [p.grad.numpy() for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_lecture_231_network_learns_xor(fg):
    """The [2, 3, 1] sigmoid network, batch-size-1 SGD, on XOR: a non-linearly separable task."""
    nn = fg.nn
    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3, dtype=np.float64), nn.Sigmoid(),
                          nn.Linear(3, 1, dtype=np.float64), nn.Sigmoid())
    opt = fg.optim.SGD(model.parameters(), lr=2.0)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([[0], [1], [1], [0]], dtype=np.float64)
    loss_fn = nn.MSELoss()
    for epoch in range(2000):
        for i in range(4):
            opt.zero_grad()
            loss_fn(model(fg.tensor(x[i:i + 1])), y[i:i + 1]).backward()
            opt.step()
    with fg.no_grad():
        out = model(fg.tensor(x)).numpy()
    assert np.all((out > 0.5) == (y > 0.5)), out.ravel()
