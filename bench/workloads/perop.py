"""perop: per-op overhead on a long chain of small elementwise ops.

    y = x;  100 times: y = tanh(y * 0.9 + 0.1);  loss = sum(y);  backward

x has n float64 elements and requires grad; the result is x's gradient.
At n = 1 and 16 the arithmetic is nothing and the time is what each library
spends per op (recording a node, allocating, dispatching); at n = 4096 the
arithmetic starts to count.
"""
import numpy as np

from harness import Target, Workload, fastgrad_cores, register

STEPS = 100
OPS_PER_STEP = 3          # mul, add, tanh


def _input(n):
    # tanh's range, so the chain neither saturates at once nor blows up
    return np.random.default_rng(1234 + n).uniform(-1.0, 1.0, n)


def fastgrad_runner(n):
    import fastgrad as fg
    x = fg.tensor(_input(n), dtype=np.float64, requires_grad=True)

    def step():
        x.grad = None
        y = x
        for _ in range(STEPS):
            y = (y * 0.9 + 0.1).tanh()
        y.sum().backward()

    return step, lambda: x.grad.numpy()


def torch_runner(n):
    import torch
    x = torch.tensor(_input(n), dtype=torch.float64, requires_grad=True)

    def step():
        x.grad = None
        y = x
        for _ in range(STEPS):
            y = (y * 0.9 + 0.1).tanh()
        y.sum().backward()

    return step, lambda: x.grad.numpy()


def numpy_runner(n):
    """Forward and backward by hand, as tight as NumPy allows: every array is
    allocated once here and each ufunc writes into one of them (``out=``), so an
    iteration is 3 ufunc calls per step forward and 4 per step backward.

    No ufunc writes over one of its own inputs: with NumPy 2.x on 1-element
    arrays that costs ~0.5 us more per call (measured: np.add(o, c, out=o)
    1.0 us against 0.5 us into another array), so buffers alternate instead."""
    x = _input(n)
    saved = [np.empty(n) for _ in range(STEPS)]   # tanh output of each step, for backward
    saved_reversed = saved[::-1]
    scaled, shifted = np.empty(n), np.empty(n)
    square, local = np.empty(n), np.empty(n)
    grad, grad_scaled = np.empty(n), np.empty(n)  # d loss / d y; grad ends as d loss / d x
    scale, shift, one = np.float64(0.9), np.float64(0.1), np.float64(1.0)
    multiply, add, subtract, tanh = np.multiply, np.add, np.subtract, np.tanh
    total = np.add.reduce

    def step():
        y = x
        for t in saved:
            multiply(y, scale, out=scaled)
            add(scaled, shift, out=shifted)
            tanh(shifted, out=t)
            y = t
        loss = total(y)
        grad.fill(1.0)                              # d sum(y) / d y
        for t in saved_reversed:
            multiply(t, t, out=square)              # tanh' = 1 - tanh^2
            subtract(one, square, out=local)
            multiply(grad, local, out=grad_scaled)
            multiply(grad_scaled, scale, out=grad)  # (y * 0.9)' = 0.9; (+ 0.1)' = 1
        return loss

    return step, lambda: grad.copy()


register(Workload(
    name="perop",
    description=f"x (n float64, requires grad); {STEPS} x y = tanh(y*0.9 + 0.1); sum; "
                f"forward + backward; result x.grad",
    sizes=(1, 16, 4096),
    runners={**fastgrad_cores(fastgrad_runner), "torch": torch_runner, "numpy": numpy_runner},
    ops=lambda n: STEPS * OPS_PER_STEP,
    op_note=f"{STEPS * OPS_PER_STEP} ops = {STEPS} x (mul, add, tanh), each forward + backward; "
            f"the final sum is not counted",
    reference="numpy",
    rtol=1e-9,
    targets=[
        Target("compiled", "torch", factor=15, sizes=(1, 16)),
        Target("compiled", "numpy", strict=True, sizes=(1, 16)),
        Target("compiled", "numpy", sizes=(4096,)),
        Target("compiled", "python", factor=10, sizes=(1, 16)),
    ],
))
