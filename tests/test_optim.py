"""Optimizers: PyTorch's trajectories, the textbook formulas, the fused kernels
against their NumPy twin, state_dict round trips, argument checks, schedulers."""
import math

import numpy as np
import pytest

# A small fixed problem: loss = mean((tanh(X @ W + b) - Y)^2), float64.
_r = np.random.default_rng(20240611)
X0 = _r.standard_normal((6, 3))
Y0 = _r.standard_normal((6, 2))
W0 = _r.standard_normal((3, 2)) * 0.5
B0 = _r.standard_normal(2) * 0.1
C0 = _r.standard_normal(4)            # a parameter that never gets a gradient

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("Adam", dict(lr=0.05, maximize=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2,
                     eps=1e-8)),
    ("Adagrad", dict(lr=0.1, maximize=True)),
]
IDS = ["%s-%s" % (name, "-".join("%s=%s" % kv for kv in kw.items()) or "defaults")
       for name, kw in CONFIGS]


def fg_trajectory(fg, make_opt, steps=10, dtype=np.float64, groups=None):
    X, Y = fg.tensor(X0.astype(dtype)), fg.tensor(Y0.astype(dtype))
    w = fg.tensor(W0.astype(dtype), requires_grad=True)
    b = fg.tensor(B0.astype(dtype), requires_grad=True)
    c = fg.tensor(C0.astype(dtype), requires_grad=True)
    opt = make_opt(groups(w, b, c) if groups else [w, b, c])
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((fg.tanh(X @ w + b) - Y) ** 2).mean()
        loss.backward()
        opt.step()
        out.append(np.concatenate([w.numpy().ravel(), b.numpy().ravel()]))
    np.testing.assert_array_equal(c.numpy(), C0.astype(dtype))   # no gradient: untouched
    return np.array(out)


def torch_trajectory(torch, make_opt, steps=10, dtype=None, groups=None):
    dtype = dtype or torch.float64
    X, Y = torch.tensor(X0, dtype=dtype), torch.tensor(Y0, dtype=dtype)
    w = torch.tensor(W0, dtype=dtype, requires_grad=True)
    b = torch.tensor(B0, dtype=dtype, requires_grad=True)
    c = torch.tensor(C0, dtype=dtype, requires_grad=True)
    opt = make_opt(groups(w, b, c) if groups else [w, b, c])
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((torch.tanh(X @ w + b) - Y) ** 2).mean()
        loss.backward()
        opt.step()
        out.append(np.concatenate([w.detach().numpy().ravel(), b.detach().numpy().ravel()]))
    return np.array(out)


# --- against PyTorch ------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=IDS)
def test_trajectory_matches_torch(fg, name, kwargs):
    torch = pytest.importorskip("torch")
    ours = fg_trajectory(fg, lambda p: getattr(fg.optim, name)(p, **kwargs))
    theirs = torch_trajectory(torch, lambda p: getattr(torch.optim, name)(p, **kwargs))
    assert not np.allclose(ours[-1], np.concatenate([W0.ravel(), B0.ravel()]))   # it moved
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name,kwargs", [CONFIGS[3], CONFIGS[7], CONFIGS[14], CONFIGS[16]],
                         ids=[IDS[3], IDS[7], IDS[14], IDS[16]])
def test_float32_trajectory_matches_torch(fg, name, kwargs):
    torch = pytest.importorskip("torch")
    ours = fg_trajectory(fg, lambda p: getattr(fg.optim, name)(p, **kwargs), dtype=np.float32)
    theirs = torch_trajectory(torch, lambda p: getattr(torch.optim, name)(p, **kwargs),
                              dtype=torch.float32)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=1e-5)


def test_param_groups_match_torch(fg):
    torch = pytest.importorskip("torch")

    def groups(w, b, c):
        return [{"params": [w], "lr": 0.2, "momentum": 0.5}, {"params": [b, c]}]

    ours = fg_trajectory(fg, lambda g: fg.optim.SGD(g, lr=0.05, momentum=0.9), groups=groups)
    theirs = torch_trajectory(torch, lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.9),
                              groups=groups)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)


# --- against the textbook formulas ------------------------------------------------
# loss = 0.5 * sum(a * p^2), so the gradient is a * p.
A = np.array([0.5, 2.0, -1.0, 3.0])
P0 = np.array([1.0, -2.0, 0.5, 0.25])


def fg_quadratic(fg, make_opt, steps=5):
    p = fg.tensor(P0.copy(), requires_grad=True)
    a = fg.tensor(A)
    opt = make_opt([p])
    out = []
    for _ in range(steps):
        opt.zero_grad()
        ((a * p * p).sum() * 0.5).backward()
        opt.step()
        out.append(p.numpy().copy())
    return np.array(out)


def test_sgd_plain_is_p_minus_lr_grad(fg):
    ours = fg_quadratic(fg, lambda p: fg.optim.SGD(p, lr=0.1), steps=3)
    p = P0.copy()
    for k in range(3):
        p = p - 0.1 * (A * p)
        np.testing.assert_allclose(ours[k], p, rtol=1e-15)


@pytest.mark.parametrize("nesterov,dampening", [(False, 0.0), (False, 0.3), (True, 0.0)])
def test_sgd_momentum_by_hand(fg, nesterov, dampening):
    lr, mu, wd = 0.05, 0.9, 0.01
    ours = fg_quadratic(fg, lambda p: fg.optim.SGD(p, lr=lr, momentum=mu, dampening=dampening,
                                                   weight_decay=wd, nesterov=nesterov))
    p, velocity = P0.copy(), None
    for k in range(5):
        g = A * p + wd * p
        # The first step starts the velocity at the gradient itself (no dampening).
        velocity = g if velocity is None else mu * velocity + (1 - dampening) * g
        p = p - lr * (g + mu * velocity if nesterov else velocity)
        np.testing.assert_allclose(ours[k], p, rtol=1e-13)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_by_hand(fg, name):
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-8, 0.05
    ours = fg_quadratic(fg, lambda p: getattr(fg.optim, name)(p, lr=lr, weight_decay=wd))
    p, m, v = P0.copy(), np.zeros(4), np.zeros(4)
    for t in range(1, 6):
        g = A * p
        if name == "AdamW":
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(ours[t - 1], p, rtol=1e-12)


def test_adam_first_step_moves_every_coordinate_by_lr(fg):
    # With m_hat = g and v_hat = g^2 the first Adam step is lr * sign(g) (up to eps).
    ours = fg_quadratic(fg, lambda p: fg.optim.Adam(p, lr=0.01), steps=1)
    np.testing.assert_allclose(P0 - ours[0], 0.01 * np.sign(A * P0), rtol=1e-6)


@pytest.mark.parametrize("centered,momentum", [(False, 0.0), (True, 0.0), (True, 0.8)])
def test_rmsprop_by_hand(fg, centered, momentum):
    lr, alpha, eps = 0.01, 0.9, 1e-8
    ours = fg_quadratic(fg, lambda p: fg.optim.RMSprop(p, lr=lr, alpha=alpha, centered=centered,
                                                       momentum=momentum))
    p, sq, mean_g, buf = P0.copy(), np.zeros(4), np.zeros(4), np.zeros(4)
    for k in range(5):
        g = A * p
        sq = alpha * sq + (1 - alpha) * g ** 2
        mean_g = alpha * mean_g + (1 - alpha) * g
        rms = np.sqrt(sq - mean_g ** 2 if centered else sq) + eps
        if momentum:
            buf = momentum * buf + g / rms
            p = p - lr * buf
        else:
            p = p - lr * g / rms
        np.testing.assert_allclose(ours[k], p, rtol=1e-12)


def test_adagrad_by_hand(fg):
    lr, decay, init, eps = 0.5, 0.1, 0.3, 1e-10
    ours = fg_quadratic(fg, lambda p: fg.optim.Adagrad(p, lr=lr, lr_decay=decay,
                                                       initial_accumulator_value=init))
    p, s = P0.copy(), np.full(4, init)
    for t in range(1, 6):
        g = A * p
        s = s + g ** 2
        p = p - lr / (1 + (t - 1) * decay) * g / (np.sqrt(s) + eps)
        np.testing.assert_allclose(ours[t - 1], p, rtol=1e-12)


def test_sgd_weight_decay_is_half_wd_squared_norm_in_the_loss(fg):
    wd, lr = 0.3, 0.1
    decayed = fg_quadratic(fg, lambda p: fg.optim.SGD(p, lr=lr, weight_decay=wd))
    p = fg.tensor(P0.copy(), requires_grad=True)
    a = fg.tensor(A)
    opt = fg.optim.SGD([p], lr=lr)
    for k in range(5):
        opt.zero_grad()
        loss = (a * p * p).sum() * 0.5 + (wd / 2) * (p * p).sum()
        loss.backward()
        opt.step()
        np.testing.assert_allclose(p.numpy(), decayed[k], rtol=1e-14)


def test_maximize_ascends(fg):
    up = fg_quadratic(fg, lambda p: fg.optim.SGD(p, lr=0.1, maximize=True), steps=1)
    np.testing.assert_allclose(up[0], P0 + 0.1 * A * P0, rtol=1e-15)


# --- fused kernels: compiled against the NumPy twin --------------------------------

SHAPES = [[(3, 4), (5,)], [(), (2, 3, 2), (0,)]]     # two parameter groups


def _run_fused(fg, name, dtype, seed, hyper, kwargs, steps=6):
    """`steps` calls of fused function `name` over two groups (the second at half the rate)."""
    rng = np.random.default_rng(seed)
    groups = []
    for gi, shapes in enumerate(SHAPES):
        params = [fg.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True)
                  for s in shapes]
        group = dict(hyper, params=params)
        group["lr"] = hyper["lr"] / (1 + gi)
        groups.append(group)
    state = {}
    for _ in range(steps):
        for group in groups:
            for p in group["params"]:
                p.grad = fg.tensor(rng.standard_normal(p.shape).astype(dtype))
        getattr(fg._core.fused, name)("Test", groups, state, False, **kwargs)
    params = [p for group in groups for p in group["params"]]
    return ([p.numpy() for p in params], [p._version_counter for p in params],
            [state.get(p, {}) for p in params])


FUSED = [
    ("sgd_step", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01, nesterov=False,
                      maximize=False), {}),
    ("sgd_step", dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True,
                      maximize=True), {}),
    ("sgd_step", dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                      maximize=False), {}),
    ("adam_step", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, amsgrad=True,
                       maximize=False), dict(decoupled=False)),
    ("adam_step", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=False,
                       maximize=True), dict(decoupled=True)),
    ("rmsprop_step", dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.1, momentum=0.5,
                          centered=True, maximize=False), {}),
    ("rmsprop_step", dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                          centered=False, maximize=True), {}),
    ("adagrad_step", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, eps=1e-10,
                          initial_accumulator_value=0.1, maximize=False), {}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", range(len(FUSED)))
def test_fused_compiled_equals_reference(both, case, dtype):
    py, compiled = both
    assert py._core.fused.__name__.endswith("fused_reference")
    assert compiled._core.fused.__name__.endswith("_fused")
    name, hyper, kwargs = FUSED[case]
    p1, v1, s1 = _run_fused(py, name, dtype, case, hyper, kwargs)
    p2, v2, s2 = _run_fused(compiled, name, dtype, case, hyper, kwargs)
    assert v1 == v2 == [6] * len(v1)                   # one version bump per step
    tol = 1e-12 if dtype == np.float64 else 1e-6
    for a, b in zip(p1, p2):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
    for st1, st2 in zip(s1, s2):
        assert sorted(st1) == sorted(st2)
        for key in st1:
            assert st1[key].dtype == st2[key].dtype
            np.testing.assert_allclose(st2[key], st1[key], rtol=tol, atol=tol)


def _odd_layouts(fg, dtype=np.float64):
    """Parameters the C loop cannot take as raw pointers, and plain twins of them."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((4, 6)).astype(dtype)
    buf = np.zeros(base[1].nbytes + 1, dtype=np.uint8)
    unaligned = buf[1:].view(dtype)                    # misaligned by one byte
    unaligned[...] = base[1]
    odd = [base.copy()[:, ::2], base.copy()[::-1], unaligned]
    plain = [np.array(a, order="C", copy=True) for a in odd]
    grads = [rng.standard_normal(a.shape).astype(dtype) for a in odd]
    return odd, plain, grads


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adam", dict(lr=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adagrad", dict(lr=0.1)),
])
def test_strided_and_misaligned_params_are_updated_correctly(fg, name, kwargs):
    # On the compiled core these take a working copy that is copied back: the
    # same values as the same update on plain contiguous arrays, in place.
    odd, plain, grads = _odd_layouts(fg)
    results = []
    for arrays in (odd, plain):
        params = [fg.from_numpy(a) for a in arrays]
        for p in params:
            p.requires_grad = True
        opt = getattr(fg.optim, name)(params, **kwargs)
        for k in range(3):
            for p, g in zip(params, grads):
                p.grad = fg.tensor(g * (k + 1))
            opt.step()
        assert [p._version_counter for p in params] == [3, 3, 3]
        assert all(p.numpy() is a for p, a in zip(params, arrays))
        results.append([a.copy() for a in arrays])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(results[0][0], _odd_layouts(fg)[0][0])    # it did move


def test_strided_and_swapped_gradients_are_read_correctly(fg):
    rng = np.random.default_rng(4)
    g = rng.standard_normal((4, 6))
    for grad in (g[:, ::2], g[:, ::2].astype(g.dtype.newbyteorder())):
        p = fg.tensor(np.ones((4, 3)), requires_grad=True)
        p.grad = fg.from_numpy(grad)
        fg.optim.SGD([p], lr=0.5).step()
        np.testing.assert_array_equal(p.numpy(), 1.0 - 0.5 * g[:, ::2])


def test_fused_module_follows_the_core(fg):
    expected = "fused_reference" if fg.backend() == "python" else "_fused"
    assert fg._core.fused.__name__.rsplit(".", 1)[1] == expected


# --- parameters are updated in place ------------------------------------------------

def test_step_updates_data_in_place_and_the_tensor_sees_it(fg):
    p = fg.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    values = p.numpy()
    p.grad = fg.tensor(np.array([1.0, -1.0, 0.5]))
    fg.optim.SGD([p], lr=0.5).step()
    assert p.numpy() is values                       # the same array, changed in place
    np.testing.assert_array_equal(values, [0.5, 2.5, 2.75])
    # the core computes with the new values
    np.testing.assert_array_equal((p * 1.0).numpy(), [0.5, 2.5, 2.75])
    np.testing.assert_array_equal(p.numpy(), [0.5, 2.5, 2.75])


def test_step_bumps_version_so_stale_graphs_are_refused(fg):
    p = fg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    before = p._version_counter
    y = (p * p).sum()                 # saves p for its backward
    p.grad = fg.tensor(np.array([1.0, 1.0]))
    fg.optim.Adam([p], lr=0.1).step()
    assert p._version_counter == before + 1
    with pytest.raises(RuntimeError, match="modified|version"):
        y.backward()


def test_params_without_grad_are_skipped_and_get_no_state(fg):
    a = fg.tensor(np.ones(2), requires_grad=True)
    b = fg.tensor(np.ones(3), requires_grad=True)
    a.grad = fg.tensor(np.array([1.0, 2.0]))
    opt = fg.optim.Adam([a, b], lr=0.1)
    opt.step()
    np.testing.assert_array_equal(b.numpy(), np.ones(3))
    assert set(opt.state_dict()["state"]) == {0}


def test_step_with_closure_returns_its_loss(fg):
    p = fg.tensor(np.array([3.0]), requires_grad=True)
    opt = fg.optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with fg.no_grad():                # the closure still records its graph
        loss = opt.step(closure)
    assert loss.item() == 9.0
    assert p.numpy()[0] == 3.0 - 0.25 * 6.0


def test_zero_grad(fg):
    p = fg.tensor(np.ones(2), requires_grad=True)
    opt = fg.optim.SGD([p], lr=0.1)
    (p * 3.0).sum().backward()
    grad = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad
    np.testing.assert_array_equal(p.grad.numpy(), [0.0, 0.0])
    (p * 2.0).sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), [2.0, 2.0])
    opt.zero_grad()
    assert p.grad is None


# --- argument checks -------------------------------------------------------------------

BAD = [
    ("SGD", dict(lr=-0.1), "Invalid learning rate: -0.1"),
    ("SGD", dict(lr=0.1, momentum=-1), "Invalid momentum value: -1"),
    ("SGD", dict(lr=0.1, weight_decay=-1e-3), "Invalid weight_decay value: -0.001"),
    ("SGD", dict(lr=0.1, nesterov=True),
     "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", dict(lr=0.1, nesterov=True, momentum=0.9, dampening=0.1),
     "Nesterov momentum requires a momentum and zero dampening"),
    ("Adam", dict(lr=-1.0), "Invalid learning rate: -1.0"),
    ("Adam", dict(eps=-1e-8), "Invalid epsilon value"),
    ("Adam", dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    ("AdamW", dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    ("AdamW", dict(weight_decay=-0.01), "Invalid weight_decay value: -0.01"),
    ("RMSprop", dict(alpha=-0.5), "Invalid alpha value: -0.5"),
    ("RMSprop", dict(momentum=-0.5), "Invalid momentum value: -0.5"),
    ("RMSprop", dict(eps=-1.0), "Invalid epsilon value: -1.0"),
    ("Adagrad", dict(lr_decay=-0.1), "Invalid lr_decay value: -0.1"),
    ("Adagrad", dict(initial_accumulator_value=-1.0),
     "Invalid initial_accumulator_value value: -1.0"),
    ("Adagrad", dict(lr=float("nan")), "Invalid learning rate: nan"),
]


@pytest.mark.parametrize("name,kwargs,message", BAD, ids=[m for _, _, m in BAD])
def test_bad_hyper_parameters(fg, name, kwargs, message):
    p = fg.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        getattr(fg.optim, name)([p], **kwargs)


def test_bad_param_group_changes_nothing(fg):
    a = fg.tensor(np.ones(2), requires_grad=True)
    b = fg.tensor(np.ones(2), requires_grad=True)
    opt = fg.optim.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        opt.add_param_group({"params": [b], "lr": -1})
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": b, "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0


def test_bad_params(fg):
    p = fg.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        fg.optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        fg.optim.Adam([])
    with pytest.raises(ValueError, match="non-leaf"):
        fg.optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="only optimize Tensors"):
        fg.optim.SGD([np.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        fg.optim.SGD([p, p], lr=0.1)


def test_defaults_match_torch(fg):
    torch = pytest.importorskip("torch")
    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad"):
        ours = getattr(fg.optim, name)([fg.tensor(np.ones(1), requires_grad=True)]).defaults
        theirs = getattr(torch.optim, name)([torch.ones(1, requires_grad=True)]).defaults
        for key, value in ours.items():
            assert theirs[key] == value, (name, key)


# --- state_dict -------------------------------------------------------------------------

def _train(fg, opt, w, b, steps):
    X, Y = fg.tensor(X0), fg.tensor(Y0)
    for _ in range(steps):
        opt.zero_grad()
        ((fg.tanh(X @ w + b) - Y) ** 2).mean().backward()
        opt.step()


RESUME = [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)), ("Adam", dict(lr=0.05, amsgrad=True)),
          ("AdamW", dict(lr=0.05)), ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
          ("Adagrad", dict(lr=0.1, lr_decay=0.01))]


@pytest.mark.parametrize("name,kwargs", RESUME, ids=[n for n, _ in RESUME])
def test_state_dict_round_trip_through_save_resumes_bit_for_bit(fg, tmp_path, name, kwargs):
    make = getattr(fg.optim, name)
    w = fg.tensor(W0, requires_grad=True)
    b = fg.tensor(B0, requires_grad=True)
    opt = make([{"params": [w]}, {"params": [b], "lr": 0.02}], **kwargs)
    _train(fg, opt, w, b, 4)
    fg.save({"w": w, "b": b, "optim": opt.state_dict()}, tmp_path / "ckpt.fg")
    _train(fg, opt, w, b, 4)

    ckpt = fg.load(tmp_path / "ckpt.fg")
    w2 = fg.tensor(ckpt["w"], requires_grad=True)
    b2 = fg.tensor(ckpt["b"], requires_grad=True)
    opt2 = make([{"params": [w2]}, {"params": [b2], "lr": 0.9}], **kwargs)
    opt2.load_state_dict(ckpt["optim"])
    assert opt2.param_groups[1]["lr"] == 0.02            # hyper-parameters come from the file
    _train(fg, opt2, w2, b2, 4)
    np.testing.assert_array_equal(w2.numpy(), w.numpy())
    np.testing.assert_array_equal(b2.numpy(), b.numpy())


def test_state_dict_layout_is_torchs(fg):
    torch = pytest.importorskip("torch")
    w = fg.tensor(W0, requires_grad=True)
    b = fg.tensor(B0, requires_grad=True)
    opt = fg.optim.Adam([{"params": [w]}, {"params": [b], "lr": 0.01}])
    _train(fg, opt, w, b, 2)
    sd = opt.state_dict()
    tw = torch.tensor(W0, requires_grad=True)
    tb = torch.tensor(B0, requires_grad=True)
    topt = torch.optim.Adam([{"params": [tw]}, {"params": [tb], "lr": 0.01}])
    X, Y = torch.tensor(X0), torch.tensor(Y0)
    for _ in range(2):
        topt.zero_grad()
        ((torch.tanh(X @ tw + tb) - Y) ** 2).mean().backward()
        topt.step()
    tsd = topt.state_dict()
    assert sorted(sd["state"]) == sorted(tsd["state"]) == [0, 1]
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]
    for i in (0, 1):
        assert set(sd["state"][i]) == set(tsd["state"][i])
        assert float(sd["state"][i]["step"]) == float(tsd["state"][i]["step"]) == 2.0
        for key in ("exp_avg", "exp_avg_sq"):
            assert isinstance(sd["state"][i][key], np.ndarray)
            np.testing.assert_allclose(sd["state"][i][key], tsd["state"][i][key].numpy(),
                                       rtol=1e-6)
    # state_dict hands out copies
    sd["state"][0]["exp_avg"][...] = 99
    assert not np.any(opt.state_dict()["state"][0]["exp_avg"] == 99)


def test_load_state_dict_validates_everything_first(fg):
    w = fg.tensor(W0, requires_grad=True)
    b = fg.tensor(B0, requires_grad=True)
    opt = fg.optim.SGD([w, b], lr=0.1, momentum=0.9)
    _train(fg, opt, w, b, 2)
    good = opt.state_dict()
    before = opt.state_dict()

    def broken(change):
        sd = opt.state_dict()
        change(sd)
        return sd

    cases = [
        (broken(lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0]))),
         "different number of parameter groups"),
        (broken(lambda sd: sd["param_groups"][0].update(params=[0])), "doesn't match the size"),
        (broken(lambda sd: sd["state"][1].update(momentum_buffer=np.zeros(3))), "shape"),
        (broken(lambda sd: sd["state"][0].update(exp_avg=np.zeros((3, 2)))),
         "unknown state entry 'exp_avg'"),
        (broken(lambda sd: sd["state"].update({7: {}})), "does not name a parameter"),
        (broken(lambda sd: sd["param_groups"][0].update(lr=-3.0)), "Invalid learning rate"),
        (broken(lambda sd: sd["param_groups"][0].pop("momentum")), "momentum"),
        ({"state": {}}, "param_groups"),
    ]
    for sd, message in cases:
        # corrupt the first group's lr too: a partial load would show up there
        if "lr" in sd.get("param_groups", [{}])[0] and "learning rate" not in message:
            sd["param_groups"][0]["lr"] = 0.123
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(sd)
        after = opt.state_dict()
        assert after["param_groups"] == before["param_groups"]
        for i in before["state"]:
            np.testing.assert_array_equal(after["state"][i]["momentum_buffer"],
                                          before["state"][i]["momentum_buffer"])
    opt.load_state_dict(good)


# --- learning-rate schedules ------------------------------------------------------------

def _lrs(module, make_sched, epochs, values=None, two_groups=True):
    ps = [module.ones(1, requires_grad=True) for _ in range(2)]     # fastgrad or torch
    groups = [{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.5}] if two_groups else ps
    opt = module.optim.SGD(groups, lr=0.1)
    sched = make_sched(module.optim.lr_scheduler, opt)
    out = [[g["lr"] for g in opt.param_groups]]
    for epoch in range(epochs):
        opt.step()            # no gradients: nothing moves, but torch wants this order
        if values is None:
            sched.step()
        else:
            sched.step(values[epoch])
        out.append([g["lr"] for g in opt.param_groups])
    assert sched.get_last_lr() == out[-1]
    return out


PLATEAU = [3.0, 2.0, 2.0, 2.0, 1.9999, 1.5, 1.5, 1.6, 1.7, 1.7, 1.8, 1.0, 1.0, 1.0, 1.0, 1.0]
SCHEDULES = [
    ("StepLR", lambda s, o: s.StepLR(o, step_size=3, gamma=0.5), None),
    ("ExponentialLR", lambda s, o: s.ExponentialLR(o, gamma=0.9), None),
    ("LambdaLR", lambda s, o: s.LambdaLR(o, lambda e: 1.0 / (1 + e)), None),
    ("LambdaLR-per-group", lambda s, o: s.LambdaLR(o, [lambda e: 0.95 ** e, lambda e: e + 1]),
     None),
    ("Plateau", lambda s, o: s.ReduceLROnPlateau(o, patience=1), PLATEAU),
    ("Plateau-abs-cooldown", lambda s, o: s.ReduceLROnPlateau(
        o, factor=0.5, patience=0, threshold=0.05, threshold_mode="abs", cooldown=2,
        min_lr=[0.02, 0.2]), PLATEAU),
    ("Plateau-max", lambda s, o: s.ReduceLROnPlateau(o, mode="max", factor=0.3, patience=2),
     [-v for v in PLATEAU]),
]


@pytest.mark.parametrize("name,make,values", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedules_match_torch(fg, name, make, values):
    torch = pytest.importorskip("torch")
    ours = _lrs(fg, make, 15, values)
    theirs = _lrs(torch, make, 15, values)
    assert len({tuple(r) for r in ours}) > 1          # the rate did change
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_step_lr_by_hand(fg):
    out = _lrs(fg, lambda s, o: s.StepLR(o, step_size=2, gamma=0.1), 5, two_groups=False)
    expected = [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    np.testing.assert_allclose([r[0] for r in out], expected, rtol=1e-12)


def test_plateau_by_hand(fg):
    # patience 1: the lr drops on the second epoch in a row without improvement
    out = _lrs(fg, lambda s, o: s.ReduceLROnPlateau(o, patience=1, factor=0.5),
               5, [1.0, 1.0, 1.0, 0.5, 0.5], two_groups=False)
    np.testing.assert_allclose([r[0] for r in out], [0.1, 0.1, 0.1, 0.05, 0.05, 0.05])


@pytest.mark.parametrize("index", [0, 4, 5])
def test_scheduler_state_dict_round_trip(fg, tmp_path, index):
    name, make, values = SCHEDULES[index]
    values = values or [0.0] * 12

    def run(resume_at):
        p = fg.tensor(np.ones(1), requires_grad=True)
        opt = fg.optim.SGD([{"params": [p]}, {"params": [fg.tensor(np.ones(1),
                                                                     requires_grad=True)]}],
                           lr=0.1)
        sched = make(fg.optim.lr_scheduler, opt)
        lrs = []
        for epoch in range(12):
            if epoch == resume_at:
                fg.save({"s": sched.state_dict(), "o": opt.state_dict()}, tmp_path / "s.fg")
                ckpt = fg.load(tmp_path / "s.fg")
                opt = fg.optim.SGD([{"params": [p]}, {"params": [fg.tensor(np.ones(1),
                                                                             requires_grad=True)]}],
                                   lr=0.7)
                opt.load_state_dict(ckpt["o"])
                sched = make(fg.optim.lr_scheduler, opt)
                sched.load_state_dict(ckpt["s"])
            if isinstance(sched, fg.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(values[epoch])
            else:
                sched.step()
            lrs.append([g["lr"] for g in opt.param_groups])
        return lrs

    assert run(resume_at=5) == run(resume_at=None)


def test_scheduler_argument_checks(fg):
    opt = fg.optim.SGD([fg.tensor(np.ones(1), requires_grad=True)], lr=0.1)
    s = fg.optim.lr_scheduler
    with pytest.raises(ValueError, match="factor should be < 1.0"):
        s.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode 'up' is unknown"):
        s.ReduceLROnPlateau(opt, mode="up")
    with pytest.raises(ValueError, match="threshold mode"):
        s.ReduceLROnPlateau(opt, threshold_mode="ratio")
    with pytest.raises(ValueError, match="expected 1 min_lrs"):
        s.ReduceLROnPlateau(opt, min_lr=[0.1, 0.2])
    with pytest.raises(ValueError, match="expected 1 lr_lambdas"):
        s.LambdaLR(opt, [lambda e: 1, lambda e: 2])
    with pytest.raises(ValueError, match="step_size"):
        s.StepLR(opt, step_size=0)
    with pytest.raises(TypeError, match="optimizer"):
        s.StepLR("not an optimizer", step_size=1)
    assert opt.param_groups[0]["lr"] == 0.1
    sched = s.StepLR(opt, step_size=1)
    with pytest.raises(ValueError, match="unexpected key"):
        sched.load_state_dict({"bogus": 1})
    assert math.isclose(opt.param_groups[0]["initial_lr"], 0.1)
