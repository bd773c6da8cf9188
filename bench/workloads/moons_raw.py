"""moons_raw: moons_vec's model written with raw tensors, the way a PyTorch
user writes a layer by hand.

    h = (X @ W1.T + b1).relu()
    h = (h @ W2.T + b2).relu()
    score = h @ W3.T + b3
    loss = (1 - score * y).relu().mean() + 1e-4 * sum((p * p).sum() for p in params)
    loss.backward()
    for p in params:
        p.data -= lr * p.grad.data
        p.grad = None

No nn, no optim: the same data, initial weights, loss and learning-rate
schedule as moons_vec (float64), the same code for fastgrad and PyTorch.
The update goes through ``.data``, which bypasses autograd whether ``.data``
is an array or a tensor sharing the parameter's memory.
"""
import numpy as np

from harness import Target, Workload, fastgrad_cores, register
from workloads.common import moons, moons_lr
from workloads.moons_vec import ALPHA, _loop, numpy_runner, weights


def _raw(library):
    def runner(size):
        if library == "torch":
            import torch as mod
        else:
            import fastgrad as mod
        x0, y0 = moons()
        X, y = mod.tensor(x0), mod.tensor(y0.reshape(-1, 1))

        def make():
            return [mod.tensor(a.copy(), requires_grad=True) for layer in weights() for a in layer]

        def train_step(params, k):
            W1, b1, W2, b2, W3, b3 = params
            h = (X @ W1.T + b1).relu()
            h = (h @ W2.T + b2).relu()
            score = h @ W3.T + b3
            loss = (1 - score * y).relu().mean() + ALPHA * sum((p * p).sum() for p in params)
            loss.backward()
            lr = moons_lr(k)
            for p in params:
                p.data -= lr * p.grad.data
                p.grad = None
            return loss.item()

        return _loop(make, train_step, lambda params: [p.detach().numpy() for p in params])
    return runner


register(Workload(
    name="moons_raw",
    description="moons_vec written with raw tensors: h = (X @ W.T + b).relu() twice, hinge "
                "loss + 1e-4 L2, loss.backward(), p.data -= lr * p.grad.data, p.grad = None; "
                "float64, one step = forward, backward, update",
    sizes=(100,),
    runners={**fastgrad_cores(_raw("fastgrad")), "torch": _raw("torch"), "numpy": numpy_runner},
    reference="numpy",
    rtol=1e-9,
    atol=1e-12,
    label=lambda n: f"{n} points",
    targets=[
        Target("compiled", "numpy", factor=2),
        Target("compiled", "torch", factor=10),
    ],
))
