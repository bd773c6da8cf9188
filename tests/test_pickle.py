"""pickle, copy.copy and copy.deepcopy of tensors, Parameters, Modules and optimizers.

The rules are PyTorch's, checked against torch itself where it is importable:
pickle keeps values, dtype, shape, requires_grad, the class and the Python
attributes but not the graph nor .grad (a non-leaf comes back as a leaf);
copy.copy makes a new leaf over the same values; deepcopy copies the values
and (for a plain tensor) the grad, refuses a non-leaf, and keeps sharing
within one call.  Models and optimizers go through pickle to worker
processes (spawn, fork, joblib's loky) and train exactly as in-process.

Each core is a separate copy of the package, and pickle finds classes by
module path in sys.modules, which holds the copy imported last: every
pickling and unpickling here runs inside `same_copy()` (conftest.py), and the
tests check that what comes back belongs to the expected copy.
"""
import copy
import multiprocessing
import os
import pickle

import numpy as np
import pytest

PROTOCOLS = range(2, pickle.HIGHEST_PROTOCOL + 1)
ALL_PROTOCOLS = range(0, pickle.HIGHEST_PROTOCOL + 1)      # 0 and 1 work too, but are bigger


def roundtrip(same_copy, obj, protocol=pickle.HIGHEST_PROTOCOL):
    with same_copy():
        return pickle.loads(pickle.dumps(obj, protocol=protocol))


def dumps(same_copy, obj, protocol=pickle.HIGHEST_PROTOCOL):
    with same_copy():
        return pickle.dumps(obj, protocol=protocol)


def shares_memory(a, b):
    return np.shares_memory(a.numpy(), b.numpy())


def leaf_with_grad(fg, values):
    t = fg.tensor(values, requires_grad=True)
    (t * t).sum().backward()
    return t


# Classes that pickle must find by name: one per copy of the package, made
# on first use and stored as globals of this module under that name.

def tagged_class(fg):
    """A Tensor subclass whose __init__ takes other arguments than Tensor's."""
    name = "Tagged_" + fg.backend()
    if name not in globals():
        def __init__(self, tag, values):
            super(cls, self).__init__(values)
            self.tag = tag

        cls = type(name, (fg.Tensor,), {"__module__": __name__, "__qualname__": name,
                                        "__init__": __init__})
        globals()[name] = cls
    return globals()[name]


def net_class(fg):
    """A Module with a buffer (a tensor attribute that is not a Parameter) used in forward."""
    name = "Net_" + fg.backend()
    if name not in globals():
        nn = fg.nn

        def __init__(self):
            nn.Module.__init__(self)
            self.hidden = nn.Linear(3, 4, dtype=np.float64)
            self.out = nn.Linear(4, 2, dtype=np.float64)
            self.scale = fg.tensor([0.5, 2.0], dtype=np.float64)

        def forward(self, x):
            return self.out(self.hidden(x).tanh()) * self.scale

        cls = type(name, (nn.Module,), {"__module__": __name__, "__qualname__": name,
                                        "__init__": __init__, "forward": forward})
        globals()[name] = cls
    return globals()[name]


# ---------------------------------------------------------------------------
# Tensors through pickle
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ALL_PROTOCOLS)
@pytest.mark.parametrize("dtype, shape", [
    (np.float32, (2, 3)), (np.float64, ()), (np.float64, (0, 4)), (np.int64, (5,)),
    (np.bool_, (2, 2)),
])
def test_pickle_keeps_values_dtype_shape(fg, same_copy, rng, dtype, shape, protocol):
    t = fg.tensor((rng.standard_normal(shape) * 10).astype(dtype))
    back = roundtrip(same_copy, t, protocol)
    assert type(back) is fg.Tensor
    assert back.dtype == t.dtype and back.shape == t.shape
    np.testing.assert_array_equal(back.numpy(), t.numpy())
    assert not shares_memory(back, t)
    assert back.is_leaf and back.grad is None and not back.requires_grad


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pickle_keeps_requires_grad_and_drops_grad(fg, same_copy, dtype, protocol):
    t = leaf_with_grad(fg, np.array([1.5, -2.0, 3.25], dtype=dtype))
    back = roundtrip(same_copy, t, protocol)
    assert type(back) is fg.Tensor and back.requires_grad and back.is_leaf
    assert back.grad is None                  # as torch: the gradient is not pickled
    np.testing.assert_array_equal(back.numpy(), t.numpy())
    # a live leaf: it takes part in a new graph
    (back * 3).sum().backward()
    np.testing.assert_array_equal(back.grad.numpy(), np.full(3, 3, dtype=dtype))


def test_pickle_of_a_non_leaf_gives_a_leaf_without_the_graph(fg, same_copy, rng):
    x = fg.tensor(rng.standard_normal((300, 40)), requires_grad=True)
    y = (x * 2).sum(axis=1)
    y.retain_grad()
    y.sum().backward(retain_graph=True)
    data = dumps(same_copy, y)
    assert len(data) < 300 * 8 + 1000        # the values of y, not of x nor the graph
    with same_copy():
        back = pickle.loads(data)
    assert type(back) is fg.Tensor
    assert back.is_leaf and back.grad_fn is None and back.requires_grad and back.grad is None
    np.testing.assert_array_equal(back.numpy(), y.numpy())
    back.sum().backward()
    np.testing.assert_array_equal(back.grad.numpy(), np.ones(300))
    assert x.grad is not None and np.all(x.grad.numpy() == 2)   # x untouched by back's sweep


def test_pickle_of_parameters(fg, same_copy):
    nn = fg.nn
    p = nn.Parameter(np.array([[1.0, 2.0]]))
    p.grad = fg.tensor([[0.5, 0.5]], dtype=np.float64)
    frozen = nn.Parameter(np.array([3.0]), requires_grad=False)
    back, back_frozen = roundtrip(same_copy, (p, frozen))
    assert type(back) is nn.Parameter and type(back_frozen) is nn.Parameter
    assert back.requires_grad and not back_frozen.requires_grad
    assert back.grad is None
    np.testing.assert_array_equal(back.numpy(), p.numpy())
    np.testing.assert_array_equal(back_frozen.numpy(), frozen.numpy())


def test_pickle_of_a_tensor_subclass_keeps_class_and_attributes(fg, same_copy):
    cls = tagged_class(fg)
    t = cls("weights", [1.0, 2.0])
    t.notes = {"epoch": 3}
    back = roundtrip(same_copy, t)
    assert type(back) is cls
    assert back.tag == "weights" and back.notes == {"epoch": 3}
    np.testing.assert_array_equal(back.numpy(), t.numpy())
    plain = fg.tensor([1.0])
    plain.name = "x"
    assert roundtrip(same_copy, plain).name == "x"


def test_pickle_keeps_one_object_per_tensor(fg, same_copy):
    t = fg.tensor([1.0, 2.0], requires_grad=True)
    a, b = roundtrip(same_copy, [t, t])
    assert a is b


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pickled_size_is_the_size_of_the_values(fg, same_copy, protocol):
    t = fg.zeros(20000, dtype=np.float64)
    assert 160000 <= len(dumps(same_copy, t, protocol)) < 160000 + 1000
    # A part of a big array pickles its own elements only.
    big = np.arange(10**6, dtype=np.float64)
    for part in (fg.from_numpy(big)[10:20], fg.from_numpy(big[::100000])):
        data = dumps(same_copy, part, protocol)
        assert len(data) < 1000
        with same_copy():
            np.testing.assert_array_equal(pickle.loads(data).numpy(), part.numpy())


def test_pickle_of_a_transposed_tensor(fg, same_copy, rng):
    t = fg.tensor(rng.standard_normal((3, 5)), requires_grad=True).T
    back = roundtrip(same_copy, t)
    assert back.shape == (5, 3) and back.numpy().flags.c_contiguous
    np.testing.assert_array_equal(back.numpy(), t.numpy())


def test_out_of_band_buffers(fg, same_copy):
    t = fg.arange(50000, dtype=np.float64, requires_grad=True)
    buffers = []
    with same_copy():
        data = pickle.dumps(t, protocol=5, buffer_callback=buffers.append)
        back = pickle.loads(data, buffers=[bytes(b) for b in buffers])    # read-only memory
    assert len(data) < 1000 and len(buffers) == 1
    assert type(back) is fg.Tensor and back.requires_grad
    np.testing.assert_array_equal(back.numpy(), t.numpy())
    with fg.no_grad():
        back += 1.0                               # its values are its own, and writable
    assert back.numpy()[0] == 1.0 and t.numpy()[0] == 0.0


def test_a_pickle_names_no_core(both, resolving):
    """A pickle refers to fastgrad.tensor and the classes, never to a core's module."""
    for fg in both:
        nn = fg.nn
        model = nn.Sequential(nn.Linear(2, 2, dtype=np.float64))
        opt = fg.optim.Adam(model.parameters())
        model(fg.ones(1, 2, dtype=np.float64)).sum().backward()
        opt.step()
        with resolving(fg):
            data = pickle.dumps((model, opt, fg.tensor([1.0]) * 2))
        assert b"fastgrad.tensor" in data
        assert b"fastgrad._core" not in data and b"_tape" not in data


@pytest.mark.parametrize("direction", ["python->compiled", "compiled->python"])
def test_a_pickle_loads_on_the_other_core(both, resolving, direction, rng):
    python, compiled = both
    source, target = (python, compiled) if direction == "python->compiled" else (compiled, python)
    x = source.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    p = source.nn.Parameter(rng.standard_normal(3))
    with resolving(source):
        data = pickle.dumps((x, p, x * 2))
    with resolving(target):
        bx, bp, by = pickle.loads(data)
    assert type(bx) is target.Tensor and type(by) is target.Tensor
    assert type(bp) is target.nn.Parameter
    assert isinstance(bx, target._core_module.TensorBase)
    np.testing.assert_array_equal(bx.numpy(), x.numpy())
    np.testing.assert_array_equal(by.numpy(), (x * 2).numpy())
    assert bx.requires_grad and bp.requires_grad and by.is_leaf


def test_unpickling_refuses_bad_parts(fg):
    rebuild, args = fg.zeros(2).__reduce_ex__(4)
    assert type(rebuild(*args)) is fg.Tensor and rebuild(*args).shape == (2,)
    with pytest.raises(TypeError, match="ndarray"):
        rebuild(fg.Tensor, [1.0, 2.0], False)
    with pytest.raises(RuntimeError, match="floating point"):
        rebuild(fg.Tensor, np.arange(3), True)
    with pytest.raises(TypeError, match="not a subclass"):
        rebuild(dict, np.zeros(2), False)


def test_unpickling_refuses_a_class_of_the_other_copy(both):
    python, compiled = both
    for here, other in ((python, compiled), (compiled, python)):
        rebuild, _ = here.zeros(2).__reduce_ex__(4)
        with pytest.raises(TypeError, match="not a subclass"):
            rebuild(other.Tensor, np.zeros(2), False)


def test_the_core_storage_does_not_pickle_itself(fg):
    base = fg._core_module.TensorBase
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(base.__new__(base))


# ---------------------------------------------------------------------------
# copy.copy and copy.deepcopy
# ---------------------------------------------------------------------------

def test_copy_is_a_new_leaf_over_the_same_values(fg):
    t = leaf_with_grad(fg, [1.0, 2.0, 3.0])
    t.notes = ["a"]
    c = copy.copy(t)
    assert type(c) is fg.Tensor and c is not t
    assert c.is_leaf and c.requires_grad and c.grad is None
    assert shares_memory(c, t)
    version = t._version_counter
    with fg.no_grad():
        c[0] = 10.0
    assert t.numpy()[0] == 10.0
    assert t._version_counter == version + 1   # and the version counter, as torch's copy.copy
    assert c.notes is t.notes                  # a shallow copy shares the attributes
    p = fg.nn.Parameter(np.ones(2))
    assert type(copy.copy(p)) is fg.nn.Parameter and shares_memory(copy.copy(p), p)


def test_copy_of_a_non_leaf(fg):
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    c = copy.copy(y)
    assert c.is_leaf and c.grad_fn is None and c.requires_grad
    np.testing.assert_array_equal(c.numpy(), [3.0, 6.0])
    assert y.grad_fn == "mul"


def test_deepcopy_keeps_the_grad(fg):
    t = leaf_with_grad(fg, [1.0, -2.0])
    t.notes = ["a"]
    d = copy.deepcopy(t)
    assert type(d) is fg.Tensor and d.is_leaf and d.requires_grad
    np.testing.assert_array_equal(d.numpy(), t.numpy())
    np.testing.assert_array_equal(d.grad.numpy(), t.grad.numpy())
    assert not shares_memory(d, t) and not shares_memory(d.grad, t.grad)
    assert d.notes == ["a"] and d.notes is not t.notes
    frozen = fg.tensor(np.arange(3))
    assert copy.deepcopy(frozen).dtype == np.int64 and not copy.deepcopy(frozen).requires_grad


def test_deepcopy_of_a_parameter_leaves_the_grad_behind(fg):
    p = fg.nn.Parameter(np.array([1.0, 2.0]))
    p.grad = fg.tensor([0.5, 0.5], dtype=np.float64)
    d = copy.deepcopy(p)
    assert type(d) is fg.nn.Parameter and d.requires_grad and d.grad is None
    assert not shares_memory(d, p)
    frozen = fg.nn.Parameter(np.ones(2), requires_grad=False)
    assert not copy.deepcopy(frozen).requires_grad


def test_deepcopy_of_a_non_leaf_raises(fg):
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"graph leaves.*'mul'"):
        copy.deepcopy(y)
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy({"a": x, "b": y})
    assert copy.deepcopy(y.detach()).is_leaf


def test_deepcopy_keeps_sharing_within_one_call(fg):
    t = leaf_with_grad(fg, [1.0, 2.0])
    t.me = t
    a, b, g = copy.deepcopy([t, t, t.grad])
    assert a is b and a.grad is g and a.me is a
    nn = fg.nn
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    m = copy.deepcopy(model)
    assert m[0] is m[2] and m[0].weight is m[2].weight
    assert m[0].weight is not model[0].weight
    assert len(list(m.parameters())) == 2


def test_the_copies_agree_with_torch(fg, same_copy):
    torch = pytest.importorskip("torch")

    def cases(tensor, parameter):
        x = tensor([1.0, 2.0], requires_grad=True)
        (x * x).sum().backward()
        p = parameter(tensor([3.0, 4.0]))
        p.grad = tensor([1.0, 1.0])
        return {"leaf": x, "plain": tensor([1.0, 2.0]), "non-leaf": x * 2, "parameter": p,
                "frozen parameter": parameter(tensor([1.0]), requires_grad=False)}

    def describe(original, how, parameter, memory):
        try:
            out = {"pickle": lambda t: pickle.loads(pickle.dumps(t)),
                   "copy": copy.copy, "deepcopy": copy.deepcopy}[how](original)
        except RuntimeError:
            return "raises"
        # (a Parameter?, requires grad?, a leaf?, has a grad?, same memory?)
        return (isinstance(out, parameter), out.requires_grad, out.is_leaf, out.grad is not None,
                memory(out) == memory(original))

    ours = cases(lambda v, requires_grad=False: fg.tensor(v, dtype=np.float64,
                                                          requires_grad=requires_grad),
                 fg.nn.Parameter)
    theirs = cases(lambda v, requires_grad=False: torch.tensor(
        v, dtype=torch.float64, requires_grad=requires_grad), torch.nn.Parameter)
    for name in ours:
        for how in ("pickle", "copy", "deepcopy"):
            expected = describe(theirs[name], how, torch.nn.Parameter, lambda t: t.data_ptr())
            with same_copy():
                got = describe(ours[name], how, fg.nn.Parameter,
                               lambda t: t.numpy().__array_interface__["data"][0])
            assert got == expected, (name, how)


# ---------------------------------------------------------------------------
# Modules and optimizers
# ---------------------------------------------------------------------------

def make_data(fg, seed=0):
    rng = np.random.default_rng(seed)
    return (fg.tensor(rng.standard_normal((16, 3))), fg.tensor(rng.standard_normal((16, 2))))


def make_training(fg, optimizer, width=4):
    fg.manual_seed(11)
    nn = fg.nn
    layers = [nn.Linear(3, width, dtype=np.float64), nn.Tanh()]
    if width > 4:
        layers += [nn.Linear(width, width, dtype=np.float64), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(width, 2, dtype=np.float64))
    model.scale = fg.tensor([0.5, 2.0], dtype=np.float64)      # a buffer
    opt = {"sgd": lambda ps: fg.optim.SGD(ps, lr=0.1, momentum=0.9),
           "plain sgd": lambda ps: fg.optim.SGD(ps, lr=0.01),
           "adam": lambda ps: fg.optim.Adam(ps, lr=0.05),
           "rmsprop": lambda ps: fg.optim.RMSprop(ps, lr=0.01, centered=True),
           "adagrad": lambda ps: fg.optim.Adagrad(ps, lr=0.1)}[optimizer](model.parameters())
    x, y = make_data(fg)
    train(model, opt, x, y, 2)               # so that the optimizer has state
    return model, opt, x, y


def train(model, opt, x, y, steps):
    """Plain steps of mean squared error; returns the losses (floats)."""
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) * model.scale - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def values(model, opt):
    params = [p.numpy().copy() for p in model.parameters()]
    state = [{k: np.array(v) for k, v in opt.state[p].items()} for p in model.parameters()]
    return params, state


def assert_same_training(got, expected, rtol=0.0):
    (losses, (params, state)), (e_losses, (e_params, e_state)) = got, expected
    np.testing.assert_allclose(losses, e_losses, rtol=rtol, atol=0)
    for a, b in zip(params, e_params):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0)
    for a, b in zip(state, e_state):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=0)


def check_pair(fg, model, opt):
    """The optimizer points at the model's parameters, and all belong to fg."""
    params = list(model.parameters())
    assert len(opt.param_groups[0]["params"]) == len(params)
    assert all(a is b for a, b in zip(opt.param_groups[0]["params"], params))
    assert all(type(p) is fg.nn.Parameter for p in params)
    assert type(model.scale) is fg.Tensor
    assert all(any(key is p for p in params) for key in opt.state)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop", "adagrad"])
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_model_and_optimizer_copied_together_train_the_same(fg, same_copy, optimizer, how):
    model, opt, x, y = make_training(fg, optimizer)
    if how == "pickle":
        model2, opt2 = roundtrip(same_copy, (model, opt))
    else:
        model2, opt2 = copy.deepcopy((model, opt))
    check_pair(fg, model2, opt2)
    assert len(opt2.state) == len(opt.state) == 4
    assert all(p2 is not p for p2, p in zip(model2.parameters(), model.parameters()))
    got = train(model2, opt2, x, y, 3), values(model2, opt2)
    expected = train(model, opt, x, y, 3), values(model, opt)
    assert_same_training(got, expected)


def test_module_with_a_buffer_and_a_state_dict_round_trip(fg, same_copy):
    cls = net_class(fg)
    net = cls()
    x, _ = make_data(fg)
    back = roundtrip(same_copy, net)
    assert type(back) is cls and type(back.scale) is fg.Tensor
    np.testing.assert_array_equal(back.scale.numpy(), [0.5, 2.0])
    np.testing.assert_array_equal(back(x).numpy(), net(x).numpy())
    assert list(back.state_dict()) == list(net.state_dict())
    assert back.training and not roundtrip(same_copy, net.eval()).training


def test_pickled_model_size_is_about_its_values(fg, same_copy):
    nn = fg.nn
    model = nn.Sequential(nn.Linear(100, 200, dtype=np.float64), nn.ReLU(),
                          nn.Linear(200, 10, dtype=np.float64))
    model(fg.ones(1, 100, dtype=np.float64)).sum().backward()     # grads are not pickled
    nbytes = sum(p.numel() * 8 for p in model.parameters())
    assert nbytes <= len(dumps(same_copy, model)) < nbytes + 4000


def test_optimizer_alone_and_scheduler(fg, same_copy):
    model, opt, x, y = make_training(fg, "adam")
    sched = fg.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt2, sched2 = roundtrip(same_copy, (opt, sched))
    assert sched2.optimizer is opt2
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    for i, entry in opt.state_dict()["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(opt2.state_dict()["state"][i][key], value)


# ---------------------------------------------------------------------------
# Worker processes: multiprocessing (spawn, fork) and joblib (loky)
# ---------------------------------------------------------------------------

def train_in_worker(model, opt, x, y, steps):
    """Runs in the worker: train, then report the core and send everything back."""
    import fastgrad
    ours = all(isinstance(p, fastgrad.nn.Parameter) for p in model.parameters())
    losses = train(model, opt, x, y, steps)
    return fastgrad.backend(), ours, os.getpid(), losses, model, opt


def other_core(fg):
    if os.environ.get("FASTGRAD_TEST_PURE_ONLY") == "1":
        pytest.skip("FASTGRAD_TEST_PURE_ONLY=1: the compiled core is not under test")
    return "python" if fg.backend() == "compiled" else "compiled"


def check_worker_result(fg, result, expected_core, expected, rtol=0.0):
    core, ours, pid, losses, model, opt = result
    assert core == expected_core and ours
    assert pid != os.getpid()
    check_pair(fg, model, opt)                 # came back into the test's copy
    assert_same_training((losses, values(model, opt)), expected, rtol)


@pytest.mark.parametrize("start_method, child", [
    ("spawn", "same"), ("fork", "same"), ("spawn", "other"),
])
def test_training_in_a_worker_process(fg, same_copy, monkeypatch, start_method, child):
    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip("no %s start method here" % start_method)
    child_core = fg.backend() if child == "same" else other_core(fg)
    model, opt, x, y = make_training(fg, "adam")
    monkeypatch.setenv("FASTGRAD_BACKEND", child_core)     # what a spawned child imports
    context = multiprocessing.get_context(start_method)
    with same_copy(), context.Pool(1) as pool:               # a forked child inherits this copy
        # (a timeout: a worker that crashes would leave apply() waiting forever)
        result = pool.apply_async(train_in_worker, (model, opt, x, y, 4)).get(timeout=120)
    expected = train(model, opt, x, y, 4), values(model, opt)
    # the cores agree to 1e-12 in float64; one core agrees with itself exactly
    check_worker_result(fg, result, child_core, expected, rtol=0.0 if child == "same" else 1e-12)


@pytest.mark.parametrize("optimizer, width", [
    ("sgd", 4),
    # a weight of 1.3 MB: joblib sends arrays of over 1 MB to its workers as
    # read-only memory maps (plain SGD: an optimizer's state arrays would be too)
    ("plain sgd", 400),
])
def test_training_in_joblib_workers(fg, same_copy, monkeypatch, optimizer, width):
    joblib = pytest.importorskip("joblib")
    from joblib.externals.loky import get_reusable_executor
    model, opt, x, y = make_training(fg, optimizer, width)
    assert width == 4 or model[2].weight.numpy().nbytes > 10**6
    monkeypatch.setenv("FASTGRAD_BACKEND", fg.backend())
    # loky keeps its workers between calls: start fresh ones, which import
    # fastgrad with the variable set above, and stop them afterwards.
    get_reusable_executor(max_workers=1).shutdown(wait=True)
    try:
        with same_copy():
            results = joblib.Parallel(n_jobs=2, backend="loky")(
                joblib.delayed(train_in_worker)(model, opt, x, y, 3) for _ in range(2))
    finally:
        get_reusable_executor(max_workers=1).shutdown(wait=True)
    expected = train(model, opt, x, y, 3), values(model, opt)
    # joblib's workers run BLAS on one thread, which may sum a big matrix
    # product in another order than here
    for result in results:
        check_worker_result(fg, result, fg.backend(), expected, rtol=0.0 if width == 4 else 1e-12)
