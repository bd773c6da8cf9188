"""fg.compile: a recorded graph replayed gives what eager execution gives."""
import numpy as np
import pytest


def _params(fg, rng, shapes):
    return [fg.tensor(rng.normal(size=s), dtype=np.float64, requires_grad=True) for s in shapes]


def _sgd(fg, params, lr):
    with fg.no_grad():
        for p in params:
            p.data -= lr * p.grad.numpy()
            p.grad = None


def _train(fg, make_loss, params, steps, compiled):
    losses, grads = [], []
    step = fg.compile(make_loss) if compiled else None
    for _ in range(steps):
        if compiled:
            losses.append(step())
        else:
            loss = make_loss()
            loss.backward()
            losses.append(loss.item())
        grads.append([p.grad.numpy().copy() for p in params])
        _sgd(fg, params, 0.1)
    return losses, grads, [p.numpy().copy() for p in params]


def scalar_model(fg, rng):
    w = [fg.tensor(float(v), dtype=np.float64, requires_grad=True) for v in rng.normal(size=6)]
    xs = [(fg.tensor(float(a), dtype=np.float64), float(t)) for a, t in rng.normal(size=(8, 2))]

    def loss():
        total = fg.tensor(0.0, dtype=np.float64)
        for x, t in xs:
            h1 = (w[0] * x + w[1]).tanh()
            h2 = (w[2] * x + w[3]).relu()
            out = w[4] * h1 + w[5] * h2
            total = total + (out - t) ** 2
        return total * (1 / len(xs)) + 1e-3 * (w[0] * w[0] + w[2] * w[2])
    return w, loss


def vector_model(fg, rng):
    core = fg._core_module
    params = _params(fg, rng, [(5, 3), (5,), (4, 5), (4,)])
    x = fg.tensor(rng.normal(size=(6, 3)))
    target = np.array([0, 1, 2, 3, 1, 0])

    def loss():
        h = core.linear(x, params[0], params[1]).sigmoid()
        logits = core.linear(h, params[2], params[3])
        penalty = (params[0] ** 2).sum() * 1e-3 + (h @ params[2].T).mean() * 0.01
        return core.cross_entropy(logits, target) + penalty + logits[:, 1:3].max() * 0.1
    return params, loss


@pytest.mark.parametrize("model", [scalar_model, vector_model])
def test_replay_matches_eager_over_training_steps(fg, model):
    params, loss = model(fg, np.random.default_rng(0))
    eager = _train(fg, loss, params, 4, compiled=False)
    params2, loss2 = model(fg, np.random.default_rng(0))
    replay = _train(fg, loss2, params2, 4, compiled=True)
    np.testing.assert_allclose(replay[0], eager[0], rtol=1e-13)
    assert replay[0][0] != replay[0][-1]          # the replays saw the updated parameters
    for ge, gr in zip(eager[1], replay[1]):
        for a, b in zip(ge, gr):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)
    for a, b in zip(eager[2], replay[2]):
        np.testing.assert_allclose(b, a, rtol=1e-12)


def test_replay_sees_new_data_written_in_place(fg):
    w = fg.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    x = fg.tensor([3.0, 4.0], dtype=np.float64)
    step = fg.compile(lambda: (w * x).sum())
    assert step() == 11.0 and w.grad.numpy().tolist() == [3.0, 4.0]
    x.data[...] = [5.0, 6.0]
    w.grad = None
    assert step() == 17.0 and w.grad.numpy().tolist() == [5.0, 6.0]
    step()                                        # gradients accumulate, as backward()
    assert w.grad.numpy().tolist() == [10.0, 12.0]


def test_replay_agrees_between_cores(both):
    results = []
    for fg in both:
        params, loss = vector_model(fg, np.random.default_rng(3))
        results.append(_train(fg, loss, params, 3, compiled=True))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-12)
    for a, b in zip(results[0][2], results[1][2]):
        np.testing.assert_allclose(b, a, rtol=1e-12)


def test_compile_needs_a_scalar_loss_that_requires_grad(fg):
    with pytest.raises(TypeError, match="compile"):
        fg.compile(3)
    step = fg.compile(lambda: fg.ones(3, requires_grad=True) * 2)
    with pytest.raises(ValueError, match="scalar"):
        step()
    step = fg.compile(lambda: fg.ones(()).sum())
    with pytest.raises(ValueError, match="require grad"):
        step()


def test_replay_after_an_optimizer_step_on_both_cores(fg):
    """optim.step() updates parameters in place (bumping their versions); a replay
    recomputes the graph from the new values, so it is not stale on either core,
    and it trains exactly as eager execution does."""
    rng = np.random.default_rng(3)
    x = fg.tensor(rng.normal(size=(4, 3)))
    start = rng.normal(size=3)
    w_replay = fg.tensor(start, dtype=np.float64, requires_grad=True)
    w_eager = fg.tensor(start, dtype=np.float64, requires_grad=True)
    opt_replay = fg.optim.SGD([w_replay], lr=0.1)
    opt_eager = fg.optim.SGD([w_eager], lr=0.1)
    step = fg.compile(lambda: ((x @ w_replay).tanh() ** 2).sum())
    replayed, eager = [], []
    for _ in range(4):
        opt_replay.zero_grad()
        replayed.append(step())
        opt_replay.step()
        opt_eager.zero_grad()
        loss = ((x @ w_eager).tanh() ** 2).sum()
        loss.backward()
        eager.append(loss.item())
        opt_eager.step()
    np.testing.assert_allclose(replayed, eager, rtol=1e-12)
    assert replayed[-1] < replayed[0]


def test_replay_recomputes_what_was_computed_from_data_alone(fg):
    """Nodes computed only from tensors that do not require grad (the batch
    scaled, reshaped, padded before it meets a weight) are part of the step
    too: a replay must recompute them from the data's current values, not
    keep the values of the recording."""
    w = fg.tensor([[1.0], [2.0]], dtype=np.float64, requires_grad=True)
    x = fg.tensor([[3.0, 4.0, 5.0, 6.0]], dtype=np.float64)
    step = fg.compile(lambda: ((x.reshape(2, 2) * 0.5 + 1.0) @ w).sum())
    assert step() == 2.5 * 1 + 3.0 * 2 + 3.5 * 1 + 4.0 * 2
    x.data[...] = [[1.0, 1.0, 1.0, 1.0]]
    w.grad = None
    assert step() == 1.5 * 3 + 1.5 * 3
    np.testing.assert_array_equal(w.grad.numpy(), [[3.0], [3.0]])
    assert x.grad is None and not x.requires_grad


def test_replay_of_a_cnn_on_a_plain_batch_matches_eager(fg):
    nn = fg.nn
    rng = np.random.default_rng(5)
    batches = [rng.normal(size=(4, 1, 6, 6)).astype(np.float32) for _ in range(3)]
    labels = [rng.integers(0, 3, size=4) for _ in range(3)]

    def model():
        fg.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(18, 3))

    eager, replayed = model(), model()
    x = fg.tensor(batches[0])
    y = fg.tensor(labels[0])
    step = fg.compile(lambda: nn.functional.cross_entropy(replayed(x), y))
    for xb, yb in zip(batches, labels):
        x.data[...] = xb
        y.data[...] = yb
        got = step()
        loss = nn.functional.cross_entropy(eager(fg.tensor(xb)), fg.tensor(yb))
        loss.backward()
        np.testing.assert_allclose(got, loss.item(), rtol=1e-5)
        for p, q in zip(replayed.parameters(), eager.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)
        for m in (eager, replayed):
            for p in m.parameters():
                p.data -= 0.1 * p.grad.data
                p.grad = None


def test_tensors_computed_from_data_look_the_same_while_recording(fg):
    x = fg.tensor([1.0, 2.0])
    w = fg.tensor([1.0, 1.0], requires_grad=True)
    seen = {}

    def loss():
        h = x * 2.0
        seen.update(requires_grad=h.requires_grad, is_leaf=h.is_leaf, grad_fn=h.grad_fn)
        h.requires_grad_(False)                 # allowed on a tensor that does not require grad
        return (h * w).sum()
    fg.compile(loss)()
    assert seen == {"requires_grad": False, "is_leaf": True, "grad_fn": None}
