"""bigbatch: a 784-512-512-10 ReLU MLP on batches of 1024, float32, beside the GEMM floor.

One step: forward, cross-entropy, backward, SGD (lr 0.01) on one synthetic
batch (fixed seed).  The arithmetic is eight matrix products: three forward,
and backward the weight gradients of all three layers and the input
gradients of layers 3 and 2.  The `gemm` row times just those eight
products with NumPy on the same shapes (preallocated outputs): no library
can do the step in less, so `compiled / gemm` is fastgrad's overhead over
the BLAS floor.
"""
import numpy as np

from harness import Impl, Target, Workload, fastgrad_cores, register, register_impl
from workloads.common import linear_init, train_loop

SIZES = (784, 512, 512, 10)
LR = 0.01
CHECK_STEPS = 3

register_impl(Impl("gemm", "the step's matrix products alone, NumPy (the BLAS floor)", "numpy"))


def data(batch):
    rng = np.random.default_rng(784)
    return (rng.standard_normal((batch, SIZES[0])).astype(np.float32),
            rng.integers(0, SIZES[-1], batch).astype(np.int64))


def weights():
    return linear_init(SIZES, np.float32, seed=512)


def summary(losses, initial, final):
    """The check: the losses, and how far each parameter moved (a norm per parameter).

    The full parameters are 670k numbers; the distance each one travelled
    depends on every gradient of every step, and is one positive number.
    """
    moved = [np.linalg.norm(np.asarray(b, np.float64) - np.asarray(a, np.float64))
             for a, b in zip(initial, final)]
    return np.array(list(losses) + moved)


def _initial():
    return [a for layer in weights() for a in layer]


def _loop(make, train_step, values):
    return train_loop(make, train_step, CHECK_STEPS,
                      lambda losses, state: summary(losses, _initial(), values(state)))


def fastgrad_runner(batch):
    import fastgrad as fg
    from fastgrad import nn
    x0, y0 = data(batch)
    x, y = fg.tensor(x0), fg.tensor(y0)

    def make():
        layers = []
        for i, (w, b) in enumerate(weights()):
            lin = nn.Linear(w.shape[1], w.shape[0], dtype=np.float32)
            lin.weight.data[...] = w
            lin.bias.data[...] = b
            layers += [lin, nn.ReLU()] if i < len(SIZES) - 2 else [lin]
        model = nn.Sequential(*layers)
        return model, fg.optim.SGD(model.parameters(), lr=LR)

    def train_step(state):
        model, opt = state
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return _loop(make, train_step, lambda s: [p.numpy() for p in s[0].parameters()])


def torch_runner(batch):
    import torch
    x0, y0 = data(batch)
    x, y = torch.from_numpy(x0), torch.from_numpy(y0)

    def make():
        layers = []
        for i, (w, b) in enumerate(weights()):
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
            layers += [lin, torch.nn.ReLU()] if i < len(SIZES) - 2 else [lin]
        model = torch.nn.Sequential(*layers)
        return model, torch.optim.SGD(model.parameters(), lr=LR)

    def train_step(state):
        model, opt = state
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return _loop(make, train_step, lambda s: [p.detach().numpy() for p in s[0].parameters()])


def jax_runner(batch):
    import jax
    import jax.numpy as jnp
    x0, y0 = data(batch)
    x, y = jnp.asarray(x0), jnp.asarray(y0)

    def loss_fn(params):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w.T + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h, axis=1)
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    @jax.jit
    def update(params):
        value, grads = jax.value_and_grad(loss_fn)(params)
        return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)

    def make():
        return [[tuple(jnp.asarray(a) for a in layer) for layer in weights()]]

    def train_step(state):
        value, state[0] = update(state[0])
        return float(value)

    return _loop(make, train_step, lambda s: [np.asarray(a) for layer in s[0] for a in layer])


def numpy_step(x, y, p):
    """One full training step written out in NumPy (used by the numpy and gemm rows' checks)."""
    w1, b1, w2, b2, w3, b3 = p
    rows = len(y)
    h1 = x @ w1.T
    h1 += b1
    np.maximum(h1, 0, out=h1)
    h2 = h1 @ w2.T
    h2 += b2
    np.maximum(h2, 0, out=h2)
    z = h2 @ w3.T
    z += b3
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    loss = -np.log(z[np.arange(rows), y]).mean()
    z[np.arange(rows), y] -= 1.0
    z *= 1.0 / rows
    g3, gb3 = z.T @ h2, z.sum(0)
    d2 = z @ w3
    d2 *= h2 > 0
    g2, gb2 = d2.T @ h1, d2.sum(0)
    d1 = d2 @ w2
    d1 *= h1 > 0
    g1, gb1 = d1.T @ x, d1.sum(0)
    for a, g in zip(p, (g1, gb1, g2, gb2, g3, gb3)):
        a -= LR * g
    return float(loss)


def numpy_runner(batch):
    x, y = data(batch)
    return _loop(lambda: [a.copy() for a in _initial()], lambda p: numpy_step(x, y, p),
                 lambda p: p)


def gemm_runner(batch):
    """Just the eight matrix products of a step, into preallocated outputs."""
    x, y = data(batch)
    (w1, _), (w2, _), (w3, _) = weights()
    h1 = np.empty((batch, SIZES[1]), np.float32)
    h2 = np.empty((batch, SIZES[2]), np.float32)
    z = np.empty((batch, SIZES[3]), np.float32)
    g = np.random.default_rng(0).standard_normal((batch, SIZES[3])).astype(np.float32)
    d2, d1 = np.empty_like(h2), np.empty_like(h1)
    g1, g2, g3 = np.empty_like(w1), np.empty_like(w2), np.empty_like(w3)
    matmul = np.matmul

    def step():
        matmul(x, w1.T, out=h1)
        matmul(h1, w2.T, out=h2)
        matmul(h2, w3.T, out=z)
        matmul(g.T, h2, out=g3)
        matmul(g, w3, out=d2)
        matmul(d2.T, h1, out=g2)
        matmul(d2, w2, out=d1)
        matmul(d1.T, x, out=g1)

    # its check: the full step in NumPy, so the row still shows the shapes' math is right
    _, result = numpy_runner(batch)
    return step, result


register(Workload(
    name="bigbatch",
    description="784-512-512-10 ReLU MLP, float32, cross-entropy, SGD lr 0.01, batch 1024 of "
                "synthetic data; one step = forward, backward, update; gemm = the step's eight "
                "matrix products alone (NumPy, same shapes): the floor",
    sizes=(1024,),
    runners={**fastgrad_cores(fastgrad_runner), "torch": torch_runner, "jax": jax_runner,
             "numpy": numpy_runner, "gemm": gemm_runner},
    reference="numpy",
    rtol=2e-3,
    atol=1e-5,
    label=lambda b: f"batch {b}",
    settle=0.5,
    targets=[
        Target("compiled", "gemm", factor=1 / 1.15),
    ],
))
