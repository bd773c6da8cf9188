"""Full-batch gradient descent, SGD and mini-batch descent on one problem.

The lecture's picture: the same model trained three ways (and with momentum
and Adam), the loss per epoch and per step.  Writes lecture_sgd.png
(matplotlib needed for the picture; the numbers print without it).

    python examples/lecture_sgd.py [--out lecture_sgd.png]
"""
import argparse
import math

import numpy as np

import fastgrad as fg
from fastgrad import nn, optim
from fastgrad.data import DataLoader, TensorDataset


def make_data(n=200, seed=0):
    # y = 3 x1 - 2 x2 + 0.5 + noise: a linear model can fit it exactly.
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = x @ np.array([3.0, -2.0]) + 0.5 + 0.1 * rng.normal(size=n)
    return x.astype(np.float32), y.astype(np.float32).reshape(-1, 1)


def train(x, y, batch_size, make_optimizer, epochs=20, seed=0):
    fg.manual_seed(seed)                     # the same initial weights every run
    model = nn.Linear(2, 1)
    opt = make_optimizer(model.parameters())
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, seed=seed)
    loss_fn = nn.MSELoss()
    full = TensorDataset(x, y)
    per_epoch, per_step = [], []
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            per_step.append(loss.item())
        with fg.no_grad():
            per_epoch.append(loss_fn(model(fg.tensor(x)), fg.tensor(y)).item())
    return per_epoch, per_step, len(loader)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="lecture_sgd.png")
    args = parser.parse_args()
    x, y = make_data()
    n = len(x)
    runs = {
        "full batch GD (B=%d)" % n: (n, lambda p: optim.SGD(p, lr=0.1)),
        "SGD (B=1)": (1, lambda p: optim.SGD(p, lr=0.01)),
        "mini-batch (B=16)": (16, lambda p: optim.SGD(p, lr=0.05)),
        "mini-batch + momentum 0.9": (16, lambda p: optim.SGD(p, lr=0.01, momentum=0.9)),
        "mini-batch + Adam": (16, lambda p: optim.Adam(p, lr=0.05)),
    }
    results = {}
    print("%-28s %6s %12s %12s" % ("method", "steps", "loss ep. 1", "loss ep. 20"))
    for name, (batch, make_opt) in runs.items():
        per_epoch, per_step, steps = train(x, y, batch, make_opt)
        results[name] = (per_epoch, per_step)
        assert steps == math.ceil(n / batch)
        print("%-28s %6d %12.4f %12.4f" % (name, steps, per_epoch[0], per_epoch[-1]))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no picture (pip install matplotlib)")
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (per_epoch, per_step) in results.items():
        a1.plot(range(1, len(per_epoch) + 1), per_epoch, label=name)
        a2.plot(per_step[:400], label=name, linewidth=0.8)
    a1.set(xlabel="epoch", ylabel="loss on the whole data", yscale="log", title="per epoch")
    a2.set(xlabel="step (first 400)", ylabel="loss of the batch", yscale="log", title="per step")
    a1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
