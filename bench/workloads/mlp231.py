"""mlp231: the lecture's [2, 3, 1] sigmoid network, SGD with batch size 1.

One step = one sample: forward through nn.Linear(2, 3), sigmoid,
nn.Linear(3, 1), sigmoid; MSE loss; backward; optimizer step; zero_grad.
Everything is tiny, so this measures what a library costs per training step
of a small model written the PyTorch way (nn + optim), in float64.
"""
import numpy as np

from harness import Target, Workload, fastgrad_cores, register
from workloads.common import flat, linear_init

LR = 0.5
N = 200
CHECK_STEPS = 10


def data():
    """A nonlinearly separable 2-D problem: the XOR of two halves, targets 0/1."""
    rng = np.random.default_rng(231)
    x = rng.uniform(0.0, 1.0, (N, 2))
    y = (((x[:, 0] > 0.5) != (x[:, 1] > 0.5)) * 1.0).reshape(N, 1)
    return x, y


def weights():
    return linear_init((2, 3, 1), np.float64, seed=231)


def _loop(make, train_step, values):
    state = make()
    counter = [0]

    def step():
        train_step(state, counter[0] % N)
        counter[0] += 1

    def result():
        fresh = make()
        losses = [train_step(fresh, i) for i in range(CHECK_STEPS)]
        return flat(losses, values(fresh))

    return step, result


def fastgrad_runner(size):
    import fastgrad as fg
    from fastgrad import nn
    x, y = data()
    xs = [fg.tensor(x[i:i + 1]) for i in range(N)]
    ys = [fg.tensor(y[i:i + 1]) for i in range(N)]

    def make():
        model = nn.Sequential(nn.Linear(2, 3, dtype=np.float64), nn.Sigmoid(),
                              nn.Linear(3, 1, dtype=np.float64), nn.Sigmoid())
        for layer, (w, b) in zip((model[0], model[2]), weights()):
            layer.weight.data[...] = w
            layer.bias.data[...] = b
        return model, fg.optim.SGD(model.parameters(), lr=LR), nn.MSELoss()

    def train_step(state, i):
        model, opt, loss_fn = state
        opt.zero_grad()
        loss = loss_fn(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
        return loss.item()

    return _loop(make, train_step, lambda s: [p.numpy() for p in s[0].parameters()])


def torch_runner(size):
    import torch
    x, y = data()
    xs = [torch.tensor(x[i:i + 1]) for i in range(N)]
    ys = [torch.tensor(y[i:i + 1]) for i in range(N)]

    def make():
        model = torch.nn.Sequential(torch.nn.Linear(2, 3, dtype=torch.float64), torch.nn.Sigmoid(),
                                    torch.nn.Linear(3, 1, dtype=torch.float64), torch.nn.Sigmoid())
        with torch.no_grad():
            for layer, (w, b) in zip((model[0], model[2]), weights()):
                layer.weight.copy_(torch.tensor(w))
                layer.bias.copy_(torch.tensor(b))
        return model, torch.optim.SGD(model.parameters(), lr=LR), torch.nn.MSELoss()

    def train_step(state, i):
        model, opt, loss_fn = state
        opt.zero_grad()
        loss = loss_fn(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
        return loss.item()

    return _loop(make, train_step,
                 lambda s: [p.detach().numpy() for p in s[0].parameters()])


def numpy_runner(size):
    """The same step by hand: the chain rule written out for two sigmoid layers."""
    x, y = data()
    xs = [x[i] for i in range(N)]
    ys = [y[i] for i in range(N)]
    exp, outer, dot = np.exp, np.outer, np.dot

    def make():
        (w1, b1), (w2, b2) = weights()
        return [w1.copy(), b1.copy(), w2.copy(), b2.copy()]

    def train_step(p, i):
        w1, b1, w2, b2 = p
        xi = xs[i]
        a1 = 1.0 / (1.0 + exp(-(dot(w1, xi) + b1)))
        a2 = 1.0 / (1.0 + exp(-(dot(w2, a1) + b2)))
        err = a2 - ys[i]
        d2 = 2.0 * err * a2 * (1.0 - a2)            # d loss / d z2
        d1 = dot(w2.T, d2) * a1 * (1.0 - a1)        # d loss / d z1
        w2 -= LR * outer(d2, a1)
        b2 -= LR * d2
        w1 -= LR * outer(d1, xi)
        b1 -= LR * d1
        return float(err[0] * err[0])

    return _loop(make, train_step, lambda p: p)


register(Workload(
    name="mlp231",
    description="[2, 3, 1] sigmoid network (nn.Linear + nn.Sigmoid), MSE, optim.SGD lr 0.5, "
                "batch size 1, float64; one step = one sample: forward, backward, step",
    sizes=(1,),
    runners={**fastgrad_cores(fastgrad_runner), "torch": torch_runner, "numpy": numpy_runner},
    reference="numpy",
    rtol=1e-9,
    atol=1e-12,
    label=lambda n: f"batch {n}",
    targets=[
        Target("compiled", "torch", factor=8),
        Target("compiled", "python", factor=3),
    ],
))
