"""More schedules (MultiStep, cosine, warm restarts, 1cycle, linear, sequential) and
optimizers (Adamax, NAdam, Adadelta, LBFGS) against torch, state_dict round trips,
argument checks."""
import numpy as np
import pytest


# --- learning-rate schedules ------------------------------------------------------------

def _lrs(module, make_sched, steps, optimizer="SGD", opt_kwargs=None):
    ps = [module.ones(1, requires_grad=True) for _ in range(2)]     # fastgrad or torch
    groups = [{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.5}]
    opt = getattr(module.optim, optimizer)(groups, lr=0.1, **(opt_kwargs or {}))
    sched = make_sched(module.optim.lr_scheduler, opt)

    def row():
        r = [g["lr"] for g in opt.param_groups]
        for g in opt.param_groups:
            if "momentum" in g:
                r.append(g["momentum"])
            if "betas" in g:
                r.extend(g["betas"])
        return r

    out = [row()]
    for _ in range(steps):
        opt.step()            # no gradients: nothing moves, but torch wants this order
        sched.step()
        out.append(row())
    assert list(sched.get_last_lr()) == out[-1][:2]
    return out


def _seq(s, o):
    return s.SequentialLR(o, [s.LinearLR(o, start_factor=0.1, total_iters=4),
                              s.CosineAnnealingLR(o, T_max=6, eta_min=0.01),
                              s.MultiStepLR(o, milestones=[2, 4], gamma=0.5)],
                          milestones=[5, 12])


SCHEDULES = [
    ("MultiStepLR", lambda s, o: s.MultiStepLR(o, milestones=[3, 7, 7, 12], gamma=0.5), {}),
    ("CosineAnnealingLR", lambda s, o: s.CosineAnnealingLR(o, T_max=7), {}),
    ("CosineAnnealingLR-eta_min", lambda s, o: s.CosineAnnealingLR(o, T_max=5, eta_min=0.02),
     {}),
    ("WarmRestarts", lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=4), {}),
    ("WarmRestarts-T_mult", lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2,
                                                                       eta_min=0.01), {}),
    ("LinearLR", lambda s, o: s.LinearLR(o), {}),
    ("LinearLR-down", lambda s, o: s.LinearLR(o, start_factor=1.0, end_factor=0.2,
                                              total_iters=8), {}),
    ("OneCycleLR-sgd", lambda s, o: s.OneCycleLR(o, max_lr=[1.0, 2.0], total_steps=20),
     {"momentum": 0.9}),
    ("OneCycleLR-adam-three-phase-linear", lambda s, o: s.OneCycleLR(
        o, max_lr=0.3, epochs=4, steps_per_epoch=5, pct_start=0.25, anneal_strategy="linear",
        three_phase=True, div_factor=10, final_div_factor=100), "Adam"),
    ("OneCycleLR-no-momentum", lambda s, o: s.OneCycleLR(o, max_lr=1.0, total_steps=20,
                                                         cycle_momentum=False), {}),
    ("SequentialLR", _seq, {}),
]


def _run_schedule(module, make, extra, steps=20):
    if extra == "Adam":
        return _lrs(module, make, steps, "Adam")
    return _lrs(module, make, steps, "SGD", extra)


@pytest.mark.parametrize("name,make,extra", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedules_match_torch(fg, name, make, extra):
    torch = pytest.importorskip("torch")
    ours = _run_schedule(fg, make, extra)
    theirs = _run_schedule(torch, make, extra)
    assert len({tuple(r) for r in ours}) > 3          # the rate did change
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_warm_restarts_by_hand(fg):
    out = _lrs(fg, lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=2), 4)
    np.testing.assert_allclose([r[0] for r in out], [0.1, 0.05, 0.1, 0.05, 0.1], atol=1e-15)


def test_warm_restarts_step_with_epoch_matches_torch(fg):
    torch = pytest.importorskip("torch")
    rows = []
    for module in (fg, torch):
        p = module.ones(1, requires_grad=True)
        opt = module.optim.SGD([p], lr=0.1)
        sched = module.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2)
        r = []
        for epoch in (0.5, 2.9, 3.0, 7.25, 20.0, 1.0):
            sched.step(epoch)
            r.append(opt.param_groups[0]["lr"])
        rows.append(r)
    np.testing.assert_allclose(rows[0], rows[1], rtol=1e-12)


@pytest.mark.parametrize("index", range(len(SCHEDULES)), ids=[s[0] for s in SCHEDULES])
def test_scheduler_state_dict_round_trip(fg, tmp_path, index):
    name, make, extra = SCHEDULES[index]

    def make_opt(lr):
        ps = [fg.tensor(np.ones(1), requires_grad=True) for _ in range(2)]
        groups = [{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.5}]
        if extra == "Adam":
            return fg.optim.Adam(groups, lr=lr)
        return fg.optim.SGD(groups, lr=lr, **extra)

    def run(resume_at):
        opt = make_opt(0.1)
        sched = make(fg.optim.lr_scheduler, opt)
        lrs = []
        for epoch in range(18):
            if epoch == resume_at:
                fg.save({"s": sched.state_dict(), "o": opt.state_dict()}, tmp_path / "s.fg")
                ckpt = fg.load(tmp_path / "s.fg")
                opt = make_opt(0.7)
                sched = make(fg.optim.lr_scheduler, opt)
                opt.load_state_dict(ckpt["o"])
                sched.load_state_dict(ckpt["s"])
            sched.step()
            lrs.append([g["lr"] for g in opt.param_groups])
        return lrs

    assert run(resume_at=7) == run(resume_at=None)


def test_scheduler_argument_checks(fg):
    p = fg.tensor(np.ones(1), requires_grad=True)
    opt = fg.optim.SGD([p], lr=0.1)
    s = fg.optim.lr_scheduler
    cases = [
        (lambda: s.MultiStepLR(opt, milestones=[2, 2.5]), "MultiStepLR: milestones"),
        (lambda: s.CosineAnnealingLR(opt, T_max=0), "CosineAnnealingLR: T_max.*0"),
        (lambda: s.CosineAnnealingWarmRestarts(opt, T_0=0), "WarmRestarts.*T_0.*0"),
        (lambda: s.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=0), "T_mult.*0"),
        (lambda: s.LinearLR(opt, start_factor=0), "LinearLR: start_factor.*0"),
        (lambda: s.LinearLR(opt, end_factor=1.5), "LinearLR: end_factor.*1.5"),
        (lambda: s.LinearLR(opt, total_iters=0), "LinearLR: total_iters.*0"),
        (lambda: s.OneCycleLR(opt, max_lr=1.0), "OneCycleLR: give either total_steps"),
        (lambda: s.OneCycleLR(opt, max_lr=1.0, total_steps=-3), "total_steps.*-3"),
        (lambda: s.OneCycleLR(opt, max_lr=1.0, total_steps=5, pct_start=1.5), "pct_start.*1.5"),
        (lambda: s.OneCycleLR(opt, max_lr=1.0, total_steps=5, anneal_strategy="exp"),
         "anneal_strategy.*exp"),
        (lambda: s.OneCycleLR(opt, max_lr=[1.0, 2.0], total_steps=5), "expected 1 values"),
        (lambda: s.SequentialLR(opt, [], []), "SequentialLR: expects at least one"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()
        assert opt.param_groups[0]["lr"] == 0.1
        assert "max_lr" not in opt.param_groups[0]
    other = fg.optim.SGD([fg.tensor(np.ones(1), requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="expected 0 milestones"):
        s.SequentialLR(other, [s.LinearLR(other)], [3])
    with pytest.raises(ValueError, match="scheduler 0 belongs to another optimizer"):
        s.SequentialLR(opt, [s.LinearLR(other)], [])
    assert opt.param_groups[0]["lr"] == 0.1
    ada = fg.optim.Adagrad([fg.tensor(np.ones(1), requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="cycle_momentum"):
        s.OneCycleLR(ada, max_lr=1.0, total_steps=5)
    assert "initial_lr" not in ada.param_groups[0]
    s.OneCycleLR(ada, max_lr=1.0, total_steps=5, cycle_momentum=False)


def test_one_cycle_refuses_to_step_past_the_end(fg):
    opt = fg.optim.SGD([fg.tensor(np.ones(1), requires_grad=True)], lr=0.1, momentum=0.9)
    sched = fg.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=3)
    for _ in range(3):
        sched.step()
    before = (sched.last_epoch, opt.param_groups[0]["lr"])
    with pytest.raises(ValueError, match="OneCycleLR: tried to step 4 times"):
        sched.step()
    assert (sched.last_epoch, opt.param_groups[0]["lr"]) == before


def test_scheduler_bad_state_dict_changes_nothing(fg):
    opt = fg.optim.SGD([fg.tensor(np.ones(1), requires_grad=True)], lr=0.1)
    s = fg.optim.lr_scheduler
    seq = _seq(s, opt)
    for _ in range(6):
        seq.step()
    good = seq.state_dict()
    bad = seq.state_dict()
    bad["_schedulers"][0]["last_epoch"] = 99
    bad["_schedulers"][2]["total_iters"] = "many"
    with pytest.raises(ValueError):
        seq.load_state_dict(bad)
    assert seq.state_dict() == good
    one = s.OneCycleLR(opt, max_lr=1.0, total_steps=10, cycle_momentum=False)
    sd = one.state_dict()
    sd["anneal_strategy"] = "exp"
    with pytest.raises(ValueError, match="anneal_strategy"):
        one.load_state_dict(sd)
    assert one.anneal_strategy == "cos"


# --- optimizers ------------------------------------------------------------------------

_r = np.random.default_rng(7)
X0 = _r.standard_normal((6, 3))
Y0 = _r.standard_normal((6, 2))
W0 = _r.standard_normal((3, 2)) * 0.5
B0 = _r.standard_normal(2) * 0.1
C0 = _r.standard_normal(4)            # a parameter that never gets a gradient

OPTIMIZERS = [
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adamax", dict(lr=0.05, maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=0.05, maximize=True)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
    ("Adadelta", dict(lr=0.5, maximize=True)),
]
OPT_IDS = ["%s-%s" % (name, "-".join("%s=%s" % kv for kv in kw.items()) or "defaults")
           for name, kw in OPTIMIZERS]


def _trajectory(module, make_opt, steps=10, dtype=np.float64, resume_at=None, tmp_path=None):
    is_torch = not hasattr(module, "BACKEND") and module.__name__ == "torch"
    if is_torch:
        td = module.float64 if dtype == np.float64 else module.float32
        X, Y = module.tensor(X0, dtype=td), module.tensor(Y0, dtype=td)
        ps = [module.tensor(a, dtype=td, requires_grad=True) for a in (W0, B0, C0)]
    else:
        X, Y = module.tensor(X0.astype(dtype)), module.tensor(Y0.astype(dtype))
        ps = [module.tensor(a.astype(dtype), requires_grad=True) for a in (W0, B0, C0)]
    w, b, c = ps
    opt = make_opt([{"params": [w, c]}, {"params": [b], "lr_scale": 1}])
    out = []
    for i in range(steps):
        if i == resume_at:
            module.save(opt.state_dict(), tmp_path / "opt.fg")
            opt = make_opt([{"params": [w, c]}, {"params": [b], "lr_scale": 1}])
            opt.load_state_dict(module.load(tmp_path / "opt.fg"))
        opt.zero_grad()
        loss = ((module.tanh(X @ w + b) - Y) ** 2).mean()
        loss.backward()
        opt.step()
        if is_torch:
            out.append(np.concatenate([w.detach().numpy().ravel(), b.detach().numpy().ravel()]))
        else:
            out.append(np.concatenate([w.numpy().ravel(), b.numpy().ravel()]))
    if not is_torch:
        np.testing.assert_array_equal(c.numpy(), C0.astype(dtype))   # no gradient: untouched
    return np.array(out)


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS, ids=OPT_IDS)
def test_trajectory_matches_torch(fg, name, kwargs):
    torch = pytest.importorskip("torch")
    ours = _trajectory(fg, lambda p: getattr(fg.optim, name)(p, **kwargs))
    theirs = _trajectory(torch, lambda p: getattr(torch.optim, name)(p, **kwargs))
    assert not np.allclose(ours[-1], np.concatenate([W0.ravel(), B0.ravel()]))   # it moved
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name,kwargs", [OPTIMIZERS[1], OPTIMIZERS[4], OPTIMIZERS[8]],
                         ids=[OPT_IDS[1], OPT_IDS[4], OPT_IDS[8]])
def test_float32_trajectory_matches_torch(fg, name, kwargs):
    torch = pytest.importorskip("torch")
    ours = _trajectory(fg, lambda p: getattr(fg.optim, name)(p, **kwargs), dtype=np.float32)
    theirs = _trajectory(torch, lambda p: getattr(torch.optim, name)(p, **kwargs),
                         dtype=np.float32)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("name,kwargs", [OPTIMIZERS[0], OPTIMIZERS[4], OPTIMIZERS[8]],
                         ids=[OPT_IDS[0], OPT_IDS[4], OPT_IDS[8]])
def test_state_dict_round_trip_mid_run(fg, tmp_path, name, kwargs):
    make = lambda p: getattr(fg.optim, name)(p, **kwargs)   # noqa: E731
    straight = _trajectory(fg, make)
    resumed = _trajectory(fg, make, resume_at=4, tmp_path=tmp_path)
    np.testing.assert_array_equal(straight, resumed)


@pytest.mark.parametrize("name", ["Adamax", "NAdam", "Adadelta"])
def test_bad_gradient_changes_nothing(fg, name):
    w = fg.tensor(W0.copy(), requires_grad=True)
    b = fg.tensor(B0.copy(), requires_grad=True)
    opt = getattr(fg.optim, name)([w, b], lr=0.1)
    w.grad = fg.tensor(np.ones_like(W0))
    b.grad = fg.tensor(np.ones_like(B0))
    opt.step()
    before = (w.numpy().copy(), b.numpy().copy(), opt.state_dict())
    version = w._version_counter
    w.grad = fg.tensor(np.ones_like(W0))
    b.grad = fg.tensor(np.ones_like(B0))
    b.grad.data = np.ones(5)         # rebinding .data skips the setter's shape check
    with pytest.raises(ValueError, match="%s: gradient of parameter 1 in group 0 has shape"
                       % name):
        opt.step()
    np.testing.assert_array_equal(w.numpy(), before[0])
    np.testing.assert_array_equal(b.numpy(), before[1])
    assert w._version_counter == version
    after = opt.state_dict()
    for i, entry in before[2]["state"].items():
        for k, v in entry.items():
            np.testing.assert_array_equal(after["state"][i][k], v)
    # a non-finite gradient with error_if_nonfinite, likewise
    opt2 = getattr(fg.optim, name)([w, b], lr=0.1, error_if_nonfinite=True)
    b.grad = fg.tensor(np.array([1.0, np.nan]))
    w.grad = fg.tensor(np.ones_like(W0))
    with pytest.raises(ValueError, match="non-finite"):
        opt2.step()
    np.testing.assert_array_equal(w.numpy(), before[0])
    assert not opt2.state


def test_step_bumps_version_and_updates_in_place(fg):
    for name in ("Adamax", "NAdam", "Adadelta"):
        w = fg.tensor(W0.copy(), requires_grad=True)
        buf = w.numpy()
        opt = getattr(fg.optim, name)([w])
        (w * w).sum().backward()
        v = w._version_counter
        opt.step()
        assert w._version_counter == v + 1
        assert w.numpy() is buf and not np.array_equal(buf, W0)


def test_optimizer_argument_checks(fg):
    w = fg.tensor(W0.copy(), requires_grad=True)
    cases = [
        (lambda: fg.optim.Adamax([w], lr=-1), "Adamax: Invalid learning rate: -1"),
        (lambda: fg.optim.Adamax([w], betas=(1.0, 0.9)), "Adamax: Invalid beta parameter at "
                                                          "index 0: 1.0"),
        (lambda: fg.optim.Adamax([w], eps=-1e-3), "Adamax: Invalid epsilon value"),
        (lambda: fg.optim.NAdam([w], momentum_decay=-0.1), "NAdam: Invalid momentum_decay"),
        (lambda: fg.optim.NAdam([w], weight_decay=-0.1), "NAdam: Invalid weight_decay"),
        (lambda: fg.optim.NAdam([w], betas=(0.9,)), "NAdam: Invalid betas"),
        (lambda: fg.optim.Adadelta([w], rho=1.5), "Adadelta: Invalid rho value: 1.5"),
        (lambda: fg.optim.Adadelta([w], lr=-0.5), "Adadelta: Invalid learning rate: -0.5"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()
    opt = fg.optim.NAdam([w])
    (w * w).sum().backward()
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["mu_product"] = np.array(np.nan)
    with pytest.raises(ValueError, match="mu_product"):
        opt.load_state_dict(sd)
    assert np.isfinite(opt.state[w]["mu_product"])


# --- LBFGS -----------------------------------------------------------------------------

def _lbfgs_run(module, steps=3, resume_at=None, tmp_path=None, **kwargs):
    is_torch = module.__name__ == "torch"
    if is_torch:
        X, Y = module.tensor(X0), module.tensor(Y0)
        w = module.tensor(W0, requires_grad=True)
        b = module.tensor(B0, requires_grad=True)
        c = module.tensor(C0, requires_grad=True)
    else:
        X, Y = module.tensor(X0), module.tensor(Y0)
        w, b, c = (module.tensor(a.copy(), requires_grad=True) for a in (W0, B0, C0))
    make = lambda: module.optim.LBFGS([w, b, c], **kwargs)   # noqa: E731
    opt = make()
    calls = []

    def closure():
        opt.zero_grad()
        loss = ((module.tanh(X @ w + b) - Y) ** 2).mean()
        loss.backward()
        calls.append(float(loss.detach() if is_torch else loss))
        return loss

    out, losses = [], []
    for i in range(steps):
        if i == resume_at:
            module.save(opt.state_dict(), tmp_path / "lbfgs.fg")
            opt = make()
            opt.load_state_dict(module.load(tmp_path / "lbfgs.fg"))
        step_loss = opt.step(closure)
        losses.append(float(step_loss.detach() if is_torch else step_loss))
        vals = [w, b] if not is_torch else [w.detach(), b.detach()]
        out.append(np.concatenate([np.asarray(v.numpy()).ravel()
                                   for v in vals]))
    return np.array(out), losses, calls


LBFGS_CONFIGS = [dict(), dict(lr=0.5, max_iter=7, history_size=3),
                 dict(max_iter=4, max_eval=3, tolerance_change=1e-4),
                 dict(line_search_fn="strong_wolfe"),
                 dict(lr=3.0, max_iter=6, history_size=2, line_search_fn="strong_wolfe"),
                 dict(lr=0.02, max_iter=6, line_search_fn="strong_wolfe")]


@pytest.mark.parametrize("kwargs", LBFGS_CONFIGS,
                         ids=["defaults", "history3", "max_eval", "wolfe", "wolfe-zoom",
                              "wolfe-extrapolate"])
def test_lbfgs_matches_torch(fg, kwargs):
    torch = pytest.importorskip("torch")
    ours, our_losses, our_calls = _lbfgs_run(fg, **kwargs)
    theirs, their_losses, their_calls = _lbfgs_run(torch, **kwargs)
    assert len(our_calls) == len(their_calls) > 3          # same number of evaluations
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-6)
    assert our_losses[-1] < our_losses[0]


def test_lbfgs_state_dict_round_trip(fg, tmp_path):
    kwargs = dict(lr=0.5, max_iter=5, history_size=3)
    straight = _lbfgs_run(fg, steps=4, **kwargs)
    resumed = _lbfgs_run(fg, steps=4, resume_at=2, tmp_path=tmp_path, **kwargs)
    np.testing.assert_array_equal(straight[0], resumed[0])
    assert straight[2] == resumed[2]


def test_lbfgs_checks(fg):
    w = fg.tensor(W0.copy(), requires_grad=True)
    with pytest.raises(ValueError, match="line_search_fn"):
        fg.optim.LBFGS([w], line_search_fn="backtracking")
    with pytest.raises(ValueError, match="LBFGS: Invalid learning rate"):
        fg.optim.LBFGS([w], lr=-1)
    with pytest.raises(ValueError, match="LBFGS: Invalid history_size: 0"):
        fg.optim.LBFGS([w], history_size=0)
    with pytest.raises(ValueError, match="parameter groups"):
        fg.optim.LBFGS([{"params": [w]}, {"params": [fg.tensor(B0, requires_grad=True)]}])
    opt = fg.optim.LBFGS([w])
    with pytest.raises(TypeError, match="closure"):
        opt.step()

    def bad_closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        w.grad.data = np.ones(5)          # a malformed gradient
        return loss

    v = w._version_counter
    with pytest.raises(ValueError, match="LBFGS: gradient of parameter 0 in group 0 has shape"):
        opt.step(bad_closure)
    np.testing.assert_array_equal(w.numpy(), W0)
    assert w._version_counter == v

    # in the line search: the first gradients are fine, a later one is not
    wolfe = fg.optim.LBFGS([w], line_search_fn="strong_wolfe")
    calls = []

    def late_bad_closure():
        wolfe.zero_grad()
        loss = ((w - 1.0) ** 2).sum()
        loss.backward()
        calls.append(1)
        if len(calls) == 2:
            w.grad.data = np.ones(5)
        return loss

    with pytest.raises(ValueError, match="has shape"):
        wolfe.step(late_bad_closure)
    np.testing.assert_array_equal(w.numpy(), W0)        # put back where the search started
