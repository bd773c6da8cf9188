"""The lecture's [2, 3, 1] sigmoid network, trained with SGD (batch size 1).

A small problem a line cannot separate (points inside vs outside a circle);
the network learns it.  Prints the loss and accuracy as training goes.

    python examples/nielsen_231.py
"""
import numpy as np

import fastgrad as fg
from fastgrad import nn, optim
from fastgrad.data import DataLoader, TensorDataset


def make_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    y = (np.sum(x ** 2, axis=1) < 0.5).astype(np.float64).reshape(-1, 1)   # inside the circle
    return x, y


def main():
    fg.set_default_dtype(np.float64)
    fg.manual_seed(0)
    x, y = make_data()
    model = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1), nn.Sigmoid())
    opt = optim.SGD(model.parameters(), lr=0.5)
    loss_fn = nn.MSELoss()
    loader = DataLoader(TensorDataset(x, y), batch_size=1, shuffle=True, seed=0)
    X, Y = fg.tensor(x), fg.tensor(y)
    for epoch in range(1, 301):
        for xb, yb in loader:          # one sample per step: stochastic gradient descent
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        if epoch % 50 == 0 or epoch == 1:
            with fg.no_grad():
                out = model(X)
                loss = loss_fn(out, Y).item()
                acc = float(((out.numpy() > 0.5) == (y > 0.5)).mean())
            print("epoch %3d  loss %.4f  accuracy %.3f" % (epoch, loss, acc))
    print("a line separates at most %.3f of these points; the [2, 3, 1] network reached %.3f"
          % (max(y.mean(), 1 - y.mean()), acc))


if __name__ == "__main__":
    main()
