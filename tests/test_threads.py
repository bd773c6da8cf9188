"""Threads: grad mode per thread, and backward from several threads at once.

Grad mode (no_grad, enable_grad, set_grad_enabled, inference_mode) belongs to
a thread, as in PyTorch.  Sweeps from several threads into shared leaves are
serialised, so their accumulated .grad equals running them one after another.
See docs/threads.md.

The interpreter's switch interval is shortened while these tests run, so that
threads really interleave inside forward and backward (at the default 5 ms a
small step often finishes before another thread gets to run).
"""
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

WAIT = 30.0           # seconds; only reached when a test is about to fail


@pytest.fixture(autouse=True)
def fast_switching():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


def run_threads(*targets):
    """Run each target in its own thread; re-raise the first failure."""
    errors = [None] * len(targets)

    def runner(i, fn):
        try:
            fn()
        except BaseException as exc:       # noqa: BLE001 - reported in the main thread
            errors[i] = exc

    threads = [threading.Thread(target=runner, args=(i, fn)) for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 4)
        assert not t.is_alive(), "a thread did not finish (deadlock?)"
    for exc in errors:
        if exc is not None:
            raise exc


def records(fg):
    """Does an op in this thread record a graph right now?"""
    x = fg.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    y = x * 2.0
    return y.requires_grad and y.grad_fn is not None


# --- grad mode per thread --------------------------------------------------

def test_no_grad_in_one_thread_leaves_another_recording(fg):
    inside, checked = threading.Event(), threading.Event()
    seen = {}

    def validator():
        with fg.no_grad():
            seen["validator"] = (fg.is_grad_enabled(), records(fg))
            inside.set()
            assert checked.wait(WAIT)
            seen["validator_after"] = records(fg)
        seen["validator_out"] = records(fg)

    def trainer():
        assert inside.wait(WAIT)
        seen["trainer"] = (fg.is_grad_enabled(), records(fg))
        with fg.no_grad():
            seen["trainer_no_grad"] = records(fg)
        seen["trainer_out"] = records(fg)
        checked.set()

    run_threads(validator, trainer)
    assert seen["validator"] == (False, False)
    assert seen["trainer"] == (True, True)
    assert seen["trainer_no_grad"] is False
    assert seen["trainer_out"] is True
    assert seen["validator_after"] is False       # the trainer's exit did not re-enable it
    assert seen["validator_out"] is True
    assert fg.is_grad_enabled()


def test_a_new_thread_starts_with_grad_enabled(fg):
    seen = []
    with fg.no_grad():
        fg.set_grad_enabled(False)
        run_threads(lambda: seen.append((fg.is_grad_enabled(), records(fg))))
        assert not fg.is_grad_enabled()
    assert seen == [(True, True)]
    assert fg.is_grad_enabled() and records(fg)


def test_set_grad_enabled_in_a_thread_stays_in_that_thread(fg):
    seen = []

    def off():
        fg.set_grad_enabled(False)                 # a plain call takes effect at once
        seen.append(("off", records(fg)))

    run_threads(off)
    seen.append(("main", records(fg)))
    assert seen == [("off", False), ("main", True)]


def test_grad_mode_decorators_and_aliases(fg):
    inference_mode = fg.autograd.inference_mode

    @fg.no_grad()
    def called():
        return fg.is_grad_enabled(), records(fg)

    @fg.no_grad
    def bare():
        return fg.is_grad_enabled(), records(fg)

    @inference_mode()
    def inferred():
        return fg.is_grad_enabled(), records(fg)

    @inference_mode
    def inferred_bare():
        return fg.is_grad_enabled(), records(fg)

    @fg.set_grad_enabled(False)
    def switched_off():
        return fg.is_grad_enabled()

    @fg.enable_grad()
    def enabled():
        return fg.is_grad_enabled()

    assert fg.is_grad_enabled()          # building a set_grad_enabled decorator changed nothing
    for fn in (called, bare, inferred, inferred_bare):
        assert fn() == (False, False)
        assert fg.is_grad_enabled()
    assert switched_off() is False
    with fg.no_grad():
        assert enabled() is True
        assert not fg.is_grad_enabled()
        with inference_mode(False):
            assert fg.is_grad_enabled()      # as in PyTorch
        with fg.set_grad_enabled(True):
            assert records(fg)
        assert not fg.is_grad_enabled()
    with inference_mode():
        assert not records(fg)
    assert records(fg)

    # the decorated functions run in other threads, while this one records
    results = []
    run_threads(*[lambda fn=fn: results.append(fn()) for fn in (called, bare, inferred)] * 2)
    assert results == [(False, False)] * 6
    assert records(fg)


def test_decorating_something_else_is_a_type_error(fg):
    with pytest.raises(TypeError, match="no_grad"):
        fg.no_grad(3)


def test_one_no_grad_object_entered_by_two_threads(fg):
    shared = fg.no_grad()
    both_inside, first_out = threading.Barrier(2, timeout=WAIT), threading.Event()
    seen = {}

    def first():
        with shared:
            both_inside.wait()
        seen["first_out"] = fg.is_grad_enabled()
        first_out.set()

    def second():
        fg.set_grad_enabled(False)        # so the two threads have different modes to restore
        with shared:
            both_inside.wait()
            assert first_out.wait(WAIT)
            seen["second_in"] = fg.is_grad_enabled()
        seen["second_out"] = fg.is_grad_enabled()

    run_threads(first, second)
    assert seen == {"first_out": True, "second_in": False, "second_out": False}


# --- backward from several threads -----------------------------------------

def small_model(fg, seed, features=6, width=12):
    fg.manual_seed(seed)
    return fg.nn.Sequential(fg.nn.Linear(features, width), fg.nn.Tanh(),
                            fg.nn.Linear(width, 1))


def batches(seed, count=5, n=4, features=6):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(n, features)), rng.normal(size=(n, 1))) for _ in range(count)]


def loss_of(fg, model, x, t):
    out = model(fg.tensor(x))
    return ((out - fg.tensor(t)) ** 2).mean()


STEPS = 200
THREADS = 4
RUNS = 20


def test_backward_from_four_threads_into_one_model(fg):
    fg.set_default_dtype(np.float64)
    try:
        # Big enough that the matrix products go to BLAS and tanh to NumPy,
        # which release the GIL in the middle of a sweep: that is where two
        # unserialised sweeps over shared leaves interleave.
        model = small_model(fg, 0, features=32, width=64)
        data = [batches(100 + k, n=16, features=32) for k in range(THREADS)]

        def steps(k):
            for s in range(STEPS):
                x, t = data[k][s % len(data[k])]
                loss_of(fg, model, x, t).backward()

        model.zero_grad()
        for k in range(THREADS):
            steps(k)
        expected = [p.grad.numpy().copy() for p in model.parameters()]

        for run in range(RUNS):
            model.zero_grad()
            run_threads(*[lambda k=k: steps(k) for k in range(THREADS)])
            for p, e in zip(model.parameters(), expected):
                np.testing.assert_allclose(p.grad.numpy(), e, rtol=1e-12, atol=1e-12,
                                           err_msg="run %d" % run)
    finally:
        fg.set_default_dtype(np.float32)


def test_four_threads_each_training_their_own_model(fg):
    fg.set_default_dtype(np.float64)
    try:
        data = [batches(200 + k) for k in range(THREADS)]

        def train(k, model, out):
            opt = fg.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            for s in range(STEPS):
                x, t = data[k][s % len(data[k])]
                opt.zero_grad()
                loss_of(fg, model, x, t).backward()
                opt.step()
            out[k] = [p.numpy().copy() for p in model.parameters()]

        alone = [None] * THREADS
        for k in range(THREADS):
            train(k, small_model(fg, 10 + k), alone)

        for run in range(RUNS):
            # built here, in one thread (the seeded generator is global); the
            # threads only train
            models = [small_model(fg, 10 + k) for k in range(THREADS)]
            out = [None] * THREADS
            with fg.no_grad():       # the main thread's mode must not reach the workers
                run_threads(*[lambda k=k: train(k, models[k], out) for k in range(THREADS)])
            for k in range(THREADS):
                for got, want in zip(out[k], alone[k]):
                    np.testing.assert_array_equal(got, want, err_msg="run %d, thread %d"
                                                  % (run, k))
    finally:
        fg.set_default_dtype(np.float32)


def test_fg_grad_and_compiled_steps_from_threads_share_leaves(fg):
    # matrix products big enough for BLAS, which releases the GIL mid-sweep
    rng = np.random.default_rng(4)
    w = fg.tensor(rng.normal(size=(48, 48)) * 0.2, requires_grad=True)
    xs = {c: fg.tensor(rng.normal(size=(32, 48))) for c in (0, 1, 2, 3)}

    def loss(c, weight):
        return ((xs[c] @ weight).tanh() * (c + 1.0)).sum()

    def functional_grad(c):
        x = w.detach().requires_grad_()
        (g,) = fg.grad(loss(c, x), [x])
        return g.numpy()

    steps = [fg.compile(lambda c=c: loss(c, w)) for c in (0, 1, 2)]
    expected = sum(functional_grad(c) for c in (0, 1, 2)) * 30
    alone = functional_grad(3)
    found = []

    def replay(step):
        for _ in range(30):
            step()

    def functional():
        for _ in range(30):
            found.append(functional_grad(3))

    w.grad = None
    run_threads(*[lambda s=s: replay(s) for s in steps], functional)
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-12, atol=1e-12)
    for g in found:
        np.testing.assert_array_equal(g, alone)


def test_compile_recording_in_one_thread_does_not_end_another(fg):
    # Thread A starts recording, then B starts; A finishes while B is still
    # inside its function.  B's recording must keep its values (a flag shared
    # by the threads would have been switched off by A's exit).
    x = fg.tensor(np.linspace(-1.0, 1.0, 4096), dtype=np.float64, requires_grad=True)
    a_in, b_in, a_done = threading.Event(), threading.Event(), threading.Event()
    results = {}

    def fn_a():
        a_in.set()
        assert b_in.wait(WAIT)
        return (x * 2.0).sum()

    def fn_b():
        b_in.set()
        assert a_done.wait(WAIT)
        return ((x * 0.9 + 0.1).tanh() * 0.5 + 0.75).sqrt().sum()

    def thread_a():
        assert fg.compile(fn_a)() == pytest.approx(0.0, abs=1e-9)
        a_done.set()

    def thread_b():
        assert a_in.wait(WAIT)
        step = fg.compile(fn_b)
        results["b"] = [step(), step()]

    x.grad = None
    run_threads(thread_a, thread_b)
    xv = x.numpy()
    value = np.sqrt(np.tanh(xv * 0.9 + 0.1) * 0.5 + 0.75).sum()
    assert results["b"] == pytest.approx([value, value], rel=1e-12)
    u = np.tanh(xv * 0.9 + 0.1)
    grad_b = 0.5 * (u * 0.5 + 0.75) ** -0.5 * 0.5 * (1 - u ** 2) * 0.9
    np.testing.assert_allclose(x.grad.numpy(), 2.0 + 2 * grad_b, rtol=1e-12, atol=1e-12)


def test_backward_inside_a_custom_backward_while_other_threads_sweep(fg):
    # A Function whose backward runs a sweep of its own: the sweep lock is
    # re-entrant, so this neither deadlocks nor loses the other threads' gradients.
    class Square(fg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved_tensors
            with fg.enable_grad():
                inner = fg.tensor(np.asarray(x), requires_grad=True)
                (g,) = fg.grad((inner * inner).sum(), [inner])
            return g * grad_out

    w = fg.tensor(np.arange(1.0, 6.0), dtype=np.float64, requires_grad=True)

    def work():
        for _ in range(50):
            Square.apply(w).sum().backward()
            (w * 3.0).sum().backward()

    run_threads(*[work] * 3)
    np.testing.assert_allclose(w.grad.numpy(), 150 * (2 * np.arange(1.0, 6.0) + 3.0),
                               rtol=1e-12)


def test_fit_validates_in_one_thread_while_another_trains(fg):
    fg.set_default_dtype(np.float64)
    try:
        rng = np.random.default_rng(3)
        xs, ts = rng.normal(size=(24, 6)), rng.normal(size=(24, 1))
        in_validation, trained = threading.Event(), threading.Event()

        def mse(out, target):
            return ((out - target) ** 2).mean()

        def make_fit(hold):
            def metric(outputs, targets):
                if hold and not trained.is_set():
                    # fit is inside no_grad here: let the other thread train now
                    in_validation.set()
                    assert trained.wait(WAIT)
                return float(np.abs(np.asarray(outputs) - np.asarray(targets)).mean())
            model = small_model(fg, 5)
            opt = fg.optim.SGD(model.parameters(), lr=0.05)
            train = fg.data.DataLoader(fg.data.TensorDataset(xs, ts), batch_size=6,
                                       shuffle=True, seed=1)
            val = fg.data.DataLoader(fg.data.TensorDataset(xs[:12], ts[:12]), batch_size=4)
            return lambda: fg.fit(model, mse, opt, train, 3, val_loader=val, metrics=(metric,),
                                  progress=False).history

        def hand_training(model, out, wait):
            opt = fg.optim.SGD(model.parameters(), lr=0.05)
            for s, (x, t) in enumerate(batches(7, count=8) * 3):
                if wait and s == 4:
                    assert in_validation.wait(WAIT)
                opt.zero_grad()
                loss_of(fg, model, x, t).backward()
                opt.step()
                if wait and s == 4:
                    trained.set()
            out.append([p.numpy().copy() for p in model.parameters()])

        history_alone = make_fit(False)()
        alone = []
        hand_training(small_model(fg, 6), alone, False)

        histories, together = [], []
        fit_a, model_b = make_fit(True), small_model(fg, 6)
        run_threads(lambda: histories.append(fit_a()),
                    lambda: hand_training(model_b, together, True))
        assert trained.is_set()
        assert histories[0] == history_alone
        for got, want in zip(together[0], alone[0]):
            np.testing.assert_array_equal(got, want)
    finally:
        fg.set_default_dtype(np.float32)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_during_another_threads_backward_can_run_backward(fg):
    # The child has only the forking thread: a lock inherited held by the
    # sweeping thread would never be released there.
    entered, release = threading.Event(), threading.Event()

    class Wait(fg.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, grad_out):
            entered.set()                       # inside the sweep, holding its lock
            assert release.wait(WAIT)
            return grad_out

    w = fg.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    sweeping = threading.Thread(target=lambda: Wait.apply(w).sum().backward())
    sweeping.start()
    try:
        assert entered.wait(WAIT)
        pid = os.fork()
        if pid == 0:                            # the child: report through the exit code
            code = 1
            try:
                v = fg.tensor([3.0], dtype=np.float64, requires_grad=True)
                (v * v).sum().backward()
                code = 0 if v.grad.numpy()[0] == 6.0 else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + WAIT
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child's backward hung")
            time.sleep(0.01)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        release.set()
        sweeping.join(WAIT)
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0])
