"""lstm: one training step of a 1-layer LSTM (hidden 64) over 32 steps, batch 16, float32.

Input 16 features per step, batch-first; a linear head reads every hidden
state and the loss is the mean squared error against fixed targets; plain
SGD (lr 0.1).  Every implementation loads the same initial weights (drawn
here with NumPy under PyTorch's names) and trains on the same fixed batch.
"""
import numpy as np

from harness import Target, Workload, fastgrad_cores, register
from workloads.common import flat, train_loop

INPUT, HIDDEN, SEQ, BATCH = 16, 64, 32, 16
LR = 0.1
CHECK_STEPS = 3


def data():
    rng = np.random.default_rng(32)
    x = rng.standard_normal((BATCH, SEQ, INPUT)).astype(np.float32)
    y = np.sin(np.cumsum(x[..., :1], axis=1)).astype(np.float32)
    return x, y


def weights():
    rng = np.random.default_rng(16)
    bound = 1.0 / np.sqrt(HIDDEN)
    shapes = [("lstm.weight_ih_l0", (4 * HIDDEN, INPUT)),
              ("lstm.weight_hh_l0", (4 * HIDDEN, HIDDEN)),
              ("lstm.bias_ih_l0", (4 * HIDDEN,)), ("lstm.bias_hh_l0", (4 * HIDDEN,)),
              ("head.weight", (1, HIDDEN)), ("head.bias", (1,))]
    return {name: rng.uniform(-bound, bound, shape).astype(np.float32) for name, shape in shapes}


def _loop(make, train_step, values):
    return train_loop(make, train_step, CHECK_STEPS,
                      lambda losses, state: flat(losses, values(state).values()))


def fastgrad_runner(size):
    import fastgrad as fg
    from fastgrad import nn
    x, y = (fg.tensor(a) for a in data())

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(INPUT, HIDDEN, batch_first=True, dtype=np.float32)
            self.head = nn.Linear(HIDDEN, 1, dtype=np.float32)

        def forward(self, inputs):
            return self.head(self.lstm(inputs)[0])

    def make():
        model = Model()
        model.load_state_dict(weights())
        return model, fg.optim.SGD(model.parameters(), lr=LR)

    def train_step(state):
        model, opt = state
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return _loop(make, train_step, lambda s: s[0].state_dict())


def torch_runner(size):
    import torch
    from torch import nn
    x, y = (torch.from_numpy(a) for a in data())

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(INPUT, HIDDEN, batch_first=True)
            self.head = nn.Linear(HIDDEN, 1)

        def forward(self, inputs):
            return self.head(self.lstm(inputs)[0])

    def make():
        model = Model()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights().items()})
        return model, torch.optim.SGD(model.parameters(), lr=LR)

    def train_step(state):
        model, opt = state
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return _loop(make, train_step,
                 lambda s: {k: v.detach().numpy() for k, v in s[0].state_dict().items()})


register(Workload(
    name="lstm",
    description="1-layer LSTM, 16 inputs, hidden 64, 32 steps, batch 16, float32, linear head, "
                "MSE, SGD lr 0.1; one step = forward, backward, update",
    sizes=(BATCH,),
    runners={**fastgrad_cores(fastgrad_runner), "torch": torch_runner},
    reference="torch",
    rtol=1e-4,
    atol=1e-5,
    label=lambda b: f"batch {b}",
    targets=[Target("compiled", "torch", factor=3)],
))
