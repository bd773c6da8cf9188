"""moons_scalar: the classic scalar-autograd demo, one multiply-add at a time.

make_moons(100, noise=0.1, random_state=1), labels -1/+1; a 2-16-16-1 MLP
(ReLU hidden layers) whose every weight is a 0-d value; each neuron is
b + w1*x1 + w2*x2 + ..., built with a Python loop; the loss is the mean of
relu(1 - y * score) over the 100 points plus 1e-4 * the sum of squared
parameters; full-batch gradient descent with lr = 1.0 - 0.9 * k / 100.  One
step builds ~65,000 nodes, so this measures what each library spends per
scalar node.

Rows: fastgrad eager on both cores, fastgrad with `fg.compile` (the graph is
recorded once and replayed: no Python per node) on both cores, micrograd,
and PyTorch with 0-d tensors.
"""
import numpy as np

from harness import Impl, Target, Workload, register, register_impl
from workloads.common import flat, moons, moons_lr

SIZES = (2, 16, 16, 1)
CHECK_STEPS = 3

register_impl(Impl("replay", "fastgrad, compiled core, fg.compile (graph recorded once, replayed)",
                   "fastgrad", {"FASTGRAD_BACKEND": "compiled"}, None))
register_impl(Impl("python-replay", "fastgrad, reference core, fg.compile", "fastgrad",
                   {"FASTGRAD_BACKEND": "python"}, None))


def initial_weights():
    """Per layer, per neuron: (weights, bias), micrograd's init (uniform(-1, 1), bias 0)."""
    rng = np.random.default_rng(1337)
    return [[(rng.uniform(-1.0, 1.0, fan_in).tolist(), 0.0) for _ in range(fan_out)]
            for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:])]


def build(scalar, relu):
    """The model and its loss for any scalar type: `scalar(v)` makes a parameter."""
    model = [[([scalar(w) for w in ws], scalar(b)) for ws, b in layer]
             for layer in initial_weights()]
    params = [p for layer in model for ws, b in layer for p in ws + [b]]
    xs, ys = moons()
    points = [(x.tolist(), float(y)) for x, y in zip(xs, ys)]
    last = len(model) - 1

    def score(x):
        for depth, layer in enumerate(model):
            out = []
            for ws, b in layer:
                act = b
                for w, xi in zip(ws, x):
                    act = act + w * xi
                out.append(relu(act) if depth < last else act)
            x = out
        return x[0]

    def loss():
        margins = [relu(1 - score(x) * y) for x, y in points]
        data_loss = sum(margins) * (1.0 / len(margins))
        penalty = 1e-4 * sum(p * p for p in params)
        return data_loss + penalty

    return params, loss


def _fastgrad(replay):
    def runner(size):
        import fastgrad as fg

        def make():
            params, loss = build(lambda v: fg.tensor(v, dtype=np.float64, requires_grad=True),
                                 lambda t: t.relu())
            opt = fg.optim.SGD(params, lr=1.0)
            return params, (fg.compile(loss) if replay else loss), opt

        def train_step(state, k):
            params, loss, opt = state
            opt.zero_grad()
            if replay:
                value = loss()                 # replays forward and backward
            else:
                out = loss()
                out.backward()
                value = out.item()
            opt.param_groups[0]["lr"] = moons_lr(k)
            opt.step()
            return value

        return _loop(make, train_step, lambda state: [p.numpy() for p in state[0]])
    return runner


def micrograd_runner(size):
    from micrograd.engine import Value

    def make():
        params, loss = build(Value, lambda v: v.relu())
        return params, loss

    def train_step(state, k):
        params, loss = state
        for p in params:
            p.grad = 0.0
        out = loss()
        out.backward()
        lr = moons_lr(k)
        for p in params:
            p.data -= lr * p.grad
        return out.data

    return _loop(make, train_step, lambda state: [p.data for p in state[0]])


def torch_runner(size):
    import torch

    def make():
        params, loss = build(lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True),
                             torch.relu)
        return params, loss

    def train_step(state, k):
        params, loss = state
        for p in params:
            p.grad = None
        out = loss()
        out.backward()
        lr = moons_lr(k)
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        return out.item()

    return _loop(make, train_step, lambda state: [p.detach().numpy() for p in state[0]])


def _loop(make, train_step, values):
    """(step, result) for the harness: step trains one step of a live model; result
    trains a fresh model CHECK_STEPS steps and returns its losses and parameters."""
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


register(Workload(
    name="moons_scalar",
    description="make_moons(100, noise=0.1), 2-16-16-1 ReLU MLP of 0-d values built one "
                "multiply-add at a time (~65k nodes a step), hinge loss + 1e-4 L2, full-batch GD "
                "with lr = 1 - 0.9 k/100; one step = forward, backward, update",
    sizes=(100,),
    runners={"compiled": _fastgrad(False), "python": _fastgrad(False), "replay": _fastgrad(True),
             "python-replay": _fastgrad(True), "micrograd": micrograd_runner,
             "torch": torch_runner},
    reference="python",
    rtol=1e-9,
    atol=1e-12,
    label=lambda n: f"{n} points",
    targets=[
        Target("replay", "micrograd", factor=50),
        Target("replay", "python-replay", factor=20),
        Target("compiled", "micrograd", factor=5),
    ],
))
