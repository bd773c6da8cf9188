"""charlm: one training step of a small causal character transformer, float32.

Vocabulary 27, context 16, batch 32; embeddings for tokens and positions,
4 pre-norm blocks of width 64 (LayerNorm, 4-head causal self-attention,
LayerNorm, a 64-256-64 ReLU MLP, residuals), a final LayerNorm and a linear
head; cross-entropy over every position, AdamW (lr 1e-3, weight decay 0.01).
Every implementation loads the same initial weights (drawn here with NumPy
under PyTorch's parameter names) and trains on the same fixed batch.  The
`gemm` row times only the step's matrix products (forward and backward) on
the same shapes with NumPy: the floor.
"""
import numpy as np

from harness import Target, Workload, fastgrad_cores, register
from workloads.common import flat, train_loop

VOCAB, CONTEXT, WIDTH, HEADS, LAYERS, BATCH = 27, 16, 64, 4, 4, 32
LR, WEIGHT_DECAY = 1e-3, 0.01
CHECK_STEPS = 3


def data():
    rng = np.random.default_rng(27)
    tokens = rng.integers(0, VOCAB, (BATCH, CONTEXT + 1))
    return tokens[:, :-1].astype(np.int64), tokens[:, 1:].astype(np.int64)


def shapes():
    """(name, shape) of every parameter, in registration order (PyTorch's names)."""
    out = [("tokens.weight", (VOCAB, WIDTH)), ("positions.weight", (CONTEXT, WIDTH))]
    for i in range(LAYERS):
        p = "blocks.%d." % i
        out += [(p + "ln1.weight", (WIDTH,)), (p + "ln1.bias", (WIDTH,)),
                (p + "attn.in_proj_weight", (3 * WIDTH, WIDTH)),
                (p + "attn.in_proj_bias", (3 * WIDTH,)),
                (p + "attn.out_proj.weight", (WIDTH, WIDTH)),
                (p + "attn.out_proj.bias", (WIDTH,)),
                (p + "ln2.weight", (WIDTH,)), (p + "ln2.bias", (WIDTH,)),
                (p + "mlp.0.weight", (4 * WIDTH, WIDTH)), (p + "mlp.0.bias", (4 * WIDTH,)),
                (p + "mlp.2.weight", (WIDTH, 4 * WIDTH)), (p + "mlp.2.bias", (WIDTH,))]
    out += [("ln.weight", (WIDTH,)), ("ln.bias", (WIDTH,)), ("head.weight", (VOCAB, WIDTH)),
            ("head.bias", (VOCAB,))]
    return out


def weights():
    rng = np.random.default_rng(64)
    state = {}
    for name, shape in shapes():
        if name.startswith("ln") or ".ln" in name:
            base = 1.0 if name.endswith("weight") else 0.0
            values = base + 0.1 * rng.standard_normal(shape)
        elif len(shape) == 2 and "positions" not in name and "tokens" not in name:
            values = rng.standard_normal(shape) / np.sqrt(shape[1])
        else:
            values = 0.5 * rng.standard_normal(shape)
        state[name] = values.astype(np.float32)
    return state


def summary(losses, initial, final):
    """The losses, and how far each parameter moved (one norm per parameter)."""
    moved = [np.linalg.norm(np.asarray(final[k], np.float64) - np.asarray(initial[k], np.float64))
             for k in initial]
    return flat(losses, [np.array(moved)])


def _loop(make, train_step, values):
    return train_loop(make, train_step, CHECK_STEPS,
                      lambda losses, state: summary(losses, weights(), values(state)))


def _causal():
    return np.triu(np.ones((CONTEXT, CONTEXT), dtype=bool), 1)


def fastgrad_runner(size):
    import fastgrad as fg
    from fastgrad import nn
    x, y = data()
    mask = _causal()

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(WIDTH, dtype=np.float32)
            self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True, dtype=np.float32)
            self.ln2 = nn.LayerNorm(WIDTH, dtype=np.float32)
            self.mlp = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH, dtype=np.float32), nn.ReLU(),
                                     nn.Linear(4 * WIDTH, WIDTH, dtype=np.float32))

        def forward(self, h):
            a = self.ln1(h)
            h = h + self.attn(a, a, a, attn_mask=mask, need_weights=False)[0]
            return h + self.mlp(self.ln2(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(VOCAB, WIDTH, dtype=np.float32)
            self.positions = nn.Embedding(CONTEXT, WIDTH, dtype=np.float32)
            self.blocks = nn.ModuleList([Block() for _ in range(LAYERS)])
            self.ln = nn.LayerNorm(WIDTH, dtype=np.float32)
            self.head = nn.Linear(WIDTH, VOCAB, dtype=np.float32)

        def forward(self, idx):
            h = self.tokens(idx) + self.positions(np.arange(CONTEXT))
            for block in self.blocks:
                h = block(h)
            return self.head(self.ln(h))

    def make():
        model = Model()
        model.load_state_dict(weights())
        return model, fg.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    targets = y.reshape(-1)

    def train_step(state):
        model, opt = state
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), targets)
        loss.backward()
        opt.step()
        return loss.item()

    return _loop(make, train_step, lambda s: s[0].state_dict())


def torch_runner(size):
    import torch
    from torch import nn
    x, y = (torch.from_numpy(a) for a in data())
    mask = torch.from_numpy(_causal())

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(WIDTH)
            self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
            self.ln2 = nn.LayerNorm(WIDTH)
            self.mlp = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.ReLU(),
                                     nn.Linear(4 * WIDTH, WIDTH))

        def forward(self, h):
            a = self.ln1(h)
            h = h + self.attn(a, a, a, attn_mask=mask, need_weights=False)[0]
            return h + self.mlp(self.ln2(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(VOCAB, WIDTH)
            self.positions = nn.Embedding(CONTEXT, WIDTH)
            self.blocks = nn.ModuleList([Block() for _ in range(LAYERS)])
            self.ln = nn.LayerNorm(WIDTH)
            self.head = nn.Linear(WIDTH, VOCAB)

        def forward(self, idx):
            h = self.tokens(idx) + self.positions(torch.arange(CONTEXT))
            for block in self.blocks:
                h = block(h)
            return self.head(self.ln(h))

    def make():
        model = Model()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights().items()})
        return model, torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    targets = y.reshape(-1)

    def train_step(state):
        model, opt = state
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), targets)
        loss.backward()
        opt.step()
        return loss.item()

    return _loop(make, train_step,
                 lambda s: {k: v.detach().numpy() for k, v in s[0].state_dict().items()})


def gemm_runner(size):
    """The step's matrix products alone, NumPy into preallocated outputs.

    Per block forward: the q/k/v projection, scores q k^T and weights @ v
    (batched over batch and heads), the output projection and the two MLP
    layers; then the head.  Backward: for each of those, the products giving
    the input's and the weight's gradient (two per product).
    """
    rng = np.random.default_rng(0)
    rows, D = BATCH * CONTEXT, WIDTH // HEADS
    f32 = np.float32

    def r(*shape):
        return rng.standard_normal(shape).astype(f32)

    w_qkv, w_o, w_1, w_2, w_head = r(3 * WIDTH, WIDTH), r(WIDTH, WIDTH), r(4 * WIDTH, WIDTH), \
        r(WIDTH, 4 * WIDTH), r(VOCAB, WIDTH)
    x, h4, gqkv, g4, ghead = r(rows, WIDTH), r(rows, 4 * WIDTH), r(rows, 3 * WIDTH), \
        r(rows, 4 * WIDTH), r(rows, VOCAB)
    q, k, v = r(BATCH, HEADS, CONTEXT, D), r(BATCH, HEADS, CONTEXT, D), r(BATCH, HEADS, CONTEXT, D)
    att = r(BATCH, HEADS, CONTEXT, CONTEXT)
    o_qkv, o_x, o_4 = np.empty((rows, 3 * WIDTH), f32), np.empty((rows, WIDTH), f32), \
        np.empty((rows, 4 * WIDTH), f32)
    o_head = np.empty((rows, VOCAB), f32)
    o_att, o_v = np.empty_like(att), np.empty_like(q)
    gw_qkv, gw_o, gw_1, gw_2, gw_head = (np.empty_like(w) for w in (w_qkv, w_o, w_1, w_2, w_head))
    matmul = np.matmul
    kT = k.swapaxes(-1, -2)

    def step():
        for _ in range(LAYERS):
            matmul(x, w_qkv.T, out=o_qkv)                    # forward
            matmul(q, kT, out=o_att)
            matmul(att, v, out=o_v)
            matmul(x, w_o.T, out=o_x)
            matmul(x, w_1.T, out=o_4)
            matmul(h4, w_2.T, out=o_x)
            matmul(gqkv, w_qkv, out=o_x)                     # backward, input gradients
            matmul(x, w_o, out=o_x)
            matmul(g4, w_1, out=o_x)
            matmul(x, w_2, out=o_4)
            matmul(gqkv.T, x, out=gw_qkv)                    # weight gradients
            matmul(x.T, x, out=gw_o)
            matmul(g4.T, x, out=gw_1)
            matmul(x.T, h4, out=gw_2)
            matmul(att, k, out=o_v)                          # attention: d q, d k, d att, d v
            matmul(att.swapaxes(-1, -2), q, out=o_v)
            matmul(q, kT, out=o_att)
            matmul(att.swapaxes(-1, -2), v, out=o_v)
        matmul(x, w_head.T, out=o_head)
        matmul(ghead, w_head, out=o_x)
        matmul(ghead.T, x, out=gw_head)

    # The products alone train nothing, so the row's check is the reference's
    # (PyTorch's) training; without PyTorch no row of charlm has a reference to
    # be checked against, and the row reports its last product instead.
    try:
        _, result = torch_runner(size)
    except ImportError:
        def result():
            return o_head.copy()
    return step, result


register(Workload(
    name="charlm",
    description="char transformer: vocab 27, context 16, 4 blocks of width 64 with 4 heads, "
                "batch 32, float32, AdamW; one step = forward, cross-entropy, backward, update; "
                "gemm = the step's matrix products alone (NumPy): the floor",
    sizes=(BATCH,),
    runners={**fastgrad_cores(fastgrad_runner), "torch": torch_runner, "gemm": gemm_runner},
    reference="torch",
    rtol=2e-3,
    atol=1e-5,
    label=lambda b: f"batch {b}",
    settle=0.2,
    targets=[
        Target("compiled", "torch", factor=2),
        Target("compiled", "gemm", factor=1 / 1.5),
    ],
))
