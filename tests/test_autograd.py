"""The lectures' worked examples, autograd semantics, errors, and memory."""
import gc
import math
import os
import subprocess
import sys
import weakref

import numpy as np
import pytest


def sig(z):
    return 1.0 / (1.0 + math.exp(-z))


# --- the lectures' worked examples ------------------------------------------

def test_gates_add_then_multiply(fg):
    # f = (x + y) z at x=-2, y=5, z=-4: q = 3, f = -12; df/dx = df/dy = z = -4, df/dz = q = 3.
    x = fg.tensor(-2.0, requires_grad=True)
    y = fg.tensor(5.0, requires_grad=True)
    z = fg.tensor(-4.0, requires_grad=True)
    q = x + y
    f = q * z
    f.backward()
    assert f.item() == -12.0
    assert (x.grad.item(), y.grad.item(), z.grad.item()) == (-4.0, -4.0, 3.0)


def test_chain_reciprocal_of_one_plus_exp(fg):
    # m = -x, g = exp(m), h = g + 1, f = 1/h at x = 1: h = 1.37,
    # df/dh = -1/1.37^2 = -0.53 (upstream at h), df/dx = 0.20.
    x = fg.tensor(1.0, dtype=np.float64, requires_grad=True)
    m = -x
    g = m.exp()
    h = g + 1
    f = 1 / h
    for t in (m, g, h):
        t.retain_grad()
    f.backward()
    assert round(h.item(), 2) == 1.37
    assert round(h.grad.item(), 2) == -0.53
    assert round(g.grad.item(), 2) == -0.53
    assert round(m.grad.item(), 2) == -0.20
    assert round(x.grad.item(), 2) == 0.20
    # f is the sigmoid of x, so df/dx = s (1 - s) exactly.
    assert x.grad.item() == pytest.approx(sig(1.0) * (1 - sig(1.0)), rel=1e-14)
    assert f.item() == pytest.approx(sig(1.0), rel=1e-15)


def test_sigmoid_neuron_backward(fg):
    # z = b + W x with b = -2, W = [-1, 0.5, 10], x = [4, -2, 1]: z = 3;
    # y_hat = sigmoid(z), C = (y_hat - y)^2 with y = 1.
    b = fg.tensor([-2.0], dtype=np.float64, requires_grad=True)
    W = fg.tensor([[-1.0, 0.5, 10.0]], dtype=np.float64, requires_grad=True)
    x = fg.tensor([4.0, -2.0, 1.0], dtype=np.float64)
    y = fg.tensor([1.0], dtype=np.float64)
    z = W @ x + b
    y_hat = z.sigmoid()
    C = ((y_hat - y) ** 2).sum()
    C.backward()
    assert z.item() == 3.0
    s = sig(3.0)
    assert round(y_hat.item(), 2) == 0.95
    dC_dz = 2 * (s - 1) * s * (1 - s)          # chain: C' * sigma'
    assert b.grad.numpy() == pytest.approx([dC_dz], rel=1e-12)
    np.testing.assert_allclose(W.grad.numpy(), [[4 * dC_dz, -2 * dC_dz, dC_dz]], rtol=1e-12)
    assert round(dC_dz, 4) == -0.0043
    assert W.grad.shape == (1, 3) and b.grad.shape == (1,)


def test_weighted_sum_gradients_are_the_inputs(fg):
    # t_pred = x1 w1 + x2 w2 + b, L = (t_pred - t)^2: dL/dw_i = 2 (t_pred - t) x_i, dL/db = 2 (t_pred - t).
    w = fg.tensor([0.5, -1.0], dtype=np.float64, requires_grad=True)
    b = fg.tensor(0.25, dtype=np.float64, requires_grad=True)
    x = fg.tensor([2.0, 3.0], dtype=np.float64)
    t = 1.5
    pred = (x * w).sum() + b
    L = (pred - t) ** 2
    L.backward()
    err = (2.0 * 0.5 - 3.0 + 0.25) - t
    assert w.grad.numpy() == pytest.approx([2 * err * 2.0, 2 * err * 3.0])
    assert b.grad.item() == pytest.approx(2 * err)


# --- autograd semantics ----------------------------------------------------

def test_gradients_accumulate_and_can_be_reset(fg):
    x = fg.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    assert x.grad.numpy().tolist() == [3 + 2, 3 + 4]
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.numpy().tolist() == [3, 3]


def test_retain_graph_allows_a_second_backward(fg):
    x = fg.tensor(2.0, dtype=np.float64, requires_grad=True)
    y = x * x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.item() == 2 * 12.0
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_backward_with_explicit_gradient(fg):
    x = fg.tensor([1.0, 2.0, 3.0], dtype=np.float64, requires_grad=True)
    y = x * x
    y.backward(fg.tensor([1.0, 0.5, -1.0], dtype=np.float64))
    assert x.grad.numpy().tolist() == [2.0, 2.0, -6.0]


def test_grad_function_leaves_dot_grad_alone(fg):
    x = fg.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    y = fg.tensor([3.0, -1.0], dtype=np.float64, requires_grad=True)
    out = (x * y).sum()
    gx, gy = fg.grad(out, [x, y])
    assert gx.numpy().tolist() == [3.0, -1.0] and gy.numpy().tolist() == [1.0, 2.0]
    assert x.grad is None and y.grad is None
    assert not gx.requires_grad


def test_no_grad_and_detach_record_nothing(fg):
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    with fg.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    z = x * 2
    assert z.requires_grad and z.grad_fn == "mul" and not z.is_leaf


def test_dtype_of_gradient_follows_leaf(fg):
    a = fg.tensor([1.0, 2.0], dtype=np.float32, requires_grad=True)
    b = fg.tensor([3.0, 4.0], dtype=np.float64, requires_grad=True)
    out = a * b
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    assert a.grad.numpy().tolist() == [3.0, 4.0]


# --- errors: raised before anything changes ---------------------------------

def _snapshot(*tensors):
    return [(t.numpy().copy(), None if t.grad is None else t.grad.numpy().copy()) for t in tensors]


def _assert_unchanged(before, *tensors):
    for (values, grad), t in zip(before, tensors):
        np.testing.assert_array_equal(t.numpy(), values)
        if grad is None:
            assert t.grad is None
        else:
            np.testing.assert_array_equal(t.grad.numpy(), grad)


@pytest.mark.parametrize("case, error, words", [
    (lambda fg, a, b: a @ b, ValueError, ["matmul", "(3, 4)", "(5, 2)"]),
    (lambda fg, a, b: a + fg.ones(3, dtype=np.float64), ValueError, ["add", "(3, 4)", "(3,)"]),
    (lambda fg, a, b: a.reshape(5, 5), ValueError, ["reshape", "(3, 4)", "(5, 5)"]),
    (lambda fg, a, b: a.sum(axis=3), ValueError, ["sum", "axis 3"]),
    (lambda fg, a, b: a[5], IndexError, ["index", "5", "size 3"]),
    (lambda fg, a, b: a.permute(0, 0), ValueError, ["permute", "(0, 0)"]),
    (lambda fg, a, b: fg.cat([a, b]), ValueError, ["cat", "(3, 4)", "(5, 2)"]),
    (lambda fg, a, b: fg.stack([a, b]), ValueError, ["stack", "(3, 4)", "(5, 2)"]),
    (lambda fg, a, b: a.expand(2, 3), ValueError, ["expand", "(3, 4)", "(2, 3)"]),
    (lambda fg, a, b: a.transpose(0, 5), ValueError, ["transpose", "5"]),
    (lambda fg, a, b: fg.where(a > 0, a, b), ValueError, ["where", "(3, 4)", "(5, 2)"]),
    (lambda fg, a, b: a.float() @ fg.ones(4, 2, dtype=np.float64), TypeError, ["matmul", "float32", "float64", ".float()"]),
    (lambda fg, a, b: (a * 2).backward(), RuntimeError, ["backward", "scalar", "gradient"]),
    (lambda fg, a, b: (a * 2).backward(fg.ones(2, 2)), RuntimeError, ["backward", "(2, 2)", "(3, 4)"]),
    (lambda fg, a, b: fg.ones(2).sum().backward(), RuntimeError, ["requires_grad"]),
    (lambda fg, a, b: a.add_(1), RuntimeError, ["add_", "no_grad"]),
    (lambda fg, a, b: fg.zeros(0).max(), ValueError, ["max", "empty"]),
])
def test_bad_input_names_the_problem_and_changes_nothing(fg, case, error, words):
    a = fg.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    b = fg.tensor(np.ones((5, 2)), requires_grad=True)
    (a * b.sum()).sum().backward()          # give both a .grad to protect
    before = _snapshot(a, b)
    with pytest.raises(error) as info:
        case(fg, a, b)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    _assert_unchanged(before, a, b)


def test_in_place_change_of_a_saved_tensor_is_caught_and_nothing_is_written(fg):
    w = fg.tensor([1.0, 2.0, 3.0], dtype=np.float64, requires_grad=True)
    v = fg.tensor([0.5, 0.5, 0.5], dtype=np.float64, requires_grad=True)
    x = fg.tensor([1.0, 1.0, 1.0], dtype=np.float64)
    loss = (w * x).sum() + (v * v).sum()
    x.add_(1)
    with pytest.raises(RuntimeError, match="modified in place") as info:
        loss.backward()
    assert "mul" in str(info.value)
    assert w.grad is None and v.grad is None          # no partial gradients
    x.sub_(1)                                          # versions never go back: still an error
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_backward_twice_without_retain_graph_says_what_to_do(fg):
    x = fg.tensor(3.0, requires_grad=True)
    y = (x * x).exp()
    y.backward()
    g = x.grad.item()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()
    assert x.grad.item() == g


def test_grad_setter_checks_shape(fg):
    x = fg.ones(2, 3, requires_grad=True)
    with pytest.raises((ValueError, RuntimeError)) as info:
        x.grad = fg.ones(3, 2)
    assert "(3, 2)" in str(info.value) and "(2, 3)" in str(info.value)
    assert x.grad is None


# --- deep graphs and memory -------------------------------------------------

def test_hundred_thousand_node_chain(fg):
    x = fg.tensor(0.5, dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad.item() == 1.0
    del y
    # Dropping a deep chain must not overflow the C stack either.
    y = x
    for _ in range(100_000):
        y = y + 0.0
    del y


def test_intermediates_are_freed_after_backward(fg):
    # bigger than the graphs that keep their structure for fg.explain
    x = fg.tensor(np.linspace(0, 1, 5000), dtype=np.float64, requires_grad=True)
    h1 = x * 2
    h2 = h1.tanh()
    loss = h2.sum()
    refs = [weakref.ref(h1), weakref.ref(h2)]
    del h1, h2
    assert all(r() is not None for r in refs)     # the graph keeps them alive
    loss.backward()
    assert all(r() is None for r in refs)         # released by the sweep
    del loss


def test_a_small_graph_keeps_its_structure_after_backward_but_not_twice(fg):
    x = fg.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    h = x * 2
    loss = h.tanh().sum()
    loss.backward()
    assert loss.grad_fn == "sum"
    with pytest.raises(RuntimeError, match="already freed"):
        loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * (1 - np.tanh([2.0, 4.0]) ** 2))


def test_graph_is_freed_when_the_output_is_dropped(fg):
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    h = x.exp()
    ref = weakref.ref(h)
    out = (h * 3).sum()
    del h
    assert ref() is not None
    del out
    assert ref() is None


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_twenty_thousand_steps_do_not_grow_memory(fg):
    rng = np.random.default_rng(0)
    w = fg.tensor(rng.normal(size=(8, 4)), requires_grad=True)
    b = fg.tensor(np.zeros(4), requires_grad=True)
    x = fg.tensor(rng.normal(size=(16, 8)))

    def step():
        loss = ((x @ w + b).tanh() ** 2).mean()
        loss.backward()
        with fg.no_grad():
            w.data -= 0.01 * w.grad.numpy()
        w.grad = None
        b.grad = None

    for _ in range(2000):
        step()
    gc.collect()
    start = _rss_bytes()
    for _ in range(20_000):
        step()
    gc.collect()
    assert _rss_bytes() - start < 4 * 2**20


def test_training_loop_creates_no_reference_cycles(fg):
    w = fg.tensor(np.ones((3, 2)), requires_grad=True)
    x = fg.tensor(np.ones((4, 3)))
    gc.collect()
    gc.disable()
    try:
        for _ in range(200):
            loss = (x @ w).sigmoid().sum()
            loss.backward()
            w.grad = None
        del loss
        assert gc.collect() == 0
    finally:
        gc.enable()


# --- choosing the core ------------------------------------------------------

def _import_with(backend):
    env = dict(os.environ, FASTGRAD_BACKEND=backend)
    return subprocess.run([sys.executable, "-c", "import fastgrad as fg; print(fg.backend())"],
                          env=env, capture_output=True, text=True)


def test_backend_variable_chooses_the_core():
    result = _import_with("python")
    assert result.returncode == 0 and result.stdout.strip() == "python"


def test_unknown_backend_is_an_import_error_naming_the_variable():
    result = _import_with("fortran")
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "FASTGRAD_BACKEND" in result.stderr


@pytest.mark.skipif(os.environ.get("FASTGRAD_TEST_PURE_ONLY") == "1", reason="compiled core not under test")
def test_compiled_core_is_the_default():
    env = {k: v for k, v in os.environ.items() if k != "FASTGRAD_BACKEND"}
    result = subprocess.run([sys.executable, "-W", "error", "-c",
                             "import fastgrad as fg; print(fg.backend())"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "compiled"


# -- temporaries handed on (the compiled core's temporary elision) --------------------
def test_long_chains_of_temporaries_give_the_same_gradients(both):
    """(y * 0.9 + 0.1).tanh() on big arrays: the compiled core writes each step over
    the temporaries; gradients must equal the reference core's."""
    rng = np.random.default_rng(5)
    x0 = rng.uniform(-1, 1, 4096)
    grads = []
    for fg in both:
        x = fg.tensor(x0, requires_grad=True)
        y = x
        for _ in range(20):
            y = (y * 0.9 + 0.1).tanh()
            y = (-y + 0.5).exp() * 0.5 - 0.2
        total = sum(((y - k) * (y - k)).sum() for k in range(3))     # builtin sum: a running temp
        total.backward()
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)


def test_only_unnamed_temporaries_are_handed_on(fg):
    x = fg.tensor(np.linspace(-1, 1, 2048), requires_grad=True)
    named = x * 0.9
    y = named + 0.1                        # `named` has a name: its values stay
    z = (x * 0.9 + 0.1).tanh()             # the product and the sum have none
    s = z.tanh()
    w = fg.tanh(x * 0.5 + 0.1)             # function form: kept (cannot tell it apart)
    small = (fg.tensor(np.ones(8), requires_grad=True) * 2 + 1).tanh()
    named_neg = x * 0.3
    negated = -named_neg                   # an operator on a named tensor: kept
    named_exp = x * 0.2
    exped = named_exp.exp()                # a method on a named tensor: kept
    assert negated.requires_grad and exped.requires_grad
    assert np.allclose(named.numpy(), x.numpy() * 0.9) and y.requires_grad and s.requires_grad
    add = z._node()[1][0]
    mul = add._node()[1][0]
    kept = [w._node()[1][0], small._node()[1][0], small._node()[1][0]._node()[1][0]]
    if fg.backend() == "compiled":
        assert add._values_dropped and mul._values_dropped
        with pytest.raises(RuntimeError, match="were not kept"):
            add.numpy()
        assert "(not kept)" in fg.explain(z.sum())
    for t in kept + [named, named_neg, named_exp]:
        assert not getattr(t, "_values_dropped", False)
        t.numpy()


def test_compile_keeps_every_value_of_big_graphs(fg):
    rng = np.random.default_rng(6)
    w = fg.tensor(rng.uniform(-1, 1, 4096), requires_grad=True)
    step = fg.compile(lambda: ((w * 0.9 + 0.1).tanh() * 2.0 + 1.0).exp().sum())
    first = step()
    g_replay = w.grad.numpy().copy()
    w.grad = None
    eager = ((w * 0.9 + 0.1).tanh() * 2.0 + 1.0).exp().sum()
    eager.backward()
    np.testing.assert_allclose(first, eager.item(), rtol=1e-12)
    np.testing.assert_allclose(g_replay, w.grad.numpy(), rtol=1e-12)
    w.grad = None
    assert step() == pytest.approx(first, rel=1e-12)    # the replay reads every node's values
