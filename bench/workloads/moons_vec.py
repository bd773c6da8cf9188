"""moons_vec: the scalar demo's model and training, vectorized.

The same data, initial weights, loss and learning-rate schedule as
moons_scalar, but the 100 x 2 input goes through Linear layers (2-16-16-1,
ReLU) as matrices, float64.  One step = forward, backward, update.
"""
import numpy as np

from harness import Target, Workload, fastgrad_cores, register
from workloads.common import flat, moons, moons_lr
from workloads.moons_scalar import initial_weights

CHECK_STEPS = 5
ALPHA = 1e-4


def weights():
    """[(W (out, in), b (out,))] per layer: moons_scalar's initial values as matrices."""
    return [(np.array([ws for ws, _ in layer]), np.array([b for _, b in layer]))
            for layer in initial_weights()]


def _loop(make, train_step, values):
    state = make()
    counter = [0]

    def step():
        train_step(state, counter[0])
        counter[0] += 1

    def result():
        fresh = make()
        losses = [train_step(fresh, k) for k in range(CHECK_STEPS)]
        return flat(losses, values(fresh))

    return step, result


def _fastgrad(replay):
    def runner(size):
        import fastgrad as fg
        from fastgrad import nn
        x0, y0 = moons()
        x, y = fg.tensor(x0), fg.tensor(y0.reshape(-1, 1))

        def make():
            model = nn.Sequential(nn.Linear(2, 16, dtype=np.float64), nn.ReLU(),
                                  nn.Linear(16, 16, dtype=np.float64), nn.ReLU(),
                                  nn.Linear(16, 1, dtype=np.float64))
            for layer, (w, b) in zip(model[::2], weights()):
                layer.weight.data[...] = w
                layer.bias.data[...] = b
            params = list(model.parameters())

            def loss():
                margins = (1 - model(x) * y).relu()
                return margins.mean() + ALPHA * sum((p * p).sum() for p in params)

            return params, (fg.compile(loss) if replay else loss), fg.optim.SGD(params, lr=1.0)

        def train_step(state, k):
            params, loss, opt = state
            opt.zero_grad()
            if replay:
                value = loss()
            else:
                out = loss()
                out.backward()
                value = out.item()
            opt.param_groups[0]["lr"] = moons_lr(k)
            opt.step()
            return value

        return _loop(make, train_step, lambda s: [p.numpy() for p in s[0]])
    return runner


def torch_runner(size):
    import torch
    x0, y0 = moons()
    x, y = torch.tensor(x0), torch.tensor(y0.reshape(-1, 1))

    def make():
        model = torch.nn.Sequential(torch.nn.Linear(2, 16, dtype=torch.float64), torch.nn.ReLU(),
                                    torch.nn.Linear(16, 16, dtype=torch.float64), torch.nn.ReLU(),
                                    torch.nn.Linear(16, 1, dtype=torch.float64))
        with torch.no_grad():
            for layer, (w, b) in zip(model[::2], weights()):
                layer.weight.copy_(torch.tensor(w))
                layer.bias.copy_(torch.tensor(b))
        params = list(model.parameters())
        return model, params, torch.optim.SGD(params, lr=1.0)

    def train_step(state, k):
        model, params, opt = state
        opt.zero_grad()
        margins = torch.relu(1 - model(x) * y)
        loss = margins.mean() + ALPHA * sum((p * p).sum() for p in params)
        loss.backward()
        opt.param_groups[0]["lr"] = moons_lr(k)
        opt.step()
        return loss.item()

    return _loop(make, train_step, lambda s: [p.detach().numpy() for p in s[1]])


def jax_runner(size):
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    x0, y0 = moons()
    x, y = jnp.asarray(x0), jnp.asarray(y0.reshape(-1, 1))

    def loss_fn(params):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w.T + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        margins = jax.nn.relu(1 - h * y)
        return margins.mean() + ALPHA * sum((w * w).sum() + (b * b).sum() for w, b in params)

    @jax.jit
    def update(params, lr):
        value, grads = jax.value_and_grad(loss_fn)(params)
        return value, jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

    def make():
        return [[tuple(jnp.asarray(a) for a in layer) for layer in weights()]]

    def train_step(state, k):
        value, state[0] = update(state[0], moons_lr(k))
        return float(value)          # waits for the result

    return _loop(make, train_step, lambda s: [np.asarray(a) for layer in s[0] for a in layer])


def numpy_runner(size):
    """Forward, backward and update written out in NumPy."""
    x, y0 = moons()
    y = y0.reshape(-1, 1)
    n = len(x)

    def make():
        return [a.copy() for layer in weights() for a in layer]

    def train_step(p, k):
        w1, b1, w2, b2, w3, b3 = p
        z1 = x @ w1.T + b1
        h1 = np.maximum(z1, 0)
        z2 = h1 @ w2.T + b2
        h2 = np.maximum(z2, 0)
        s = h2 @ w3.T + b3
        m = 1 - s * y
        loss = np.maximum(m, 0).mean() + ALPHA * sum((a * a).sum() for a in p)
        ds = -y * (m > 0) / n                          # d loss / d score
        g3, gb3 = ds.T @ h2, ds.sum(0)
        dz2 = (ds @ w3) * (z2 > 0)
        g2, gb2 = dz2.T @ h1, dz2.sum(0)
        dz1 = (dz2 @ w2) * (z1 > 0)
        g1, gb1 = dz1.T @ x, dz1.sum(0)
        lr = moons_lr(k)
        for a, g in zip(p, (g1, gb1, g2, gb2, g3, gb3)):
            a -= lr * (g + 2 * ALPHA * a)
        return float(loss)

    return _loop(make, train_step, lambda p: p)


register(Workload(
    name="moons_vec",
    description="moons_scalar's model and training vectorized: 100 x 2 input through Linear "
                "2-16-16-1 (ReLU), hinge loss + 1e-4 L2, GD with lr = 1 - 0.9 k/100, float64; "
                "one step = forward, backward, update",
    sizes=(100,),
    runners={**fastgrad_cores(_fastgrad(False)), "replay": _fastgrad(True),
             "torch": torch_runner, "jax": jax_runner, "numpy": numpy_runner},
    reference="numpy",
    rtol=1e-9,
    atol=1e-12,
    label=lambda n: f"{n} points",
    targets=[
        Target("compiled", "torch", factor=5),
        Target("compiled", "python", factor=2),
    ],
))
