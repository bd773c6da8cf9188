"""cnn: the digits CNN of examples/digits_cnn.py, one training step on a batch of 32.

conv 3x3 (1 -> 16) - BatchNorm2d - ReLU - maxpool 2 - conv 3x3 (16 -> 32) -
BatchNorm2d - ReLU - maxpool 2 - flatten - linear (128 -> 10), float32,
cross-entropy, SGD (lr 0.05, momentum 0.9).  One iteration is one step:
zero_grad, forward, backward, update, on the next of the dataset's batches
of 32 (in order, wrapping around).  fastgrad runs as a user writes it
(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, optim.SGD); PyTorch runs the same
model eagerly.  The check trains fresh copies for CHECK_STEPS steps.
"""
import numpy as np

from harness import Target, Workload, fastgrad_cores, register
from workloads.common import digits, flat, train_loop

BATCH = 32
LR, MOMENTUM = 0.05, 0.9
CHECK_STEPS = 5


def images():
    x, y = digits()
    return np.ascontiguousarray(x.reshape(-1, 1, 8, 8)), y


def weights():
    """Conv and linear weights drawn like torch's default init, from one seed (float32)."""
    rng = np.random.default_rng(2024)
    out = []
    for shape in ((16, 1, 3, 3), (32, 16, 3, 3), (10, 128)):
        bound = 1.0 / np.sqrt(np.prod(shape[1:]))
        out.append((rng.uniform(-bound, bound, shape).astype(np.float32),
                    rng.uniform(-bound, bound, shape[0]).astype(np.float32)))
    return out


def _batches(n):
    return [(i, min(i + BATCH, n)) for i in range(0, n, BATCH)]


def fastgrad_runner(size):
    import fastgrad as fg
    from fastgrad import nn
    x, y = images()
    batches = [(fg.tensor(x[a:b]), fg.tensor(y[a:b])) for a, b in _batches(len(x))]

    def make():
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, dtype=np.float32), nn.BatchNorm2d(16, dtype=np.float32),
            nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, dtype=np.float32),
            nn.BatchNorm2d(32, dtype=np.float32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(128, 10, dtype=np.float32))
        for layer, (w, b) in zip((model[0], model[4], model[9]), weights()):
            layer.weight.data[...] = w
            layer.bias.data[...] = b
        opt = fg.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        return model, opt, nn.CrossEntropyLoss(), [0]

    def train_step(state):
        model, opt, loss_fn, counter = state
        xb, yb = batches[counter[0] % len(batches)]
        counter[0] += 1
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()

    return train_loop(make, train_step, CHECK_STEPS,
                      lambda losses, fresh: flat(losses, [p.numpy() for p in fresh[0].parameters()]))


def torch_runner(size):
    import torch
    x, y = images()
    batches = [(torch.from_numpy(x[a:b]), torch.from_numpy(y[a:b])) for a, b in _batches(len(x))]
    nn = torch.nn

    def make():
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(128, 10))
        with torch.no_grad():
            for layer, (w, b) in zip((model[0], model[4], model[9]), weights()):
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        return model, opt, nn.CrossEntropyLoss(), [0]

    def train_step(state):
        model, opt, loss_fn, counter = state
        xb, yb = batches[counter[0] % len(batches)]
        counter[0] += 1
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()

    return train_loop(make, train_step, CHECK_STEPS,
                      lambda losses, fresh: flat(losses, [p.detach().numpy() for p in fresh[0].parameters()]))


register(Workload(
    name="cnn",
    description="digits as 1x8x8 images, conv(16)-BN-ReLU-maxpool-conv(32)-BN-ReLU-maxpool-"
                "linear(10), float32, cross-entropy, SGD lr 0.05 momentum 0.9; one iteration = "
                "one step on a batch of 32",
    sizes=(BATCH,),
    runners={**fastgrad_cores(fastgrad_runner), "torch": torch_runner},
    reference="torch",
    rtol=1e-3,
    atol=1e-4,
    label=lambda b: f"batch {b}",
    targets=[Target("compiled", "torch", factor=3)],
))
