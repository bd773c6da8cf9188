"""Sequence layers: Embedding, LayerNorm, RNN / LSTM / GRU and their cells, attention.

Against PyTorch in float64 with PyTorch's weights copied in (outputs and the
gradients of the input, the initial states and every parameter to 1e-9),
against central finite differences on tiny cases, and the argument checks.
"""
import numpy as np
import pytest

TOL = 1e-9


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _torch():
    torch = pytest.importorskip("torch")
    return torch


def load_from_torch(model, tmodel):
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})


def close(a, b, what=""):
    """a: a torch tensor (the oracle), b: ours."""
    a = a.detach().numpy()
    b = b.numpy()
    assert a.shape == b.shape, (what, a.shape, b.shape)
    np.testing.assert_allclose(b, a, rtol=TOL, atol=TOL, err_msg=what)


def check_param_grads(model, tmodel):
    ours = dict(model.named_parameters())
    theirs = dict(tmodel.named_parameters())
    assert list(ours) == list(theirs)
    for name, p in theirs.items():
        assert ours[name].grad is not None, name
        close(p.grad, ours[name].grad, name)


def finite_difference_check(loss_fn, tensors, eps=1e-6, tol=1e-6):
    """Each tensor's .grad from loss_fn().backward() against central differences."""
    for t in tensors:
        t.grad = None
    loss_fn().backward()
    for t in tensors:
        analytic = t.grad.numpy().copy()
        numeric = np.zeros_like(analytic)
        flat = t.numpy().reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            t._bump_version()
            up = loss_fn().item()
            flat[i] = old - eps
            t._bump_version()
            down = loss_fn().item()
            flat[i] = old
            t._bump_version()
            numeric.reshape(-1)[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=tol, atol=tol)


def weighted_sum(x, seed):
    """A loss that weighs every output element differently (a plain sum hides errors)."""
    w = np.random.default_rng(seed).standard_normal(tuple(x.shape))
    if type(x).__module__.startswith("torch"):
        import torch
        w = torch.tensor(w)
    return (x * w).sum()


# ---------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------
def test_embedding_matches_torch_and_skips_the_padding_row(fg):
    torch = _torch()
    temb = torch.nn.Embedding(6, 3, padding_idx=2).double()
    emb = fg.nn.Embedding(6, 3, padding_idx=2, dtype=np.float64)
    assert np.all(emb.weight.numpy()[2] == 0)                     # PyTorch zeroes the row at init
    with torch.no_grad():
        temb.weight[2] = 0.5                                   # a non-zero padding row still reads
    load_from_torch(emb, temb)
    idx = np.array([[0, 2, 5], [2, 2, 1]])
    tout = temb(torch.tensor(idx))
    out = emb(fg.tensor(idx))
    close(tout, out)
    weighted_sum(tout, 1).backward()
    weighted_sum(out, 1).backward()
    close(temb.weight.grad, emb.weight.grad)
    assert np.all(emb.weight.grad.numpy()[2] == 0)


def test_embedding_padding_idx_negative_and_functional(fg):
    F = fg.nn.functional
    w = fg.tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    out = F.embedding(np.array([3, 1, 3]), w, padding_idx=-1)
    np.testing.assert_array_equal(out.numpy(), w.numpy()[[3, 1, 3]])
    out.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [[0] * 3, [1] * 3, [0] * 3, [0] * 3])
    assert fg.nn.Embedding(4, 2, padding_idx=-1).padding_idx == 3


def test_embedding_errors(fg):
    emb = fg.nn.Embedding(5, 2)
    with pytest.raises(IndexError, match="index 7 is out of range for 5 embeddings"):
        emb(np.array([1, 7]))
    with pytest.raises(IndexError, match="index -1"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="indices must be integers"):
        emb(fg.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="padding_idx 5 must be within num_embeddings"):
        fg.nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match="num_embeddings"):
        fg.nn.Embedding(-1, 2)


def test_embedding_finite_differences(fg):
    w = fg.tensor(np.random.default_rng(0).standard_normal((4, 2)), requires_grad=True)
    idx = np.array([[1, 1], [3, 0]])
    finite_difference_check(lambda: (fg.nn.functional.embedding(idx, w) ** 2).sum(), [w])


# ---------------------------------------------------------------------------
# LayerNorm
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape,affine,bias", [((4,), True, True), ((3, 4), True, False),
                                               ((4,), False, True)])
def test_layer_norm_matches_torch(fg, shape, affine, bias):
    torch = _torch()
    tln = torch.nn.LayerNorm(shape, eps=1e-5, elementwise_affine=affine, bias=bias).double()
    ln = fg.nn.LayerNorm(shape, eps=1e-5, elementwise_affine=affine, bias=bias, dtype=np.float64)
    with torch.no_grad():
        for p in tln.parameters():
            p.normal_()
    load_from_torch(ln, tln)
    x = np.random.default_rng(3).standard_normal((2, 3, 4)) * 3 + 2
    tx = torch.tensor(x, requires_grad=True)
    fx = fg.tensor(x, requires_grad=True)
    tout, out = tln(tx), ln(fx)
    close(tout, out)
    weighted_sum(tout, 4).backward()
    weighted_sum(out, 4).backward()
    close(tx.grad, fx.grad)
    check_param_grads(ln, tln)


def test_layer_norm_is_stable_with_a_large_mean(fg):
    x = np.array([[1e8 + 1.0, 1e8 - 1.0, 1e8 + 2.0, 1e8 - 2.0]])
    out = fg.nn.functional.layer_norm(fg.tensor(x), 4, eps=0.0)
    centred = x - x.mean()
    np.testing.assert_allclose(out.numpy(), centred / np.sqrt((centred ** 2).mean()), rtol=1e-9)


def test_layer_norm_finite_differences(fg):
    rng = np.random.default_rng(5)
    x = fg.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    w = fg.tensor(rng.standard_normal(3), requires_grad=True)
    b = fg.tensor(rng.standard_normal(3), requires_grad=True)
    F = fg.nn.functional
    finite_difference_check(lambda: weighted_sum(F.layer_norm(x, (3,), w, b), 6), [x, w, b])


def test_layer_norm_errors(fg):
    ln = fg.nn.LayerNorm((3, 4))
    with pytest.raises(ValueError, match=r"shape \(2, 4, 3\) does not end in normalized_shape "
                                         r"\(3, 4\)"):
        ln(fg.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="weight must have normalized_shape"):
        fg.nn.functional.layer_norm(fg.zeros(2, 3), (3,), fg.ones(4))
    with pytest.raises(TypeError, match="normalized_shape"):
        fg.nn.LayerNorm("a")
    assert [n for n, _ in fg.nn.LayerNorm(3, bias=False).named_parameters()] == ["weight"]
    assert list(fg.nn.LayerNorm(3, elementwise_affine=False).parameters()) == []


# ---------------------------------------------------------------------------
# RNN, LSTM, GRU against PyTorch
# ---------------------------------------------------------------------------
RNN_CASES = [
    ("RNN", dict()),
    ("RNN", dict(nonlinearity="relu", num_layers=2, bias=False)),
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(batch_first=True, bias=False)),
    ("GRU", dict()),
    ("GRU", dict(num_layers=2, batch_first=True, bidirectional=True)),
]


def _rnn_pair(fg, torch, kind, kwargs, input_size=3, hidden=4):
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(input_size, hidden, **kwargs).double()
    m = getattr(fg.nn, kind)(input_size, hidden, dtype=np.float64, **kwargs)
    load_from_torch(m, tm)
    return m, tm


@pytest.mark.parametrize("kind,kwargs", RNN_CASES,
                         ids=["%s-%s" % (k, "-".join("%s=%s" % i for i in kw.items()))
                              for k, kw in RNN_CASES])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
def test_recurrent_layers_match_torch(fg, kind, kwargs, with_state):
    torch = _torch()
    m, tm = _rnn_pair(fg, torch, kind, kwargs)
    rng = np.random.default_rng(7)
    T, N = 5, 2
    x = rng.standard_normal((N, T, 3) if kwargs.get("batch_first") else (T, N, 3))
    layers = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    tx, fx = torch.tensor(x, requires_grad=True), fg.tensor(x, requires_grad=True)
    targs, fargs, states = (), (), []
    if with_state:
        h0 = rng.standard_normal((layers, N, 4))
        th, fh = torch.tensor(h0, requires_grad=True), fg.tensor(h0, requires_grad=True)
        states.append((th, fh))
        if kind == "LSTM":
            c0 = rng.standard_normal((layers, N, 4))
            tc, fc = torch.tensor(c0, requires_grad=True), fg.tensor(c0, requires_grad=True)
            states.append((tc, fc))
            targs, fargs = ((th, tc),), ((fh, fc),)
        else:
            targs, fargs = (th,), (fh,)
    tout, thn = tm(tx, *targs)
    out, hn = m(fx, *fargs)
    close(tout, out, "output")
    if kind == "LSTM":
        close(thn[0], hn[0], "h_n")
        close(thn[1], hn[1], "c_n")
        tloss = weighted_sum(tout, 1) + weighted_sum(thn[0], 2) + weighted_sum(thn[1], 3)
        loss = weighted_sum(out, 1) + weighted_sum(hn[0], 2) + weighted_sum(hn[1], 3)
    else:
        close(thn, hn, "h_n")
        tloss = weighted_sum(tout, 1) + weighted_sum(thn, 2)
        loss = weighted_sum(out, 1) + weighted_sum(hn, 2)
    tloss.backward()
    loss.backward()
    close(tx.grad, fx.grad, "input grad")
    for t, f in states:
        close(t.grad, f.grad, "state grad")
    check_param_grads(m, tm)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recurrent_layers_unbatched_match_torch(fg, kind):
    torch = _torch()
    m, tm = _rnn_pair(fg, torch, kind, dict(num_layers=2))
    x = np.random.default_rng(8).standard_normal((4, 3))
    tout, thn = tm(torch.tensor(x))
    out, hn = m(fg.tensor(x))
    close(tout, out)
    if kind == "LSTM":
        assert tuple(hn[0].shape) == tuple(hn[1].shape) == (2, 4)
        close(thn[1], hn[1])
        thn, hn = thn[0], hn[0]
    close(thn, hn)


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch(fg, kind, batched):
    torch = _torch()
    torch.manual_seed(1)
    tm = getattr(torch.nn, kind)(3, 4).double()
    m = getattr(fg.nn, kind)(3, 4, dtype=np.float64)
    load_from_torch(m, tm)
    rng = np.random.default_rng(9)
    shape = (2, 3) if batched else (3,)
    hshape = (2, 4) if batched else (4,)
    x = rng.standard_normal(shape)
    h = rng.standard_normal(hshape)
    tx, fx = torch.tensor(x, requires_grad=True), fg.tensor(x, requires_grad=True)
    th, fh = torch.tensor(h, requires_grad=True), fg.tensor(h, requires_grad=True)
    if kind == "LSTMCell":
        c = rng.standard_normal(hshape)
        tc, fc = torch.tensor(c, requires_grad=True), fg.tensor(c, requires_grad=True)
        (t1, t2), (f1, f2) = tm(tx, (th, tc)), m(fx, (fh, fc))
        close(t1, f1)
        close(t2, f2)
        (weighted_sum(t1, 1) + weighted_sum(t2, 2)).backward()
        (weighted_sum(f1, 1) + weighted_sum(f2, 2)).backward()
        close(tc.grad, fc.grad)
        h1, c1 = m(fx)                                          # zero state by default
        assert tuple(h1.shape) == hshape
    else:
        tout, out = tm(tx, th), m(fx, fh)
        close(tout, out)
        weighted_sum(tout, 1).backward()
        weighted_sum(out, 1).backward()
        close(tm(tx), m(fx))
    close(tx.grad, fx.grad)
    close(th.grad, fh.grad)
    check_param_grads(m, tm)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recurrent_layers_finite_differences(fg, kind):
    fg.manual_seed(0)
    m = getattr(fg.nn, kind)(2, 2, dtype=np.float64)
    x = fg.tensor(np.random.default_rng(10).standard_normal((3, 1, 2)), requires_grad=True)

    def loss():
        out, hn = m(x)
        return weighted_sum(out, 11) + weighted_sum(hn[1] if kind == "LSTM" else hn, 12)

    finite_difference_check(loss, [x] + list(m.parameters()))


def test_recurrent_state_dict_round_trip_with_torch(fg):
    torch = _torch()
    fg.manual_seed(3)
    m = fg.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    tm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    tm.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})
    back = fg.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    back.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    for (k, a), (k2, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(4).standard_normal((3, 2, 3))
    close(tm(torch.tensor(x))[0], back(fg.tensor(x))[0])


def test_recurrent_init_follows_torch(fg):
    fg.manual_seed(0)
    m = fg.nn.GRU(3, 16, num_layers=2)
    names = [n for n, _ in m.named_parameters()]
    assert names == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                     "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"]
    assert m.weight_ih_l0.shape == (48, 3) and m.weight_ih_l1.shape == (48, 16)
    for p in m.parameters():
        assert np.all(np.abs(p.numpy()) <= 0.25) and p.numpy().std() > 0.05


def test_recurrent_dropout_only_between_layers_in_training(fg):
    fg.manual_seed(0)
    m = fg.nn.LSTM(3, 4, num_layers=2, dropout=0.5, dtype=np.float64)
    x = fg.tensor(np.random.default_rng(5).standard_normal((4, 2, 3)))
    m.eval()
    a, b = m(x)[0].numpy(), m(x)[0].numpy()
    np.testing.assert_array_equal(a, b)
    m.train()
    fg.manual_seed(1)
    c = m(x)[0].numpy()
    fg.manual_seed(1)
    np.testing.assert_array_equal(c, m(x)[0].numpy())           # reproducible under the seed
    assert not np.allclose(a, c)
    # one layer: nothing lies between layers, so training changes nothing
    with pytest.warns(UserWarning, match="dropout is applied between stacked layers only"):
        one = fg.nn.GRU(3, 4, dropout=0.5, dtype=np.float64)
    y1 = one(x)[0].numpy()
    one.eval()
    np.testing.assert_array_equal(y1, one(x)[0].numpy())


def test_recurrent_argument_errors(fg):
    nn = fg.nn
    lstm = nn.LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match="input_size. Expected 3, got 5"):
        lstm(fg.zeros(2, 1, 5))
    with pytest.raises(ValueError, match="2 \\(unbatched\\) or 3 dimensions, got shape \\(3,\\)"):
        lstm(fg.zeros(3))
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(2, 1, 4\), got \(1, 1, 4\)"):
        lstm(fg.zeros(2, 1, 3), (fg.zeros(1, 1, 4), fg.zeros(2, 1, 4)))
    with pytest.raises(ValueError, match=r"expected c_0 of shape \(2, 1, 4\)"):
        lstm(fg.zeros(2, 1, 3), (fg.zeros(2, 1, 4), fg.zeros(2, 1, 5)))
    with pytest.raises(TypeError, match="LSTM: hx must be a tuple"):
        lstm(fg.zeros(2, 1, 3), fg.zeros(2, 1, 4))
    with pytest.raises(TypeError, match="GRU: hx must be a tensor"):
        nn.GRU(3, 4)(fg.zeros(2, 1, 3), (fg.zeros(1, 1, 4),))
    with pytest.raises(ValueError, match="LSTM: the input sequence is empty"):
        lstm(fg.zeros(0, 2, 3))
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be positive"):
        nn.GRU(3, 0)
    with pytest.raises(ValueError, match="probability"):
        nn.LSTM(3, 4, dropout=1.5)
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
    cell = nn.GRUCell(3, 4)
    with pytest.raises(ValueError, match="GRUCell: input has inconsistent input_size: got 2"):
        cell(fg.zeros(5, 2))
    with pytest.raises(ValueError, match=r"GRUCell: expected a hidden state of shape \(5, 4\)"):
        cell(fg.zeros(5, 3), fg.zeros(4, 4))
    with pytest.raises(ValueError, match="LSTMCell: expected input of 1 \\(unbatched\\) or 2"):
        nn.LSTMCell(3, 4)(fg.zeros(1, 1, 3))


# ---------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------
SDPA_CASES = ["plain", "bool-mask", "float-mask", "causal", "scale"]


@pytest.mark.parametrize("case", SDPA_CASES)
def test_scaled_dot_product_attention_matches_torch(fg, case):
    torch = _torch()
    rng = np.random.default_rng(12)
    q = rng.standard_normal((2, 3, 4, 5))
    k = rng.standard_normal((2, 3, 6 if case != "causal" else 4, 5))
    v = rng.standard_normal((2, 3, k.shape[2], 3))
    kwargs, tkwargs = {}, {}
    if case == "bool-mask":
        mask = rng.random((4, k.shape[2])) > 0.3
        mask[:, 0] = True                                       # every row attends somewhere
        kwargs["attn_mask"], tkwargs["attn_mask"] = mask, torch.tensor(mask)
    elif case == "float-mask":
        mask = rng.standard_normal((2, 1, 4, k.shape[2]))
        kwargs["attn_mask"], tkwargs["attn_mask"] = mask, torch.tensor(mask)
    elif case == "causal":
        kwargs["is_causal"] = tkwargs["is_causal"] = True
    elif case == "scale":
        kwargs["scale"] = tkwargs["scale"] = 0.3
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    fq, fk, fv = (fg.tensor(a, requires_grad=True) for a in (q, k, v))
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **tkwargs)
    out = fg.nn.functional.scaled_dot_product_attention(fq, fk, fv, **kwargs)
    close(tout, out)
    weighted_sum(tout, 13).backward()
    weighted_sum(out, 13).backward()
    for t, f in ((tq, fq), (tk, fk), (tv, fv)):
        close(t.grad, f.grad)


def test_scaled_dot_product_attention_dropout_and_errors(fg):
    F = fg.nn.functional
    rng = np.random.default_rng(14)
    q, k, v = (fg.tensor(rng.standard_normal((2, 4, 3))) for _ in range(3))
    plain = F.scaled_dot_product_attention(q, k, v).numpy()
    fg.manual_seed(0)
    dropped = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy()
    assert not np.allclose(plain, dropped)
    assert np.all(F.scaled_dot_product_attention(q, k, v, dropout_p=1.0).numpy() == 0)
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((4, 4), bool), is_causal=True)
    with pytest.raises(ValueError, match="query and key must have the same feature size"):
        F.scaled_dot_product_attention(q, fg.zeros(2, 4, 5), v)
    with pytest.raises(ValueError, match="key and value must have the same length"):
        F.scaled_dot_product_attention(q, k, fg.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((3, 4), bool))
    with pytest.raises(TypeError, match="attn_mask must be bool or floating point"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((4, 4), np.int64))


def _mha_pair(fg, torch, **kwargs):
    torch.manual_seed(2)
    tm = torch.nn.MultiheadAttention(8, 2, **kwargs).double()
    m = fg.nn.MultiheadAttention(8, 2, dtype=np.float64, **kwargs)
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(0.1 * torch.randn_like(p))                   # non-zero biases too
    load_from_torch(m, tm)
    return m, tm


MHA_CASES = ["self", "self-causal-padding", "self-batch-first", "self-unbatched", "cross",
             "batch-first", "unbatched",
             "per-head-weights", "float-masks", "3d-mask", "kdim-vdim", "no-bias", "no-weights"]


@pytest.mark.parametrize("case", MHA_CASES)
def test_multihead_attention_matches_torch(fg, case):
    torch = _torch()
    kwargs = {}
    bf = case.endswith("batch-first")
    if bf:
        kwargs["batch_first"] = True
    if case == "kdim-vdim":
        kwargs.update(kdim=5, vdim=3)
    if case == "no-bias":
        kwargs["bias"] = False
    m, tm = _mha_pair(fg, torch, **kwargs)
    rng = np.random.default_rng(15)
    L, S, N = 4, 4 if case.startswith("self") else 6, 3
    q = rng.standard_normal((N, L, 8) if bf else (L, 8) if case.endswith("unbatched")
                            else (L, N, 8))
    kv_shape = list(q.shape)
    kv_shape[1 if bf else 0] = S
    k = rng.standard_normal(kv_shape[:-1] + [kwargs.get("kdim", 8)])
    v = rng.standard_normal(kv_shape[:-1] + [kwargs.get("vdim", 8)])
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    fq, fk, fv = (fg.tensor(a, requires_grad=True) for a in (q, k, v))
    if case.startswith("self"):
        tk = tv = tq
        fk = fv = fq
    call, tcall = {}, {}
    if case == "self-causal-padding":
        causal = np.triu(np.ones((L, S), bool), 1)
        padding = np.zeros((N, S), bool)
        padding[1, 2:] = True
        call = dict(attn_mask=causal, key_padding_mask=padding, is_causal=True)
        tcall = dict(attn_mask=torch.tensor(causal), key_padding_mask=torch.tensor(padding),
                     is_causal=True)
    elif case == "per-head-weights":
        call = tcall = dict(average_attn_weights=False)
    elif case == "float-masks":
        am, kp = rng.standard_normal((L, S)), rng.standard_normal((N, S))
        call = dict(attn_mask=am, key_padding_mask=kp)
        tcall = dict(attn_mask=torch.tensor(am), key_padding_mask=torch.tensor(kp))
    elif case == "3d-mask":
        am = rng.random((N * 2, L, S)) > 0.5
        am[..., 0] = False
        call, tcall = dict(attn_mask=am), dict(attn_mask=torch.tensor(am))
    elif case == "no-weights":
        call = tcall = dict(need_weights=False)
    tout, tw = tm(tq, tk, tv, **tcall)
    out, w = m(fq, fk, fv, **call)
    close(tout, out, "output")
    if tw is None:
        assert w is None
    else:
        close(tw, w, "weights")
    loss_t = weighted_sum(tout, 16) + (weighted_sum(tw, 17) if tw is not None else 0)
    loss = weighted_sum(out, 16) + (weighted_sum(w, 17) if w is not None else 0)
    loss_t.backward()
    loss.backward()
    for t, f in ((tq, fq), (tk, fk), (tv, fv)):
        if t.grad is not None:
            close(t.grad, f.grad, "input grad")
    check_param_grads(m, tm)


def test_multihead_attention_finite_differences(fg):
    fg.manual_seed(1)
    m = fg.nn.MultiheadAttention(4, 2, dtype=np.float64)
    x = fg.tensor(np.random.default_rng(18).standard_normal((3, 1, 4)), requires_grad=True)
    mask = np.triu(np.ones((3, 3), bool), 1)
    finite_difference_check(lambda: weighted_sum(m(x, x, x, attn_mask=mask)[0], 19),
                            [x] + list(m.parameters()))


def test_multihead_attention_init_and_state_dict(fg):
    torch = _torch()
    fg.manual_seed(0)
    m = fg.nn.MultiheadAttention(8, 4, dtype=np.float64)
    names = [n for n, _ in m.named_parameters()]
    assert names == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert np.all(m.in_proj_bias.numpy() == 0) and np.all(m.out_proj.bias.numpy() == 0)
    bound = np.sqrt(6.0 / (8 + 24))                           # Xavier on (24, 8)
    assert np.all(np.abs(m.in_proj_weight.numpy()) <= bound)
    tm = torch.nn.MultiheadAttention(8, 4).double()
    tm.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})
    x = np.random.default_rng(20).standard_normal((3, 2, 8))
    tx = torch.tensor(x)
    close(tm(tx, tx, tx)[0], m(fg.tensor(x), fg.tensor(x), fg.tensor(x))[0])


def test_multihead_attention_dropout_train_and_eval(fg):
    fg.manual_seed(0)
    m = fg.nn.MultiheadAttention(8, 2, dropout=0.5, dtype=np.float64)
    x = fg.tensor(np.random.default_rng(21).standard_normal((4, 2, 8)))
    m.eval()
    a, wa = m(x, x, x)
    b, _ = m(x, x, x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(wa.numpy().sum(-1), 1.0, rtol=1e-12)
    m.train()
    c, wc = m(x, x, x)
    assert not np.allclose(a.numpy(), c.numpy())
    assert np.any(wc.numpy() == 0)                                # dropped weights come back


def test_multihead_attention_errors(fg):
    nn = fg.nn
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads, got "
                                         "embed_dim=10 and num_heads=4"):
        nn.MultiheadAttention(10, 4)
    m = nn.MultiheadAttention(8, 2)
    x = fg.zeros(4, 2, 8)
    with pytest.raises(ValueError, match=r"query must have 8 features .* got shape \(4, 2, 6\)"):
        m(fg.zeros(4, 2, 6), x, x)
    with pytest.raises(ValueError, match="2-D \\(unbatched\\) or 3-D"):
        m(fg.zeros(8), fg.zeros(8), fg.zeros(8))
    with pytest.raises(ValueError, match="same number of dimensions"):
        m(x, fg.zeros(4, 8), fg.zeros(4, 8))
    with pytest.raises(ValueError, match="same batch size"):
        m(x, fg.zeros(4, 3, 8), fg.zeros(4, 3, 8))
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(4, 4\) or \(4, 4, 4\)"):
        m(x, x, x, attn_mask=np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(2, 4\)"):
        m(x, x, x, key_padding_mask=np.zeros((4, 2), bool))
    with pytest.raises(ValueError, match="is_causal=True is a hint"):
        m(x, x, x, is_causal=True)
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        nn.MultiheadAttention(8, 2, add_bias_kv=True)


# ---------------------------------------------------------------------------
# the layers as modules: copies, pickles, fg.compile
# ---------------------------------------------------------------------------
def test_sequence_layers_copy_pickle_and_replay(fg, same_copy):
    import copy
    import pickle
    nn, F = fg.nn, fg.nn.functional
    fg.manual_seed(0)

    model = nn.ModuleList([nn.Embedding(7, 8, padding_idx=0, dtype=np.float64),
                           nn.LayerNorm(8, dtype=np.float64),
                           nn.MultiheadAttention(8, 2, batch_first=True, dtype=np.float64),
                           nn.GRU(8, 8, batch_first=True, dtype=np.float64),
                           nn.Linear(8, 7, dtype=np.float64)])

    def run(layers, idx):
        emb, ln, attn, gru, head = layers
        h = ln(emb(idx))
        mask = np.triu(np.ones((idx.shape[1], idx.shape[1]), bool), 1)
        h = h + attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return head(gru(h)[0])

    x = np.random.default_rng(22).integers(0, 7, (3, 5))
    y = np.random.default_rng(23).integers(0, 7, 15)
    with same_copy():
        clones = [copy.deepcopy(model), pickle.loads(pickle.dumps(model))]
    for clone in clones:
        np.testing.assert_array_equal(run(clone, x).numpy(), run(model, x).numpy())
    eager = clones[0]
    opt = fg.optim.SGD(model.parameters(), lr=0.1)
    opt_eager = fg.optim.SGD(eager.parameters(), lr=0.1)
    step = fg.compile(lambda: F.cross_entropy(run(model, x).reshape(-1, 7), y))
    for _ in range(3):
        opt.zero_grad()
        replayed = step()
        opt.step()
        opt_eager.zero_grad()
        loss = F.cross_entropy(run(eager, x).reshape(-1, 7), y)
        loss.backward()
        opt_eager.step()
        assert abs(replayed - loss.item()) < 1e-12
    assert np.all(model[0].weight.numpy()[0] == 0)              # the padding row never moved


# ---------------------------------------------------------------------------
# The LSTM layer's fused time loop: both kernel modules, against each other and
# against the step-by-step cell
# ---------------------------------------------------------------------------
def _lstm_case(dtype, T=5, N=3, H=4, seed=7):
    r = np.random.default_rng(seed)
    xproj = r.standard_normal((T, N, 4 * H)).astype(dtype)
    h0, c0 = (r.standard_normal((N, H)).astype(dtype) for _ in range(2))
    w = (0.5 * r.standard_normal((4 * H, H))).astype(dtype)
    b = r.standard_normal(4 * H).astype(dtype)
    grad = r.standard_normal((2, T, N, H)).astype(dtype)
    return xproj, h0, c0, w, b, grad


@pytest.mark.parametrize("T,N,H", [(1, 1, 1), (5, 3, 4), (17, 16, 64)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_lstm_kernels_agree(both, T, N, H, with_bias):
    py, compiled = both
    ref, fast = py._core.fused, compiled._core.fused
    assert fast.__name__.endswith("_fused")
    xproj, h0, c0, w, b, grad = _lstm_case(np.float64, T, N, H)
    b = b if with_bias else None
    # a time-major view of a batch-major array, as nn.LSTM(batch_first=True) passes it
    xproj = np.ascontiguousarray(xproj.transpose(1, 0, 2)).transpose(1, 0, 2)
    f1, f2 = ref.lstm_forward(xproj, h0, c0, w, b), fast.lstm_forward(xproj, h0, c0, w, b)
    for a1, a2 in zip(f1, f2):
        np.testing.assert_allclose(a2, a1, rtol=1e-12, atol=1e-12)
    b1 = ref.lstm_backward(grad, *f1, h0, c0, w, with_bias)
    b2 = fast.lstm_backward(grad, *f2, h0, c0, w, with_bias)
    for a1, a2 in zip(b1, b2):
        if a1 is None:
            assert a2 is None
        else:
            np.testing.assert_allclose(a2, a1, rtol=1e-11, atol=1e-12)


def test_fused_lstm_matches_the_step_by_step_cell(fg):
    """The fused layer's states and gradients are the cell's, run step by step."""
    xproj, h0, c0, w, b, grad = _lstm_case(np.float64)
    H = h0.shape[1]

    def run(fused):
        xs, hs, cs, ws, bs = (fg.tensor(a, requires_grad=True) for a in (xproj, h0, c0, w, b))
        if fused:
            states = fg.nn.rnn._LSTMSequence.apply(xs, hs, cs, ws, bs)
        else:
            h, c, out = hs, cs, []
            for t in range(xproj.shape[0]):
                h, c = fg.nn.rnn._lstm_step(xs[t], (h, c), ws, bs, H)
                out.append(fg.stack([h, c]))
            states = fg.stack(out, 1)
        (states * fg.tensor(grad)).sum().backward()
        return [states.detach().numpy()] + [t.grad.numpy() for t in (xs, hs, cs, ws, bs)]

    for a1, a2 in zip(run(False), run(True)):
        np.testing.assert_allclose(a2, a1, rtol=1e-10, atol=1e-12)


def test_fused_lstm_float32_and_mixed_dtypes(both):
    py, compiled = both
    xproj, h0, c0, w, b, grad = _lstm_case(np.float64, 6, 2, 8)
    exact = py._core.fused.lstm_forward(xproj, h0, c0, w, b)[0]
    for mod in (py._core.fused, compiled._core.fused):
        single = mod.lstm_forward(*(a.astype(np.float32) for a in (xproj, h0, c0, w, b)))[0]
        assert single.dtype == np.float32
        np.testing.assert_allclose(single, exact, rtol=1e-5, atol=1e-6)
        # a float32 weight with float64 states promotes, as NumPy does
        mixed = mod.lstm_forward(xproj, h0, c0, w.astype(np.float32), b)[0]
        assert mixed.dtype == np.float64


def test_fused_lstm_returned_states_are_its_own(fg):
    """Writing into the output in place does not change the gradients."""
    xproj, h0, c0, w, b, grad = _lstm_case(np.float64)
    grads = []
    for scribble in (False, True):
        xs = fg.tensor(xproj, requires_grad=True)
        states = fg.nn.rnn._LSTMSequence.apply(xs, fg.tensor(h0), fg.tensor(c0), fg.tensor(w),
                                               fg.tensor(b))
        loss = (states * fg.tensor(grad)).sum()
        if scribble:
            states.data.fill_(3.0)
        loss.backward()
        grads.append(xs.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
