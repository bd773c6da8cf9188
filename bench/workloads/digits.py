"""digits: scikit-learn's digits, a 64-128-10 ReLU MLP, mini-batch SGD with momentum.

One iteration is one epoch: 1,797 images in shuffled mini-batches of 32 (57
steps), each step forward, cross-entropy, backward and SGD (lr 0.05,
momentum 0.9), float32.  Training for the lecture's 20 epochs takes 20 of
these.  fastgrad runs as a user writes it (DataLoader, nn, optim); PyTorch
indexes its tensors with the shuffled batch indices (faster than its
DataLoader, which collates item by item); the NumPy row is the same
training written by hand.
"""
import numpy as np

from harness import Target, Workload, fastgrad_cores, register
from workloads.common import digits, flat, linear_init

BATCH = 32
LR, MOMENTUM = 0.05, 0.9
CHECK_BATCHES = 10


def weights():
    return linear_init((64, 128, 10), np.float32, seed=64)


def _loop(make, epoch, check_steps, values):
    """step = one shuffled epoch; result = CHECK_BATCHES unshuffled steps from fresh weights."""
    state = make()

    def step():
        epoch(state)

    def result():
        fresh = make()
        return flat(check_steps(fresh), values(fresh))

    return step, result


def fastgrad_runner(size):
    import fastgrad as fg
    from fastgrad import nn
    from fastgrad.data import DataLoader, TensorDataset
    x, y = digits()
    dataset = TensorDataset(x, y)

    def make():
        model = nn.Sequential(nn.Linear(64, 128, dtype=np.float32), nn.ReLU(),
                              nn.Linear(128, 10, dtype=np.float32))
        for layer, (w, b) in zip((model[0], model[2]), weights()):
            layer.weight.data[...] = w
            layer.bias.data[...] = b
        opt = fg.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        return model, opt, nn.CrossEntropyLoss()

    def train(state, batches):
        model, opt, loss_fn = state
        losses = []
        for xb, yb in batches:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss)
        return losses

    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, seed=0)
    fixed = DataLoader(dataset, batch_size=BATCH)

    def check_steps(state):
        batches = [b for _, b in zip(range(CHECK_BATCHES), fixed)]
        return [loss.item() for loss in train(state, batches)]

    return _loop(make, lambda s: train(s, loader), check_steps,
                 lambda s: [p.numpy() for p in s[0].parameters()])


def torch_runner(size):
    import torch
    x, y = digits()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)

    def make():
        model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                    torch.nn.Linear(128, 10))
        with torch.no_grad():
            for layer, (w, b) in zip((model[0], model[2]), weights()):
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        return model, opt, torch.nn.CrossEntropyLoss()

    def train(state, order, batches):
        model, opt, loss_fn = state
        losses = []
        for i in range(batches):
            idx = order[i * BATCH:(i + 1) * BATCH]
            opt.zero_grad()
            loss = loss_fn(model(tx[idx]), ty[idx])
            loss.backward()
            opt.step()
            losses.append(loss)
        return losses

    n = len(x)
    steps = -(-n // BATCH)

    def epoch(state):
        train(state, torch.randperm(n, generator=gen), steps)

    def check_steps(state):
        return [loss.item() for loss in train(state, torch.arange(n), CHECK_BATCHES)]

    return _loop(make, epoch, check_steps,
                 lambda s: [p.detach().numpy() for p in s[0].parameters()])


def numpy_runner(size):
    """The same training by hand, as tight as NumPy makes it: weights and
    momentum buffers updated in place, BLAS matrix products, no autograd."""
    x, y = digits()
    n = len(x)
    rng = np.random.default_rng(0)
    matmul = np.matmul

    def make():
        (w1, b1), (w2, b2) = weights()
        params = [w1.copy(), b1.copy(), w2.copy(), b2.copy()]
        return params, [None] * 4

    def train_step(state, idx):
        params, bufs = state
        w1, b1, w2, b2 = params
        xb, yb = x[idx], y[idx]
        rows = len(idx)
        h = matmul(xb, w1.T)
        h += b1
        np.maximum(h, 0, out=h)                       # relu, in place: h > 0 is the mask
        z = matmul(h, w2.T)
        z += b2
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)             # z is now softmax(logits)
        picked = z[np.arange(rows), yb]
        loss = -np.log(picked).mean()
        z[np.arange(rows), yb] -= 1.0
        z *= 1.0 / rows                               # d loss / d logits
        grads = [None, None, matmul(z.T, h), z.sum(axis=0)]
        gh = matmul(z, w2)
        gh *= h > 0
        grads[0] = matmul(gh.T, xb)
        grads[1] = gh.sum(axis=0)
        for i, (p, g) in enumerate(zip(params, grads)):
            if bufs[i] is None:
                bufs[i] = g
            else:
                bufs[i] *= MOMENTUM
                bufs[i] += g
            p -= LR * bufs[i]
        return float(loss)

    def epoch(state):
        order = rng.permutation(n)
        for start in range(0, n, BATCH):
            train_step(state, order[start:start + BATCH])

    def check_steps(state):
        return [train_step(state, np.arange(i * BATCH, (i + 1) * BATCH))
                for i in range(CHECK_BATCHES)]

    return _loop(make, epoch, check_steps, lambda s: s[0])


register(Workload(
    name="digits",
    description="load_digits, 64-128-10 ReLU MLP, float32, cross-entropy, mini-batches of 32, "
                "SGD lr 0.05 momentum 0.9; one iteration = one epoch (57 steps)",
    sizes=(BATCH,),
    runners={**fastgrad_cores(fastgrad_runner), "torch": torch_runner, "numpy": numpy_runner},
    reference="numpy",
    rtol=1e-4,
    atol=1e-5,
    label=lambda b: f"batch {b}",
    targets=[
        Target("compiled", "torch", factor=5),
        Target("compiled", "numpy"),
    ],
))
