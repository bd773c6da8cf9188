"""An LSTM that learns to continue sine waves.

Each training sequence is sin(w t + phase) sampled at 40 points, with a
random frequency w and phase; the LSTM (hidden size 32) reads it and a
linear layer predicts the next value at every step.  Prints the held-out
mean squared error of the one-step prediction against the naive forecast
"the next value equals the last one", then a free-running continuation
(the model fed its own predictions) next to the true wave.

    python examples/lstm_sine.py [--steps 300] [--quick]
"""
import argparse

import numpy as np

import fastgrad as fg
from fastgrad import nn, optim


def waves(rng, n, length, dt=0.25):
    w = rng.uniform(0.6, 1.4, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    t = np.arange(length + 1) * dt
    return np.sin(w * t + phase)[..., None]              # (n, length + 1, 1)


class Forecaster(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x, state=None):
        h, state = self.lstm(x, state)
        return self.out(h), state


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter training steps")
    args = parser.parse_args()
    steps, length = (120, 20) if args.quick else (args.steps, 40)
    fg.manual_seed(0)
    rng = np.random.default_rng(0)
    model = Forecaster(32)
    opt = optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    for step in range(steps):
        seq = waves(rng, 32, length).astype(np.float32)
        pred, _ = model(fg.tensor(seq[:, :-1]))
        loss = loss_fn(pred, fg.tensor(seq[:, 1:]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            print("step %4d  mse %.6f" % (step, loss.item()))

    test = waves(np.random.default_rng(1), 64, length).astype(np.float32)
    with fg.no_grad():
        pred, state = model(fg.tensor(test[:, :-1]))
        mse = float(((pred.numpy() - test[:, 1:]) ** 2).mean())
        naive = float(((test[:, :-1] - test[:, 1:]) ** 2).mean())
        # free-running: feed the model its own predictions for 10 more steps
        x, future = pred[:, -1:], []
        for _ in range(10):
            x, state = model(x, state)
            future.append(float(x.numpy()[0, 0, 0]))
    print("held-out one-step mse: %.6f (naive last-value forecast: %.6f)" % (mse, naive))
    print("continuation of the first test wave (model / true, computed past the data):")
    w_true = waves(np.random.default_rng(1), 64, length + 10)[0, length + 1:, 0]
    for a, b in zip(future, w_true):
        print("  %+.3f  %+.3f" % (a, b))


if __name__ == "__main__":
    main()
