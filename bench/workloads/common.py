"""What the training workloads share: data, initial weights, and the check.

Every implementation of a workload trains from the same NumPy arrays (data
and initial weights come from here, drawn with fixed seeds), so the
correctness check can compare them: ``check`` functions train a fresh copy
for a few fixed steps and return the losses and final parameters as one
vector.  That value does not depend on how many steps the timing loop ran.
"""
import numpy as np


def moons():
    """make_moons(n_samples=100, noise=0.1, random_state=1), labels -1 / +1 (float64)."""
    from sklearn.datasets import make_moons
    x, y = make_moons(n_samples=100, noise=0.1, random_state=1)
    return x.astype(np.float64), (2.0 * y - 1.0).astype(np.float64)


def digits():
    """scikit-learn's bundled digits: x in [0, 1] (float32, 1797 x 64), integer labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def linear_init(sizes, dtype, seed):
    """[(W (out, in), b (out,)), ...] drawn like nn.Linear's default init, from one seed."""
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(dtype)
        b = rng.uniform(-bound, bound, fan_out).astype(dtype)
        layers.append((w, b))
    return layers


def flat(losses, arrays):
    """One check vector: the losses, then every parameter, flattened."""
    return np.concatenate([np.asarray(losses, dtype=np.float64).ravel()]
                          + [np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def moons_lr(k):
    """The demo's learning-rate schedule over 100 steps (k counts modulo 100)."""
    return 1.0 - 0.9 * (k % 100) / 100


def train_loop(make, train_step, check_steps, check):
    """The (step, result) pair a training workload's runner returns.

    step() trains one model made once by make(); result() trains a fresh
    one for check_steps steps and gives check(losses, fresh_state), the
    value the implementations are compared on.
    """
    state = make()

    def step():
        train_step(state)

    def result():
        fresh = make()
        losses = [train_step(fresh) for _ in range(check_steps)]
        return check(losses, fresh)

    return step, result
