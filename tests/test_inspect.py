"""explain, draw_graph, gradcheck and detect_anomaly on both cores, on the lectures' examples."""
import math
import re
import shutil

import numpy as np
import pytest


def scalar(fg, v):
    return fg.tensor(v, dtype=np.float64, requires_grad=True)


def rows(table):
    """explain's rows as dicts (continuation rows carry the node of the row above)."""
    lines = table.splitlines()
    header = lines[0]
    starts = [header.index(c) for c in ("node", "op", "value", "upstream", "local", "downstream")]
    out, current = [], None
    for line in lines[2:]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        if cells[0]:
            current = dict(zip(("node", "op", "value", "upstream"), cells[:4]), pairs=[])
            out.append(current)
        if cells[5]:
            local = cells[4].split("=", 1)[1].strip() if cells[4] else None
            target, down = cells[5][3:].split(":")
            current["pairs"].append((target.strip(), local, down.strip()))
    return out


def test_explain_gates(fg):
    """The (x + y) z example: q = 3, f = -12; df/dx = df/dy = -4, df/dz = 3."""
    x, y, z = scalar(fg, -2.0), scalar(fg, 5.0), scalar(fg, -4.0)
    q = x + y
    f = q * z
    table = fg.explain(f)
    by = {r["node"]: r for r in rows(table)}
    assert [r["node"] for r in rows(table)] == ["f", "q", "x", "y", "z"]
    assert by["f"]["op"] == "mul" and by["q"]["op"] == "add" and by["x"]["op"] == "leaf"
    assert float(by["q"]["value"]) == 3 and float(by["f"]["value"]) == -12
    assert float(by["q"]["upstream"]) == -4 and float(by["z"]["upstream"]) == 3
    assert float(by["x"]["upstream"]) == -4 and float(by["y"]["upstream"]) == -4
    assert by["f"]["pairs"] == [("q", "-4", "-4"), ("z", "3", "3")]
    assert x.grad is None and z.grad is None                 # nothing touched


def test_explain_sigmoid_chain_reproduces_the_lecture(fg):
    """f = 1 / (exp(-x) + 1) at x = 1: upstream -0.53 at h, downstream 0.20 at x."""
    x = scalar(fg, 1.0)
    m = -x
    g = m.exp()
    h = g + 1
    f = 1 / h
    table = fg.explain(f)
    by = {r["node"]: r for r in rows(table)}
    assert [r["node"] for r in rows(table)] == ["f", "h", "g", "m", "x"]
    assert round(float(by["h"]["upstream"]), 2) == -0.53
    assert round(float(by["m"]["upstream"]), 2) == -0.20
    assert round(float(by["x"]["upstream"]), 2) == 0.20
    assert by["m"]["pairs"][0][0] == "x" and round(float(by["m"]["pairs"][0][2]), 2) == 0.20
    # upstream x local = downstream on every row
    for r in rows(table):
        for target, local, down in r["pairs"]:
            assert math.isclose(float(r["upstream"]) * float(local), float(down), rel_tol=2e-3,
                                abs_tol=1e-4), (r, target)
    expected = math.exp(-1) / (1 + math.exp(-1)) ** 2
    assert math.isclose(float(by["x"]["upstream"]), expected, rel_tol=1e-3)


def test_explain_before_and_after_backward_agree(fg):
    w = [scalar(fg, v) for v in (2.0, -1.0, -3.0, -2.0, -3.0)]
    w0, x0, w1, x1, w2 = w
    f = 1 / (1 + (-(w0 * x0 + w1 * x1 + w2)).exp())
    before = fg.explain(f)
    assert all(t.grad is None for t in w)
    f.backward(retain_graph=True)
    after = fg.explain(f)
    assert before == after
    by = {r["node"]: r for r in rows(after)}
    for name, t in zip(("w0", "x0", "w1", "x1", "w2"), w):
        assert math.isclose(float(by[name]["upstream"]), t.grad.item(), rel_tol=1e-3)
    # the lecture's neuron: dw0 = -0.20, dx0 = 0.39, dw1 = -0.39, dx1 = -0.59, dw2 = 0.20
    assert [round(t.grad.item(), 2) for t in w] == [-0.2, 0.39, -0.39, -0.59, 0.2]


def test_explain_after_plain_backward_shows_that_sweep(fg):
    x = scalar(fg, 0.5)
    y = (x * x).exp()
    before = fg.explain(y)
    y.backward()
    assert fg.explain(y) == before           # what a learner does first works
    assert "exp" in fg.draw_graph(y)
    assert x.grad.item() == pytest.approx(2 * 0.5 * np.exp(0.25))


def test_explain_after_backward_of_a_big_graph_says_what_to_do(fg):
    x = fg.tensor(np.linspace(0, 1, 5000), dtype=np.float64, requires_grad=True)
    y = (x * x).exp().sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        fg.explain(y)


def test_explain_summarises_tensors_and_takes_names(fg):
    fg.manual_seed(0)
    lin = fg.nn.Linear(4, 3, dtype=np.float64)
    out = lin(fg.tensor(np.ones((2, 4)))).relu().sum()
    table = fg.explain(out, names={"weight": lin.weight})
    assert "linear" in table and "relu" in table and "sum" in table
    assert re.search(r"weight\s+leaf\s+3x4 \|[\d.]+\| \[", table)
    with pytest.raises(RuntimeError, match="gradient="):
        fg.explain(lin(fg.tensor(np.ones((2, 4)))))


def test_draw_graph_is_dot_naming_every_node(fg, tmp_path):
    x, y, z = scalar(fg, -2.0), scalar(fg, 5.0), scalar(fg, -4.0)
    q = x + y
    f = (q * z).exp() * 2.0
    text = fg.draw_graph(f)
    assert text.startswith("digraph") and text.count("{") == text.count("}")
    declared = set(re.findall(r"^\s*(\w+) \[label=", text, re.M))
    edges = re.findall(r"^\s*(\w+) -> (\w+)", text, re.M)
    assert len(declared) == 7 + 1           # five tensors, exp and the product; one constant
    for a, b in edges:
        assert a in declared and b in declared
    for name in ("x", "y", "z", "q", "mul", "exp", "add"):
        assert name in text
    assert "grad -4" in text and "value 3" in text
    path = tmp_path / "g.dot"
    assert fg.draw_graph(f, str(path)) == path.read_text()
    with pytest.raises(ValueError, match=r"\.dot, \.png or \.svg"):
        fg.draw_graph(f, str(tmp_path / "g.jpg"))


def test_draw_graph_renders_or_names_graphviz(fg, tmp_path, monkeypatch):
    x = scalar(fg, 1.0)
    f = 1 / ((-x).exp() + 1)
    if shutil.which("dot"):
        png = tmp_path / "g.png"
        fg.draw_graph(f, str(png))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setenv("PATH", str(tmp_path))          # no `dot` anywhere
    with pytest.raises(RuntimeError, match="Graphviz"):
        fg.draw_graph(f, str(tmp_path / "g.svg"))


OPS = [
    ("add", lambda a, b: a + b, [(3,), (3,)]),
    ("sub", lambda a, b: a - b, [(2, 3), (3,)]),
    ("mul", lambda a, b: a * b, [(3,), (3,)]),
    ("div", lambda a, b: a / (b * b + 1), [(3,), (3,)]),
    ("neg", lambda a: -a, [(3,)]),
    ("pow", lambda a: (a * a + 1) ** 1.5, [(3,)]),
    ("matmul", lambda a, b: a @ b, [(2, 3), (3, 2)]),
    ("exp", lambda a: a.exp(), [(3,)]),
    ("log", lambda a: (a * a + 1).log(), [(3,)]),
    ("sqrt", lambda a: (a * a + 1).sqrt(), [(3,)]),
    ("abs", lambda a: (a + 5).abs(), [(3,)]),
    ("sin", lambda a: a.sin(), [(3,)]),
    ("cos", lambda a: a.cos(), [(3,)]),
    ("tanh", lambda a: a.tanh(), [(3,)]),
    ("sigmoid", lambda a: a.sigmoid(), [(3,)]),
    ("relu", lambda a: (a + 5).relu(), [(3,)]),
    ("leaky_relu", lambda a: (a - 5).leaky_relu(0.1), [(3,)]),
    ("clip", lambda a: a.clip(-10, 10), [(3,)]),
    ("sum", lambda a: a.sum(0), [(2, 3)]),
    ("mean", lambda a: a.mean(1), [(2, 3)]),
    ("max", lambda a: a.amax(1), [(2, 3)]),
    ("min", lambda a: a.min(), [(2, 3)]),
    ("var", lambda a: a.var(0), [(3, 2)]),
    ("std", lambda a: a.std(), [(3, 2)]),
    ("logsumexp", lambda a: a.logsumexp(1), [(2, 3)]),
    ("softmax", lambda a: a.softmax(-1), [(2, 3)]),
    ("log_softmax", lambda a: a.log_softmax(0), [(2, 3)]),
    ("reshape", lambda a: a.reshape(3, 2) * 2, [(2, 3)]),
    ("transpose", lambda a: a.transpose(0, 1) * 2, [(2, 3)]),
    ("permute", lambda a: a.permute(2, 0, 1) * 2, [(2, 3, 2)]),
    ("squeeze", lambda a: a.squeeze(1) * 2, [(2, 1, 3)]),
    ("unsqueeze", lambda a: a.unsqueeze(0) * 2, [(3,)]),
    ("expand", lambda a: a.expand(2, 3) * 2, [(1, 3)]),
    ("index", lambda a: a[np.array([1, 0, 1])] * 2, [(3, 2)]),
    ("slice", lambda a: a[:, 1:] * 2, [(2, 3)]),
    ("cat", None, [(2, 3), (1, 3)]),
    ("stack", None, [(3,), (3,)]),
    ("where", None, [(3,), (3,)]),
    ("maximum", None, [(3,), (3,)]),
    ("minimum", None, [(3,), (3,)]),
    ("cast", lambda a: a.to(np.float64) * 2, [(3,)]),
    ("linear", None, [(2, 3), (4, 3), (4,)]),
    ("cross_entropy", None, [(3, 4)]),
]


def _op(fg, name, f):
    if f is not None:
        return f
    return {
        "cat": lambda a, b: fg.cat([a, b], dim=0),
        "stack": lambda a, b: fg.stack([a, b], dim=1),
        "where": lambda a, b: fg.where(np.array([True, False, True]), a, b),
        "maximum": lambda a, b: fg.maximum(a, b),
        "minimum": lambda a, b: fg.minimum(a, b),
        "linear": lambda x, w, b: fg.nn.functional.linear(x, w, b),
        "cross_entropy": lambda z: fg.nn.functional.cross_entropy(z, np.array([0, 3, 1])),
    }[name]


@pytest.mark.parametrize("name,f,shapes", OPS, ids=[o[0] for o in OPS])
def test_gradcheck_passes_on_every_op(fg, name, f, shapes):
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    # distinct values keep max/min/maximum away from ties
    inputs = [fg.tensor(rng.permutation(int(np.prod(s))).reshape(s) * 0.3 + rng.uniform(0, .1, s),
                        dtype=np.float64, requires_grad=True) for s in shapes]
    before = [x.numpy().copy() for x in inputs]
    assert fg.gradcheck(_op(fg, name, f), inputs) is True
    assert all(x.grad is None for x in inputs)
    assert all(np.array_equal(x.numpy(), b) for x, b in zip(inputs, before))


def test_gradcheck_catches_a_wrong_backward_and_leaves_inputs_alone(fg):
    class BadCube(fg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 2 * x ** 2          # should be 3 x^2

    x = fg.tensor(np.array([1.0, -2.0, 0.5]), requires_grad=True)
    x.grad = fg.tensor(np.array([7.0, 7.0, 7.0]))
    with pytest.raises(fg.GradcheckError) as info:
        fg.gradcheck(BadCube.apply, (x,))
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "input 0" in message and "analytic" in message and "numeric" in message
    assert "3 of 9" in message                       # the diagonal entries
    assert "analytic 8, numeric 12" in message       # x = -2: 2 * 4 against 3 * 4
    assert x.grad.numpy().tolist() == [7.0, 7.0, 7.0]
    assert x.numpy().tolist() == [1.0, -2.0, 0.5]


def test_gradcheck_float32_inputs_and_errors(fg):
    x = fg.tensor(np.array([0.3, 0.7], dtype=np.float32), requires_grad=True)
    assert fg.gradcheck(lambda t: (t * t).sin(), (x,))
    assert x.dtype == np.float32
    with pytest.raises(ValueError, match="requires grad"):
        fg.gradcheck(lambda t: t * 2, (fg.tensor(np.ones(2)),))


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")   # the forward
def test_detect_anomaly_names_log_of_zero(fg):
    x = fg.tensor(np.array([1.0, 0.0]), requires_grad=True)
    with fg.detect_anomaly():
        y = x.log()                                         # the culprit's line
        line = y_line = _line_of("y = x.log()")
        loss = y.sum()                                      # backward: 1 / 0 = inf
        with pytest.raises(RuntimeError) as info:
            loss.backward()
    message = str(info.value)
    assert "'log' produced inf" in message
    assert "test_inspect.py:%d" % y_line in message, message
    assert x.grad is None                                   # nothing was accumulated
    assert line


def _line_of(text):
    with open(__file__) as f:
        for number, line in enumerate(f, 1):
            if text in line and "_line_of" not in line:
                return number
    raise AssertionError(text)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")   # the forward
def test_detect_anomaly_names_zero_over_zero(fg):
    a = fg.tensor(np.array([0.0, 1.0]), requires_grad=True)
    b = fg.tensor(np.array([0.0, 2.0]), requires_grad=True)
    with fg.detect_anomaly():
        c = a / b                                           # 0/0
        with pytest.raises(RuntimeError, match=r"'div' produced (NaN|inf).*test_inspect\.py:\d+"):
            c.sum().backward()


def test_detect_anomaly_is_quiet_when_all_is_finite_and_restores_backward(fg):
    x = fg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    with fg.detect_anomaly():
        (x.log() * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.log([1.0, 2.0]) + 1)
    assert "backward" not in fg.Tensor.__dict__
    (x * 2).sum().backward()                                # plain backward again
    np.testing.assert_allclose(x.grad.numpy(), np.log([1.0, 2.0]) + 3)


# ---------------------------------------------------------------------------
# more of the lectures' examples, tensors, and the error paths
# ---------------------------------------------------------------------------

def test_explain_neuron_of_the_lecture(fg):
    """b = -2, W = [-1, 0.5, 10], x = [4, -2, 1], y = 1: z = 3, C = (sigmoid(z) - y)^2."""
    W = fg.tensor([[-1.0, 0.5, 10.0]], dtype=np.float64, requires_grad=True)
    b = fg.tensor([-2.0], dtype=np.float64, requires_grad=True)
    x = fg.tensor([[4.0], [-2.0], [1.0]], dtype=np.float64)
    y = fg.tensor([[1.0]], dtype=np.float64)
    z = W @ x + b
    yhat = z.sigmoid()
    C = ((yhat - y) ** 2).sum()
    by = {r["node"]: r for r in rows(fg.explain(C))}
    assert float(by["z"]["value"]) == 3 and float(by["yhat"]["value"]) == 0.9526
    # C'(yhat) = 2 (yhat - y); sigma'(z) = sigma (1 - sigma)
    assert float(by["yhat"]["upstream"]) == -0.09485
    assert by["yhat"]["pairs"] == [("z", "0.04518", "-0.004285")]
    steps = fg.inspect.sweep(C)
    grads = {id(s.tensor): s.upstream for s in steps}
    np.testing.assert_allclose(grads[id(W)], -0.0042854 * np.array([[4.0, -2.0, 1.0]]), rtol=1e-4)
    np.testing.assert_allclose(grads[id(b)], [-0.0042854], rtol=1e-4)
    assert W.grad is None and b.grad is None


def test_sweep_sums_broadcast_gradients_back_and_matches_backward(fg):
    a = fg.tensor([0.5, -1.0, 2.0], dtype=np.float64, requires_grad=True)
    W = fg.tensor(np.arange(6.0).reshape(2, 3) / 3, requires_grad=True)
    e = a.exp()
    loss = ((e + W) * W).sum()
    steps = fg.inspect.sweep(loss)
    for s in steps:                   # upstream x local = downstream where local is an array
        for x, local, down in zip(s.inputs, s.local, s.downstream):
            if local is not None and np.shape(local) == np.shape(down):
                np.testing.assert_allclose(s.upstream * local, down, rtol=1e-12)
    loss.backward(retain_graph=True)
    found = {id(s.tensor): s.upstream for s in steps}
    np.testing.assert_allclose(found[id(a)], a.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(found[id(W)], W.grad.numpy(), rtol=1e-12)
    assert found[id(a)].shape == (3,)


def test_explain_errors_name_the_problem(fg):
    with pytest.raises(RuntimeError, match="does not require grad"):
        fg.explain(fg.tensor([1.0, 2.0]).sum())
    x = fg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\)"):
        fg.explain(x * 2, gradient=np.ones(3))
    assert "->" in fg.explain(x * 2, gradient=np.ones(2))


def _fields(label):
    """The fields of a record label, split at unescaped '|'."""
    return re.split(r"(?<!\\)\|", label.replace("{", "").replace("}", ""))


def check_dot(text):
    """A small DOT checker: digraph, balanced braces, declared nodes, declared edge ends."""
    assert text.lstrip().startswith("digraph")
    depth = 0
    for ch in re.sub(r'"(\\.|[^"\\])*"', '""', text):        # braces outside strings
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    declared = set(re.findall(r"^\s*(\w+) \[label=", text, re.M))
    edges = re.findall(r"^\s*(\w+) -> (\w+)", text, re.M)
    assert edges and all(a in declared and b in declared for a, b in edges)
    return declared, edges


def test_draw_graph_tensor_labels_keep_their_fields(fg, tmp_path):
    W = fg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    x = fg.tensor(np.ones((3, 4)))
    out = (W @ x).tanh().sum()
    text = fg.draw_graph(out)
    declared, _ = check_dot(text)
    labels = dict(re.findall(r'^\s*(n\d+) \[label="(.*?)(?<!\\)"', text, re.M))
    assert labels
    for node, label in labels.items():
        fields = _fields(label)
        assert any(f.strip().startswith("value") for f in fields), label
        assert sum(f.strip().startswith("grad") for f in fields) == 1, label
    if shutil.which("dot"):
        svg = tmp_path / "g.svg"
        fg.draw_graph(out, svg)
        assert "<svg" in svg.read_text()


def test_draw_graph_without_graphviz_says_so(fg, tmp_path, monkeypatch):
    x = scalar(fg, 1.0)
    f = (x * 3).exp()
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(RuntimeError, match="Graphviz"):
        fg.draw_graph(f, tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()
    fg.draw_graph(f, tmp_path / "g.dot")                    # text needs no Graphviz
    check_dot((tmp_path / "g.dot").read_text())


def test_gradcheck_cast_and_under_no_grad(fg):
    x = fg.tensor(np.array([0.3, -0.7, 1.1]), requires_grad=True)
    # float64 -> float32 -> float64: a real cast node each way (steps big enough for float32)
    assert fg.gradcheck(lambda t: t.float().double() * 2, (x,), eps=1e-3, atol=1e-4)
    with fg.no_grad():
        assert fg.gradcheck(lambda t: (t * t).exp(), (x,))
    with pytest.raises(ValueError, match="eps"):
        fg.gradcheck(lambda t: t, (x,), eps=0)
    assert x.grad is None


def test_explain_names_the_parameters_of_the_callers_modules(fg):
    fg.manual_seed(0)
    model = fg.nn.Sequential(fg.nn.Linear(2, 3, dtype=np.float64), fg.nn.Sigmoid())
    loss = model(fg.tensor(np.ones((1, 2)))).sum()
    table = fg.explain(loss)
    assert "model.0.weight" in table and "model.0.bias" in table
    assert "-> 0.weight:" in fg.explain(loss, names=model)
    assert "model.0.bias" in fg.draw_graph(loss)
