"""A character-level language model: a small causal transformer on text it writes itself.

The text comes from a little grammar of English-like sentences (nothing is
downloaded).  The model is embeddings (characters and positions), a stack
of pre-norm blocks (LayerNorm, causal multi-head self-attention, LayerNorm,
a ReLU MLP, each with a residual connection), a final LayerNorm and a
linear head; AdamW with a short warm-up and a cosine learning-rate decay.
It prints the unigram entropy of the text (what a model that ignores the
context can reach at best), the held-out loss before and after training,
and a few samples drawn character by character from the softmax.

    python examples/char_lm.py [--steps 600] [--quick]
"""
import argparse
import math

import numpy as np

import fastgrad as fg
from fastgrad import nn, optim
from fastgrad.nn import functional as F

SUBJECTS = ["the cat", "the dog", "a bird", "my friend", "the old man", "a small girl",
            "the teacher", "our neighbour"]
VERBS = ["sees", "likes", "finds", "follows", "helps", "watches", "calls", "feeds"]
OBJECTS = ["the ball", "a red apple", "the garden", "her brother", "the river", "a new book",
           "the green door", "his hat"]
ENDINGS = ["today", "again", "at night", "in the park", "every day", "with care"]


def sentences(rng, n):
    """n sentences from the grammar, joined by spaces (lowercase letters and space)."""
    out = []
    for _ in range(n):
        s = [SUBJECTS[rng.integers(len(SUBJECTS))], VERBS[rng.integers(len(VERBS))],
             OBJECTS[rng.integers(len(OBJECTS))]]
        if rng.random() < 0.5:
            s.append(ENDINGS[rng.integers(len(ENDINGS))])
        out.append(" ".join(s))
    return " ".join(out) + " "


class Block(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x)) (pre-norm residual block)."""

    def __init__(self, width, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    def __init__(self, vocab, context, width, heads, layers):
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        for name, p in self.named_parameters():
            if name.endswith("weight") and p.ndim == 2:
                nn.init.normal_(p, 0.0, 0.02)        # small init keeps the start near uniform

    def forward(self, idx):
        T = idx.shape[-1]
        mask = np.triu(np.ones((T, T), dtype=bool), 1)     # True: a later position, not seen
        x = self.tokens(idx) + self.positions(np.arange(T))
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln(x))


def batches(data, rng, batch, context):
    starts = rng.integers(0, len(data) - context - 1, batch)
    x = np.stack([data[s:s + context] for s in starts])
    y = np.stack([data[s + 1:s + context + 1] for s in starts])
    return x, y


def mean_loss(model, data, context, vocab, n_batches=8, batch=64):
    rng = np.random.default_rng(123)
    model.eval()
    total = 0.0
    with fg.no_grad():
        for _ in range(n_batches):
            x, y = batches(data, rng, batch, context)
            logits = model(x)
            total += F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1)).item()
    model.train()
    return total / n_batches


def sample(model, stoi, itos, prompt, length, rng, temperature=1.0):
    idx = [stoi[c] for c in prompt]
    model.eval()
    with fg.no_grad():
        for _ in range(length):
            window = np.array(idx[-model.context:])[None, :]
            logits = model(window).numpy()[0, -1].astype(np.float64) / temperature
            p = np.exp(logits - logits.max())
            idx.append(int(rng.choice(len(p), p=p / p.sum())))
    model.train()
    return "".join(itos[i] for i in idx)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--quick", action="store_true", help="a small model, a few steps")
    args = parser.parse_args()
    steps, width, layers = (60, 32, 2) if args.quick else (args.steps, 64, 4)
    context, heads, batch, lr = 16, 4, 32, 3e-3

    rng = np.random.default_rng(0)
    train_text, val_text = sentences(rng, 4000), sentences(rng, 400)
    chars = sorted(set(train_text) | set(val_text))
    stoi = {c: i for i, c in enumerate(chars)}
    itos = dict(enumerate(chars))
    vocab = len(chars)
    train = np.array([stoi[c] for c in train_text], dtype=np.int64)
    val = np.array([stoi[c] for c in val_text], dtype=np.int64)
    counts = np.bincount(train, minlength=vocab) / len(train)
    unigram = float(-(counts[counts > 0] * np.log(counts[counts > 0])).sum())

    fg.manual_seed(0)
    model = CharTransformer(vocab, context, width, heads, layers)
    params = sum(p.numel() for p in model.parameters())
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)

    def schedule(step):
        # linear warm-up, then cosine decay to a tenth of the peak
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    sched = optim.lr_scheduler.LambdaLR(opt, schedule)
    print("vocabulary: %d symbols; %d training characters; %d parameters"
          % (vocab, len(train), params))
    print("unigram entropy: %.4f nats/char" % unigram)
    print("held-out loss before training: %.4f" % mean_loss(model, val, context, vocab))
    data_rng = np.random.default_rng(1)
    for step in range(steps):
        x, y = batches(train, data_rng, batch, context)
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, steps // 6) == 0 or step == steps - 1:
            print("step %4d  loss %.4f  lr %.5f" % (step, loss.item(), opt.param_groups[0]["lr"]))
    final = mean_loss(model, val, context, vocab)
    print("held-out loss after training: %.4f nats/char (unigram entropy %.4f)" % (final, unigram))
    sample_rng = np.random.default_rng(2)
    for prompt in ("the ", "a small ", "my "):
        print("sample: %r" % sample(model, stoi, itos, prompt, 48, sample_rng))


if __name__ == "__main__":
    main()
